"""GPU offload without a GPU: the layer setting, and the CPU fallback when the device refuses the
model (simulated: llama.cpp's loader raises for any offload, as it does when a device is full),
with the real models loaded on the CPU afterwards."""

from __future__ import annotations

from typing import Any

import llama_cpp
import pytest
from repotune.server.config import SettingsError, load_settings
from repotune.server.llm.gpu import (
    ALL_LAYERS,
    install_commands,
    load_with_fallback,
    offloaded_layers,
    requested_layers,
)


def test_auto_and_minus_one_mean_every_layer_when_the_build_can_offload() -> None:
    assert requested_layers("auto", True) == ALL_LAYERS
    assert requested_layers(-1, True) == ALL_LAYERS
    assert requested_layers(7, True) == 7
    assert requested_layers(0, True) == 0
    for setting in ("auto", -1, 7):
        assert requested_layers(setting, False) == 0  # a CPU-only build offloads nothing


def test_offloaded_layers_count_the_output_layer_and_never_exceed_the_model() -> None:
    assert offloaded_layers(ALL_LAYERS, 18) == 19
    assert offloaded_layers(999, 18) == 19
    assert offloaded_layers(5, 18) == 5


def test_gpu_layers_setting_takes_auto_or_a_layer_count() -> None:
    assert load_settings(None, {}).model.gpu_layers == "auto"
    assert load_settings(None, {"model": {"gpu_layers": -1}}).model.gpu_layers == -1
    assert load_settings(None, {"model": {"gpu_layers": 12}}).model.gpu_layers == 12
    for bad in (-2, "all", 1.5):
        with pytest.raises(SettingsError, match="gpu_layers"):
            load_settings(None, {"model": {"gpu_layers": bad}})


def test_fallback_loads_on_the_cpu_and_says_why() -> None:
    calls: list[int] = []

    def load(layers: int) -> str:
        calls.append(layers)
        if layers:
            raise ValueError("Failed to load model from file")
        return "model"

    assert load_with_fallback(load, ALL_LAYERS, "generator")[:2] == ("model", 0)
    assert calls == [ALL_LAYERS, 0]
    message = load_with_fallback(load, 4, "embedder")[2]
    assert message is not None and message.startswith("embedder: GPU offload failed")
    assert "Failed to load model" in message and "CPU" in message
    assert load_with_fallback(lambda n: n, 0, "generator") == (0, 0, None)  # CPU: one load


def test_a_load_that_fails_on_the_cpu_too_is_not_hidden() -> None:
    def load(layers: int) -> str:
        raise ValueError(f"bad file ({layers})")

    with pytest.raises(ValueError, match=r"bad file \(0\)"):
        load_with_fallback(load, ALL_LAYERS, "generator")


def test_install_hint_is_the_exact_rebuild_command() -> None:
    hint = install_commands("cuda", "0.3.36")
    assert hint["make"].startswith("make install GPU=cuda")
    assert hint["pip"] == (
        'CMAKE_ARGS="-DGGML_CUDA=on" pip install --no-cache-dir --no-binary llama-cpp-python '
        "--force-reinstall --no-deps llama-cpp-python==0.3.36"
    )
    assert "GPU=hip" in install_commands("metal", "0.3.36")["other_backends"]


@pytest.fixture()
def device_refuses_offload(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A build that claims offload, and a device that cannot take the model: every load with
    layers offloaded fails as llama.cpp fails then; CPU loads are real."""
    real = llama_cpp.Llama
    attempts: list[int] = []

    def llama(*args: Any, n_gpu_layers: int = 0, **kwargs: Any) -> Any:
        attempts.append(n_gpu_layers)
        if n_gpu_layers:
            raise ValueError("Failed to load model from file: out of device memory")
        return real(*args, n_gpu_layers=n_gpu_layers, **kwargs)

    monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: True)
    monkeypatch.setattr(llama_cpp, "Llama", llama)
    return attempts


def test_generator_falls_back_to_the_cpu_and_status_says_so(
    generator_model, device_refuses_offload: list[int]
) -> None:
    from repotune.server.completion.engine import CompletionEngine

    settings = load_settings(None, {"model": {"adapter": "none", "context_length": 512}})
    engine = CompletionEngine(settings)
    try:
        assert engine.wait_ready(300), engine.load_error
        status = engine.status()
        assert device_refuses_offload == [ALL_LAYERS, 0]
        assert status["state"] == "ready" and status["gpu_layers"] == 0
        assert status["gpu_offload"] is True
        assert "GPU offload failed" in status["gpu_fallback"]
        assert "running on the CPU" in status["gpu_fallback"]
        assert engine.count_tokens("def main():") > 0  # the CPU model works
    finally:
        engine.close()


def test_embedder_falls_back_to_the_cpu(embedder_model, device_refuses_offload: list[int]) -> None:
    from repotune.server.llm.embeddings import Embedder

    embedder = Embedder(embedder_model.path, gpu_layers="auto")
    try:
        assert device_refuses_offload == [ALL_LAYERS, 0]
        assert embedder.gpu_layers == 0
        assert embedder.gpu_fallback and "embedder: GPU offload failed" in embedder.gpu_fallback
        vector = embedder.embed(["def parse(text): ..."])[0]
        assert abs(float((vector**2).sum()) - 1.0) < 1e-3
    finally:
        embedder.close()


def test_cpu_only_setting_never_tries_the_device(
    embedder_model, device_refuses_offload: list[int]
) -> None:
    from repotune.server.llm.embeddings import Embedder

    embedder = Embedder(embedder_model.path, gpu_layers=0)
    try:
        assert device_refuses_offload == [0] and embedder.gpu_fallback is None
    finally:
        embedder.close()


def test_cpu_build_offloads_nothing_and_needs_no_fallback(embedder_model) -> None:
    if llama_cpp.llama_supports_gpu_offload():
        pytest.skip("this build has a GPU backend")
    from repotune.server.llm.embeddings import Embedder

    embedder = Embedder(embedder_model.path)
    try:
        assert embedder.gpu_layers == 0 and embedder.gpu_fallback is None
    finally:
        embedder.close()
