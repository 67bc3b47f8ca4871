"""Each repository's files, split and adapter: fetched, trained from the default adapter, cached.

Adapters are cached in `cache_dir()/eval/adapters/` under a key of everything that shaped them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repotune.server.config import Settings, cache_dir
from repotune.training.data.build import build_dataset, stale_redaction
from repotune.training.data.splits import assign_splits, collect_files
from repotune.training.eval.config import INDEX_TIMEOUT_S, EvalConfig, log_progress
from repotune.training.eval.corpora import EvalError, Repo, files_digest, resolve_repo
from repotune.training.export.parity import held_out_texts
from repotune.training.export.run import export
from repotune.training.export.warm_start import init_adapter_path
from repotune.training.finetune import finetune


@dataclass
class Prepared:
    repo: Repo
    files: list[Any]
    digest: str
    adapter: str | None = None
    adapter_info: dict[str, Any] = field(default_factory=dict)


def open_index(root: Path, settings: Settings) -> Any:
    """The repository's index (cached under the cache dir), complete, with dense queries."""
    from repotune.server.index.workspace import WorkspaceIndex

    index = WorkspaceIndex(root, settings)
    index.start(watch=False)
    if not index.wait_idle(timeout=INDEX_TIMEOUT_S):
        index.close()
        raise EvalError(f"indexing {root} did not finish within {INDEX_TIMEOUT_S / 60:.0f} min")
    if index.dense:
        try:
            index.load_query_embedder()  # an index reused from the cache never loaded it
        except Exception as exc:  # dense is optional: lexical retrieval still works
            index.embedder_error = str(exc)
    return index


# The shipped default adapter's tensor type: a per-repository adapter compared with it must not
# differ in precision too (llama.cpp's F32 vs F16 LoRA arithmetic alone moves greedy answers).
ADAPTER_DTYPE = "f16"


def adapter_key(prepared: Prepared, settings: Settings, config: EvalConfig) -> str:
    """Everything that shapes a trained adapter: repository content, base, training settings,
    prompt budget, retrieval/index settings, dataset size and steps."""
    from repotune.server.models import resolve_generator

    base = resolve_generator(settings.model.generator)
    shaping = {
        "repo": prepared.repo.spec if prepared.repo.pinned else prepared.digest,
        "files": prepared.digest,
        "base": base.sha256,
        "train": settings.train.model_dump(),
        "completion": {
            k: getattr(settings.completion, k)
            for k in (
                "context_tokens",
                "prefix_tokens",
                "suffix_tokens",
                "max_tokens_block",
                "token_healing",  # training heals prompts as serving does
            )
        },
        "retrieval": settings.retrieval.model_dump(),
        "index": {k: getattr(settings.index, k) for k in ("chunk_lines", "chunk_overlap", "dense")},
        "per_kind": config.per_kind,
        "steps": config.train_steps,
        "time_budget_min": config.time_budget_min,
        "init_adapter": _init_digest(settings),
        "dtype": ADAPTER_DTYPE,
    }
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:12]


def _init_digest(settings: Settings) -> str | None:
    """The checksum of the adapter a fine-tune starts from (None: fresh LoRA weights)."""
    from repotune.server.models import sha256_file

    path = init_adapter_path(settings)
    return sha256_file(path) if path is not None else None


