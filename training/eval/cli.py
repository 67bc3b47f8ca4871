"""`repotune eval`, `repotune eval humaneval` and `repotune eval compare`: options in, JSON out."""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import repotune
import typer
from repotune.server.cli.console import print_error
from repotune.server.config import SettingsError, parse_overrides
from repotune.server.models import ModelError
from repotune.training.base import TrainError
from repotune.training.eval.compare import compare as compare_runs
from repotune.training.eval.config import CONDITIONS, DEFAULT_CONDITIONS, EvalConfig
from repotune.training.eval.corpora import EvalError
from repotune.training.eval.humaneval import HumanEvalConfig, parse_conditions
from repotune.training.eval.humaneval import run as run_humaneval
from repotune.training.eval.humaneval_exec import DEFAULT_TIMEOUT_S
from repotune.training.eval.runner import run
from repotune.training.options import BootstrapOption, OutOption, QuietOption, SetOption

repotune.use_default_openmp_spin()  # an evaluation run owns its cores (it trains, too)


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
humaneval_app = typer.Typer(
    add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None
)
compare_app = typer.Typer(
    add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None
)
# The command line each run was started with, for its result files.
_COMMAND = [""]
_HUMANEVAL_COMMAND = [""]


def _adapters(pairs: Sequence[str]) -> dict[str, str]:
    result = {}
    for pair in pairs:
        label, sep, path = pair.partition("=")
        if not sep or not label or not path:
            raise EvalError(
                f"--adapter expects LABEL=PATH (LABEL: package or folder name), got '{pair}'"
            )
        result[label] = path
    return result


@app.command()
def command(
    repo: Annotated[
        list[str],
        typer.Option(
            help="pinned package NAME==VERSION (pip) or npm:NAME@VERSION (npm pack), or a "
            "folder; repeat"
        ),
    ],
    conditions: Annotated[
        str, typer.Option(help=f"comma-separated, of: {', '.join(CONDITIONS)}")
    ] = ",".join(DEFAULT_CONDITIONS),
    line_tasks: Annotated[int, typer.Option(help="line completions per repository")] = 60,
    midword_tasks: Annotated[
        int, typer.Option(help="line completions from inside a name, as while typing it")
    ] = 40,
    span_tasks: Annotated[int, typer.Option(help="syntax span completions per repository")] = 20,
    api_tasks: Annotated[int, typer.Option(help="API call completions per repository")] = 20,
    question_tasks: Annotated[
        int, typer.Option(help="codebase questions per repository (answered as `ask` does)")
    ] = 30,
    seed: Annotated[int, typer.Option(help="task sampling and bootstrap seed")] = 1234,
    train_steps: Annotated[int, typer.Option(help="fine-tuning steps per repository")] = 40,
    time_budget: Annotated[
        float | None, typer.Option(help="also stop each fine-tune after MIN minutes")
    ] = None,
    per_kind: Annotated[int, typer.Option(help="dataset spans per kind per file")] = 1,
    adapter: Annotated[
        list[str] | None, typer.Option(help="use this adapter: LABEL=PATH.gguf (repeatable)")
    ] = None,
    parity: Annotated[bool, typer.Option(help="llama.cpp/PyTorch parity check on export")] = True,
    bootstrap: BootstrapOption = 2000,
    out: OutOption = None,
    set_: SetOption = None,
    quiet: QuietOption = False,
) -> None:
    """Compare base / default adapter / per-repository fine-tunes, with and without retrieval, on
    held-out files of real repositories; writes eval.json (eval-summary.json: without the tasks'
    text), eval.md, eval.png and predictions.jsonl. HumanEval infilling: `repotune eval
    humaneval --help`; two runs paired task by task: `repotune eval compare --help`."""
    config = EvalConfig(
        repos=list(repo),
        conditions=[c.strip() for c in conditions.split(",") if c.strip()],
        counts={
            "line": line_tasks,
            "midword": midword_tasks,
            "span": span_tasks,
            "api": api_tasks,
            "question": question_tasks,
        },
        seed=seed,
        train_steps=train_steps,
        time_budget_min=time_budget,
        per_kind=per_kind,
        adapters=_adapters(adapter or []),
        parity=parity,
        bootstrap=bootstrap,
        overrides=parse_overrides(set_ or []),
        out=out or Path("bench-results") / time.strftime("eval-%Y%m%d-%H%M%S"),
        progress=not quiet,
        command=_COMMAND[0],
    )
    result = run(config)
    summary = {
        label: {
            name: {
                kind: round(scores["exact_match"], 4)
                for kind, scores in groups.items()
                if scores["exact_match"] is not None
            }
            for name, groups in repo["conditions"].items()
        }
        for label, repo in result["repos"].items()
    }
    cited = {
        label: {
            name: scores["citation"]
            for name, scores in repo.get("questions", {}).get("conditions", {}).items()
        }
        for label, repo in result["repos"].items()
    }
    print(
        json.dumps(
            {
                "out": str(config.out),
                "exact_match": summary,
                "question_citation": cited,
                "duration_s": result["duration_s"],
            }
        )
    )


