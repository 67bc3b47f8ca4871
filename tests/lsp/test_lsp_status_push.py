"""The editor learns that the model has loaded from a pushed repotune/status, over real stdio.

An empty folder indexes at once, so the model finishes loading after everything else: the
notification must come from the load itself (the VS Code status bar otherwise stays on
"loading model" until the first completion, as the real-editor test caught).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsp_client import SERVE, record_statuses, start_session
from pytest_lsp import LanguageClient
from repotune.server.models import ResolvedModel

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

MODEL_WAIT_S = 180.0


@pytest.fixture(scope="module")
def empty_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("status-push") / "empty"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


@pytest_lsp.fixture(
    scope="module",
    config=SERVE,
)
async def client(
    lsp_client: LanguageClient,
    empty_repo: Path,
    tmp_path_factory: pytest.TempPathFactory,
    generator_model: ResolvedModel,  # provisioned before the server looks for "default"
):
    lsp_client.repotune_statuses = record_statuses(lsp_client)  # type: ignore[attr-defined]
    index_dir = tmp_path_factory.mktemp("status-push-index")
    await start_session(lsp_client, [empty_repo], {"index": {"index_dir": str(index_dir)}})
    yield
    await lsp_client.shutdown_session()


def _field(status: Any, name: str) -> Any:
    return status.get(name) if isinstance(status, dict) else getattr(status, name, None)


async def test_a_status_notification_says_the_model_is_ready(client: LanguageClient) -> None:
    statuses: list[Any] = client.repotune_statuses  # type: ignore[attr-defined]
    deadline = time.monotonic() + MODEL_WAIT_S
    # Only notifications count: no request is sent that could trigger a status on its own.
    while time.monotonic() < deadline:
        if statuses and _field(statuses[-1], "state") == "idle":
            break
        await asyncio.sleep(0.5)
    states = [_field(s, "state") for s in statuses]
    assert states and states[-1] == "idle", f"pushed states: {states}"
    assert "loading" in states, states  # it did load while the editor watched
    assert _field(statuses[-1], "model"), statuses[-1]
