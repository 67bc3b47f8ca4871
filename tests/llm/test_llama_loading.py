"""llama.cpp models loaded from several threads at once leave stdout and stderr alone.

llama-cpp-python silences a load (verbose=False) by pointing fds 1 and 2 and sys.stdout/stderr
at /dev/null and back; concurrent loads used to interleave those swaps and leave the process
writing to /dev/null for good (an evaluation run lost its log and its JSON result that way)."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from repotune.server.models import ResolvedModel
from tiny_models import write_lora


def test_concurrent_model_loads_restore_stdout_and_stderr(
    generator_model: ResolvedModel, embedder_model: ResolvedModel
) -> None:
    from llama_cpp import Llama
    from repotune.server.llm.embeddings import Embedder
    from repotune.server.llm.runtime import llama_extra_buffers, load_vocabulary

    def identity(fd: int) -> tuple[int, int]:
        stat = os.fstat(fd)
        return stat.st_dev, stat.st_ino

    before = (identity(1), identity(2), sys.stdout, sys.stderr)
    loaded: list[Any] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def load(kind: str) -> None:
        try:
            start.wait()
            for _ in range(4):
                if kind == "embedder":
                    loaded.append(Embedder(embedder_model.path))
                elif kind == "vocabulary":
                    loaded.append(load_vocabulary(generator_model.path))
                else:
                    with llama_extra_buffers(False):
                        loaded.append(
                            Llama(
                                model_path=str(generator_model.path), vocab_only=True, verbose=False
                            )
                        )
        except BaseException as exc:  # reported below, on the test's thread
            errors.append(exc)

    threads = [
        threading.Thread(
            target=load, args=(("vocab", "vocabulary", "embedder", "embedder")[i % 4],)
        )
        for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert len(loaded) == 32
    assert (identity(1), identity(2), sys.stdout, sys.stderr) == before
    for model in loaded:
        model.close()


def test_a_vocabulary_load_keeps_llama_cpp_lines_off_stderr(
    generator_model: ResolvedModel, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The training's tokenizer load printed llama.cpp's 'n_ctx_train (0)' warning into every
    `repotune train` run; a load that fails still says why, and stderr works afterwards."""
    from repotune.server.llm.runtime import load_vocabulary

    vocabulary = load_vocabulary(generator_model.path)
    assert vocabulary.tokenize(b"def f(x):", add_bos=False)
    vocabulary.close()
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 64)
    with pytest.raises(ValueError, match=r"broken\.gguf"):
        load_vocabulary(broken)
    print("after", file=sys.stderr)
    assert capfd.readouterr().err == "after\n"


def test_a_model_load_with_an_adapter_prints_no_llama_cpp_warnings(
    generator_model: ResolvedModel, capfd: pytest.CaptureFixture[str]
) -> None:
    """llama-cpp-python reads ggml's log levels one step off, so its warnings ("lora ... cannot
    use buft 'CPU_REPACK', fallback to CPU", two dozen per load) reached stderr past
    verbose=False; they go to the repotune.llama logger now, errors still to stderr."""
    from repotune.server.completion.model import load_model
    from repotune.server.config import load_settings

    settings = load_settings(None, {"model": {"generator": str(generator_model.path)}})
    loaded = load_model(settings)
    loaded.llm.close()
    assert "llama" not in capfd.readouterr().err


def test_every_model_load_waits_for_the_process_wide_load_lock(
    generator_model: ResolvedModel, embedder_model: ResolvedModel
) -> None:
    """The embedder, the generator and the dataset's tokenizer all load under one lock (the
    end-to-end race above is timing-dependent; this is its cause, checked deterministically)."""
    from repotune.server.completion.engine import CompletionEngine
    from repotune.server.config import Settings
    from repotune.server.llm.embeddings import Embedder
    from repotune.server.llm.runtime import llama_extra_buffers
    from repotune.training.data.examples import TokenCounter

    done: list[str] = []
    loaders = {
        "embedder": lambda: Embedder(embedder_model.path).close(),
        "tokenizer": lambda: TokenCounter(generator_model.path),
    }
    engine = CompletionEngine(Settings())
    with llama_extra_buffers(True):  # held by this thread: nobody else may load meanwhile
        threads = [
            threading.Thread(target=lambda name=name, load=load: (load(), done.append(name)))
            for name, load in loaders.items()
        ]
        for thread in threads:
            thread.start()
        engine.start_loading()
        for thread in threads:
            thread.join(timeout=3)
        assert done == [] and not engine.ready
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(done) == ["embedder", "tokenizer"]
    assert engine.wait_ready(120), engine.load_error
    engine.close()


def test_a_thread_count_beyond_the_machine_is_refused_or_capped(
    tmp_path: Path, generator_model: ResolvedModel
) -> None:
    """A repository's `model.threads = 100000` aborted the process inside llama.cpp
    (std::bad_alloc: the whole server, every folder); 512 took 33 s per completion on 2 cores.
    Above llama.cpp's maximum is a settings error naming the key; up to it, the model gets at
    most the machine's logical CPUs."""
    from repotune.server.completion.model import load_model
    from repotune.server.config import SettingsError, load_settings

    (tmp_path / "repotune.toml").write_text("[model]\nthreads = 100000\n")
    with pytest.raises(SettingsError, match=r"repotune\.toml.*model\.threads"):
        load_settings(tmp_path)
    (tmp_path / "repotune.toml").write_text("[model]\nthreads = 512\nadapter = 'none'\n")
    settings = load_settings(tmp_path, {"model": {"generator": str(generator_model.path)}})
    loaded = load_model(settings)
    assert loaded.info["threads"] == min(512, os.cpu_count() or 512)
    assert loaded.llm.context_params.n_threads == loaded.info["threads"]


def test_a_failed_load_says_llama_cpp_s_reason(tmp_path: Path) -> None:
    """llama-cpp-python says only "Failed to load model from file"; llama.cpp's own line
    ("unknown model architecture", "key not found") went to /dev/null with verbose=False."""
    from repotune.server.completion.model import load_model
    from repotune.server.config import load_settings
    from repotune.server.models import ModelError

    no_hyperparameters = write_lora(tmp_path / "bare.gguf", {}, kind="model")
    settings = load_settings(
        None, {"model": {"generator": str(no_hyperparameters), "adapter": "none"}}
    )
    with pytest.raises(ModelError) as failure:
        load_model(settings)
    message = str(failure.value)
    assert "bare.gguf" in message and "key not found in model: gemma3.context_length" in message


def test_the_embedder_named_as_the_generator_is_refused_at_load(
    embedder_model: ResolvedModel,
) -> None:
    """An encoder loads, but has no KV cache: every completion then failed with llama-cpp-python's
    "Memory is not initialized" assertion (a traceback in `repotune complete`)."""
    from repotune.server.completion.model import load_model
    from repotune.server.config import load_settings
    from repotune.server.models import ModelError

    settings = load_settings(None, {"model": {"generator": str(embedder_model.path)}})
    with pytest.raises(ModelError, match=r"cannot generate text \(an embedding model"):
        load_model(settings)


def test_the_generator_named_as_the_embedder_is_refused_at_load(
    generator_model: ResolvedModel,
) -> None:
    """A decoder without pooling gives a vector per token: indexing failed with numpy's
    "inhomogeneous shape" traceback."""
    from repotune.server.llm.embeddings import Embedder
    from repotune.server.models import ModelError

    with pytest.raises(ModelError, match="no vector per text"):
        Embedder(generator_model.path)