def main(args: list[str] | None = None) -> None:
    """Entry point for `repotune eval ARGS...`; errors are one line on stderr, exit status 1."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv[:1] == ["humaneval"]:
        humaneval_main(argv[1:])
        return
    if argv[:1] == ["compare"]:
        run_app(compare_app, argv[1:], "repotune eval compare")
        return
    _COMMAND[0] = "repotune eval " + shlex.join(argv)
    run_app(app, argv, "repotune eval")


@humaneval_app.command()
def humaneval(
    data: Annotated[list[Path], typer.Option(help="HumanEval-*Infilling*.jsonl.gz (repeatable)")],
    conditions: Annotated[
        str, typer.Option(help="comma-separated, of: base (adapter none), default (shipped)")
    ] = "base,default",
    adapter: Annotated[
        list[str] | None,
        typer.Option(help="also run this GGUF adapter: [LABEL=]PATH (repeatable)"),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="at most N tasks, spread evenly")] = None,
    every: Annotated[int, typer.Option(help="take every K-th task")] = 1,
    timeout: Annotated[float, typer.Option(help="seconds per program run")] = DEFAULT_TIMEOUT_S,
    bootstrap: BootstrapOption = 2000,
    seed: Annotated[int, typer.Option(help="bootstrap seed")] = 1234,
    out: OutOption = None,
    set_: SetOption = None,
    quiet: QuietOption = False,
) -> None:
    """pass@1 on HumanEval infilling for the bare base, the default adapter and any adapter;
    writes humaneval.json, humaneval.md and humaneval-predictions.jsonl under --out."""
    config = HumanEvalConfig(
        data=list(data),
        conditions=parse_conditions(conditions, adapter or []),
        limit=limit,
        every=every,
        timeout_s=timeout,
        bootstrap=bootstrap,
        seed=seed,
        overrides=parse_overrides(set_ or []),
        out=out,
        progress=not quiet,
        command=_HUMANEVAL_COMMAND[0],
    )
    result = run_humaneval(config)
    summary = {
        kind: {name: s["pass_at_1"] for name, s in data_set["conditions"].items()}
        for kind, data_set in result["sets"].items()
    }
    print(json.dumps({"out": str(out) if out else None, "pass_at_1": summary}))


def humaneval_main(args: list[str]) -> None:
    """`repotune eval humaneval ARGS...`; errors are one line on stderr, exit status 1."""
    _HUMANEVAL_COMMAND[0] = "repotune eval humaneval " + shlex.join(args)
    run_app(humaneval_app, args, "repotune eval humaneval")


@compare_app.command()
def compare(
    test: Annotated[
        str, typer.Argument(help="the run under test: OUT_FOLDER or OUT_FOLDER@CONDITION")
    ],
    reference: Annotated[
        list[str], typer.Argument(help="the run(s) it is compared with, the same way")
    ],
    bootstrap: BootstrapOption = 2000,
    seed: Annotated[int, typer.Option(help="bootstrap seed")] = 1234,
    out: Annotated[Path | None, typer.Option(help="also write the JSON to this file")] = None,
) -> None:
    """Pair two `repotune eval` runs task by task (same seed and repository): per task kind,
    exact match and edit similarity on both sides (questions: citation, cosine and ROUGE-L on
    the answerable ones, abstention on the others), test − reference with its bootstrap
    interval and McNemar's exact test. CONDITION defaults to default+ctx."""
    result = json.dumps(compare_runs(test, reference, resamples=bootstrap, seed=seed), indent=1)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(result + "\n", encoding="utf-8")
    print(result)


def run_app(command: typer.Typer, argv: list[str], prog_name: str) -> None:
    """Run an evaluation command: a user error is one line on stderr and exit status 1."""
    try:
        command(args=argv, prog_name=prog_name, standalone_mode=False)
    except (EvalError, TrainError, ModelError, SettingsError) as exc:
        print_error(f"{prog_name}: {exc}")
        raise SystemExit(1) from None
    except typer.Abort:
        raise SystemExit(130) from None
    except Exception as exc:
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            raise SystemExit(exc.exit_code) from None
        raise


if __name__ == "__main__":  # pragma: no cover
    main()
