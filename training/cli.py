"""`repotune train ...`: dataset, finetune, export, publish, all.

Outputs default to `<repo>/.repotune/` (never indexed by the server): `dataset/`, `run/` and
`adapter.gguf`. Every command ends with one JSON line on stdout, for scripts and benchmarks.
Settings come from the repository's `repotune.toml` / `[tool.repotune]`, then `--set KEY=VALUE`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import repotune
import typer
from repotune.server.cli.console import print_error
from repotune.server.config import Settings, SettingsError, load_settings, parse_overrides
from repotune.server.models import ModelError
from repotune.training.base import TrainError
from repotune.training.options import OutOption, SetOption, positive_minutes
from repotune.training.outputs import check_output, default_output, repository_output

repotune.use_default_openmp_spin()  # a training process owns its cores

app = typer.Typer(
    help="RAG fine-tuning: repository -> dataset -> LoRA -> GGUF adapter the server loads.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help, like the rest of `repotune`
)


def _fail(message: str) -> typer.Exit:
    print_error(f"repotune train: {message}")
    return typer.Exit(1)


def _settings(workspace: Path | None, pairs: list[str] | None) -> Settings:
    try:
        overrides = parse_overrides(pairs or [])
        return load_settings(workspace, overrides, overrides_source="command line")
    except SettingsError as exc:
        raise _fail(str(exc)) from None


def _emit(data: dict[str, Any]) -> None:
    print(json.dumps(data, default=str))


def _warn_kept_start(result: Any) -> None:
    from repotune.training.finetune import kept_start_warning

    warning = kept_start_warning(result)
    if warning is not None:
        print_error(f"repotune train: {warning}")


def _guard(action: Any) -> Any:
    try:
        return action()
    except (TrainError, ModelError, SettingsError) as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:  # a folder it may not write to, a full disk: one line, not a traceback
        raise _fail(f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc)) from None


TimeBudget = Annotated[
    float | None,
    typer.Option(
        "--time-budget",
        help="stop training after this many minutes (best kept)",
        callback=positive_minutes,
    ),
]


def _init_adapter(settings: Settings, base: str | None) -> Path | None:
    """The adapter a fine-tune starts from (train.init_adapter; 'default' = the shipped one)."""
    from repotune.training.export.warm_start import init_adapter_path

    return _guard(lambda: init_adapter_path(settings, base))  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- commands


@app.command()
def dataset(
    repo: Annotated[Path, typer.Argument(help="repository root")],
    out: OutOption = None,
    per_kind: Annotated[int, typer.Option(help="spans per kind per file")] = 4,
    set_: SetOption = None,
) -> None:
    """Build train/validation/test JSONL (split by file) with retrieved context."""
    from repotune.training.data.build import build_dataset, format_stats

    repo = repo.resolve()
    settings = _settings(repo if repo.is_dir() else None, set_)
    target = _guard(lambda: check_output(out or repository_output(repo, "dataset"), folder=True))
    stats = _guard(lambda: build_dataset(repo, target, settings, per_kind=per_kind))
    typer.echo(format_stats(stats), err=True)
    _emit({"dataset": str(target), **stats.to_json()})


@app.command()
def finetune(
    data: Annotated[Path, typer.Argument(help="dataset folder (from `train dataset`)")],
    out: Annotated[
        Path | None, typer.Option(help="run folder (default: beside the dataset)")
    ] = None,
    base: Annotated[str | None, typer.Option(help="base model (default: model.generator)")] = None,
    resume: Annotated[bool, typer.Option(help="continue the run in --out")] = False,
    max_steps: Annotated[int | None, typer.Option(help="stop after this many steps", min=1)] = None,
    time_budget: TimeBudget = None,
    workspace: Annotated[Path | None, typer.Option(help="repository whose settings apply")] = None,
    set_: SetOption = None,
    save: Annotated[
        Path | None,
        typer.Option(
            "--save",
            help="also store the summary (tokens/s, losses) with the command, commit and "
            "machine in this folder, as the benchmarks do (server/bench/results)",
        ),
    ] = None,
) -> None:
    """LoRA fine-tune on the served base (from the default adapter); prints tokens/s and
    validation losses."""
    from repotune.training.finetune import finetune as run_finetune

    settings = _settings(workspace, set_)
    run_dir = _guard(lambda: check_output(out or default_output(data.parent, "run"), folder=True))
    init = None if resume else _init_adapter(settings, base)
    result = _guard(
        lambda: run_finetune(
            data,
            run_dir,
            settings,
            base,
            resume=resume,
            max_steps=max_steps,
            time_budget_s=None if time_budget is None else time_budget * 60,
            init_adapter=init,
        )
    )
    if int(os.environ.get("RANK", "0")) == 0:  # one summary under `accelerate launch`
        _warn_kept_start(result)
        _emit(result.to_json())
        if save is not None:
            from repotune.server.bench.record import save_result

            saved = save_result("train-finetune", result.to_json(), save)
            print_error(f"repotune: saved {saved}")


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="run folder (from `train finetune`)")],
    out: Annotated[Path | None, typer.Option(help="adapter file (.gguf)")] = None,
    check: Annotated[bool, typer.Option(help="llama.cpp vs PyTorch parity check")] = True,
    merge: Annotated[
        str | None,
        typer.Option(help="also merge into the base and quantize: Q8_0 (parity-checked)"),
    ] = None,
    dtype: Annotated[str, typer.Option(help="adapter tensor type: f32 or f16")] = "f32",
    allow_q4: Annotated[
        bool, typer.Option(help="allow --merge Q4_K_M (refused by default; parity reported)")
    ] = False,
) -> None:
    """Write the adapter as a llama.cpp GGUF adapter; fail loudly when parity is poor."""
    from repotune.training.export.parity import held_out_texts
    from repotune.training.export.run import export as run_export

    if dtype not in ("f32", "f16"):
        raise _fail("--dtype must be f32 or f16")
    target = _guard(
        lambda: check_output(out or default_output(run.parent, "adapter.gguf"), folder=False)
    )
    result = _guard(
        lambda: run_export(
            run,
            target,
            held_out_texts(run),
            check=check,
            merge=merge,
            dtype=dtype,
            allow_q4=allow_q4,
        )
    )
    typer.echo(f"adapter: {result.adapter_path} ({result.size_bytes / 1e6:.1f} MB)", err=True)
    typer.echo(f'use it: [model] adapter = "{result.adapter_path}"', err=True)
    if result.merged_path is not None:
        exact, quantized = result.merged_parity
        typer.echo(
            f"merged {result.merged_kind}: {result.merged_path} (top-1 agreement with PyTorch: "
            f"F32 merge {exact.top1_agreement:.3f}, {result.merged_kind} "
            f'{quantized.top1_agreement:.3f}); or: [model] generator = "{result.merged_path}"',
            err=True,
        )
    _emit(result.to_json())


@app.command()
def publish(
    adapter: Annotated[Path, typer.Argument(help="exported adapter (.gguf)")],
    repo_id: Annotated[str, typer.Option("--repo", help="Hugging Face ORG/NAME")],
    run: Annotated[Path | None, typer.Option(help="run folder, for the model card")] = None,
    public: Annotated[bool, typer.Option(help="make the repository public")] = False,
    folder: Annotated[Path | None, typer.Option(help="staging folder to build")] = None,
    dry_run: Annotated[bool, typer.Option(help="only build the folder")] = False,
) -> None:
    """Push adapter, model card and settings to a Hugging Face repository (private default)."""
    from repotune.training.publish import build_folder
    from repotune.training.publish import publish as run_publish

    staging = folder or adapter.parent / "publish"
    if dry_run:
        _guard(lambda: build_folder(adapter, repo_id, staging, run))
        _emit({"folder": str(staging), "repo": repo_id, "uploaded": False})
        return
    reference = _guard(
        lambda: run_publish(adapter, repo_id, staging, run_dir=run, private=not public)
    )
    _emit({"folder": str(staging), "repo": repo_id, "uploaded": True, "reference": reference})


@app.command("all")
def all_steps(
    repo: Annotated[Path, typer.Argument(help="repository root")],
    max_steps: Annotated[int | None, typer.Option(help="cap on training steps", min=1)] = None,
    time_budget: TimeBudget = None,
    check: Annotated[bool, typer.Option(help="parity check on export")] = True,
    set_: SetOption = None,
) -> None:
    """dataset -> finetune -> export into <repo>/.repotune/."""
    from repotune.training.data.build import build_dataset, format_stats
    from repotune.training.export.parity import held_out_texts
    from repotune.training.export.run import export as run_export
    from repotune.training.finetune import finetune as run_finetune

    repo = repo.resolve()
    settings = _settings(repo if repo.is_dir() else None, set_)
    data_dir, run_dir, adapter = _guard(
        lambda: [
            check_output(repository_output(repo, name), folder=not name.endswith(".gguf"))
            for name in ("dataset", "run", "adapter.gguf")
        ]
    )
    stats = _guard(lambda: build_dataset(repo, data_dir, settings))
    typer.echo(format_stats(stats), err=True)
    resume = (run_dir / "checkpoint").exists()
    init = None if resume else _init_adapter(settings, None)
    result = _guard(
        lambda: run_finetune(
            data_dir,
            run_dir,
            settings,
            None,
            resume=resume,
            max_steps=max_steps,
            time_budget_s=None if time_budget is None else time_budget * 60,
            init_adapter=init,
        )
    )
    _warn_kept_start(result)
    exported = _guard(lambda: run_export(run_dir, adapter, held_out_texts(run_dir), check=check))
    typer.echo(f'use it: add to {repo / "repotune.toml"}: [model] adapter = "{adapter}"', err=True)
    _emit({"finetune": result.to_json(), "export": exported.to_json()})


@app.command("default-adapter")
def default_adapter(
    out: Annotated[Path | None, typer.Option(help="work folder (default: in the cache)")] = None,
    max_steps: Annotated[int | None, typer.Option(help="cap on training steps", min=1)] = None,
    time_budget: TimeBudget = None,
    humaneval: Annotated[
        Path | None, typer.Option(help="HumanEval-*.jsonl.gz: check the corpus holds none of it")
    ] = None,
    install: Annotated[
        bool, typer.Option(help="copy the adapter and its card into the package (maintainers)")
    ] = False,
    set_: SetOption = None,
) -> None:
    """Rebuild the shipped default adapter from the pinned corpus (resumable)."""
    from repotune.server.config import cache_dir
    from repotune.training.data.corpus import corpus_settings
    from repotune.training.default_adapter import rebuild

    settings = corpus_settings(_settings(None, set_))
    work = out or cache_dir() / "default-adapter"
    result = _guard(
        lambda: rebuild(
            work,
            settings,
            max_steps=max_steps,
            time_budget_s=None if time_budget is None else time_budget * 60,
            humaneval=humaneval,
            install=install,
        )
    )
    _emit(result)


def main() -> None:  # pragma: no cover - `python -m repotune.training.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
