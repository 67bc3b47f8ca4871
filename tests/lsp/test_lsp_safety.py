"""Issue 17 over real stdio: a hostile repository (its repotune.toml points the index at its own
root, beside a file named like the index database) loses nothing and the status says why; a
secret in one file, or behind a symlink, is not what search returns, even where the repository's
own file lists other secret patterns and re-includes the user's .env; a repository's file that
names a Hugging Face model is refused (nothing is downloaded); an index folder it committed with
RepoTune's marker and a database linked to a user's file is not used (the file is untouched); an
open .env is never completed (its buffer would be the prompt); ignore and settings files that
are FIFOs or links to /dev/zero neither block nor fill memory, nor does a name that is not UTF-8
stop the index.
The real server, the real default model (paths given, so the cache can be a private temp dir for
the indexes)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsp_client import execute, inline_params, open_document, serve_in, start_session
from lsprotocol import types
from pytest_lsp import LanguageClient
from repotune.server.models import ResolvedModel

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

CACHE = Path(tempfile.mkdtemp(prefix="repotune-safety-cache-"))
TOKEN = "sk-live-4f9a8b7c6d5e4f3a2b1c0d9e8f7a"


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def git_repo(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """An empty git repository `<name>-repo` in a fresh temp folder (its parent is free to use)."""
    root = tmp_path_factory.mktemp(name) / f"{name}-repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = git_repo(tmp_path_factory, "hostile")
    (root / "repotune.toml").write_text('[index]\nindex_dir = "."\n')
    (root / "index.sqlite3").write_bytes(b"this is not a database\n" * 40)
    (root / "tool.py").write_text("def hostile_tool_function():\n    return 'kept'\n")
    return root


@pytest.fixture(scope="module")
def secrets_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = git_repo(tmp_path_factory, "secrets")
    (root / "config.py").write_text(
        f'"""Service settings."""\n\nAPI_TOKEN = "{TOKEN}"\nTIMEOUT_SECONDS = 30\n'
    )
    (root / ".env").write_text("DATABASE_PASSWORD_VALUE=correct-horse-battery\n")
    (root / "env_notes.txt").symlink_to(".env")
    (root / ".aws").mkdir()
    (root / ".aws" / "credentials").write_text(
        "[default]\naws_access_key_id = AKIAQWERTYUIOPASDFGH\n"
    )
    (root / "app").mkdir()
    (root / "app" / "aws_settings.ini").symlink_to("../.aws/credentials")
    (root / "client.py").write_text("from config import API_TOKEN\n\n\ndef call():\n    return 1\n")
    return root


@pytest.fixture(scope="module")
def unmasking(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Its own file replaces the secret patterns and re-includes the user's ignored .env."""
    root = git_repo(tmp_path_factory, "unmasking")
    (root / ".gitignore").write_text(".env\n")
    (root / ".env").write_text("DATABASE_PASSWORD_VALUE=purple-staple-lantern\n")
    (root / "deploy.cfg").write_text("[deploy]\nhost_password_hint = walrus-umbrella\n")
    (root / "repotune.toml").write_text(
        '[index]\nsecret_patterns = ["deploy.cfg"]\ninclude = [".env"]\n'
    )
    (root / "service.py").write_text("def unmasking_service():\n    return 'kept'\n")
    return root


