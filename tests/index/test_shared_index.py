"""The shared index: a real Chroma server (`chroma run` from the chromadb package) as the team's
vector cache, real index folders and the real default embedder."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from conftest import copy_fixture_repo
from repotune.server.bench.chroma_server import ChromaServerProcess
from repotune.server.config import SettingsError, load_settings
from repotune.server.index import shared as shared_module
from repotune.server.index.remote_vectors import ChromaServer, RemoteVectors, collection_name
from repotune.server.index.shared import SharedCache
from repotune.server.index.workspace import WorkspaceIndex
from repotune.server.models import sha256_file

FILES = ("chunking.py", "files.py", "retrieval.py")
IDLE_TIMEOUT = 120.0


class CountingEmbedder:
    """The real embedder, recording every text it is asked to embed (and calling `on_embed`)."""

    def __init__(self, inner: Any, on_embed: Callable[[int], None] | None = None) -> None:
        self.inner = inner
        self.texts: list[str] = []
        self.calls = 0
        self.on_embed = on_embed

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        if self.on_embed is not None:
            self.on_embed(self.calls)
        self.texts.extend(texts)
        return self.inner.embed(texts)

    def __getattr__(self, name: str) -> Any:  # model_path, dimension, embed_query, ...
        return getattr(self.inner, name)


@pytest.fixture()
def chroma(tmp_path: Path) -> Iterator[ChromaServerProcess]:
    with ChromaServerProcess(tmp_path / "chroma-server") as server:
        yield server


def shared_settings(url: str, **index: Any) -> Any:
    return load_settings(None, {"index": {"chroma_url": url, "chroma_timeout_s": 2.0, **index}})


def open_index(root: Path, location: Path, settings: Any, embedder: Any) -> WorkspaceIndex:
    index = WorkspaceIndex(root, settings, embedder=embedder, location=location)
    index.start()
    assert index.wait_idle(IDLE_TIMEOUT)
    return index


def local_vectors(index: WorkspaceIndex) -> dict[str, np.ndarray]:
    got = index.store.collection().get(include=["embeddings"])
    return dict(zip(got["ids"], np.asarray(got["embeddings"]), strict=True))


@pytest.mark.slow
def test_second_client_embeds_only_what_nobody_embedded(
    tmp_path: Path, chroma: ChromaServerProcess, embedder: Any
) -> None:
    settings = shared_settings(chroma.url)
    first_repo = copy_fixture_repo(FILES, tmp_path / "alice")
    second_repo = copy_fixture_repo(FILES, tmp_path / "bob")  # the same repository, elsewhere
    with (second_repo / "retrieval.py").open("a") as handle:  # bob's local edit
        handle.write("\n\ndef bob_local_helper(value):\n    return value * 2\n")

    alice_embedder = CountingEmbedder(embedder)
    alice = open_index(first_repo, tmp_path / "alice-index", settings, alice_embedder)
    alice_ids = alice.store.chunk_ids()
    alice_status = alice.stats()["shared_index"]
    assert alice_status["state"] == "ok"
    assert alice_status["fetched"] == 0
    assert alice_status["pushed"] == len(alice_ids) == len(alice_embedder.texts)

    bob_embedder = CountingEmbedder(embedder)
    bob = open_index(second_repo, tmp_path / "bob-index", settings, bob_embedder)
    bob_ids = bob.store.chunk_ids()
    only_bob = bob_ids - alice_ids
    assert only_bob and len(only_bob) < len(bob_ids) / 2
    # Bob embedded exactly the chunks his edit created; everything else came from the server.
    assert bob.filler.embedded == len(bob_embedder.texts) == len(only_bob)
    assert all(text.startswith("retrieval.py ") for text in bob_embedder.texts)
    status = bob.stats()["shared_index"]
    assert status["state"] == "ok"
    assert status["fetched"] == len(bob_ids & alice_ids)
    assert status["pushed"] == len(only_bob)
    # Bob's local collection is complete, and the shared vectors are Alice's own.
    bob_vectors = local_vectors(bob)
    assert set(bob_vectors) == bob_ids
    alice_vectors = local_vectors(alice)
    for chunk_id in bob_ids & alice_ids:
        np.testing.assert_allclose(bob_vectors[chunk_id], alice_vectors[chunk_id], atol=1e-6)
    # Dense search works from the local copy alone (the server is not asked at query time).
    chroma.kill()
    hits = bob.search("bob_local_helper doubles a value", 5)
    assert any("dense" in hit.sources and hit.path == "retrieval.py" for hit in hits)
    alice.close()
    bob.close()


@pytest.mark.slow
def test_server_killed_mid_index_client_carries_on_locally(
    tmp_path: Path, chroma: ChromaServerProcess, embedder: Any
) -> None:
    def kill_on_second_batch(call: int) -> None:
        if call == 2:
            chroma.kill()

    repo = copy_fixture_repo(FILES, tmp_path / "repo")
    settings = shared_settings(chroma.url, embed_batch_size=8)
    counting = CountingEmbedder(embedder, on_embed=kill_on_second_batch)
    started = time.monotonic()
    index = open_index(repo, tmp_path / "index", settings, counting)
    elapsed = time.monotonic() - started
    ids = index.store.chunk_ids()
    stats = index.stats()
    status = stats["shared_index"]
    assert status["state"].startswith("unreachable: "), status
    assert status["failures"] >= 1
    assert status["pushed"] == 8  # the first batch, before the server went away
    # Every chunk got its vector here, each embedded once, with no stall.
    assert stats["dense_pending"] == 0
    assert index.store.vector_ids() == ids
    assert len(counting.texts) == len(ids)
    assert elapsed < 60
    index.close()


@pytest.mark.slow
def test_a_server_that_never_answers_times_out_into_local_embedding(
    tmp_path: Path, embedder: Any
) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        repo = copy_fixture_repo(("retrieval.py",), tmp_path / "repo")
        settings = shared_settings(url, chroma_timeout_s=0.5)
        index = open_index(repo, tmp_path / "index", settings, embedder)
        status = index.stats()["shared_index"]
        assert status["state"].startswith("unreachable: ") and "Timeout" in status["state"]
        assert status["retry_in_s"] is not None  # backing off, not retried on every batch
        assert index.store.chunk_count() > 0
        assert index.store.vector_ids() == index.store.chunk_ids()
        index.close()


@pytest.mark.slow
def test_push_command_fills_the_server_from_a_local_index(
    tmp_path: Path, chroma: ChromaServerProcess, embedder_model: Any
) -> None:
    repo = copy_fixture_repo(("files.py", "retrieval.py"), tmp_path / "repo")
    command = [str(Path(sys.executable).parent / "repotune"), "index", str(repo)]
    place = ["--set", f"index.index_dir={tmp_path / 'indexes'}"]
    local = subprocess.run(command + place, capture_output=True, text=True, timeout=300)
    assert local.returncode == 0, local.stderr
    assert "shared" not in local.stdout  # no server configured: nothing went anywhere

    push = [*command, *place, "--push", "--set", f"index.chroma_url={chroma.url}"]
    pushed = subprocess.run(push, capture_output=True, text=True, timeout=300)
    assert pushed.returncode == 0, pushed.stderr
    server = ChromaServer(chroma.url, "default_tenant", "default_database", "UNSET", 5.0)
    remote = RemoteVectors(server, collection_name(sha256_file(embedder_model.path)))
    on_server = remote.ids()
    assert on_server and f"{len(on_server)} vectors uploaded, 0 already there" in pushed.stdout
    again = subprocess.run(push, capture_output=True, text=True, timeout=300)
    assert f"0 vectors uploaded, {len(on_server)} already there" in again.stdout


def test_push_without_a_server_says_what_to_set(tmp_path: Path) -> None:
    command = [str(Path(sys.executable).parent / "repotune"), "index", str(tmp_path), "--push"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "--push needs a shared index: --set index.chroma_url=URL" in result.stderr


@pytest.mark.parametrize(
    "key", ["chroma_url", "chroma_tenant", "chroma_database", "chroma_token_env"]
)
@pytest.mark.parametrize("file_name", ["repotune.toml", "pyproject.toml"])
def test_a_repository_file_may_not_choose_the_shared_server(
    tmp_path: Path, key: str, file_name: str
) -> None:
    value = {"chroma_url": "http://attacker.example:8000"}.get(key, "THEIRS")
    table = "[index]" if file_name == "repotune.toml" else "[tool.repotune.index]"
    (tmp_path / file_name).write_text(f'{table}\n{key} = "{value}"\n')
    with pytest.raises(SettingsError) as raised:
        load_settings(tmp_path)
    message = str(raised.value)
    assert f"'index.{key}'" in message and file_name in message
    assert "editor settings" in message
    # Even when the editor sets the same key: the repository's file is refused, not overridden.
    with pytest.raises(SettingsError):
        load_settings(tmp_path, {"index": {key: value}})


def test_editor_settings_may_choose_the_shared_server(tmp_path: Path) -> None:
    (tmp_path / "repotune.toml").write_text("[index]\nchunk_lines = 40\n")
    settings = load_settings(
        tmp_path, {"index": {"chroma_url": "http://10.0.0.5:8000/", "chroma_tenant": "team"}}
    )
    assert settings.index.chroma_url == "http://10.0.0.5:8000"
    assert settings.index.chroma_tenant == "team" and settings.index.chunk_lines == 40


@pytest.mark.parametrize(
    "url",
    ["ftp://host:8000", "http://user:secret@host:8000", "http://host:8000/api", "host:8000"],
)
def test_a_malformed_server_address_is_refused(url: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(None, {"index": {"chroma_url": url}})
    assert "index.chroma_url" in str(raised.value)


def test_no_server_configured_means_no_shared_status(tmp_path: Path) -> None:
    root = copy_fixture_repo(("files.py",), tmp_path / "repo")
    settings = load_settings(None, {"index": {"dense": False}})
    index = WorkspaceIndex(root, settings, location=tmp_path / "index")
    assert index.shared is None and index.stats()["shared_index"] is None
    index.close()


class _HeartbeatOnly(BaseHTTPRequestHandler):
    """Answers the heartbeat, then hangs on every other request (a stuck server)."""

    def do_GET(self) -> None:
        if self.path.endswith("/heartbeat"):
            body = b'{"nanosecond heartbeat": 1}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        time.sleep(30)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_server_that_hangs_after_its_heartbeat_is_given_up_on() -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _HeartbeatOnly)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        cache = SharedCache.for_server(
            ChromaServer(url, "default_tenant", "default_database", "UNSET", 0.3), "c-test", 4
        )
        started = time.monotonic()
        assert cache.fetch(["some-id"]) == {}
        assert time.monotonic() - started < 5
        assert cache.status()["state"].startswith("unreachable: ")
        assert not cache.available()  # backing off: the next batch embeds without asking
    finally:
        httpd.shutdown()


class _Refusing(BaseHTTPRequestHandler):
    """Refuses every request (401), keeping the Authorization headers it was sent."""

    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization"))
        self.send_response(401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_the_token_comes_from_its_variable_and_stays_out_of_the_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEAM_CHROMA_TOKEN", "s3cret-token")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        settings = shared_settings(url, chroma_token_env="TEAM_CHROMA_TOKEN")
        server = ChromaServer.from_settings(settings.index)
        assert server is not None
        cache = SharedCache.for_server(server, "c-test", 4)
        assert cache.fetch(["some-id"]) == {}
    finally:
        httpd.shutdown()
    assert _Refusing.seen == ["Bearer s3cret-token"]
    status = cache.status()
    assert status["state"].startswith("unreachable: ") and "401" in status["state"]
    assert "s3cret" not in str(status) and "s3cret" not in settings.model_dump_json()


@pytest.mark.slow
def test_the_server_is_tried_again_after_its_backoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shared_module, "BACKOFF_START_S", 0.5)
    first = ChromaServerProcess(tmp_path / "db").start()
    server = ChromaServer(first.url, "default_tenant", "default_database", "UNSET", 2.0)
    cache = SharedCache.for_server(server, "c-test", 4)
    assert cache.push(["kept"], np.ones((1, 4), dtype=np.float32))
    first.kill()
    assert cache.fetch(["kept"]) == {}
    assert cache.status()["state"].startswith("unreachable: ") and not cache.available()
    again = ChromaServerProcess(tmp_path / "db", port=first.port).start()  # same data, same port
    try:
        while not cache.available():
            time.sleep(0.05)
        assert set(cache.fetch(["kept", "never-pushed"])) == {"kept"}
        status = cache.status()
        assert status["state"] == "ok" and status["failures"] == 1 and status["fetched"] == 1
    finally:
        again.stop()
