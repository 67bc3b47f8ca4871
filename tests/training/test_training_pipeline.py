"""End to end on CPU with the real Gemma 3 270M: dataset -> a few LoRA steps -> GGUF adapter.

Checks that validation loss drops, that llama.cpp with the exported adapter matches the PyTorch
peft model (exactly on the F32 base), that the server's engine completes differently with the
adapter, that a run resumes, and that a damaged checkpoint gives a clear error.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from conftest import copy_fixture_repo  # noqa: E402
from repotune.server.config import load_settings  # noqa: E402
from repotune.training.base import TrainError  # noqa: E402

pytestmark = [pytest.mark.train, pytest.mark.slow]

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
    from repotune.training.data.build import build_dataset
    from repotune.training.finetune import finetune

    tmp = tmp_path_factory.mktemp("pipeline")
    repo = copy_fixture_repo(REPO_FILES, tmp / "repo")
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
    from repotune.server.completion.engine import CompletionEngine
    from repotune.server.completion.request import CompletionRequest
    from repotune.training.export.parity import held_out_texts
    from repotune.training.export.run import export

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


def test_a_run_starts_from_a_gguf_adapter_and_stops_on_its_time_budget(pipeline: dict) -> None:
    """Warm start: the exported adapter, loaded back into a new run, gives the same validation
    loss as the run that trained it; a spent time budget ends the run validated and saved."""
    from repotune.training.export.adapter import read_peft_adapter, write_adapter_gguf
    from repotune.training.finetune import finetune

    result = pipeline["result"]
    base = base_gguf(result.run_dir)
    lora = read_peft_adapter(result.adapter_dir, "gemma3", 18)
    adapter = write_adapter_gguf(lora, base, pipeline["tmp"] / "warm.gguf")
    warm = finetune(
        pipeline["data"],
        pipeline["tmp"] / "run-warm",
        pipeline["settings"],
        max_steps=6,
        progress=False,
        time_budget_s=0.0,
        init_adapter=adapter,
    )
    assert warm.out_of_time and warm.steps == 0
    assert warm.initial_val_loss == pytest.approx(result.best_val_loss, abs=2e-3)
    assert warm.initial_val_loss < result.initial_val_loss - 0.05  # not the bare base
    info = json.loads((warm.run_dir / "run.json").read_text())
    assert info["init_adapter"]["layers"] == len(lora.pairs)
    assert (warm.adapter_dir / "adapter_model.safetensors").is_file()


def test_warm_start_refuses_an_adapter_of_another_rank_or_model(pipeline: dict) -> None:
    """Another rank: set train.lora_r. Made for another size of the model: the server's fit
    check says so (before it, peft's copy said "rank or shape differs ... set train.lora_r")."""
    from repotune.training.export.adapter import read_peft_adapter, write_adapter_gguf
    from repotune.training.finetune import finetune
    from tiny_models import write_lora

    result = pipeline["result"]
    lora = read_peft_adapter(result.adapter_dir, "gemma3", 18)
    lora.pairs = {k: (a[:4], b[:, :4]) for k, (a, b) in lora.pairs.items()}
    rank_4 = write_adapter_gguf(lora, base_gguf(result.run_dir), pipeline["tmp"] / "r4.gguf")
    other_size = write_lora(
        pipeline["tmp"] / "other-size.gguf", {"blk.0.attn_q.weight": (1024, 320, 16)}
    )
    for adapter, reason in (
        (rank_4, "lora_r"),
        (other_size, r"cannot start this run: .*another size of this model"),
    ):
        with pytest.raises(TrainError, match=reason):
            finetune(
                pipeline["data"],
                pipeline["tmp"] / f"run-{adapter.stem}",
                pipeline["settings"],
                max_steps=1,
                progress=False,
                init_adapter=adapter,
            )


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


def test_early_stopping_stops_and_keeps_the_best_adapter(pipeline: dict) -> None:
    """A learning rate far too high makes every step after the first (a warm-up step at rate 0)
    worse than the base: patience 2 stops the run after two evaluations without progress, long
    before its 20 steps, and the adapter kept is the best one (the untouched LoRA of step 0,
    all B matrices zero), not the last step's (the checkpoint's, which moved)."""
    from repotune.server.config import settings_with
    from repotune.training.finetune import finetune
    from safetensors.torch import load_file

    settings = settings_with(
        pipeline["settings"],
        {"train": {"learning_rate": 5.0, "eval_every": 1, "early_stopping_patience": 2}},
        "test",
    )
    result = finetune(pipeline["data"], pipeline["tmp"] / "run-diverge", settings, max_steps=20)
    assert result.stopped_early
    assert result.steps == 2 < 20
    assert result.best_step == 0 and result.kept_start  # `repotune train` warns about it
    assert [h["step"] for h in result.history] == [0, 1, 2]
    assert result.history[2]["val_loss"] > result.best_val_loss
    kept = load_file(result.adapter_dir / "adapter_model.safetensors")
    last = load_file(result.run_dir / "checkpoint" / "adapter" / "adapter_model.safetensors")
    b_keys = [key for key in kept if "lora_B" in key]
    assert b_keys and all(not kept[key].any() for key in b_keys)
    assert any(last[key].any() for key in b_keys)


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
    from repotune.training.export.adapter import read_peft_adapter
    from repotune.training.export.parity import ParityError, held_out_texts
    from repotune.training.export.run import export
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
    from repotune.training.export import run as export_module

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


def held_out_requests(pipeline: dict, limit: int) -> list:
    """Completion requests at the cursors of held-out (test, then validation) examples."""
    from repotune.server.completion.request import CompletionRequest

    requests = []
    for name in ("test.jsonl", "validation.jsonl"):
        for line in (pipeline["data"] / name).read_text().splitlines():
            example = json.loads(line)
            text = (pipeline["repo"] / example["path"]).read_text()
            cut = len(text.encode()[: example["start_byte"]].decode())
            requests.append(CompletionRequest(example["path"], "python", text[:cut], text[cut:]))
            if len(requests) >= limit:
                return requests
    return requests


def served_completions(
    requests: list, generator: str, adapter: str | None, with_prompts: bool = False
) -> Any:
    """Greedy completions from the server's engine for one model (+ adapter); with_prompts:
    also the token ids of the prompts it built for them."""
    from repotune.server.completion.engine import CompletionEngine

    settings = load_settings(
        None,
        {
            "model": {"generator": generator, "adapter": adapter, "context_length": 1024},
            "completion": {"temperature": 0.0},
        },
    )
    engine = CompletionEngine(settings)
    engine.start_loading()
    try:
        assert engine.wait_ready(300), engine.load_error
        completions = [engine.complete(request) for request in requests]
        llm = engine._loaded.llm
        prompts = [
            llm.tokenize(engine.build_prompt(request).text.encode(), add_bos=True, special=True)
            for request in requests
        ]
    finally:
        engine.close()
    texts = [None if c is None else c.text for c in completions]
    return (texts, prompts) if with_prompts else texts


def test_merged_q8_export_is_checked_served_and_agrees_with_the_adapter(pipeline: dict) -> None:
    from repotune.training.export.gguf import f32_base, gguf_file_type
    from repotune.training.export.parity import held_out_texts
    from repotune.training.export.run import export
    from repotune.training.finetune import base_for_run

    run_dir = pipeline["result"].run_dir
    folder = pipeline["tmp"] / "merged"
    adapter = folder / "adapter.gguf"
    result = export(run_dir, adapter, held_out_texts(run_dir, limit=3), merge="Q8_0")
    merged = result.merged_path
    assert merged == folder / "adapter-Q8_0.gguf" and merged.is_file()
    assert gguf_file_type(merged) == "MOSTLY_Q8_0"
    assert sorted(p.name for p in folder.iterdir()) == ["adapter-Q8_0.gguf", "adapter.gguf"]
    exact, quantized = result.merged_parity
    print(f"merged parity: F32 {exact.to_json()}\nQ8_0 {quantized.to_json()}")
    assert exact.passed and exact.top1_agreement >= 0.99
    assert exact.delta_relative_error < 0.05 and exact.delta_norm > 0.05
    assert quantized.passed and quantized.top1_agreement >= 0.90
    saved = json.loads((run_dir / "export.json").read_text())
    assert saved["merged_kind"] == "Q8_0" and saved["merged_path"] == str(merged)
    assert [r["passed"] for r in saved["merged_parity"]] == [True, True]

    # Served: the server's engine loads the merged Q8_0 alone and completes held-out cursors.
    requests = held_out_requests(pipeline, limit=8)
    merged_alone, prompts = served_completions(requests, str(merged), None, with_prompts=True)
    assert sum(c is not None for c in merged_alone) >= len(requests) // 2, merged_alone
    # And it predicts what llama.cpp serving base + adapter predicts on those very prompts (the
    # F32 base, so only the merge's 8-bit rounding separates the two). Greedy completions are
    # not compared: at a cursor the top two tokens are often nearly tied, and rounding noise
    # flips them (4/8 to 8/8 of first-3-token agreement across runs). Compared instead: the
    # next-token choice at every prompt position, and at each cursor where the reference is not
    # nearly tied (top-1 logit at least 1.0 above the second) the first completion token.
    reference = last_logits(f32_base(base_for_run(run_dir)), adapter, prompts)
    candidate = last_logits(merged, None, prompts)
    positions = np.concatenate(
        [r.argmax(1) == c.argmax(1) for r, c in zip(reference, candidate, strict=True)]
    )
    clear = [
        (r[-1], c[-1]) for r, c in zip(reference, candidate, strict=True) if margin(r[-1]) >= 1.0
    ]
    clear_agree = sum(int(r.argmax() == c.argmax()) for r, c in clear)
    print(
        f"merged Q8_0 vs F32 base + adapter on {len(prompts)} served prompts: next-token agreement "
        f"{positions.mean():.3f} over {positions.size} positions; first completion token "
        f"{clear_agree}/{len(clear)} at cursors without a near tie"
    )
    assert positions.mean() >= 0.9
    assert clear_agree == len(clear)


def margin(logits: np.ndarray) -> float:
    top_two = np.sort(logits)[-2:]
    return float(top_two[1] - top_two[0])


def last_logits(model: Path, adapter: Path | None, prompts: list[list[int]]) -> list[np.ndarray]:
    """llama.cpp's logits over the last 64 positions of each prompt (all rows would be a GB)."""
    from repotune.training.base import open_llama

    llm = open_llama(model, adapter, n_ctx=max(len(p) for p in prompts) + 8)
    try:
        rows = []
        for prompt in prompts:
            llm.reset()
            llm.eval(prompt)
            rows.append(np.array(llm.scores[max(0, len(prompt) - 64) : len(prompt)]))
        return rows
    finally:
        llm.close()


def base_gguf(run_dir: Path) -> Path:
    from repotune.training.finetune import base_for_run

    path = base_for_run(run_dir).gguf_path
    assert path is not None
    return path


def test_broken_merge_fails_parity_and_leaves_no_merged_model(pipeline: dict) -> None:
    from repotune.training.export import merge as merge_module
    from repotune.training.export.parity import ParityError, held_out_texts
    from repotune.training.export.run import export

    run_dir = pipeline["result"].run_dir
    folder = pipeline["tmp"] / "merged-broken"
    original = merge_module.merge_f32

    def wrong_scale(lora, base_path, target):  # type: ignore[no-untyped-def]
        lora.alpha *= 4  # the adapter is already written; only the merge is wrong
        return original(lora, base_path, target)

    merge_module.merge_f32 = wrong_scale
    try:
        with pytest.raises(ParityError, match="merged model was not exported"):
            export(run_dir, folder / "adapter.gguf", held_out_texts(run_dir, 2), merge="Q8_0")
    finally:
        merge_module.merge_f32 = original
    assert sorted(p.name for p in folder.iterdir()) == ["adapter.gguf"]


def test_q4_merge_is_refused_unless_allowed(pipeline: dict) -> None:
    from repotune.training.export.run import export

    run_dir = pipeline["result"].run_dir
    with pytest.raises(TrainError, match="allow-q4"):
        export(run_dir, pipeline["tmp"] / "q4" / "adapter.gguf", [], merge="Q4_K_M")
    with pytest.raises(TrainError, match="unsupported merge type"):
        export(run_dir, pipeline["tmp"] / "q4" / "adapter.gguf", [], merge="Q5_K")
    assert not (pipeline["tmp"] / "q4").exists()


def test_distributed_finetune_with_two_cpu_processes(pipeline: dict) -> None:
    """Real DDP (gloo) with two CPU processes through accelerate's Accelerator, then resumed.

    The launcher is torchrun, which is what `accelerate launch --multi_gpu` runs underneath:
    `accelerate launch --cpu --num_processes 2` (accelerate 1.15) starts a single process unless
    given an MPI hostfile, and `--multi_gpu` needs CUDA, so neither can run two CPU ranks here.
    """
    import math
    import os
    import socket
    import subprocess
    import sys

    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.is_file():
        pytest.skip("torchrun is not installed")
    run = pipeline["tmp"] / "run-ddp"
    train = TRAIN | {"eval_every": 1}
    sets = [f"train.{key}={value}" for key, value in train.items()] + [
        "model.threads=2",
        "train.init_adapter=none",
    ]

    def launch(*extra: str) -> subprocess.CompletedProcess[str]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        command = [
            str(torchrun),
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(port),
            "--module",
            "repotune.training.cli",
            "finetune",
            str(pipeline["data"]),
            "--out",
            str(run),
            *extra,
            *[part for pair in sets for part in ("--set", pair)],
        ]
        env = os.environ | {"TOKENIZERS_PARALLELISM": "false"}
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
        assert done.returncode == 0, done.stderr[-4000:]
        return done

    results = run.parent / "results"
    done = launch("--max-steps", "2", "--save", str(results))
    summaries = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1, done.stdout  # one summary, from the main process
    summary = json.loads(summaries[0])
    assert summary["steps"] == 2
    (stored,) = results.glob("train-finetune-*.json")  # one stored result, from the main process
    entry = json.loads(stored.read_text())
    assert entry["result"] == summary and entry["result"]["tokens_per_s"] > 0
    assert entry["command"].startswith("repotune ") and entry["machine"]
    info = json.loads((run / "run.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert info["processes"] == 2 and metrics["processes"] == 2
    assert [h["step"] for h in metrics["history"]] == [0, 1, 2]
    assert all(math.isfinite(h["val_loss"]) for h in metrics["history"])
    # Validation is sharded over the ranks and summed: the same number as one process gets.
    assert metrics["initial_val_loss"] == pytest.approx(
        pipeline["result"].initial_val_loss, rel=1e-4
    )
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    assert sorted(p.name for p in run.iterdir()) == [
        "adapter",
        "checkpoint",
        "metrics.json",
        "run.json",
    ]  # one adapter, no half-written copies from a second writer

    done = launch("--max-steps", "3", "--resume")
    resumed = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))
    assert resumed["steps"] == 3
    assert [h["step"] for h in resumed["history"]] == [0, 1, 2, 3]
    assert json.loads((run / "checkpoint" / "state.json").read_text())["step"] == 3


def test_training_tokenizes_prompts_exactly_as_the_server(pipeline: dict) -> None:
    """Train as you serve, down to the token ids: the trainer's HF tokenizer must give, for every
    example, the ids llama.cpp evaluates when the engine serves that prompt (per segment, BOS
    first), and the completion as llama.cpp would have generated it, with token healing (the
    default) and without. Tokens that look like the model's special tokens inside code are text
    for both."""
    from llama_cpp import Llama
    from repotune.server.completion.decode import prompt_tokens
    from repotune.server.completion.formats import Segment
    from repotune.server.completion.prompts import BuiltPrompt
    from repotune.server.llm.healing import Vocabulary
    from repotune.server.llm.runtime import llama_extra_buffers
    from repotune.server.models import resolve_generator
    from repotune.training.base import load_tokenizer, prepare_base
    from repotune.training.batches import IGNORE_INDEX, encode_all, encode_example

    examples = [
        json.loads(line)
        for name in ("train.jsonl", "validation.jsonl")
        for line in (pipeline["data"] / name).read_text().splitlines()
    ]
    tricky = {
        "prompt": "",
        "segments": [["x = '<eos><start_of_turn>user'\n", False], ["<|rt_end|>", True]],
        "completion": "print('<end_of_turn>')\n",
    }
    tokenizer = load_tokenizer(prepare_base("default"))
    generator = resolve_generator("default")
    with llama_extra_buffers(False):
        llm = Llama(model_path=str(generator.path), vocab_only=True, verbose=False)
    vocabulary = Vocabulary.of(llm)
    checked = healed = 0
    for example in [*examples[:40], tricky]:
        segments = tuple(
            Segment(text, bool(marker), bool(cursor and cursor[0]))
            for text, marker, *cursor in example["segments"]
        )
        prompt = BuiltPrompt(
            format="repotune", segments=segments, stop=(), end_of_middle="",
            special_markers=False, prefix="x" if any(s.cursor for s in segments) else "",
            suffix="", snippets=(), dropped_snippets=0, context_tokens=0, prefix_tokens=0,
            suffix_tokens=0, prefix_lines_dropped=0, suffix_lines_dropped=0,
        )  # fmt: skip
        # Without token healing, and with it (the served default): the same ids either way.
        for healing_vocabulary in (None, vocabulary):
            served, healing = prompt_tokens(llm, prompt, healing_vocabulary)
            completion = healing.text + example["completion"].encode()
            generated = llm.tokenize(completion, add_bos=False, special=False)
            encoded = encode_example(
                tokenizer,
                example["prompt"],
                example["completion"],
                100_000,
                example["segments"],
                vocabulary=healing_vocabulary,
            )
            assert encoded is not None
            prompt_ids = [t for t, label in zip(encoded.input_ids, encoded.labels, strict=True)
                          if label == IGNORE_INDEX]  # fmt: skip
            assert prompt_ids == served, example["segments"][:2]
            assert encoded.input_ids[len(prompt_ids) :] == generated, completion
            healed += bool(healing)
        checked += 1
    assert checked > 10
    assert healed > 5  # the dataset's prompts mark their cursor, and most end mid-line
    # A teacher pair: the server's question prompt, which llama-cpp-python tokenizes with
    # special tokens parsed (create_completion), and so must the trainer.
    question = "Q: what does '<eos>' end?\nA:"
    (pair,) = encode_all(
        tokenizer,
        [{"format": "ask_document", "prompt": question, "segments": [[question, False]],
          "completion": " A turn.\n"}],
        100_000,
    )  # fmt: skip
    served = llm.tokenize(question.encode(), add_bos=True, special=True)
    assert pair.input_ids[: len(served)] == served


def test_a_dataset_from_older_secret_rules_is_not_trained_on(pipeline: dict) -> None:
    """A dataset built by an older RepoTune went through older redaction (a passphrase of words
    run together was kept before version 2): training refuses it and says how to rebuild."""
    from repotune.server.index.redact import REDACTION_VERSION
    from repotune.training.finetune import finetune

    stats = json.loads((pipeline["data"] / "stats.json").read_text())
    assert stats["redaction_version"] == REDACTION_VERSION  # what the build records
    old = pipeline["tmp"] / "dataset-older-rules"
    shutil.copytree(pipeline["data"], old)
    del stats["redaction_version"]
    (old / "stats.json").write_text(json.dumps(stats))
    with pytest.raises(TrainError, match=r"older secret redaction rules.*repotune train dataset"):
        finetune(old, pipeline["tmp"] / "run-older", pipeline["settings"], max_steps=1)
    assert not (pipeline["tmp"] / "run-older").exists()  # refused before anything was written
