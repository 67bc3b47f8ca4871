"""Which files a repository offers to learn from, and their split (train / validation / test).

Files are split by file, from a hash of the path, before anything else: a test file never leaks
into training, and the split stays stable as the repository grows.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from repotune.server.config import Settings
from repotune.server.index.files import ContentSkip, WorkspaceFilter, read_text_file
from repotune.server.languages import CODE_LANGUAGES, language_for
from repotune.training.base import TrainError

SPLITS = ("train", "validation", "test")


VENDORED_DIRS = frozenset(
    {
        "vendor",
        "vendored",
        "_vendor",
        "third_party",
        "third-party",
        "thirdparty",
        "node_modules",
        "external",
        "extern",
        "site-packages",
        "bower_components",
    }
)


@dataclass
class SourceFile:
    path: str
    language: str
    text: str
    data: bytes
    split: str = "train"


def split_for(path: str, seed: int, test_share: float, validation_share: float) -> str:
    """A file's split from a hash of its path: stable as the repository grows."""
    digest = hashlib.sha256(f"{seed}:{path}".encode()).digest()
    value = int.from_bytes(digest[:8], "big") / 2**64
    if value < test_share:
        return "test"
    if value < test_share + validation_share:
        return "validation"
    return "train"


def is_vendored(path: str) -> bool:
    return any(part.lower() in VENDORED_DIRS for part in path.split("/")[:-1])


def collect_files(root: Path, settings: Settings) -> tuple[list[SourceFile], Counter[str]]:
    """The workspace's source files the server would index, minus vendored code and duplicates."""
    if not root.is_dir():
        problem = "is not a directory" if root.exists() else "not found"
        raise TrainError(f"repository {root} {problem}")
    skipped: Counter[str] = Counter()
    scan = WorkspaceFilter(root, settings).scan()
    for item in scan.skipped:
        skipped[item.reason] += 1
    if not scan.files:
        raise TrainError(f"{root} has no files to learn from (empty, or everything is ignored)")
    seen: set[str] = set()
    files: list[SourceFile] = []
    for entry in sorted(scan.files, key=lambda e: e.rel):
        language = language_for(entry.rel)
        if Path(entry.rel).suffix.lower() not in CODE_LANGUAGES:
            skipped["not-code"] += 1
            continue
        if is_vendored(entry.rel):
            skipped["vendored"] += 1
            continue
        try:
            loaded = read_text_file(entry.path, settings.index.max_file_bytes)
        except ContentSkip as exc:
            skipped[exc.reason] += 1
            continue
        except OSError:
            skipped["unreadable"] += 1
            continue
        if loaded.content_hash in seen:
            skipped["duplicate"] += 1
            continue
        seen.add(loaded.content_hash)
        if not loaded.text.strip():
            skipped["empty"] += 1
            continue
        files.append(SourceFile(entry.rel, language, loaded.text, loaded.text.encode("utf-8")))
    if not files:
        languages = ", ".join(sorted({v for v in CODE_LANGUAGES.values()}))
        raise TrainError(f"{root} has no source files in a supported language ({languages})")
    return files, skipped


def assign_splits(files: Sequence[SourceFile], settings: Settings) -> None:
    """Split by file; with few files make sure train and validation are not empty."""
    train = settings.train
    for item in files:
        item.split = split_for(item.path, train.seed, train.test_share, train.validation_share)
    by_split = {name: [f for f in files if f.split == name] for name in SPLITS}
    if not by_split["train"]:
        donor = by_split["validation"] or by_split["test"]
        donor[0].split = "train"
    by_split = {name: [f for f in files if f.split == name] for name in SPLITS}
    if not by_split["validation"] and len(by_split["train"]) >= 2 and train.validation_share > 0:
        by_split["train"][-1].split = "validation"


def allowed_context(split: str, files: Sequence[SourceFile]) -> set[str]:
    if split == "train":
        visible = {"train"}
    elif split == "validation":
        visible = {"train", "validation"}
    else:
        visible = set(SPLITS)
    return {f.path for f in files if f.split in visible}
