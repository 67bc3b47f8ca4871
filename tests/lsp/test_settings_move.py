"""Issue 17 over real stdio: a settings change that moves a folder's index (the client stops
sending the index_dir its initializationOptions had) reopens the folder at the new place; the
folder stays listed, searchable, and a folder added afterwards is listed beside it."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsp_client import execute, serve_in, start_session, wait_for_status
from lsprotocol import types
from pytest_lsp import LanguageClient

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

CACHE = Path(tempfile.mkdtemp(prefix="repotune-move-cache-"))


async def wait_for(
    client: LanguageClient,
    what: str,
    check: Any,
    timeout: float = 240.0,
    always: Any = lambda status: True,
) -> dict[str, Any]:
    """Until the server is idle and `check(status)` holds (a folder being reopened is not idle
    yet); `always(status)` must hold for every status seen on the way."""
    return await wait_for_status(
        client, what, lambda s: s["state"] == "idle" and check(s), timeout, always
    )


def make_repo(root: Path, name: str, source: str) -> Path:
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / name).write_text(source)
    return root


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(
        tmp_path_factory.mktemp("move") / "shapes",
        "shapes.py",
        "def square_area(side: float) -> float:\n    return side * side\n",
    )


@pytest.fixture(scope="module")
def first_index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("first-index")


@pytest_lsp.fixture(scope="module", config=serve_in(CACHE))
async def client(
    lsp_client: LanguageClient, repo: Path, first_index_dir: Path, models: dict[str, str]
):
    await start_session(
        lsp_client,
        [repo],
        {
            "model": models,
            "index": {"index_dir": str(first_index_dir), "dense": False},
        },
    )
    await wait_for(lsp_client, "the first index", lambda s: len(s["folders"]) == 1)
    yield
    await lsp_client.shutdown_session()


def folder_entries(status: dict[str, Any], root: Path) -> list[dict[str, Any]]:
    return [f for f in status["folders"] if f["root"] == str(root.resolve())]


async def test_a_settings_change_that_moves_the_index_keeps_the_folder(
    client: LanguageClient, repo: Path, first_index_dir: Path, models: dict[str, str]
) -> None:
    status = await execute(client, "repotune.status")
    (entry,) = folder_entries(status, repo)
    assert Path(entry["location"]).is_relative_to(first_index_dir), entry
    # The whole section as a client sends it, without the index_dir: the index moves to the
    # default place (this cache).
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(
            settings={"repotune": {"model": models, "index": {"dense": False}}}
        )
    )

    def moved(s: dict[str, Any]) -> bool:
        entries = folder_entries(s, repo)
        return len(entries) == 1 and Path(entries[0].get("location", "")).is_relative_to(CACHE)

    status = await wait_for(
        client,
        "the folder reopened in the default place",
        moved,
        always=lambda s: len(folder_entries(s, repo)) == 1,  # listed all along, once
    )
    assert len(status["folders"]) == 1, status["folders"]
    assert not status["errors"], status["errors"]
    results = await execute(client, "repotune.search", {"query": "square_area"})
    assert any(r["path"] == "shapes.py" for r in results), results


async def test_a_folder_added_after_the_move_is_listed_beside_it(
    client: LanguageClient, repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    second = make_repo(
        tmp_path_factory.mktemp("move2") / "units",
        "units.py",
        "def feet_to_meters(feet: float) -> float:\n    return feet * 0.3048\n",
    )
    client.workspace_did_change_workspace_folders(
        types.DidChangeWorkspaceFoldersParams(
            event=types.WorkspaceFoldersChangeEvent(
                added=[types.WorkspaceFolder(uri=second.as_uri(), name=second.name)], removed=[]
            )
        )
    )
    status = await wait_for(
        client,
        "both folders listed",
        lambda s: len(folder_entries(s, repo)) == 1 and len(folder_entries(s, second)) == 1,
    )
    assert len(status["folders"]) == 2, status["folders"]
    results = await execute(client, "repotune.search", {"query": "feet_to_meters square_area"})
    assert {r["path"] for r in results} >= {"shapes.py", "units.py"}, results


async def test_moving_the_index_back_reopens_the_first_place(
    client: LanguageClient, repo: Path, first_index_dir: Path, models: dict[str, str]
) -> None:
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(
            settings={
                "repotune": {
                    "model": models,
                    "index": {"index_dir": str(first_index_dir), "dense": False},
                }
            }
        )
    )

    def back(s: dict[str, Any]) -> bool:
        entries = folder_entries(s, repo)
        return len(entries) == 1 and Path(entries[0].get("location", "")).is_relative_to(
            first_index_dir
        )

    status = await wait_for(
        client,
        "the folder back in its first index",
        back,
        always=lambda s: len(folder_entries(s, repo)) == 1,
    )
    assert not status["errors"], status["errors"]


async def test_a_chunking_change_reopens_the_index_in_place(
    client: LanguageClient, repo: Path, first_index_dir: Path, models: dict[str, str]
) -> None:
    before = await execute(client, "repotune.status")
    (entry,) = folder_entries(before, repo)
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(
            settings={
                "repotune": {
                    "model": models,
                    "index": {"index_dir": str(first_index_dir), "dense": False, "chunk_lines": 20},
                }
            }
        )
    )
    phases: list[str] = []

    def listed_once(s: dict[str, Any]) -> bool:
        entries = folder_entries(s, repo)
        phases.extend(e.get("phase", "") for e in entries)
        return len(entries) == 1

    status = await wait_for(
        client,
        "the index reopened with the new chunk size",
        lambda s: (
            s["settings"]["index"]["chunk_lines"] == 20 and "location" in folder_entries(s, repo)[0]
        ),
        always=listed_once,
    )
    assert folder_entries(status, repo)[0]["location"] == entry["location"]  # same place
    assert not status["errors"], status["errors"]
    results = await execute(client, "repotune.search", {"query": "square_area"})
    assert any(r["path"] == "shapes.py" for r in results), results
