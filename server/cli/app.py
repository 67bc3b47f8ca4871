"""The `repotune` command. Each subcommand is a thin adapter over a core module."""

from __future__ import annotations

import json
import re
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from repotune.server.cli.console import load_errors_said_once, print_error
from repotune.server.config import Settings, SettingsError, load_settings, parse_overrides
from repotune.server.index.database import StoreError
from repotune.server.log_level import LOG_LEVEL_ENV, LOG_LEVELS, configure_logging
from repotune.server.models import ModelError

app = typer.Typer(
    help="RepoTune: a local code assistant that learns your repository.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
bench_app = typer.Typer(help="Benchmarks; each prints one JSON object.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

WorkspaceArg = Annotated[Path, typer.Argument(help="workspace (repository) root")]
SamplesOption = Annotated[int, typer.Option(help="cursor positions to sample", min=1)]
CorpusOption = Annotated[
    str | None, typer.Option(help="pinned PyPI wheel to benchmark, e.g. structlog==25.4.0")
]
SaveOption = Annotated[
    Path | None,
    typer.Option(
        "--save",
        help="also store the JSON, with the command, commit and machine, in this folder "
        "(the README's figures come from server/bench/results)",
    ),
]


LogLevel = Enum("LogLevel", {name: name for name in LOG_LEVELS}, type=str)  # type: ignore[misc]


@app.callback()
def log_options(
    log_level: Annotated[
        LogLevel | None,
        typer.Option(
            "--log-level",
            envvar=LOG_LEVEL_ENV,
            case_sensitive=False,
            help="how much RepoTune and llama.cpp log to stderr (default: warnings; debug "
            "shows llama.cpp's model loading)",
        ),
    ] = None,
) -> None:
    """RepoTune: a local code assistant that learns your repository."""
    if log_level is not None:
        configure_logging(log_level.value)


def fail(message: str, code: int = 1) -> typer.Exit:
    print_error(f"repotune: {message}")
    return typer.Exit(code)


def settings_for(workspace: Path | None, overrides: dict | None = None) -> Settings:
    if workspace is not None and not workspace.is_dir():  # said before its settings file is
        raise fail(f"{workspace.resolve()} is not a directory")
    try:
        return load_settings(workspace, overrides, overrides_source="command line")
    except SettingsError as exc:
        raise fail(str(exc)) from None


@app.command()
def doctor(
    workspace: Annotated[Path, typer.Option(help="workspace whose settings to check")] = Path(),
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    speed: Annotated[
        bool,
        typer.Option(
            "--speed",
            help="also load the generator and time a new place's prompt and decoding "
            "(a few seconds)",
        ),
    ] = False,
) -> None:
    """Check versions, models, GPU offload, cache and index locations (and, with --speed, how
    fast this machine completes)."""
    from repotune.server.cli.doctor import run_doctor

    report = run_doctor(workspace, speed=speed)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        from repotune.server.cli.doctor import format_report

        print(format_report(report))
    if report["problems"]:
        raise typer.Exit(1)


# Transport flags LSP clients conventionally append (vscode-languageclient, for one).
_OTHER_TRANSPORTS = ("--socket", "--port", "--pipe", "--node-ipc")


def _transport_error(flag: str) -> typer.Exit:
    return fail(
        f"serve speaks LSP over stdio only; {flag} is not supported "
        "(start it with no transport flag, or with --stdio)",
        code=2,
    )


@app.command()
def serve(
    stdio: Annotated[bool, typer.Option("--stdio", help="LSP over stdio (the default)")] = False,
    socket: Annotated[str | None, typer.Option("--socket", hidden=True)] = None,
    port: Annotated[str | None, typer.Option("--port", hidden=True)] = None,
    pipe: Annotated[str | None, typer.Option("--pipe", hidden=True)] = None,
    node_ipc: Annotated[bool, typer.Option("--node-ipc", hidden=True)] = False,
    client_process_id: Annotated[
        str | None,
        typer.Option(
            "--clientProcessId",
            metavar="PID",
            help="the editor's process id (accepted for LSP clients that pass it; the server "
            "already exits when its stdin closes)",
        ),
    ] = None,
) -> None:
    """Run the language server over stdio (what editors start)."""
    for flag, given in zip(_OTHER_TRANSPORTS, (socket, port, pipe, node_ipc), strict=True):
        if given not in (None, False):
            raise _transport_error(flag)
    if client_process_id is not None and not client_process_id.strip().isdigit():
        raise fail(f"--clientProcessId must be a process id, not {client_process_id!r}", code=2)
    from repotune.server.lsp.server import run_stdio

    run_stdio()


@app.command()
def index(
    workspace: WorkspaceArg,
    watch: Annotated[bool, typer.Option(help="keep watching and indexing changes")] = False,
    push: Annotated[
        bool,
        typer.Option(
            "--push",
            help="then upload every vector the shared index (index.chroma_url) lacks, to "
            "pre-fill it for a team",
        ),
    ] = False,
    pairs: Annotated[
        list[str] | None,
        typer.Option("--set", help="SECTION.KEY=VALUE, e.g. index.chroma_url=http://HOST:8000"),
    ] = None,
) -> None:
    """Index a workspace (incremental; resumes after a crash)."""
    from repotune.server.cli.index import run_index

    overrides = _overrides(pairs)
    run_index(workspace.resolve(), settings_for(workspace, overrides), watch=watch, push=push)


def _overrides(pairs: list[str] | None) -> dict | None:
    try:
        return parse_overrides(pairs) if pairs else None
    except SettingsError as exc:
        raise fail(str(exc), code=2) from None


@app.command()
def search(
    workspace: WorkspaceArg,
    query: Annotated[str, typer.Argument(help="text, an identifier or a description")],
    k: Annotated[int, typer.Option("-k", help="number of results", min=1)] = 8,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Search the workspace index (hybrid: dense + lexical)."""
    from repotune.server.cli.index import run_search

    if not query.strip():
        raise fail("the query is empty", code=2)
    run_search(workspace.resolve(), settings_for(workspace), query, k=k, as_json=as_json)


@app.command()
def complete(
    position: Annotated[str, typer.Argument(help="FILE:LINE:COL, 1-based line and column")],
    workspace: Annotated[
        Path | None, typer.Option(help="workspace root (default: git root)")
    ] = None,
    no_context: Annotated[bool, typer.Option("--no-context", help="skip retrieval")] = False,
    hide_rest_of_line: Annotated[
        bool,
        typer.Option(
            "--hide-rest-of-line",
            help="leave the rest of the cursor's line out of the prompt and show it as expected",
        ),
    ] = False,
    adapter: Annotated[str | None, typer.Option(help="LoRA adapter (GGUF path or hf:)")] = None,
    model: Annotated[str | None, typer.Option(help="generator model reference")] = None,
    endpoint: Annotated[
        str | None, typer.Option(help="OpenAI-compatible base URL to generate on (model.endpoint)")
    ] = None,
    endpoint_model: Annotated[
        str | None, typer.Option(help="model name sent to the endpoint (model.endpoint_model)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Complete at a cursor position and show the retrieved context and timings."""
    from repotune.server.cli.complete import run_complete

    overrides: dict = {"model": {}}
    if adapter:
        overrides["model"]["adapter"] = adapter
    if model:
        overrides["model"]["generator"] = model
    if endpoint:
        overrides["model"]["endpoint"] = endpoint
    if endpoint_model:
        overrides["model"]["endpoint_model"] = endpoint_model
    with load_errors_said_once():
        run_complete(
            position,
            workspace,
            overrides,
            no_context=no_context,
            as_json=as_json,
            hide_rest=hide_rest_of_line,
        )


@app.command()
def ask(
    workspace: WorkspaceArg,
    question: Annotated[str, typer.Argument(help="a question about the codebase")],
    at: Annotated[
        str | None,
        typer.Option(
            help="ask from FILE:FIRST-LAST (selected lines: shown first) or FILE:LINE (a cursor: "
            'its definition, when the question says "this ...")',
            metavar="FILE:LINES",
        ),
    ] = None,
) -> None:
    """Answer a question about the codebase from retrieved code, citing files."""
    from repotune.server.cli.complete import run_ask

    if not question.strip():
        raise fail("the question is empty", code=2)
    with load_errors_said_once():
        run_ask(workspace.resolve(), settings_for(workspace), question, at)


@bench_app.command("index")
def bench_index(
    workspace: Annotated[Path | None, typer.Argument(help="workspace root (copied first)")] = None,
    corpus: CorpusOption = None,
    save: SaveOption = None,
    shared: Annotated[
        bool,
        typer.Option(
            "--shared",
            help="instead: time until a second client's index is fully dense with a shared "
            "Chroma server (started here) holding a first client's vectors, against alone",
        ),
    ] = False,
) -> None:
    """Index throughput, save-to-searchable latency, query latency, RSS."""
    root = workspace.resolve() if workspace else None
    from repotune.server.bench.index import run_bench_index

    if shared:
        from repotune.server.bench.shared_index import bench_shared_index

        result = run_bench_index(root, settings_for(root), corpus, bench_shared_index)
        store_result("index-shared", result, save)
        return
    store_result("index", run_bench_index(root, settings_for(root), corpus=corpus), save)


@bench_app.command("usages")
def bench_usages(
    workspace: Annotated[Path | None, typer.Argument(help="a Python workspace root")] = None,
    corpus: CorpusOption = None,
    names: Annotated[int, typer.Option(help="defined names to look up", min=1)] = 100,
    save: SaveOption = None,
) -> None:
    """ "Where is X used?" answers against Python's ast: precision, recall, lookup time."""
    from repotune.server.bench.usages import run_bench_usages

    root = workspace.resolve() if workspace else None
    store_result("usages", run_bench_usages(root, settings_for(root), corpus, names), save)


@bench_app.command("complete")
def bench_complete(
    workspace: WorkspaceArg,
    samples: SamplesOption = 100,
    dwell_ms: Annotated[
        int, typer.Option(help="how long the cursor rests at a new place before typing", min=0)
    ] = 1000,
    lookup_ab: Annotated[
        bool, typer.Option(help="also replay 8 sessions with prompt lookup off and on")
    ] = True,
    within_file: Annotated[
        bool,
        typer.Option(
            help="each new place is reached from 40 lines away in its own file "
            "(default: from the previous session's place, often another file)"
        ),
    ] = False,
    save: SaveOption = None,
    pairs: Annotated[
        list[str] | None,
        typer.Option("--set", help="SECTION.KEY=VALUE, e.g. completion.quick_prefix_tokens=256"),
    ] = None,
) -> None:
    """Keystroke-to-suggestion latency per kind (new place, typing on, next line) without work
    ahead, with it, with stable context and with quick start; KV reuse, decode speed."""
    from repotune.server.bench.complete import run_bench_complete

    with load_errors_said_once():
        report = run_bench_complete(
            workspace.resolve(),
            settings_for(workspace, _overrides(pairs)),
            samples=samples,
            compare_prompt_lookup=lookup_ab,
            dwell_ms=dwell_ms,
            within_file=within_file,
        )
    store_result("complete", report, save)


@bench_app.command("lsp")
def bench_lsp(
    workspace: Annotated[
        Path | None, typer.Argument(help="workspace (default: the pinned requests corpus)")
    ] = None,
    samples: SamplesOption = 30,
    save: SaveOption = None,
) -> None:
    """LSP request-to-response latency against the engine's own latency."""
    from repotune.server.bench.lsp import run_bench_lsp

    root = workspace.resolve() if workspace else None
    store_result("lsp", run_bench_lsp(root, settings_for(root), samples=samples), save)


@bench_app.command("decode")
def bench_decode(
    workspace: Annotated[
        Path | None, typer.Argument(help="workspace (default: the pinned requests corpus)")
    ] = None,
    adapter: Annotated[
        list[str] | None,
        typer.Option(help="adapters to compare: none, default or a GGUF path (repeat)"),
    ] = None,
    prompts: Annotated[int, typer.Option(help="prompts, one per file", min=1)] = 12,
    prompt_tokens: Annotated[int, typer.Option(help="tokens per prompt", min=1)] = 1000,
    new_tokens: Annotated[int, typer.Option(help="tokens decoded per prompt", min=1)] = 48,
    save: SaveOption = None,
) -> None:
    """Prompt evaluation and decoding speed of the generator with and without an adapter."""
    from repotune.server.bench.decode import run_bench_decode

    root = workspace.resolve() if workspace else None
    try:
        report = run_bench_decode(
            root,
            settings_for(root),
            adapters=adapter or ["none", "default"],
            prompts=prompts,
            prompt_tokens=prompt_tokens,
            new_tokens=new_tokens,
        )
    except (ModelError, ValueError) as exc:
        raise fail(str(exc)) from None
    store_result("decode", report, save)


@bench_app.command("endpoint")
def bench_endpoint(
    workspace: Annotated[
        Path | None, typer.Argument(help="workspace (default: the pinned requests corpus)")
    ] = None,
    samples: SamplesOption = 24,
    endpoint: Annotated[
        str | None,
        typer.Option(help="an OpenAI-compatible base URL (default: start llama_cpp.server here)"),
    ] = None,
    save: SaveOption = None,
) -> None:
    """Completion latency through an endpoint against in-process (the added milliseconds)."""
    from repotune.server.bench.endpoint import run_bench_endpoint

    root = workspace.resolve() if workspace else None
    report = run_bench_endpoint(root, settings_for(root), samples=samples, endpoint=endpoint)
    store_result("endpoint", report, save)


def store_result(benchmark: str, report: dict, directory: Path | None) -> None:
    """With --save, keep the printed JSON as a result file (command, commit, machine, time)."""
    if directory is None:
        return
    from repotune.server.bench.record import save_result

    print_error(f"repotune: saved {save_result(benchmark, report, directory)}")


@app.command(
    "train",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def train(ctx: typer.Context) -> None:
    """RAG fine-tuning: dataset, finetune, export, publish, all (needs the [train] extra)."""
    # The training package owns its own sub-CLI; it is imported only when asked for, so the
    # server never depends on it (DESIGN: training imports server, never the reverse).
    from repotune.training.cli import app as training_app

    training_app(args=ctx.args, prog_name="repotune train")


@app.command(
    "eval",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,  # `repotune eval --help` shows the evaluator's own options
)
def evaluate(ctx: typer.Context) -> None:
    """Evaluate retrieval and fine-tuning conditions on held-out files."""
    from repotune.training.eval.cli import main as eval_main

    eval_main(ctx.args)


def _requirement_for(module: str) -> tuple[str | None, str | None]:
    """RepoTune's own requirement that provides `module` (as declared in its metadata), and
    the extra it belongs to: `llama_cpp` -> ("llama-cpp-python==0.3.36", None)."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        declared = requires("repotune") or []
    except PackageNotFoundError:
        return None, None
    wanted = re.sub(r"[-_.]+", "-", module).lower()
    parsed = []
    for line in declared:
        spec, _, marker = line.partition(";")
        name = re.split(r"[<>=!~\[ (]", spec.strip(), maxsplit=1)[0]
        extra = re.search(r"extra\s*==\s*[\"']([^\"']+)", marker)
        parsed.append((re.sub(r"[-_.]+", "-", name).lower(), spec.strip(), extra))
    # the exact name first (tree-sitter before tree-sitter-languages), then a prefix
    for exact in (True, False):
        for name, spec, extra in parsed:
            if name == wanted if exact else name.startswith(wanted + "-"):
                return spec, extra.group(1) if extra else None
    return None, None


def missing_dependency(exc: ImportError) -> str:
    """A one-line report of a dependency that could not be imported, and how to install it."""
    module = (exc.name or "").split(".")[0] or "?"
    requirement, extra = _requirement_for(module)
    if extra:
        how = f"pip install 'repotune[{extra}]' (in a checkout: make install)"
    else:
        how = "pip install repotune (in a checkout: make install-server, or make install)"
    package = f" (from the package {requirement})" if requirement else ""
    if isinstance(exc, ModuleNotFoundError):
        return f"the Python module '{module}'{package} is not installed: {how}"
    return (
        f"could not import from '{module}'{package}: {exc}; the installed version may not be "
        f"one RepoTune supports: {how}"
    )


def main() -> None:
    try:
        app()
    except (SettingsError, ModelError, StoreError) as exc:  # a one-line reason, not a traceback
        print_error(f"repotune: {exc}")
        sys.exit(1)
    except ImportError as exc:
        if (exc.name or "").split(".")[0] in ("", "repotune"):
            raise  # RepoTune's own modules ship with it: that is a bug, shown as one
        print_error(f"repotune: {missing_dependency(exc)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