@pytest.fixture(scope="module")
def hub_beacon(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Its own file names a Hugging Face adapter (a download the repository would choose)."""
    root = git_repo(tmp_path_factory, "beacon")
    (root / "repotune.toml").write_text('[model]\nadapter = "hf:attacker-org/beacon"\n')
    (root / "beacon.py").write_text("def beacon_function():\n    return 'kept'\n")
    return root


@pytest.fixture(scope="module")
def linked_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Its committed .repotune/index/ carries RepoTune's marker and a database linked outside."""
    root = git_repo(tmp_path_factory, "linked")
    base = root.parent
    (base / "notes.sqlite3").write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    (root / ".repotune" / "index").mkdir(parents=True)
    (root / "repotune.toml").write_text('[index]\nindex_dir = ".repotune/index"\n')
    (root / ".repotune" / "index" / ".repotune-index").write_text("RepoTune index folder\n")
    (root / ".repotune" / "index" / "index.sqlite3").symlink_to(base / "notes.sqlite3")
    (root / "linked.py").write_text("def linked_function():\n    return 'kept'\n")
    return root


@pytest.fixture(scope="module")
def bottomless(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Files that never end or never answer where RepoTune reads rules: `.gitignore -> /dev/zero`
    (committable in git), a FIFO `.repotuneignore` below, a FIFO repotune.toml and a FIFO .py;
    and a file name that is not UTF-8 (it stopped the whole index pass at the database)."""
    root = git_repo(tmp_path_factory, "bottomless")
    (root / ".gitignore").symlink_to("/dev/zero")
    (root / "pkg").mkdir()
    os.mkfifo(root / "pkg" / ".repotuneignore")
    os.mkfifo(root / "repotune.toml")
    os.mkfifo(root / "pipe.py")
    (root / os.fsdecode(b"latin\xe9.py")).write_text("def undecodable_name():\n    return 1\n")
    (root / "pkg" / "bottomless.py").write_text("def bottomless_function():\n    return 'kept'\n")
    return root


async def wait_until_idle(client: LanguageClient, timeout: float = 480.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = await execute(client, "repotune.status")
        if status["state"] == "idle":
            return status
        await asyncio.sleep(0.5)
    raise AssertionError(f"server not idle after {timeout}s: {status}")


@pytest_lsp.fixture(scope="module", config=serve_in(CACHE))
async def client(
    lsp_client: LanguageClient,
    hostile: Path,
    secrets_repo: Path,
    unmasking: Path,
    hub_beacon: Path,
    linked_index: Path,
    bottomless: Path,
    generator_model: ResolvedModel,
    embedder_model: ResolvedModel,
):
    lsp_client.hostile_before = snapshot(hostile)  # type: ignore[attr-defined]
    roots = [hostile, secrets_repo, unmasking, hub_beacon, linked_index, bottomless]
    options = {
        "model": {"generator": str(generator_model.path), "embedder": str(embedder_model.path)},
        "index": {"dense": False},
    }
    await start_session(lsp_client, roots, options)
    await wait_until_idle(lsp_client)
    yield
    await lsp_client.shutdown_session()


async def test_hostile_index_dir_deletes_nothing_and_the_status_says_why(
    client: LanguageClient, hostile: Path
) -> None:
    status = await execute(client, "repotune.status")
    assert status["state"] == "idle"  # the model loaded; nothing is stuck
    assert any("index.index_dir" in e and "repotune.toml" in e for e in status["errors"])
    folder = next(f for f in status["folders"] if f["root"] == str(hostile.resolve()))
    assert "index.index_dir" in folder["settings_error"]
    assert Path(folder["location"]).is_relative_to(CACHE)  # indexed in the default place
    assert snapshot(hostile) == client.hostile_before  # type: ignore[attr-defined]
    assert not (hostile / ".repotune-index").exists()
    results = await execute(client, "repotune.search", {"query": "hostile_tool_function"})
    assert any(r["path"] == "tool.py" for r in results)


async def test_secrets_are_not_searchable_even_behind_symlinks(
    client: LanguageClient, secrets_repo: Path
) -> None:
    results = await execute(client, "repotune.search", {"query": "API_TOKEN config", "k": 10})
    assert any(r["path"] == "config.py" for r in results)
    assert all(TOKEN not in r["text"] for r in results)
    for query in ("DATABASE_PASSWORD_VALUE correct horse", "aws_access_key_id default"):
        results = await execute(client, "repotune.search", {"query": query, "k": 10})
        paths = {r["path"] for r in results}
        assert not paths & {"env_notes.txt", "app/aws_settings.ini", ".env", ".aws/credentials"}
        assert all("correct-horse" not in r["text"] and "AKIAQ" not in r["text"] for r in results)
    status = await execute(client, "repotune.status")
    folder = next(f for f in status["folders"] if f["root"] == str(secrets_repo.resolve()))
    assert folder["skipped"].get("secret", 0) >= 3


async def test_a_repository_file_adds_secret_patterns_but_cannot_unmark_the_users_env(
    client: LanguageClient, unmasking: Path
) -> None:
    status = await execute(client, "repotune.status")
    folder = next(f for f in status["folders"] if f["root"] == str(unmasking.resolve()))
    assert not folder.get("settings_error"), folder  # the file is used: its patterns are added
    assert folder["skipped"].get("secret", 0) == 2  # .env (a default) and deploy.cfg (its own)
    for query in ("DATABASE_PASSWORD_VALUE purple staple lantern", "deploy host_password_hint"):
        results = await execute(client, "repotune.search", {"query": query, "k": 10})
        assert not {r["path"] for r in results} & {".env", "deploy.cfg"}, results
        assert all("purple-staple" not in r["text"] and "walrus" not in r["text"] for r in results)
    results = await execute(client, "repotune.search", {"query": "unmasking_service"})
    assert any(r["path"] == "service.py" for r in results)


async def test_a_repository_file_naming_a_hub_model_is_refused(
    client: LanguageClient, hub_beacon: Path
) -> None:
    status = await execute(client, "repotune.status")
    folder = next(f for f in status["folders"] if f["root"] == str(hub_beacon.resolve()))
    assert "'model.adapter'" in folder["settings_error"], folder
    assert "Hugging Face" in folder["settings_error"]
    assert not str(status["settings"]["model"]["adapter"]).startswith("hf:")
    results = await execute(client, "repotune.search", {"query": "beacon_function"})
    assert any(r["path"] == "beacon.py" for r in results)  # the folder is served all the same


async def test_a_committed_index_folder_with_a_linked_database_is_not_used(
    client: LanguageClient, linked_index: Path
) -> None:
    status = await execute(client, "repotune.status")
    assert status["state"] == "idle"  # the other folders are served
    assert any("index.sqlite3 ->" in e and "symlink" in e for e in status["errors"]), status
    victim = linked_index.parent / "notes.sqlite3"
    assert victim.read_bytes() == b"SQLite format 3\x00" + b"\x00" * 100
    results = await execute(client, "repotune.search", {"query": "unmasking_service"})
    assert any(r["path"] == "service.py" for r in results)


async def test_an_open_env_file_is_never_completed(
    client: LanguageClient, secrets_repo: Path
) -> None:
    """Its values have no shape redaction can tell (DATABASE_PASSWORD_VALUE=correct-horse...),
    so the buffer is not made into a prompt at all; a code file is completed as usual."""
    before = (await execute(client, "repotune.status"))["engine"]
    env = secrets_repo / ".env"
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=env.as_uri(), language_id="dotenv", version=1, text=env.read_text() + "DB_"
            )
        )
    )
    result = await client.text_document_inline_completion_async(inline_params(env.as_uri(), 1, 3))
    items = result.items if isinstance(result, types.InlineCompletionList) else result
    assert not items
    after = (await execute(client, "repotune.status"))["engine"]
    assert after["skipped_secret_file"] == before["skipped_secret_file"] + 1
    uri = open_document(client, secrets_repo / "client.py")
    await client.text_document_inline_completion_async(inline_params(uri, 4, len("    return ")))
    engine = (await execute(client, "repotune.status"))["engine"]
    assert engine["skipped_secret_file"] == after["skipped_secret_file"]
    assert engine["completions"] > after["completions"]


async def test_fifos_and_links_to_devices_neither_block_nor_fill_memory(
    client: LanguageClient, bottomless: Path
) -> None:
    status = await execute(client, "repotune.status")
    assert status["state"] == "idle"  # reached only when no read blocked
    folder = next(f for f in status["folders"] if f["root"] == str(bottomless.resolve()))
    assert "repotune.toml: cannot be read" in folder["settings_error"], folder
    assert "FIFO" in folder["settings_error"]
    assert folder["skipped"].get("undecodable-name") == 1, folder
    results = await execute(client, "repotune.search", {"query": "bottomless_function"})
    assert any(r["path"] == "pkg/bottomless.py" for r in results)
