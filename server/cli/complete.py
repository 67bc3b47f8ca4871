"""`repotune complete FILE:LINE:COL`: one completion, with what went into it and where time went.

Honest by design: it says which context was retrieved (or why none), how big the prompt was,
how much of the KV cache was reused and how long each step took, so a user can see why a
completion is what it is.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from repotune.server.ask.focus import CodeInView
from repotune.server.assistant import Assistant
from repotune.server.cli.index import require_indexable
from repotune.server.completion.context import as_snippets
from repotune.server.completion.engines import engine_for
from repotune.server.completion.request import (
    CompletionRequest,
    CompletionResult,
    redacted_buffer,
)
from repotune.server.config import Settings, load_settings
from repotune.server.folders import too_broad_to_index
from repotune.server.index.files import is_secret_document
from repotune.server.index.workspace import WorkspaceIndex
from repotune.server.languages import language_for
from repotune.server.lsp.text import lsp_lines
from repotune.server.models import ModelError

INDEX_TIMEOUT_S = 600.0
LOAD_TIMEOUT_S = 300.0


def parse_position(position: str) -> tuple[Path, int, int]:
    """``FILE:LINE:COL`` (1-based) → (path, line, column); a clear error otherwise."""
    parts = position.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        raise SystemExit(f"repotune: expected FILE:LINE:COL (1-based), got {position!r}")
    line, column = int(parts[1]), int(parts[2])
    if line < 1 or column < 1:
        raise SystemExit(f"repotune: line and column are 1-based, got {line}:{column}")
    return Path(parts[0]), line, column


def cursor_offset(text: str, line: int, column: int) -> int:
    """Character offset of a 1-based (line, column); the column may sit just past the end.
    Lines are counted as LSP counts them (``\\n``, ``\\r\\n``, ``\\r``), as in the editor."""
    lines = lsp_lines(text)
    if not lines or lines[-1].endswith(("\n", "\r")):
        lines.append("")  # the empty last line after a final line break
    if line > len(lines):
        raise SystemExit(f"repotune: line {line} is past the end of the file ({len(lines)} lines)")
    content = lines[line - 1].rstrip("\r\n")
    if column > len(content) + 1:
        raise SystemExit(
            f"repotune: column {column} is past the end of line {line} ({len(content)} characters)"
        )
    return sum(len(item) for item in lines[: line - 1]) + column - 1


def hide_rest_of_line(text: str, offset: int) -> tuple[str, str]:
    """(suffix without the rest of the cursor's line, the hidden text): a cursor placed inside
    finished code can then show what the model proposes for that line, beside what was there."""
    line_end = len(text)
    for ending in ("\n", "\r"):
        found = text.find(ending, offset)
        if found != -1:
            line_end = min(line_end, found)
    return text[line_end:], text[offset:line_end]


def find_workspace(path: Path) -> Path:
    """The enclosing git root, else the file's folder."""
    for folder in [path.parent, *path.parent.parents]:
        if (folder / ".git").exists():
            return folder
    return path.parent


def retrieve_context(
    root: Path, relative: str, prefix: str, suffix: str, settings: Settings
) -> tuple[list[Any], dict[str, Any]]:
    """Chunks for the cursor from the workspace index (brought up to date lexically first)."""
    info: dict[str, Any] = {"used": False, "note": "", "ms": 0.0}
    if settings.retrieval.top_k == 0:
        info["note"] = "none (retrieval.top_k = 0)"
        return [], info
    problem = too_broad_to_index(root)  # a lone file in the home folder: complete without it
    if problem:
        info["note"] = f"none ({root} {problem})"
        return [], info
    index = WorkspaceIndex(root, settings)
    try:
        started = time.perf_counter()
        index.start(watch=False, dense=False)
        if not index.wait_lexical(timeout=INDEX_TIMEOUT_S):
            info["note"] = "none (the index was not ready in time)"
            return [], info
        info["index_ms"] = round((time.perf_counter() - started) * 1000, 1)
        notes = []
        if settings.index.dense:
            try:
                index.load_query_embedder()
                pending = index.store.dense_pending_count()
                if pending:
                    notes.append(f"{pending} chunks without vectors yet (run `repotune index`)")
            except Exception as exc:  # dense is optional; lexical still works
                notes.append(f"lexical only ({exc})")
        else:
            notes.append("lexical only (index.dense = false)")
        started = time.perf_counter()
        chunks = index.search_cursor(relative, prefix, suffix, settings.retrieval.top_k)
        info["ms"] = round((time.perf_counter() - started) * 1000, 1)
        stats = index.stats()
        info["used"] = True
        if not chunks:
            notes.insert(0, f"none found (index has {stats.get('chunks', 0)} chunks)")
        info["note"] = "; ".join(notes)
        return chunks, info
    finally:
        index.close()


def _read_cursor(
    file_path: Path, line: int, column: int, workspace: Path | None
) -> tuple[Path, str, str, int]:
    """(workspace root, path in it, the file's text, the cursor's offset); exits on a bad path."""
    if not file_path.is_file():
        raise SystemExit(f"repotune: {file_path} is not a file")
    try:
        text = file_path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as exc:
        raise SystemExit(f"repotune: cannot read {file_path} as UTF-8 text ({exc})") from None
    offset = cursor_offset(text, line, column)
    root = (workspace or find_workspace(file_path.resolve())).resolve()
    try:
        relative = file_path.resolve().relative_to(root).as_posix()
    except ValueError:
        raise SystemExit(f"repotune: {file_path} is not inside the workspace {root}") from None
    return root, relative, text, offset


def _report(
    relative: str,
    line: int,
    column: int,
    language: str,
    root: Path,
    status: dict[str, Any],
    chunks: list[Any],
    context_info: dict[str, Any],
) -> dict[str, Any]:
    return {
        "file": relative,
        "line": line,
        "column": column,
        "language": language,
        "workspace": str(root),
        "model": status.get("model"),
        "adapter": status.get("adapter"),
        "format": status.get("format"),
        "context": {
            "note": context_info["note"],
            "retrieved": [
                {
                    "path": c.path,
                    "start_line": c.start_line,
                    "end_line": c.end_line,
                    "score": round(float(getattr(c, "score", 0.0)), 4),
                    "sources": list(getattr(c, "sources", ())),
                }
                for c in chunks
            ],
        },
    }


def _result_report(result: CompletionResult, context_info: dict[str, Any]) -> dict[str, Any]:
    prompt = result.prompt
    timings = {"retrieval": context_info.get("ms", 0.0), **result.timings}
    return {
        "multiline": result.multiline,
        "prompt_tokens": result.prompt_tokens,
        "prompt_parts": {
            "context": prompt.context_tokens if prompt else 0,
            "prefix": prompt.prefix_tokens if prompt else 0,
            "suffix": prompt.suffix_tokens if prompt else 0,
        },
        "snippets_in_prompt": [s.citation for s in prompt.snippets] if prompt else [],
        "reused_tokens": result.reused_tokens,
        "generated_tokens": result.generated_tokens,
        "timings_ms": {key: round(value, 1) for key, value in timings.items()},
    }


def run_complete(
    position: str,
    workspace: Path | None,
    overrides: dict[str, Any],
    no_context: bool = False,
    as_json: bool = False,
    hide_rest: bool = False,
) -> None:
    """Complete at FILE:LINE:COL and print the context, prompt size, completion and timings.
    With `hide_rest`, the rest of the cursor's line is left out of the prompt and reported as
    the expected text."""
    file_path, line, column = parse_position(position)
    root, relative, text, offset = _read_cursor(file_path, line, column, workspace)
    overrides = {key: value for key, value in overrides.items() if value}
    settings = load_settings(root, overrides, overrides_source="command line")
    if is_secret_document(file_path, root, settings.index.secret_patterns):
        raise SystemExit(
            f"repotune: {file_path} matches index.secret_patterns: it is never put into a prompt"
        )
    hidden = None
    if hide_rest:
        rest, hidden = hide_rest_of_line(text, offset)
        text = text[:offset] + rest
    # As in the editor: secret-shaped lines around the cursor never reach the model (which may
    # be an endpoint elsewhere).
    prefix, suffix = redacted_buffer(text, offset, settings.completion)
    language = language_for(relative)

    engine = engine_for(settings)  # in-process (loads while retrieval runs) or model.endpoint
    if no_context:
        chunks: list[Any] = []
        context_info: dict[str, Any] = {"used": False, "note": "none (--no-context)", "ms": 0.0}
    else:
        chunks, context_info = retrieve_context(root, relative, prefix, suffix, settings)
    try:
        if not engine.wait_ready(LOAD_TIMEOUT_S):
            raise ModelError(engine.load_error or "the generator did not load in time")
        request = CompletionRequest(
            path=relative,
            language=language,
            prefix=prefix,
            suffix=suffix,
            context=as_snippets(chunks),
            repo_name=root.name,
        )
        result = engine.complete(request)
        status = engine.status()
        reason = engine.last_reason
        stats = dict(engine.last_stats)  # this request's: the engine served no other
    finally:
        engine.close()

    report = _report(relative, line, column, language, root, status, chunks, context_info)
    report["completion"] = result.text if result else None
    report["reason"] = reason
    report["quick"] = bool(result is not None and result.quick)  # quick start's short prompt
    if hidden is not None:
        first_line = (result.text if result else "").split("\n", 1)[0]
        matches = first_line.strip() == hidden.strip()
        report["hidden"] = {"text": hidden, "first_line_matches": matches}
    if result is not None:
        report.update(_result_report(result, context_info))
    elif stats:  # what the model did before nothing was kept (why no suggestion came)
        timings = {"retrieval": context_info.get("ms", 0.0), **stats["timings"]}
        report["prompt_tokens"] = stats["prompt_tokens"]
        report["generated_tokens"] = stats["generated_tokens"]
        report["timings_ms"] = {key: round(value, 1) for key, value in timings.items()}
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print(_human(report))
    if result is None:
        sys.exit(3)


def _human(report: dict[str, Any]) -> str:
    lines = [
        f"cursor     {report['file']}:{report['line']}:{report['column']} ({report['language']})",
        f"model      {report['model']} (format {report['format']}, "
        f"adapter {report['adapter'] or 'none'})",
    ]
    retrieved = report["context"]["retrieved"]
    note = report["context"]["note"]
    if retrieved:
        extra = f"; {note}" if note else ""
        lines.append(f"context    {len(retrieved)} chunks retrieved{extra}")
        in_prompt = set(report.get("snippets_in_prompt", []))
        for chunk in retrieved:
            citation = f"{chunk['path']}:{chunk['start_line']}-{chunk['end_line']}"
            where = "in prompt" if any(c.startswith(f"{chunk['path']}:") for c in in_prompt) else ""
            sources = "+".join(chunk["sources"])
            lines.append(f"             {citation}  score {chunk['score']}  {sources}  {where}")
    else:
        lines.append(f"context    {note or 'none'}")
    if "prompt_tokens" in report and "prompt_parts" not in report:  # nothing was kept
        lines.append(
            f"generated  {report['generated_tokens']} tokens from a {report['prompt_tokens']}-"
            "token prompt"
        )
    elif "prompt_tokens" in report:
        parts = report["prompt_parts"]
        lines.append(
            f"prompt     {report['prompt_tokens']} tokens (context {parts['context']}, "
            f"prefix {parts['prefix']}, suffix {parts['suffix']}); "
            f"KV cache reused {report['reused_tokens']}"
        )
        kind = "multi-line" if report["multiline"] else "single-line"
        lines.append(
            f"generated  {report['generated_tokens']} tokens, {kind}, stop: {report['reason']}"
        )
    if report["completion"] is None:
        lines.append(f"completion (none: {report['reason']})")
    else:
        lines.append("completion ↓")
        lines.append(report["completion"])
        lines.append("────────")
    if "hidden" in report:
        verdict = "same" if report["hidden"]["first_line_matches"] else "differs"
        hidden = report["hidden"]["text"]
        lines.append(f"hidden     {hidden!r} (first line of the completion {verdict})")
    if "timings_ms" in report:
        lines.append(
            "timings    " + ", ".join(f"{k} {v:.0f} ms" for k, v in report["timings_ms"].items())
        )
    return "\n".join(lines)


DENSE_WAIT_S = 120.0


def parse_lines_at(at: str) -> tuple[Path, int, int | None]:
    """``FILE:LINE`` (a cursor) or ``FILE:FIRST-LAST`` (selected lines), 1-based → (path,
    first, last or None); a clear error otherwise."""
    path, _, lines = at.rpartition(":")
    first, dash, last = lines.partition("-")
    if not path or not first.isdigit() or (dash and not last.isdigit()):
        raise SystemExit(f"repotune: expected FILE:LINE or FILE:FIRST-LAST (1-based), got {at!r}")
    if int(first) < 1 or (dash and int(last) < int(first)):
        raise SystemExit(f"repotune: lines are 1-based and FIRST <= LAST, got {lines}")
    return Path(path), int(first), int(last) if dash else None


def code_in_view(at: str, workspace: Path, settings: Settings) -> CodeInView:
    """The file and lines `--at` names, read as the editor would have them open."""
    file_path, first, last = parse_lines_at(at)
    root, relative, text, _ = _read_cursor(file_path, first, 1, workspace)
    if is_secret_document(file_path, root, settings.index.secret_patterns):
        raise SystemExit(
            f"repotune: {relative} matches index.secret_patterns: it is never put into a prompt"
        )
    return CodeInView(file_path.resolve(), text, first, last)


def run_ask(workspace: Path, settings: Settings, question: str, at: str | None = None) -> None:
    """Answer a question about the codebase the way the editor command does, and say from what;
    `at` (FILE:LINE or FILE:FIRST-LAST) is where the question is asked from."""
    require_indexable(workspace)
    view = code_in_view(at, workspace, settings) if at else None
    started = time.perf_counter()
    assistant = Assistant({})
    try:
        assistant.add_folder(workspace, watch=False)
        assistant.start()  # the model loads while the index catches up
        index = assistant.folders.index_for(workspace.resolve())
        if not index.wait_lexical(INDEX_TIMEOUT_S):
            raise SystemExit("repotune: the index did not become searchable in time")
        # "What calls X?", "What does X call?": the index alone answers
        answer = assistant.answer_from_index(question, view)
        dense_complete = answer is not None or index.wait_idle(DENSE_WAIT_S)
        if answer is None:
            engine = assistant.engine
            if not engine.wait_ready(LOAD_TIMEOUT_S):
                raise ModelError(engine.load_error or "the generator did not load in time")
            answer = assistant.ask(question, view=view)
        pending = int(index.stats().get("dense_pending", 0) or 0)
    finally:
        assistant.close()
    print(answer.text)
    note = "" if dense_complete else f"; {pending} chunks had no vectors yet (lexical search only)"
    timings = ", ".join(f"{name} {value:.0f} ms" for name, value in answer.timings.items())
    total = (time.perf_counter() - started) * 1000.0
    print(f"\n({timings}; total {total:.0f} ms{note})", file=sys.stderr)
