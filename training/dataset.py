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
  definitions (questions.py; `train.question_share` of the file's examples, in its split), and
  optionally pairs written by a teacher (`train.teacher_endpoint`, any OpenAI-compatible
  endpoint; see teacher.py), train split only.
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
  segments: [[text, is_marker], ...]  the same prompt as segments (the engine tokenizes per segment)
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
import logging
import random
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repotune.server.completion.context import ContextSnippet
from repotune.server.completion.formats import PromptFormat
from repotune.server.completion.model import format_of
from repotune.server.completion.prompts import PREFIX_QUANTUM, build_fim_prompt, scaled_budget
from repotune.server.completion.tokens import CachedTokenCounter
from repotune.server.config import Settings
from repotune.server.index.chunking import Chunk, Chunker
from repotune.server.index.chunking import new_parser as _parser
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
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
MAX_MIDDLE_LINES = 24

# tree-sitter node kinds per span type, by language (others fall back to generic names).
FUNCTION_NODES = {
    "function_definition",
    "function_declaration",
    "function_item",
    "method_definition",
    "method_declaration",
    "constructor_declaration",
    "arrow_function",
    "function_expression",
    "method",
}
BLOCK_NODES = {
    "if_statement",
    "for_statement",
    "for_in_statement",
    "while_statement",
    "with_statement",
    "try_statement",
    "if_expression",
    "for_expression",
    "match_expression",
    "switch_statement",
    "expression_switch_statement",
}
STATEMENT_NODES = {
    "expression_statement",
    "return_statement",
    "assignment",
    "lexical_declaration",
    "variable_declaration",
    "let_declaration",
    "short_var_declaration",
    "local_variable_declaration",
    "raise_statement",
    "assert_statement",
}
EXPRESSION_NODES = {
    "call",
    "call_expression",
    "method_invocation",
    "binary_operator",
    "binary_expression",
    "comparison_operator",
    "boolean_operator",
    "list_comprehension",
    "subscript",
    "attribute",
    "member_expression",
    "field_expression",
    "argument_list",
    "arguments",
}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Span:
    """A middle: bytes [start, end) of a file, and what kind of span it is."""

    kind: str  # example kind: fim, fim_random, describe
    span: str  # node kind or line_remainder / random
    start: int
    end: int


@dataclass
class SourceFile:
    path: str
    language: str
    text: str
    data: bytes
    split: str = "train"


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

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


# --------------------------------------------------------------------------- files and split


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
        raise TrainError(f"repository not found: {root}")
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


# --------------------------------------------------------------------------- spans


def _walk(node: Any) -> Iterator[Any]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def _line_count(data: bytes, start: int, end: int) -> int:
    return data[start:end].count(b"\n") + 1


def _doc_of(node: Any, data: bytes) -> Any | None:
    """The docstring (first body statement is a string) or the comment right above `node`."""
    body = node.child_by_field_name("body")
    if body is not None and body.named_children:
        first = body.named_children[0]
        if (
            first.type == "expression_statement"
            and first.named_children
            and first.named_children[0].type == "string"
        ):
            return first
    previous = node.prev_named_sibling
    if previous is not None and "comment" in previous.type:
        gap = data[previous.end_byte : node.start_byte]
        if gap.count(b"\n") <= 1 and not gap.strip():
            return previous
    return None


def syntax_spans(source: SourceFile) -> list[Span]:
    """All candidate middles of one file that are whole tree-sitter nodes (or line remainders)."""
    try:
        tree = _parser(source.language).parse(source.data)
    except Exception:  # a grammar that fails to load: no syntax spans for this file
        return []
    data = source.data
    spans: list[Span] = []
    for node in _walk(tree.root_node):
        if node.has_error or node.start_byte == node.end_byte:
            continue
        lines = _line_count(data, node.start_byte, node.end_byte)
        if node.type in FUNCTION_NODES:
            body = node.child_by_field_name("body")
            doc = _doc_of(node, data)
            if body is not None and body.named_children and lines <= MAX_MIDDLE_LINES + 2:
                inner = body.named_children
                spans.append(Span("fim", "function_body", inner[0].start_byte, inner[-1].end_byte))
                if doc is not None:
                    rest = [child for child in inner if child.start_byte >= doc.end_byte]
                    if rest and doc.parent == body:
                        spans.append(
                            Span("describe", "docstring", rest[0].start_byte, rest[-1].end_byte)
                        )
                    elif doc.parent != body:
                        spans.append(
                            Span("describe", "comment", inner[0].start_byte, inner[-1].end_byte)
                        )
        elif lines > MAX_MIDDLE_LINES:
            continue
        elif node.type in BLOCK_NODES:
            spans.append(Span("fim", "block", node.start_byte, node.end_byte))
        elif node.type in STATEMENT_NODES:
            spans.append(Span("fim", "statement", node.start_byte, node.end_byte))
            line_end = data.find(b"\n", node.start_byte)
            line_end = len(data) if line_end < 0 else line_end
            if lines == 1 and node.end_byte == line_end and node.end_byte - node.start_byte > 8:
                for child in node.children[1:]:
                    if child.start_byte > node.start_byte and child.end_byte == node.end_byte:
                        spans.append(Span("fim", "line_remainder", child.start_byte, line_end))
                        break
        elif node.type in EXPRESSION_NODES and lines == 1 and node.end_byte - node.start_byte > 3:
            spans.append(Span("fim", "expression", node.start_byte, node.end_byte))
    return spans


def random_spans(source: SourceFile, rng: random.Random, count: int) -> list[Span]:
    """Cursor anywhere: a middle from a random point in a line to the end of 1–3 lines."""
    data = source.data
    starts = [0] + [i + 1 for i, byte in enumerate(data) if byte == 10 and i + 1 < len(data)]
    spans = []
    for _ in range(count):
        index = rng.randrange(len(starts))
        line_start = starts[index]
        line_end = data.find(b"\n", line_start)
        line_end = len(data) if line_end < 0 else line_end
        if line_end - line_start < 4:
            continue
        start = line_start + rng.randrange(0, line_end - line_start)
        while start > line_start and (data[start] & 0xC0) == 0x80:  # not inside a UTF-8 char
            start -= 1
        last = min(len(starts) - 1, index + rng.randrange(0, 3))
        end = data.find(b"\n", starts[last])
        end = len(data) if end < 0 else end
        if data[start:end].strip():
            spans.append(Span("fim_random", "random", start, end))
    return spans


def choose_spans(source: SourceFile, rng: random.Random, per_kind: int) -> list[Span]:
    """A few spans of each kind per file, so one long file does not dominate."""
    candidates = syntax_spans(source)
    by_type: dict[str, list[Span]] = {}
    for span in candidates:
        by_type.setdefault(span.span, []).append(span)
    chosen: list[Span] = []
    for name in sorted(by_type):
        group = by_type[name]
        chosen.extend(rng.sample(group, min(per_kind, len(group))))
    chosen.extend(random_spans(source, rng, max(1, per_kind // 2)))
    return chosen


# --------------------------------------------------------------------------- retrieval


class Retriever:
    """The server's index, filtered so an example never sees a file it must not see."""

    def __init__(self, root: Path, settings: Settings, index: Any = None) -> None:
        self.settings = settings
        self.index = index
        self._own = False
        if index is None:
            from repotune.server.index.workspace import WorkspaceIndex

            self.index = WorkspaceIndex(root, settings)
            self._own = True
            self.index.start(watch=False)
            if not self.index.wait_idle(timeout=3600):
                raise TrainError("indexing the repository did not finish within an hour")
        self.dense = bool(getattr(self.index, "dense", False))
        if self.dense and hasattr(self.index, "load_query_embedder"):
            # An index handed in (or already complete) may never have loaded its embedder;
            # without it every query would silently be lexical-only.
            try:
                self.index.load_query_embedder()
            except Exception as exc:  # no embedder: lexical retrieval, and the stats say so
                self.dense = False
                log.warning("dense retrieval unavailable for the dataset: %s", exc)

    def close(self) -> None:
        if self._own and self.index is not None:
            self.index.close()

    def search(
        self,
        path: str,
        prefix: str,
        suffix: str,
        middle_lines: tuple[int, int],
        allowed: set[str],
        k: int,
    ) -> list[Any]:
        lines = self.settings.retrieval.query_lines
        results = self.index.search_cursor(path, prefix, suffix, k * 4 + 8)
        kept = []
        for chunk in results:
            if chunk.path not in allowed:
                continue
            if chunk.path == path and not (
                chunk.end_line < middle_lines[0] - lines
                or chunk.start_line > middle_lines[1] + lines
            ):
                continue  # never show the target (or its serving window) as context
            kept.append(chunk)
            if len(kept) >= k:
                break
        return kept


def allowed_context(split: str, files: Sequence[SourceFile]) -> set[str]:
    if split == "train":
        visible = {"train"}
    elif split == "validation":
        visible = {"train", "validation"}
    else:
        visible = set(SPLITS)
    return {f.path for f in files if f.split in visible}


# --------------------------------------------------------------------------- examples


class TokenCounter:
    """llama.cpp's own tokenizer for the generator (vocabulary only), as the engine counts."""

    def __init__(self, model_path: Path) -> None:
        from repotune.training.export import _no_extra_buffers

        with _no_extra_buffers():
            from llama_cpp import Llama

            self.llm = Llama(model_path=str(model_path), vocab_only=True, verbose=False)
        llm = self.llm
        self._counter = CachedTokenCounter(
            lambda text: llm.tokenize(text.encode("utf-8"), add_bos=False, special=False),
            max_entries=50_000,
        )

    def __call__(self, text: str) -> int:
        return self._counter(text)

    def prompt_format(self, settings: Settings) -> PromptFormat:
        return format_of(self.llm, settings.model.prompt_format)


def serving_budget(settings: Settings) -> tuple[int, int, int]:
    """The engine's split, scaled to fit `train.max_seq_tokens` with room for the middle."""
    comp = settings.completion
    return scaled_budget(comp, settings.train.max_seq_tokens, comp.max_tokens_block, floor=48)


def context_hit(middle: str, visible: str, snippets: Sequence[ContextSnippet]) -> bool:
    """Could the context have helped: an identifier of the middle that only the context shows."""
    wanted = set(IDENTIFIER.findall(middle)) - set(IDENTIFIER.findall(visible))
    if not wanted:
        return False
    shown = set()
    for snippet in snippets:
        shown.update(IDENTIFIER.findall(snippet.text))
    return bool(wanted & shown)


def _example_id(path: str, span: Span) -> str:
    key = f"{path}:{span.start}:{span.end}:{span.kind}:{span.span}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


@dataclass
class Builder:
    settings: Settings
    fmt: PromptFormat
    count: TokenCounter
    retriever: Retriever
    files: Sequence[SourceFile]
    distractor_pool: dict[str, list[Chunk]]
    rng: random.Random

    def example(self, source: SourceFile, span: Span) -> dict[str, Any] | None:
        data = source.data
        prefix = data[: span.start].decode("utf-8", errors="replace")
        middle = data[span.start : span.end].decode("utf-8", errors="replace")
        suffix = data[span.end :].decode("utf-8", errors="replace")
        if not middle.strip():
            return None
        completion_tokens = self.count(middle + self.fmt.end_of_middle)
        if completion_tokens > self.settings.completion.max_tokens_block:
            return None
        train = self.settings.train
        allowed = allowed_context(source.split, self.files)
        lines = (_line_of(data, span.start), _line_of(data, span.end))
        retrieved = self.retriever.search(
            source.path, prefix, suffix, lines, allowed, self.settings.retrieval.top_k
        )
        distractors = self._distractors(source.path, allowed, {c.path for c in retrieved})
        mode = "retrieved"
        if self.rng.random() < train.no_context_share:
            mode = "distractors_only"
            retrieved = []
        roles = {(c.path, c.start_line): "retrieved" for c in retrieved}
        for c in distractors:  # (one may repeat a retrieved chunk in a very small repository)
            roles.setdefault((c.path, c.start_line), "distractor")
        context = [*retrieved, *distractors]
        if not context:
            mode = "none"
        built = build_fim_prompt(
            self.fmt,
            path=source.path,
            prefix=prefix,
            suffix=suffix,
            context=context,
            budget=serving_budget(self.settings),
            count_tokens=self.count,
            prefix_quantum=PREFIX_QUANTUM,  # exactly as the engine cuts the prefix
        )
        kept_retrieved = [
            s for s in built.snippets if roles.get((s.path, s.start_line)) == "retrieved"
        ]
        return {
            "id": _example_id(source.path, span),
            "kind": span.kind,
            "span": span.span,
            "split": source.split,
            "path": source.path,
            "language": source.language,
            "start_byte": span.start,
            "end_byte": span.end,
            "format": built.format,
            "prompt": built.text,
            "segments": [[s.text, s.marker] for s in built.segments],
            "completion": middle + built.end_of_middle,
            "middle": middle,
            "context": [
                {
                    "path": s.path,
                    "start_line": s.start_line,
                    "end_line": s.last_line,
                    "role": roles.get((s.path, s.start_line), "retrieved"),
                }
                for s in built.snippets
            ],
            "context_mode": mode,
            "context_hit": context_hit(middle, built.prefix + built.suffix, kept_retrieved),
            "prompt_tokens": built.tokens,
            "completion_tokens": completion_tokens,
        }

    def _distractors(self, path: str, allowed: set[str], avoid: set[str]) -> list[Chunk]:
        """Chunks of other allowed files, preferably files retrieval did not find (`avoid`);
        in a repository too small for that, any other allowed file."""
        count = self.settings.train.distractors
        candidates = [p for p in sorted(allowed) if p != path and self.distractor_pool.get(p)]
        pool = [p for p in candidates if p not in avoid] or candidates
        if not pool or count == 0:
            return []
        chosen = []
        for name in self.rng.sample(pool, min(count, len(pool))):
            chosen.append(self.rng.choice(self.distractor_pool[name]))
        return chosen


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
    files, skipped = collect_files(root, settings)
    client = None
    if settings.train.teacher_endpoint and settings.train.teacher_max_pairs > 0:
        from repotune.training.teacher import TeacherClient

        client = TeacherClient(settings)
        try:
            client.probe()  # a configured but unreachable teacher fails now, not in an hour
        except TrainError:
            client.close()
            raise
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
    rng = random.Random(settings.train.seed)
    builder = Builder(settings, fmt, count, retriever, files, pool, rng)
    stats = DatasetStats(prompt_format=fmt.name, dense_retrieval=retriever.dense)
    stats.files = {name: len(paths) for name, paths in split_map.items()}
    stats.skipped_files = dict(skipped)
    seen: set[str] = set()
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}

    def keep(row: dict[str, Any], split: str) -> None:
        """Append an example unless the same prompt and completion is already in the dataset."""
        key = hashlib.sha256((row["prompt"] + "\0" + row["completion"]).encode()).hexdigest()
        if key in seen:
            stats.duplicates_dropped += 1
            return
        seen.add(key)
        rows[split].append(row)

    from repotune.training.qa import AskPrompt
    from repotune.training.questions import plan, question_count, question_rows, repository_names

    ask = AskPrompt.for_model(count.llm)
    taken = repository_names(files) if settings.train.question_share > 0 else set()
    try:
        for source in tqdm(files, desc="dataset", unit="file", disable=not progress):
            file_rng = random.Random(f"{settings.train.seed}:{source.path}")
            made = 0
            for span in choose_spans(source, file_rng, per_kind):
                if len(rows[source.split]) >= settings.train.max_examples:
                    break
                row = builder.example(source, span)
                if row is not None:
                    keep(row, source.split)
                    made += 1
            # Questions about this file's code, in its split, as a share of its examples.
            wanted = question_count(made, settings.train.question_share, file_rng)
            share = settings.train.question_abstain_share
            for row in question_rows(
                builder, ask, source, plan(source, wanted, share, taken, file_rng)
            ):
                if len(rows[source.split]) < settings.train.max_examples:
                    keep(row, source.split)
        if client is not None:
            from repotune.training.teacher import TeacherStats, qa_examples

            teacher_stats = TeacherStats()
            for row in qa_examples(builder, client, ask, teacher_stats, progress):
                keep(row, "train")  # only train files are ever shown to the teacher
            stats.teacher = teacher_stats.to_json()
    finally:
        retriever.close()
        if client is not None:
            client.close()
    for name in SPLITS:
        order = random.Random(f"{settings.train.seed}:{name}")
        order.shuffle(rows[name])
        with (out_dir / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
            for row in rows[name]:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    fill_stats(stats, rows)
    (out_dir / "stats.json").write_text(json.dumps(stats.to_json(), indent=2))
    if not rows["train"]:
        raise TrainError(f"no training examples could be made from {root}")
    return stats


def repository_source(root: Path) -> dict[str, Any]:
    """The repository and commit the dataset was made from (for the model card)."""
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
            status = subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            info["dirty"] = bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


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
