"""A workspace the editor does not trust (VS Code's Restricted Mode) over real stdio: with
`model.repository_models = false` the server leaves out the model files the repository's
repotune.toml names (a crafted GGUF never reaches llama.cpp); when the user trusts the
workspace (the flag flips in a configuration change) the repository's file is used, and
distrusting it again drops it. A relative model path in the editor's own settings is the
folder's file, wherever the editor started the server. An adapter made for another model is
refused with its reason, and the server serves on (llama-cpp-python crashed on it). The real
server, the real generator."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest
import pytest_lsp
from lsp_client import serve_in, start_session, wait_for_status
from lsprotocol import types
from pytest_lsp import LanguageClient
from tiny_models import write_lora

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

CACHE = Path(tempfile.mkdtemp(prefix="repotune-untrusted-cache-"))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("untrusted") / "shipped-model"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "repotune.toml").write_text('[model]\nadapter = "models/crafted.gguf"\n')
    (root / "models").mkdir()
    (root / "models" / "crafted.gguf").write_bytes(b"not what llama.cpp should parse\n")
    # A LoRA for a wider Gemma 3: its blk.0.attn_q is 2048 x 1152, the 270M's 1024 x 640.
    write_lora(root / "models" / "for-gemma-1b.gguf", {"blk.0.attn_q.weight": (2048, 1152, 8)})
    (root / "shapes.py").write_text("def square_area(side):\n    return side * side\n")
    return root


@pytest_lsp.fixture(scope="module", config=serve_in(CACHE))
async def client(lsp_client: LanguageClient, repo: Path, models: dict[str, str]):
    await start_session(
        lsp_client,
        [repo],
        {
            "model": {**models, "repository_models": False},
            "index": {"dense": False},
        },
    )
    yield
    await lsp_client.shutdown_session()


def configure(client: LanguageClient, models: dict[str, str], trusted: bool, **model: str) -> None:
    """What the VS Code extension sends when the workspace's trust (or a model setting)
    changes."""
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(
            settings={
                "repotune": {
                    "model": {**models, "repository_models": trusted, **model},
                    "index": {"dense": False},
                }
            }
        )
    )


async def test_the_repository_model_file_is_loaded_only_once_the_workspace_is_trusted(
    client: LanguageClient, repo: Path, models: dict[str, str]
) -> None:
    crafted = str(repo / "models" / "crafted.gguf")
    status = await wait_for_status(client, "untrusted: served", lambda s: s["state"] == "idle")
    assert status["adapter"] is None and status["settings"]["model"]["adapter"] == "default"
    assert not any("crafted.gguf" in error for error in status["errors"]), status["errors"]
    folder = status["folders"][0]
    assert not folder.get("settings_error"), folder  # its other settings apply

    configure(client, models, trusted=True)
    status = await wait_for_status(
        client, "trusted: the repository's adapter", lambda s: s["state"] == "error"
    )
    assert status["settings"]["model"]["adapter"] == crafted
    assert "crafted.gguf" in status["message"] and "not a GGUF file" in status["message"]

    configure(client, models, trusted=False)
    status = await wait_for_status(client, "untrusted again", lambda s: s["state"] == "idle")
    assert status["adapter"] is None and status["settings"]["model"]["adapter"] == "default"


async def test_a_relative_model_path_from_the_editor_is_the_folders_file(
    client: LanguageClient, repo: Path, models: dict[str, str]
) -> None:
    assert Path.cwd() != repo  # the server runs in the test's folder, as Neovim's may
    configure(client, models, trusted=False, adapter="models/crafted.gguf")
    status = await wait_for_status(
        client, "the editor's relative adapter", lambda s: s["state"] == "error"
    )
    crafted = str(repo / "models" / "crafted.gguf")
    assert status["settings"]["model"]["adapter"] == crafted
    assert crafted in status["message"] and "not a GGUF file" in status["message"]

    configure(client, models, trusted=False)
    status = await wait_for_status(client, "back to the default", lambda s: s["state"] == "idle")
    assert status["adapter"] is None and status["settings"]["model"]["adapter"] == "default"


async def test_an_adapter_for_another_model_is_refused_and_the_server_serves_on(
    client: LanguageClient, repo: Path, models: dict[str, str]
) -> None:
    await wait_for_status(client, "started", lambda s: s["state"] == "idle")
    configure(client, models, trusted=False, adapter="models/for-gemma-1b.gguf")
    status = await wait_for_status(
        client, "an adapter for another model", lambda s: s["state"] == "error"
    )
    assert "for-gemma-1b.gguf" in status["message"], status["message"]
    assert "does not fit the generator" in status["message"], status["message"]
    assert "another size of this model" in status["message"], status["message"]

    configure(client, models, trusted=False)
    status = await wait_for_status(client, "the default again", lambda s: s["state"] == "idle")
    assert status["adapter"] is None and status["settings"]["model"]["adapter"] == "default"
