"""End to end on CPU with the real Gemma 3 270M: dataset -> a few LoRA steps -> GGUF adapter.

Checks that validation loss drops, that llama.cpp with the exported adapter matches the PyTorch
peft model (exactly on the F32 base), that the server's engine completes differently with the
adapter, that a run resumes, and that a damaged checkpoint gives a clear error.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from repotune.server.config import load_settings  # noqa: E402
from repotune.training.base import TrainError  # noqa: E402

pytestmark = [pytest.mark.train, pytest.mark.slow]

SERVER = Path(__file__).resolve().parents[1] / "server"
REPO_FILES = ["retrieval.py", "postprocess.py", "prompts.py", "models.py", "embeddings.py"]
TRAIN = {
    "max_seq_tokens": 192,
    "batch_size": 4,
    "micro_batch_size": 2,
    "eval_every": 3,
    "eval_max_examples": 12,
    "learning_rate": 1e-3,
    "test_share": 0.2,
    "validation_share": 0.2,
}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from repotune.training.dataset import build_dataset
    from repotune.training.finetune import finetune

    tmp = tmp_path_factory.mktemp("pipeline")
    repo = tmp / "repo"
    repo.mkdir()
    for name in REPO_FILES:
        shutil.copy(SERVER / name, repo / name)
    settings = load_settings(
        None,
        {"train": TRAIN, "model": {"threads": 2}, "index": {"index_dir": str(tmp / "index")}},
    )
    data = tmp / "dataset"
    build_dataset(repo, data, settings, per_kind=2, progress=False)
    result = finetune(data, tmp / "run", settings, max_steps=6, progress=False)
    return {"tmp": tmp, "repo": repo, "data": data, "settings": settings, "result": result}


def test_finetune_lowers_validation_loss(pipeline: dict) -> None:
    result = pipeline["result"]
    assert result.steps == 6
    assert result.initial_val_loss is not None and result.best_val_loss is not None
    assert result.best_val_loss < result.initial_val_loss - 0.05
    assert result.tokens_per_s > 0
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["best_val_loss"] == result.best_val_loss
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()


def test_export_passes_parity_and_changes_the_servers_completion(pipeline: dict) -> None:
    from repotune.server.engine import CompletionEngine, CompletionRequest
    from repotune.training.export import export, held_out_texts

    run_dir = pipeline["result"].run_dir
    adapter = pipeline["tmp"] / "adapter.gguf"
    result = export(run_dir, adapter, held_out_texts(run_dir, limit=3))
    exact, served = result.parity
    assert exact.passed and served.passed
    assert exact.top1_agreement >= 0.99
    assert exact.delta_relative_error < 0.05
    assert exact.delta_norm > 0.05  # the adapter does change the logits
    assert adapter.stat().st_size < 40_000_000

    # A few-step adapter moves logits a little; on any single cursor greedy decoding may still
    # pick the same tokens, so the served completion must change on at least one of five.
    requests = []
    for line in (pipeline["data"] / "validation.jsonl").read_text().splitlines()[:5]:
        example = json.loads(line)
        text = (pipeline["repo"] / example["path"]).read_text()
        cut = len(text.encode()[: example["start_byte"]].decode())
        requests.append(CompletionRequest(example["path"], "python", text[:cut], text[cut:]))
    outputs: list[list[str | None]] = []
    for adapter_ref in (None, str(adapter)):
        settings = load_settings(None, {"model": {"adapter": adapter_ref, "context_length": 1024}})
        engine = CompletionEngine(settings)
        engine.start_loading()
        assert engine.wait_ready(300), engine.load_error
        completions = [engine.complete(request) for request in requests]
        outputs.append([None if c is None else c.text for c in completions])
        engine.close()
    assert outputs[0] != outputs[1], outputs


def test_resume_continues_the_run(pipeline: dict) -> None:
    from repotune.training.finetune import finetune

    copy = pipeline["tmp"] / "run-copy"
    shutil.copytree(pipeline["result"].run_dir, copy)
    with pytest.raises(TrainError, match="--resume"):
        finetune(pipeline["data"], copy, pipeline["settings"], max_steps=8, progress=False)
    resumed = finetune(
        pipeline["data"], copy, pipeline["settings"], resume=True, max_steps=8, progress=False
    )
    assert resumed.steps == 8
    assert [h["step"] for h in resumed.history][:3] == [0, 3, 6]
    assert resumed.train_tokens > pipeline["result"].train_tokens


def test_corrupt_checkpoint_is_a_clear_error(pipeline: dict) -> None:
    from repotune.training.finetune import finetune

    copy = pipeline["tmp"] / "run-corrupt"
    shutil.copytree(pipeline["result"].run_dir, copy)
    (copy / "checkpoint" / "trainer_state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TrainError, match="corrupt"):
        finetune(pipeline["data"], copy, pipeline["settings"], resume=True, progress=False)


def test_broken_adapter_fails_parity(pipeline: dict) -> None:
    """An adapter written with the wrong scale must not pass: the check really checks."""
    import gguf
    from repotune.training.export import ParityError, export, held_out_texts, read_peft_adapter
    from repotune.training.finetune import base_for_run

    run_dir = pipeline["result"].run_dir
    base = base_for_run(run_dir)
    arch = "gemma3"
    blocks = int(gguf.GGUFReader(str(base.gguf_path)).fields["gemma3.block_count"].contents())
    lora = read_peft_adapter(run_dir / "adapter", arch, blocks)
    assert lora.rank == 16 and lora.pairs
    broken = pipeline["tmp"] / "run-broken"
    shutil.copytree(run_dir, broken)
    # PyTorch keeps the trained scale; only the written GGUF adapter gets a wrong alpha.
    from repotune.training import export as export_module

    original = export_module.write_adapter_gguf

    def wrong_scale(lora_weights, base_gguf, target, dtype="f32"):  # type: ignore[no-untyped-def]
        lora_weights.alpha *= 4
        return original(lora_weights, base_gguf, target, dtype)

    export_module.write_adapter_gguf = wrong_scale
    try:
        with pytest.raises(ParityError, match="parity check failed"):
            export(broken, broken / "adapter.gguf", held_out_texts(broken, limit=2))
    finally:
        export_module.write_adapter_gguf = original
    assert not (broken / "adapter.gguf").exists()
