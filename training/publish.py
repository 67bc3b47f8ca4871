"""Publish an exported adapter to the Hugging Face Hub (private by default).

The repository gets exactly one `.gguf` (the adapter), so `hf:ORG/REPO` resolves it without
naming the file; a model card with the base model and its checksum, the source repository and
commit, the dataset statistics and the evaluation table, with the settings that select the
adapter (editor settings or the command line: a repository's own repotune.toml may not name a hub
model). The folder is built locally first (`build_folder`), so it can be checked offline.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from repotune.server.models import sha256_file
from repotune.server.untrusted_files import read_regular_file
from repotune.training.base import TrainError
from repotune.training.checkpoint import RUN_FILE, RUN_FILE_MAX_BYTES, read_run

ADAPTER_FILE = "adapter.gguf"


def _read_json(path: Path | None) -> dict[str, Any]:
    if path is None or not path.is_file():
        return {}
    try:  # bounded, as read_run reads run.json: these sit in the same run and dataset folders
        data = json.loads(read_regular_file(path, RUN_FILE_MAX_BYTES))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "n/a" if value is None else str(value)


def model_card(repo_id: str, adapter_sha256: str, run_dir: Path | None) -> str:
    """The README.md of the published repository (YAML front matter + tables)."""
    run = _read_json(run_dir / "run.json") if run_dir else {}
    metrics = _read_json(run_dir / "metrics.json") if run_dir else {}
    export = _read_json(run_dir / "export.json") if run_dir else {}
    data_dir = Path(run["data_dir"]) if run.get("data_dir") else None
    stats = _read_json(data_dir / "stats.json") if data_dir else {}
    source = _read_json(data_dir / "source.json") if data_dir else {}
    evaluation = _read_json(run_dir / "eval.json") if run_dir else {}
    base_ref = run.get("base_reference", "unknown")
    base_name = Path(run["base_gguf"]).name if run.get("base_gguf") else base_ref
    lines = [
        "---",
        "library_name: gguf",
        "tags: [repotune, lora, gguf, code, llama.cpp]",
        f"base_model_file: {base_name}",
        "---",
        "",
        f"# {repo_id.split('/')[-1]}",
        "",
        "A RepoTune LoRA adapter in llama.cpp's GGUF adapter format, fine-tuned on examples that",
        "carry context retrieved from one repository (RAG fine-tuning). Use it with RepoTune,",
        "in your own settings (a repository's repotune.toml may not name a hub model):",
        "",
        f'- VS Code: `"repotune.adapter": "hf:{repo_id}"` in your user settings',
        f"- Neovim: `init_options = {{ model = {{ adapter = 'hf:{repo_id}' }} }}`",
        f"- command line: `--set model.adapter=hf:{repo_id}`",
        "",
        "## Base model",
        "",
        "| field | value |",
        "|---|---|",
        f"| reference | `{base_ref}` |",
        f"| file | `{base_name}` |",
        f"| sha256 | `{run.get('base_sha256', 'unknown')}` |",
        f"| adapter sha256 | `{adapter_sha256}` |",
        "",
        "The adapter only works on this exact base (llama.cpp checks the architecture, not the",
        "weights): verify the checksum.",
        "",
        "## Source repository",
        "",
        f"- name: `{source.get('name', 'unknown')}`",
        f"- commit: `{source.get('commit') or 'not a git repository'}`"
        + (" (with uncommitted changes)" if source.get("dirty") else ""),
        "",
        "## Dataset",
        "",
        "| split | files | examples | prompt tokens | completion tokens | context hit rate |",
        "|---|---|---|---|---|---|",
    ]
    for split in ("train", "validation", "test"):
        examples = stats.get("examples", {}).get(split, {})
        tokens = stats.get("tokens", {}).get(split, {})
        lines.append(
            f"| {split} | {_fmt(stats.get('files', {}).get(split))} | "
            f"{_fmt(examples.get('total'))} | {_fmt(tokens.get('prompt'))} | "
            f"{_fmt(tokens.get('completion'))} | "
            f"{_fmt(stats.get('context_hit_rate', {}).get(split))} |"
        )
    lines += [
        "",
        f"Example kinds: `{json.dumps(stats.get('spans', {}))}`; "
        f"context: `{json.dumps(stats.get('context_modes', {}))}`.",
        "",
        "## Training",
        "",
        "| metric | value |",
        "|---|---|",
        f"| steps | {_fmt(metrics.get('steps'))} |",
        f"| validation loss before | {_fmt(metrics.get('initial_val_loss'))} |",
        f"| validation loss best | {_fmt(metrics.get('best_val_loss'))} |",
        f"| training tokens/s | {_fmt(metrics.get('tokens_per_s'))} |",
        f"| device | {_fmt(metrics.get('device'))} |",
        "",
        f"Hyperparameters: `{json.dumps(run.get('train', {}), sort_keys=True)}`",
        "",
        "## Evaluation",
        "",
        "| check | base | top-1 agreement | max logit error | adapter-delta rel. error |",
        "|---|---|---|---|---|",
    ]
    for report in export.get("parity", []):
        lines.append(
            f"| llama.cpp vs PyTorch | {Path(report['base']).name} | "
            f"{_fmt(report['top1_agreement'])} | {_fmt(report['max_abs_error'])} | "
            f"{_fmt(report['delta_relative_error'])} |"
        )
    if evaluation:
        lines += ["", "Held-out completion quality:", "", "```json"]
        lines += [json.dumps(evaluation, indent=2), "```"]
    return "\n".join(lines) + "\n"


def build_folder(adapter: Path, repo_id: str, folder: Path, run_dir: Path | None = None) -> Path:
    """Everything that will be uploaded, in `folder` (created; must be empty or absent)."""
    if not adapter.is_file():
        raise TrainError(f"adapter not found: {adapter}")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise TrainError(f"expected ORG/NAME for the repository, got '{repo_id}'")
    # A card that says "unknown" for the base must not be published.
    run = read_run(run_dir) if run_dir is not None else None
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise TrainError(f"{folder} is not empty")
    shutil.copy2(adapter, folder / ADAPTER_FILE)
    digest = sha256_file(folder / ADAPTER_FILE)
    (folder / "README.md").write_text(model_card(repo_id, digest, run_dir), encoding="utf-8")
    if run_dir is not None and run is not None:
        data_dir = Path(run["data_dir"]) if run.get("data_dir") else None
        for source, name in (
            (run_dir / RUN_FILE, "training_run.json"),
            (run_dir / "metrics.json", "metrics.json"),
            (run_dir / "export.json", "export.json"),
            (run_dir / "eval.json", "eval.json"),
            (data_dir / "stats.json" if data_dir else None, "dataset_stats.json"),
        ):
            if source is not None and source.is_file():
                shutil.copy2(source, folder / name)
    return folder


def publish(
    adapter: Path,
    repo_id: str,
    folder: Path,
    run_dir: Path | None = None,
    private: bool = True,
    api: Any = None,
) -> str:
    """Build the folder and upload it; returns the `hf:` reference that resolves the adapter."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    build_folder(adapter, repo_id, folder, run_dir)
    api = api or HfApi()
    try:
        api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(
            repo_id=repo_id,
            repo_type="model",
            folder_path=str(folder),
            commit_message="RepoTune adapter",
        )
    except HfHubHTTPError as exc:
        raise TrainError(f"publishing to {repo_id} failed: {exc}") from None
    except OSError as exc:  # no network
        raise TrainError(f"publishing to {repo_id} failed: {exc}") from None
    return f"hf:{repo_id}"
