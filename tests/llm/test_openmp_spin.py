"""RepoTune's OpenMP spin default: short for the server, libgomp's own for training, the user's
choice always wins (each case in a fresh interpreter: libgomp reads it once, at load)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = (
    "import os, {module}; "
    "print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'), flush=True)"
)


def spin_after_import(module: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)],
        env=clean | env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_server_gets_a_short_spin_before_llama_cpp_loads() -> None:
    # "active" keeps the 1000 spins when libgomp manages more threads than CPUs (it would
    # throttle them to 100 otherwise: see repotune/__init__.py)
    assert spin_after_import("repotune.server.completion.engine") == "1000 active"


def test_users_own_openmp_settings_win() -> None:
    assert spin_after_import("repotune.server.completion.engine", GOMP_SPINCOUNT="50") == "50 None"
    assert (
        spin_after_import("repotune.server.completion.engine", OMP_WAIT_POLICY="passive")
        == "None passive"
    )


@pytest.mark.parametrize("module", ["repotune.training.cli", "repotune.training.eval.cli"])
def test_training_keeps_libgomps_own_spin(module: str) -> None:
    assert spin_after_import(module) == "None None"
    # set by the user: kept
    assert spin_after_import(module, GOMP_SPINCOUNT="1000") == "1000 None"
    assert spin_after_import(module, OMP_WAIT_POLICY="active") == "None active"
