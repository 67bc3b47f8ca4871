"""RAG fine-tuning examples from one repository, built with the server's own modules.

Train as you serve: files are chosen by `files.WorkspaceFilter` (gitignore, secrets, binary, size,
generated/minified), context comes from the server's hybrid index with the server's cursor query
(`WorkspaceIndex.search_cursor`) and is packed by `prompts.build_fim_prompt` in the model's
prompt format, within the serving token budget, counted by llama.cpp's tokenizer.

Leakage: files are split into train / validation / test *by file*, from a hash of the path, before
anything else. Retrieved context is filtered by split: a train example only ever sees train files
(a validation example train + validation files; a test example anything but its own window), and
never the text of its own target. Identical files are kept once.

Example kinds:
- ``fim``: the middle is a whole tree-sitter node: a function body, a block, a statement, an
  expression, or a line remainder (cursor inside a line, rest of the line as the middle);
- ``fim_random``: a random span of one to three lines (what a cursor anywhere looks like);
- ``describe``: code from description: the docstring or leading comment is in the prefix and the
  implementation is the middle (the local counterpart of the original work's Q&A pairs);
- ``qa``: questions about the code in the server's question prompt: derived from each file's
  definitions (data.questions; `train.question_share` of the file's examples, in its split), and
  optionally pairs written by a teacher (`train.teacher_endpoint`, any OpenAI-compatible
  endpoint; see data.teacher), train split only.
In the spirit of RAFT every example gets `train.distractors` random chunks from other files, and a
`train.no_context_share` of them get only the distractors (the helpful context left out).

JSONL schema (one object per line; `train.jsonl`, `validation.jsonl`, `test.jsonl`):
  id: str                  stable hash of (path, span, kind)
  kind: "fim" | "fim_random" | "describe" | "qa"
  span: str                tree-sitter node kind or "line_remainder" / "random" / "docstring"
                           (qa: the node kind of the definition the teacher was shown)
  split: "train" | "validation" | "test"
  path, language: str      the target file (workspace-relative) and its language
  start_byte, end_byte: int  the middle's byte range in the file (UTF-8)
  format: str              prompt format name (prompts.FORMATS); qa: "ask_document" / "ask_chat"
  prompt: str              the prompt text exactly as the server builds it
  segments: [[text, is_marker, ends_at_cursor], ...]  the same prompt as segments (the engine
            tokenizes per segment; the cursor's segment is where token healing applies)
  completion: str          middle + the format's end-of-middle marker
  middle: str              the target alone (qa: the answer)
  question: str            qa only: the question
  question_kind: str       code-derived qa only: what | where | call | which | setting
  answerable: bool         code-derived qa only: false when the answer abstains
  subject: {name, path, start_line, end_line}  code-derived qa only: what the question is about
                           (path and lines null for a made-up name)
  context: [{path, start_line, end_line, role}]  role: "retrieved" | "distractor" | "oracle"
                           (qa: the definition the pair is about)
  context_mode: "retrieved" | "distractors_only" | "oracle_removed" | "none"
  context_hit: bool        a kept retrieved snippet holds an identifier of the middle that the
                           visible prefix/suffix do not (the context could have helped)
  prompt_tokens, completion_tokens: int
Statistics go to `stats.json` and the file split to `split.json`.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repotune.server.config import Settings
from repotune.server.folders import too_broad_to_index
from repotune.server.index.chunking import Chunker
from repotune.server.index.redact import REDACTION_VERSION
from repotune.server.untrusted_files import read_regular_file
from repotune.training.base import TrainError
from repotune.training.data.examples import Builder, Retriever, TokenCounter
from repotune.training.data.qa import AskPrompt
from repotune.training.data.questions import plan, question_count, question_rows, repository_names
from repotune.training.data.spans import choose_spans
from repotune.training.data.splits import SPLITS, SourceFile, assign_splits, collect_files
from repotune.training.data.teacher import TeacherClient, TeacherStats, qa_examples


@dataclass
class DatasetStats:
    files: dict[str, int] = field(default_factory=dict)
    skipped_files: dict[str, int] = field(default_factory=dict)
    examples: dict[str, dict[str, int]] = field(default_factory=dict)
    spans: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, dict[str, int]] = field(default_factory=dict)
    context_hit_rate: dict[str, float | None] = field(default_factory=dict)
    context_modes: dict[str, int] = field(default_factory=dict)
    duplicates_dropped: int = 0
    prompt_format: str = ""
    dense_retrieval: bool = False
    teacher: dict[str, Any] | None = None  # teacher.TeacherStats, when a teacher was configured
    redaction_version: int = REDACTION_VERSION  # the secret rules its text went through

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def build_dataset(
    root: Path,
    out_dir: Path,
    settings: Settings,
    per_kind: int = 4,
    index: Any = None,
    progress: bool = True,
) -> DatasetStats:
    """Write train/validation/test JSONL, split.json and stats.json for one repository."""
    from repotune.server.models import resolve_generator
    from tqdm import tqdm

    root = Path(root).resolve()
    if too_broad_to_index(root):  # shell histories, tokens, keys: as the server refuses it
        raise TrainError(
            f"{root} is the file system's root or your home folder (or holds it): no training "
            "data is taken from it; name the project's own folder"
        )
    files, skipped = collect_files(root, settings)
    client = open_teacher(settings)
    assign_splits(files, settings)  # before anything looks at the content
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    split_map = {name: [f.path for f in files if f.split == name] for name in SPLITS}
    (out_dir / "split.json").write_text(json.dumps(split_map, indent=2))
    (out_dir / "source.json").write_text(json.dumps(repository_source(root), indent=2))

    count = TokenCounter(resolve_generator(settings.model.generator).path)
    fmt = count.prompt_format(settings)
    chunker = Chunker(settings.index.chunk_lines, settings.index.chunk_overlap)
    pool = {f.path: chunker.chunk(f.path, f.text, "") for f in files}
    retriever = Retriever(root, settings, index)
    builder = Builder(
        settings, fmt, count, retriever, files, pool, random.Random(settings.train.seed)
    )
    stats = DatasetStats(prompt_format=fmt.name, dense_retrieval=retriever.dense)
    stats.files = {name: len(paths) for name, paths in split_map.items()}
    stats.skipped_files = dict(skipped)
    rows = Rows(stats, settings.train.max_examples)
    ask = AskPrompt.for_model(count.llm)
    taken = repository_names(files) if settings.train.question_share > 0 else set()
    try:
        for source in tqdm(files, desc="dataset", unit="file", disable=not progress):
            file_examples(builder, ask, source, per_kind, taken, rows)
        if client is not None:
            teacher_stats = TeacherStats()
            for row in qa_examples(builder, client, ask, teacher_stats, progress):
                rows.keep(row, "train", limit=False)  # only train files are shown to the teacher
            stats.teacher = teacher_stats.to_json()
    finally:
        retriever.close()
        if client is not None:
            client.close()
    write_splits(out_dir, rows.by_split, settings.train.seed)
    fill_stats(stats, rows.by_split)
    (out_dir / "stats.json").write_text(json.dumps(stats.to_json(), indent=2))
    if not rows.by_split["train"]:
        raise TrainError(f"no training examples could be made from {root}")
    return stats


def stale_redaction(data_dir: Path) -> str | None:
    """Why the dataset in `data_dir` must be rebuilt before training on it, or None: one built by
    an older RepoTune went through older secret rules (a value they missed is in its text). A
    folder without stats.json was not built by `repotune train dataset` and is taken as it is."""
    stats_path = Path(data_dir) / "stats.json"
    if not stats_path.exists():
        return None
    try:  # a regular file of sane size: the folder may come from a repository
        version = json.loads(read_regular_file(stats_path, 16 << 20)).get("redaction_version")
    except (OSError, ValueError, AttributeError):
        version = None
    if version == REDACTION_VERSION:
        return None
    rules = f"version {version}" if version is not None else "no version recorded"
    return (
        f"{data_dir} was built with older secret redaction rules ({rules}, now version "
        f"{REDACTION_VERSION}): rebuild it with `repotune train dataset` before training on it"
    )


class Rows:
    """The dataset's rows per split: each prompt and completion once, at most `limit` per split."""

    def __init__(self, stats: DatasetStats, limit: int) -> None:
        self.stats = stats
        self.limit = limit
        self.by_split: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}
        self._seen: set[str] = set()

    def full(self, split: str) -> bool:
        return len(self.by_split[split]) >= self.limit

    def keep(self, row: dict[str, Any], split: str, limit: bool = True) -> bool:
        """Append an example unless its split is full or the same example is already in."""
        if limit and self.full(split):
            return False
        key = hashlib.sha256((row["prompt"] + "\0" + row["completion"]).encode()).hexdigest()
        if key in self._seen:
            self.stats.duplicates_dropped += 1
            return False
        self._seen.add(key)
        self.by_split[split].append(row)
        return True


