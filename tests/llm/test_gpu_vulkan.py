"""The GPU path, exercised on a real Vulkan device (Mesa's lavapipe where there is no GPU):
`make test-vulkan` builds llama-cpp-python with -DGGML_VULKAN=on in its own venv and runs this
there; the CPU build of the main venv (REPOTUNE_CPU_PYTHON) gives the reference results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
import pytest

PROBE = Path(__file__).parent / "gpu_probe.py"
CPU_PYTHON = os.environ.get("REPOTUNE_CPU_PYTHON", "")

pytestmark = pytest.mark.skipif(
    not llama_cpp.llama_supports_gpu_offload() or not CPU_PYTHON,
    reason="needs a GPU build of llama-cpp-python and the CPU one to compare: make test-vulkan",
)


def probe(python: str, gpu_layers: str) -> dict[str, Any]:
    env = {**os.environ, "GGML_VK_VISIBLE_DEVICES": os.environ.get("GGML_VK_VISIBLE_DEVICES", "0")}
    result = subprocess.run(
        [python, str(PROBE), gpu_layers], capture_output=True, text=True, timeout=900, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def results() -> tuple[dict[str, Any], dict[str, Any]]:
    return probe(CPU_PYTHON, "0"), probe(sys.executable, "auto")


def test_every_layer_goes_to_the_vulkan_device(results: tuple[dict, dict]) -> None:
    cpu, gpu = results
    assert cpu["offload"] is False and cpu["gpu_layers"] == 0
    assert gpu["offload"] is True and "Vulkan" in gpu["backends"]
    assert any(device["name"].startswith("Vulkan") for device in gpu["devices"]), gpu["devices"]
    assert gpu["gpu_fallback"] is None and gpu["embedder_gpu_fallback"] is None
    assert gpu["gpu_layers"] == 19 and gpu["embedder_gpu_layers"] == 7


# The backends sum in different orders, so a near-tie can flip a later greedy token (on lavapipe
# the 14th: `if` against `elif`); the continuation must agree up to there.
AGREED_PREFIX_TOKENS = 8


def test_vulkan_completion_is_the_cpu_builds_greedy_tokens(results: tuple[dict, dict]) -> None:
    cpu, gpu = results
    assert len(cpu["tokens"]) > AGREED_PREFIX_TOKENS
    agreed = 0
    for a, b in zip(cpu["tokens"], gpu["tokens"], strict=False):
        if a != b:
            break
        agreed += 1
    assert agreed >= AGREED_PREFIX_TOKENS, (cpu["text"], gpu["text"])


def test_vulkan_embeddings_match_the_cpu_builds(results: tuple[dict, dict]) -> None:
    cpu, gpu = results
    for a, b in zip(np.asarray(cpu["embeddings"]), np.asarray(gpu["embeddings"]), strict=True):
        cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        assert cosine >= 0.99, cosine