def ensure_adapter(prepared: Prepared, settings: Settings, config: EvalConfig) -> None:
    """Train (dataset -> LoRA -> GGUF) or reuse the cached adapter for one repository."""

    key = adapter_key(prepared, settings, config)
    folder = cache_dir() / "eval" / "adapters" / f"{prepared.repo.slug()}-{key}"
    adapter = folder / "adapter.gguf"
    done = folder / "done.json"
    test_paths = sorted(f.path for f in prepared.files if f.split == "test")
    if adapter.is_file() and done.is_file():
        info = json.loads(done.read_text())
        log_progress(config, f"{prepared.repo.label}: reusing adapter {adapter}")
    else:
        data_dir, run_dir = folder / "dataset", folder / "run"
        started = time.perf_counter()
        if stale_redaction(data_dir) is not None:  # older secret rules: built again, trained anew
            shutil.rmtree(data_dir)
            shutil.rmtree(run_dir, ignore_errors=True)
        if not (data_dir / "train.jsonl").is_file():
            log_progress(config, f"{prepared.repo.label}: building the training dataset")
            index = open_index(prepared.repo.root, settings)
            try:
                build_dataset(
                    prepared.repo.root,
                    data_dir,
                    settings,
                    per_kind=config.per_kind,
                    index=index,
                    progress=config.progress,
                )
            finally:
                index.close()
        dataset_s = time.perf_counter() - started
        check_split(data_dir, test_paths)

        budget = f", {config.time_budget_min:g} min" if config.time_budget_min else ""
        log_progress(
            config,
            f"{prepared.repo.label}: fine-tuning ({config.train_steps} steps{budget} at most)",
        )
        started = time.perf_counter()
        resume = (run_dir / "checkpoint").exists()
        result = finetune(
            data_dir,
            run_dir,
            settings,
            resume=resume,
            max_steps=config.train_steps,
            progress=config.progress,
            time_budget_s=config.time_budget_min * 60 if config.time_budget_min else None,
            init_adapter=None if resume else init_adapter_path(settings),
        )
        finetune_s = time.perf_counter() - started
        log_progress(config, f"{prepared.repo.label}: exporting the GGUF adapter")
        started = time.perf_counter()
        exported = export(
            run_dir,
            adapter,
            held_out_texts(run_dir, limit=2),
            check=config.parity,
            dtype=ADAPTER_DTYPE,
        )
        info = {
            "key": key,
            "dataset": json.loads((data_dir / "stats.json").read_text()),
            "finetune": result.to_json(),
            "export": exported.to_json(),
            "seconds": {
                "dataset": round(dataset_s, 1),
                "finetune": round(finetune_s, 1),
                "export": round(time.perf_counter() - started, 1),
            },
        }
        done.write_text(json.dumps(info, indent=2, default=str))
    check_split(folder / "dataset", test_paths)
    prepared.adapter = str(adapter)
    prepared.adapter_info = {"path": str(adapter), "trained_here": True, **info}
    warning = training_warning(info)
    if warning is not None:
        log_progress(config, f"{prepared.repo.label}: {warning}")


def training_info(adapter: Path) -> dict[str, Any]:
    """What an adapter cached by `repotune eval` recorded about its training (done.json beside
    it); empty for any other adapter file."""
    done = adapter.parent / "done.json"
    try:
        return dict(json.loads(done.read_text())) if done.is_file() else {}
    except (OSError, ValueError):
        return {}


def training_warning(info: dict[str, Any]) -> str | None:
    """The per-repository fine-tune kept its starting adapter: repo+ctx then measures no
    per-repository training, and a report must say so."""
    run = info.get("finetune") or {}
    if run.get("steps", 0) > 0 and run.get("best_step") == 0 and run.get("best_val_loss"):
        return (
            f"no validation pass beat step 0's in {run['steps']} steps: the adapter is the one "
            "training started from (repo+ctx measures no per-repository training)"
        )
    return None


def check_split(data_dir: Path, test_paths: list[str]) -> None:
    """The adapter's dataset must hold out exactly the files the tasks come from."""
    split_file = data_dir / "split.json"
    if not split_file.is_file():
        return
    split = json.loads(split_file.read_text())
    if sorted(split.get("test", [])) != test_paths:
        raise EvalError(
            f"the adapter's dataset ({data_dir}) holds out other test files than this split; "
            "training and evaluation settings differ (train.seed / test_share / index settings)"
        )
    trained = set(split.get("train", [])) | set(split.get("validation", []))
    if trained & set(test_paths):
        raise EvalError(f"test files were trained on in {data_dir}: refusing to evaluate")


def prepare(spec: str, settings: Settings) -> Prepared:
    repo = resolve_repo(spec)
    files, _skipped = collect_files(repo.root, settings)
    assign_splits(files, settings)
    digest = files_digest({f.path: f.text for f in files})
    return Prepared(repo, files, digest)