def file_examples(
    builder: Builder, ask: AskPrompt, source: SourceFile, per_kind: int, taken: set[str], rows: Rows
) -> None:
    """One file's completion examples, then questions about its code as a share of them."""
    train = builder.settings.train
    file_rng = random.Random(f"{train.seed}:{source.path}")
    made = 0
    for span in choose_spans(source, file_rng, per_kind):
        if rows.full(source.split):
            break
        row = builder.example(source, span)
        if row is not None:
            rows.keep(row, source.split, limit=False)
            made += 1
    wanted = question_count(made, train.question_share, file_rng)
    chosen = plan(source, wanted, train.question_abstain_share, taken, file_rng)
    for row in question_rows(builder, ask, source, chosen):
        rows.keep(row, source.split)


def open_teacher(settings: Settings) -> TeacherClient | None:
    """The configured teacher, probed: an unreachable one fails now, not an hour into the build."""
    if not settings.train.teacher_endpoint or settings.train.teacher_max_pairs <= 0:
        return None
    client = TeacherClient(settings)
    try:
        client.probe()
    except TrainError:
        client.close()
        raise
    return client


def write_splits(out_dir: Path, rows: dict[str, list[dict[str, Any]]], seed: int) -> None:
    """One JSONL per split, in a seeded shuffled order (files would otherwise come in runs)."""
    for name in SPLITS:
        random.Random(f"{seed}:{name}").shuffle(rows[name])
        with (out_dir / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
            for row in rows[name]:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def repository_source(root: Path) -> dict[str, Any]:
    """The repository and commit the dataset was made from (for the model card).

    Only git commands that run nothing the repository configures: `git status` would run its
    `core.fsmonitor` command and its filter drivers (a repository unpacked with its .git folder
    chooses both), so whether tracked files changed is judged here from the committed blob ids."""
    import subprocess

    info: dict[str, Any] = {"root": str(root), "name": root.name, "commit": None, "dirty": None}
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if commit.returncode == 0:
            info["commit"] = commit.stdout.strip()
            tree = subprocess.run(
                ["git", "-C", str(root), "ls-tree", "-r", "-z", "--full-tree", "HEAD"],
                capture_output=True,
                timeout=30,
            )
            if tree.returncode == 0:
                info["dirty"] = tracked_files_changed(root, tree.stdout)
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def tracked_files_changed(root: Path, ls_tree: bytes) -> bool:
    """Whether a file of `git ls-tree -r -z HEAD` differs from its committed blob (or is gone)."""
    for entry in filter(None, ls_tree.split(b"\0")):
        meta, _, name = entry.partition(b"\t")
        mode, kind, blob = meta.split()
        if kind != b"blob" or mode == b"120000":  # submodules and symlinks are not compared
            continue
        path = root / os.fsdecode(name)
        try:  # not through a link, never a FIFO or a device (the working tree is untrusted)
            size = os.stat(path, follow_symlinks=False).st_size
            data = read_regular_file(path, size + 1, follow_links=False)
        except OSError:
            return True
        algorithm = "sha256" if len(blob) == 64 else "sha1"  # a SHA-256 repository's ids
        digest = hashlib.new(algorithm, b"blob %d\0" % len(data) + data, usedforsecurity=False)
        if digest.hexdigest() != blob.decode():
            return True
    return False


def fill_stats(stats: DatasetStats, rows: dict[str, list[dict[str, Any]]]) -> None:
    """Counts per kind, tokens, and the context hit rate over examples that carried context."""
    spans: Counter[str] = Counter()
    modes: Counter[str] = Counter()
    for name, items in rows.items():
        kinds = Counter(row["kind"] for row in items)
        stats.examples[name] = dict(sorted(kinds.items())) | {"total": len(items)}
        stats.tokens[name] = {
            "prompt": sum(row["prompt_tokens"] for row in items),
            "completion": sum(row["completion_tokens"] for row in items),
        }
        with_context = [row for row in items if row["context_mode"] == "retrieved"]
        stats.context_hit_rate[name] = (
            sum(row["context_hit"] for row in with_context) / len(with_context)
            if with_context
            else None
        )
        spans.update(row["span"] for row in items)
        modes.update(row["context_mode"] for row in items)
    stats.spans = dict(sorted(spans.items()))
    stats.context_modes = dict(sorted(modes.items()))


def format_stats(stats: DatasetStats) -> str:
    lines = [f"prompt format: {stats.prompt_format}; dense retrieval: {stats.dense_retrieval}"]
    for name in SPLITS:
        examples = stats.examples.get(name, {})
        hit = stats.context_hit_rate.get(name)
        tokens = stats.tokens.get(name, {})
        lines.append(
            f"{name:>10}: {stats.files.get(name, 0)} files, {examples.get('total', 0)} examples "
            f"{ {k: v for k, v in examples.items() if k != 'total'} }, "
            f"{tokens.get('prompt', 0)} prompt + {tokens.get('completion', 0)} completion tokens, "
            f"context hit rate {'n/a' if hit is None else f'{hit:.1%}'}"
        )
    lines.append(f"spans: {stats.spans}; context: {stats.context_modes}")
    if stats.teacher is not None:
        teacher = stats.teacher
        lines.append(
            f"teacher: {teacher['pairs']} pairs of {teacher['requested']} asked "
            f"({teacher['malformed']} malformed, {teacher['failed']} failed)"
        )
    if stats.skipped_files:
        lines.append(f"skipped files: {stats.skipped_files}")
    return "\n".join(lines)
