"""Issue 17, files side: RepoTune deletes only what it created, a repository cannot point the index
elsewhere, secrets stay out of the index, index files are private, a damaged dense store is
rebuilt, and index rules changed at run time are applied. Real fixture repositories in temp
dirs, the real Store (SQLite + Chroma) and real watchdog events."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import unblock, wait_for, within
from endpoint_server import assistant_on_endpoint, recording_endpoint
from repotune.server.assistant import Assistant
from repotune.server.config import Settings, SettingsError, load_settings
from repotune.server.index.chunking import chunk_file
from repotune.server.index.files import WorkspaceFilter, is_secret_document, read_text_file
from repotune.server.index.folder import MARKER_NAME
from repotune.server.index.redact import redact_buffer, redact_line, redact_secrets
from repotune.server.index.store import DB_NAME, Store, StoreError
from repotune.server.index.workspace import WorkspaceIndex

TOKEN = "sk-live-4f9a8b7c6d5e4f3a2b1c0d9e8f7a"
CONFIG_PY = f'''"""Service settings."""

API_TOKEN = "{TOKEN}"
TIMEOUT_SECONDS = 30


def api_headers() -> dict[str, str]:
    return {{"Authorization": f"Bearer {{API_TOKEN}}"}}
'''


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file below root (.git included) with its content."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def make_repo(root: Path, toml: str | None = None) -> Path:
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "app.py").write_text("def handler(event):\n    return event['body']\n")
    (root / "docs").mkdir()
    (root / "docs" / "guide.md").write_text("# Guide\n\nRun the handler.\n")
    if toml is not None:
        (root / "repotune.toml").write_text(toml)
    return root


# ---------------------------------------------------------------------- data loss


def test_index_dir_dot_with_a_fake_database_deletes_nothing(
    tmp_path: Path, isolated_cache: Path
) -> None:
    repo = make_repo(tmp_path / "repo", '[index]\nindex_dir = "."\n')
    (repo / DB_NAME).write_bytes(b"not a database at all\n" * 50)
    before = snapshot(repo)
    # from the repository's own file: refused, naming the key and the file
    with pytest.raises(SettingsError, match=r"repotune\.toml.*index\.index_dir"):
        load_settings(repo)
    # even a trusted setting cannot make RepoTune use (or wipe) a folder it does not own
    with pytest.raises(StoreError, match="did not create"):
        Store(repo, dense=False)
    assistant = Assistant({"index": {"dense": False}})
    try:
        assistant.add_folder(repo, watch=False)
        status = assistant.status()
        assert any("index.index_dir" in error for error in status["errors"])
        index = assistant.folders.index_for(repo.resolve())
        assert index.location.is_relative_to(isolated_cache)  # the default place works
        assert index.wait_idle(30) and "app.py" in index.store.files()
        # the refused file does not block the editor's own settings for that folder
        assistant.update_editor_settings(
            {"index": {"dense": False, "exclude": ["docs/"]}}, "editor settings"
        )
        assert wait_for(lambda: "docs/guide.md" not in index.store.files())
        assert any("index.index_dir" in error for error in assistant.status()["errors"])
    finally:
        assistant.close()
    assert snapshot(repo) == before
    assert not (repo / MARKER_NAME).exists()


def test_training_outputs_survive_an_index_format_upgrade(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", '[index]\nindex_dir = ".repotune"\n')
    outputs = repo / ".repotune"
    (outputs / "dataset").mkdir(parents=True)
    (outputs / "dataset" / "train.jsonl").write_text('{"prompt": "x"}\n')
    (outputs / "adapter.gguf").write_bytes(b"GGUF adapter weights")
    before = snapshot(repo)
    with pytest.raises(SettingsError, match="index_dir"):  # .repotune itself holds outputs
        load_settings(repo)
    with pytest.raises(StoreError, match="did not create"):  # and is not RepoTune's index
        Store(outputs, dense=False)
    assert snapshot(repo) == before
    # the allowed place: .repotune/index; a format upgrade there removes the store's files only
    (repo / "repotune.toml").write_text('[index]\nindex_dir = ".repotune/index"\n')
    settings = load_settings(repo)
    with WorkspaceIndex(repo, settings) as index:
        index.start(dense=False)
        assert index.wait_idle(30)
        location = index.location
    assert location == outputs / "index"
    (location / "my-notes.txt").write_text("kept")
    db = sqlite3.connect(location / DB_NAME)
    db.execute("UPDATE meta SET value = '0' WHERE key = 'format_version'")
    db.commit()
    db.close()
    reopened = Store(location, dense=False)
    assert reopened.rebuilt and reopened.chunk_count() == 0
    assert any("rebuilt" in notice for notice in reopened.stats()["notices"])
    reopened.close()
    assert (location / "my-notes.txt").read_text() == "kept"
    after = snapshot(repo)
    for name, content in before.items():
        assert name == "repotune.toml" or after[name] == content


def test_index_dir_outside_the_repository_is_refused(tmp_path: Path, isolated_cache: Path) -> None:
    repo = make_repo(tmp_path / "a" / "b" / "repo", '[index]\nindex_dir = "../../.."\n')
    with pytest.raises(SettingsError, match=r"outside the repository.s own \.repotune"):
        load_settings(repo)
    # a symlink out of .repotune does not get around the check
    (repo / ".repotune").mkdir()
    (repo / ".repotune" / "out").symlink_to(tmp_path)
    (repo / "repotune.toml").write_text('[index]\nindex_dir = ".repotune/out/idx"\n')
    with pytest.raises(SettingsError, match="outside"):
        load_settings(repo)
    # inside the cache is fine, and the editor (trusted) may choose anything
    (repo / "repotune.toml").write_text(f'[index]\nindex_dir = "{isolated_cache / "x"}"\n')
    assert load_settings(repo).index.index_dir == str(isolated_cache / "x")
    # but not by a relative path, which is used as it is: it could name another folder's index
    other = os.path.relpath(isolated_cache / "indexes" / "private-0123456789ab", repo)
    (repo / "repotune.toml").write_text(f'[index]\nindex_dir = "{other}"\n')
    with pytest.raises(SettingsError, match="outside"):
        load_settings(repo)
    (repo / "repotune.toml").write_text('[index]\nindex_dir = "../../.."\n')
    chosen = str(tmp_path / "editor-index")
    assert load_settings(repo, {"index": {"index_dir": chosen}}).index.index_dir == chosen


def test_cannot_open_is_an_error_never_a_wipe(tmp_path: Path) -> None:
    a_file = tmp_path / "plain.txt"
    a_file.write_text("precious")
    with pytest.raises(StoreError, match="cannot create"):
        Store(a_file / "index", dense=False)  # a path under a file
    assert a_file.read_text() == "precious"
    # a marked folder whose database cannot be opened (here: a directory in its place)
    location = tmp_path / "idx"
    Store(location, dense=False).close()
    (location / DB_NAME).unlink()
    (location / DB_NAME).mkdir()
    (location / DB_NAME / "inside.txt").write_text("kept")
    with pytest.raises(StoreError, match="cannot open"):
        Store(location, dense=False)
    assert (location / DB_NAME / "inside.txt").read_text() == "kept"
    # a real "file is not a database" in a marked folder is rebuilt
    (location / DB_NAME / "inside.txt").unlink()
    (location / DB_NAME).rmdir()
    (location / DB_NAME).write_bytes(b"garbage" * 1000)
    rebuilt = Store(location, dense=False)
    assert rebuilt.rebuilt
    rebuilt.close()


def test_a_committed_index_folder_never_writes_through_its_links(
    tmp_path: Path, isolated_cache: Path
) -> None:
    """A repository can commit `.repotune/index/` with RepoTune's marker and its database or a
    Chroma file linked to a file of the user's: SQLite and Chroma would write into it."""
    victim = tmp_path / "notes.sqlite3"
    db = sqlite3.connect(victim)
    db.execute("CREATE TABLE notes (text)")
    db.commit()
    db.close()
    other = tmp_path / "other.txt"
    other.write_text("precious")
    repo = make_repo(tmp_path / "repo", '[index]\nindex_dir = ".repotune/index"\n')
    location = repo / ".repotune" / "index"
    (location / "chroma").mkdir(parents=True)
    (location / MARKER_NAME).write_text("RepoTune index folder, format 1\n")
    (location / DB_NAME).symlink_to(victim)
    before = victim.read_bytes()
    with pytest.raises(StoreError, match=rf"symlink .*\({DB_NAME} -> {victim}\)"):
        Store(location, dense=False)
    (location / DB_NAME).unlink()
    (location / "chroma" / "chroma.sqlite3").symlink_to(other)
    with pytest.raises(StoreError, match=r"chroma/chroma\.sqlite3 -> "):
        Store(location, dense=True)
    # the server says why and keeps serving the other folders; nothing outside was written
    assistant = Assistant({"index": {"dense": False}})
    try:
        assistant.add_folder(repo, watch=False)
        assert any("symlink" in error for error in assistant.status()["errors"])
    finally:
        assistant.close()
    assert victim.read_bytes() == before and other.read_text() == "precious"
    assert (location / "chroma" / "chroma.sqlite3").is_symlink()  # the repository's link stays


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file modes")
def test_read_only_index_folder_is_reported_not_wiped(tmp_path: Path) -> None:
    location = tmp_path / "idx"
    Store(location, dense=False).close()
    names = sorted(p.name for p in location.iterdir())
    location.chmod(0o500)
    (location / DB_NAME).chmod(0o400)
    try:
        with pytest.raises(StoreError):
            Store(location, dense=False)
    finally:
        location.chmod(0o700)
    assert sorted(p.name for p in location.iterdir()) == names


def test_index_files_and_folders_are_private(tmp_path: Path) -> None:
    store = Store(tmp_path / "idx", dense=True, embedder_id="m")
    chunks = chunk_file("app.py", "def f():\n    return 1\n", "h", 8, 2)
    store.replace_file("app.py", "h", 1, 1, "python", "utf-8", chunks)
    store.reconcile_dense()
    store.upsert_vectors([c.id for c in chunks], np.ones((len(chunks), 8), dtype=np.float32))
    paths = [tmp_path / "idx", *sorted((tmp_path / "idx").rglob("*"))]
    names = {p.name for p in paths}
    assert {MARKER_NAME, DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", "chroma"} <= names
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    store.close()


def test_a_damaged_chroma_store_is_rebuilt(tmp_path: Path) -> None:
    location = tmp_path / "idx"
    store = Store(location, dense=True, embedder_id="m")
    chunks = chunk_file("app.py", "def f():\n    return 1\n\n\ndef g():\n    return 2\n", "h", 5, 0)
    store.replace_file("app.py", "h", 1, 1, "python", "utf-8", chunks)
    store.reconcile_dense()
    ids = [c.id for c in chunks]
    store.upsert_vectors(ids, np.ones((len(ids), 8), dtype=np.float32))
    store.mark_embedded(ids)
    store.close()
    for path in (location / "chroma").rglob("*"):
        if path.is_file():
            path.write_bytes(b"\x00garbage" * 64)
    reopened = Store(location, dense=True, embedder_id="m")
    reopened.reconcile_dense()
    assert any("vector store was damaged" in n for n in reopened.stats()["notices"])
    assert reopened.dense_pending_count() == len(ids)  # every vector is filled again
    reopened.upsert_vectors(ids, np.ones((len(ids), 8), dtype=np.float32))
    assert reopened.vector_ids() == set(ids)
    reopened.close()


# ---------------------------------------------------------------------- secrets


def test_secret_shapes_are_redacted_line_by_line() -> None:
    text = "\n".join(
        [
            "x = 1",
            f'API_TOKEN = "{TOKEN}"',
            'password = "changeme"',
            "DB_PASSWORD=Hunter2Hunter2xx",
            'token_url = "https://oauth2.googleapis.com/token"',
            "aws = 'AKIAIOSFODNN7ABCDEFG'",
            "-----BEGIN RSA PRIVATE KEY-----",
            "MIIEpAIBAAKCAQEA7",
            "-----END RSA PRIVATE KEY-----",
            '    "api_key": "AbCdEf0123456789xyz",',
            "slack = xoxb-1234567890-abcdefghij",
            "tok = os.environ['API_TOKEN']",
        ]
    )
    redacted = redact_secrets(text)
    lines = redacted.split("\n")
    assert len(lines) == len(text.split("\n"))
    for secret in (TOKEN, "Hunter2Hunter2xx", "AKIAIOSFODNN7ABCDEFG", "MIIEpAIBAAKCAQEA7"):
        assert secret not in redacted
    assert "AbCdEf0123456789xyz" not in redacted and "xoxb-1234567890" not in redacted
    assert lines[1] == 'API_TOKEN = "<redacted>"'
    assert lines[9] == '    "api_key": "<redacted>",'
    # placeholders, URLs and code stay as they are
    assert lines[0] == "x = 1" and lines[2] == 'password = "changeme"'
    assert lines[4] == text.split("\n")[4] and lines[11] == text.split("\n")[11]
    code = "\n".join(
        [
            '        tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)',
            'tokenizer_name = "google/gemma-3-270m-it"',
            "    count_tokens: Callable[[str], int] | None = None,",
            '        "prompt_tokens_mean": round(prompt_tokens / len(served), 1),',
            "secret = settings.secret_key_value",
        ]
    )
    assert redact_secrets(code) == code  # code that merely names tokens is left alone
    prefix, suffix = redact_buffer(text, text.index("slack"), 10_000, 10_000)
    assert TOKEN not in prefix and "xoxb-1234567890" not in suffix


def test_a_password_of_words_run_together_is_redacted() -> None:
    """No digit, no separator: a passphrase, not a key name; 8.95 million lines of installed
    packages' code and config hold no line this rule changes."""
    secrets = [
        'password = "correcthorsebatterystaple"',
        "  password: trombonecarpetviolin",
        '    "PASSPHRASE": "quietlanternharbor",',
        "db_pwd=quietlanternharbor",
    ]
    for line in secrets:
        assert "<redacted>" in redact_line(line), line
    kept = [
        'token_type = "authorization"',  # names a token, not a password
        'password_field = "passwordconfirmation"',  # the value is a name of one
        'PASSWORD = "mysecretpassword"',  # a documented default
        'password = "Correct-Horse"',  # too short for the rule, no digits
        'pwd = "aaaaaaaaaaaaaaaa"',
    ]
    for line in kept:
        assert redact_line(line) == line, line


def test_an_index_from_before_a_redaction_change_is_rebuilt(tmp_path: Path) -> None:
    """What an older RepoTune stored unredacted (the passphrase rule is newer) does not stay in
    its index after an upgrade: the format version moved with it, so the index is rebuilt."""
    repo = make_repo(tmp_path / "repo")
    (repo / "db.py").write_text('PASSWORD = "correcthorsebatterystaple"\n')
    settings = load_settings(None, {"index": {"index_dir": str(tmp_path / "index")}})
    with WorkspaceIndex(repo, settings) as index:
        index.start(dense=False)
        assert index.wait_idle(30)
        location = index.location
    db = sqlite3.connect(location / DB_NAME)  # as the version before the rule left it
    db.execute("UPDATE chunks SET text = 'PASSWORD = \"correcthorsebatterystaple\"'")
    db.execute("UPDATE meta SET value = '5' WHERE key = 'format_version'")
    db.commit()
    db.close()
    with WorkspaceIndex(repo, settings) as index:
        index.start(dense=False)
        assert index.wait_idle(30)
        texts = "".join(chunk.text for chunk in index.search("PASSWORD", 10))
    assert "PASSWORD" in texts and "correcthorse" not in texts


def test_redaction_takes_linear_time_on_long_name_runs() -> None:
    """`secretsecret...` (one run of name characters, no assignment) made the assignment
    pattern backtrack over every split of the run: 27 s for 2,400 characters, cubic beyond.
    Every file is redacted before it is indexed, every buffer before a prompt."""
    line = "secret" * 10_000
    text = f'x = 1\n{line}\nAPI_TOKEN = "{TOKEN}"\n'
    redacted = within(20, lambda: redact_secrets(text))
    assert redacted.split("\n")[1] == line and TOKEN not in redacted


def test_ignore_rules_take_linear_time_on_long_file_names(tmp_path: Path) -> None:
    """A repository's `.gitignore` line `*a*a*a*a*a*a*a*a*a*a*b` made Python's backtracking `re`
    (pathspec's default backend) take 26 s for a 41-character name, and growing with the name's
    length to a power of the stars' count; RE2 does not backtrack."""
    repo = make_repo(tmp_path / "repo")
    (repo / ".gitignore").write_text("*a" * 10 + "*b\n")
    (repo / ("a" * 200 + "c.py")).write_text("LONG_NAME = 1\n")
    scan = within(20, WorkspaceFilter(repo, Settings()).scan)
    assert "a" * 200 + "c.py" in [entry.rel for entry in scan.files]


def test_symlinked_and_wider_default_secrets_are_not_indexed(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / ".env").write_text("DB_URL=postgres://u:p@h/db\n")
    (repo / "env_notes.txt").symlink_to(".env")
    (repo / ".aws").mkdir()
    (repo / ".aws" / "credentials").write_text("[default]\naws_secret_access_key = abc\n")
    (repo / "app" / "sub").mkdir(parents=True)
    (repo / "app" / "aws_settings.ini").symlink_to("../.aws/credentials")
    for nested in ("ops/.docker/config.json", "ops/.kube/config", "ops/.aws/config"):
        (repo / nested).parent.mkdir(parents=True, exist_ok=True)
        (repo / nested).write_text('{"auths": {"registry": {"auth": "dXNlcjpwYXNz"}}}\n')
    for name in (".envrc", "prod.env", ".git-credentials", "terraform.tfvars", ".pgpass"):
        (repo / name).write_text("value = 1\n")
    (repo / "deploy.json").write_text(
        '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\nMII\\n",'
        ' "client_email": "bot@p.iam.gserviceaccount.com"}'
    )
    scan = WorkspaceFilter(repo, Settings()).scan()
    reasons = {s.rel: s.reason for s in scan.skipped}
    for rel in (
        "env_notes.txt",
        "app/aws_settings.ini",
        ".envrc",
        "prod.env",
        ".git-credentials",
        "terraform.tfvars",
        ".pgpass",
        ".env",
        "ops/.docker/config.json",  # the patterns with a slash hold at any depth
        "ops/.kube/config",
        "ops/.aws/config",
    ):
        assert reasons.get(rel) == "secret", (rel, reasons.get(rel))
    from repotune.server.index.files import ContentSkip

    with pytest.raises(ContentSkip, match="secret"):
        read_text_file(repo / "deploy.json", 10_000)


def test_ignore_files_that_are_fifos_or_links_to_devices_are_not_read(tmp_path: Path) -> None:
    """A committed `.gitignore -> /dev/zero` filled memory and a FIFO blocked the scan forever;
    as in git, an ignore file is read only as a regular file, never through a link."""
    repo = make_repo(tmp_path / "repo")
    os.mkfifo(repo / ".gitignore")
    (repo / ".repotuneignore").symlink_to("/dev/zero")
    (repo / "docs" / ".gitignore").write_text("guide.md\n")  # a regular one still counts
    os.mkfifo(repo / "pipe.py")
    try:
        scan = within(20, WorkspaceFilter(repo, Settings()).scan)
    finally:
        unblock(repo / ".gitignore")
    assert [entry.rel for entry in scan.files] == ["app.py", "docs/.gitignore"]
    assert ("docs/guide.md", "ignored") in {(s.rel, s.reason) for s in scan.skipped}


def test_a_tree_nested_too_deep_is_cut_off_not_a_recursion_error(tmp_path: Path) -> None:
    """1,500 nested folders (git stores them) ended the walk, and the watch plan, with a
    RecursionError: nothing was indexed. Below MAX_DIRECTORY_DEPTH everything still is."""
    repo = make_repo(tmp_path / "repo")
    folders = [repo / "d"]
    for _ in range(1, 1500):
        folders.append(folders[-1] / "d")
    for depth, folder in enumerate(folders, start=1):
        folder.mkdir()
        if depth in (100, 1500):
            (folder / f"at_{depth}.py").write_text(f"LEVEL = {depth}\n")
    try:
        deep_tree_is_cut_off(repo)
    finally:  # shutil.rmtree (pytest's clean-up) recurses once per level and fails on it
        for folder in reversed(folders):
            for child in folder.glob("*.py"):
                child.unlink()
            folder.rmdir()


def deep_tree_is_cut_off(repo: Path) -> None:
    from repotune.server.index.files import MAX_DIRECTORY_DEPTH
    from repotune.server.index.watch import plan_watches

    workspace_filter = WorkspaceFilter(repo, Settings())
    scan = workspace_filter.scan()
    files = [entry.rel for entry in scan.files]
    assert "app.py" in files and any(rel.endswith("/at_100.py") for rel in files)
    assert not any(rel.endswith("/at_1500.py") for rel in files)
    cut = [s.rel for s in scan.skipped if s.reason == "too-deep"]
    assert cut == ["d/" * MAX_DIRECTORY_DEPTH], cut
    plan = plan_watches(repo, workspace_filter)
    assert max(rel.count("/") for rel in plan) < MAX_DIRECTORY_DEPTH
    deep_file = Path(*["d"] * 1500, "at_1500.py").as_posix()
    assert workspace_filter.path_reason(deep_file) == "too-deep"


def test_a_file_swapped_for_a_fifo_after_the_scan_is_refused_not_waited_on(
    tmp_path: Path,
) -> None:
    os.mkfifo(tmp_path / "mod.py")
    try:
        with pytest.raises(OSError, match="FIFO"):
            within(20, lambda: read_text_file(tmp_path / "mod.py", 10_000))
    finally:
        unblock(tmp_path / "mod.py")


def test_an_open_document_is_a_secret_by_the_index_rules(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo").resolve()
    patterns = Settings().index.secret_patterns
    (repo / ".env").write_text("PASSWORD=correcthorsebatterystaple\n")
    (repo / "env_notes.txt").symlink_to(".env")
    for name in (".env", "env_notes.txt", "deploy/prod.env", ".aws/credentials", "id_rsa"):
        assert is_secret_document(repo / name, repo, patterns), name
    assert not is_secret_document(repo / "app.py", repo, patterns)
    # outside every workspace folder: by its name and its absolute path
    assert is_secret_document(tmp_path / "elsewhere" / ".env.local", None, patterns)
    assert not is_secret_document(tmp_path / "elsewhere" / "app.py", None, patterns)
    assert not is_secret_document(repo / ".env", repo, [])  # the user may say otherwise


def test_a_home_folder_or_the_file_system_root_is_not_indexed(
    tmp_path: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An editor can open the home folder (or Neovim pick it as a lone file's root when it holds
    a .git): it holds shell histories and tokens no secret pattern lists."""
    from repotune.server.folders import too_broad_to_index

    home = tmp_path / "home" / "me"
    project = make_repo(home / "project")
    (home / ".bash_history").write_text("export DB_PASSWORD=correct-horse\n")
    monkeypatch.setenv("HOME", str(home))
    assert too_broad_to_index(Path("/")) and too_broad_to_index(home.resolve())
    assert "holding your home folder" in str(too_broad_to_index(home.parent.resolve()))
    assert too_broad_to_index(project.resolve()) is None
    (tmp_path / "home-link").symlink_to(home)
    assert too_broad_to_index(tmp_path / "home-link") and too_broad_to_index(project / "..")
    assistant = Assistant({"index": {"dense": False}})
    try:
        assistant.add_folder(home, watch=False)
        assistant.add_folder(project, watch=False)
        status = assistant.status()
        assert any("your home folder" in error for error in status["errors"]), status["errors"]
        assert assistant.folders.roots() == [project.resolve()]
        index = assistant.folders.index_for(project.resolve())
        assert index.wait_idle(30) and "app.py" in index.store.files()
    finally:
        assistant.close()
    assert not list(isolated_cache.glob("indexes/me-*"))  # nothing of the home folder stored


def test_a_token_in_config_py_never_reaches_the_index_or_search(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "config.py").write_text(CONFIG_PY)
    settings = Settings.model_validate({"index": {"index_dir": str(tmp_path / "index")}})
    with WorkspaceIndex(repo, settings) as index:
        index.start(dense=False)
        assert index.wait_idle(30)
        rows = index.store.chunk_rows()
        assert any(row[1] == "config.py" for row in rows)
        assert all(TOKEN not in str(row) for row in rows)
        db = index.store._db  # the FTS table's own rows, as stored
        bodies = db.execute("SELECT names, body FROM chunks_fts").fetchall()
        assert bodies and all(TOKEN not in str(tuple(b)) for b in bodies)
        assert all("4f9a8b7c6d5e" not in str(tuple(b)) for b in bodies)
        hits = index.search("API_TOKEN api_headers", 5)
        assert any(hit.path == "config.py" for hit in hits)
        assert all(TOKEN not in hit.text for hit in hits)
        # the line keeps its place: the chunk still starts and ends where the file's lines are
        chunk = next(hit for hit in hits if hit.path == "config.py")
        assert 'API_TOKEN = "<redacted>"' in chunk.text
    for path in (tmp_path / "index").rglob("*"):  # nor in any byte of the index files
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


# ---------------------------------------------------------------------- rules at run time


def test_index_rules_changed_at_run_time_are_applied(tmp_path: Path, isolated_cache: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "vendor").mkdir()
    (repo / "vendor" / "lib.py").write_text("def vendored():\n    return 1\n")
    (repo / ".gitignore").write_text("vendor/\n")
    assistant = Assistant({"index": {"dense": False, "debounce_ms": 50}})
    try:
        assistant.add_folder(repo)
        index = assistant.folders.index_for(repo.resolve())
        assert index.wait_idle(30)
        assert set(index.store.files()) == {"app.py", "docs/guide.md", ".gitignore"}
        # editor settings: exclude docs, include vendored code
        overrides: dict = {
            "index": {
                "dense": False,
                "debounce_ms": 50,
                "exclude": ["docs/"],
                "include": ["vendor/"],
            }
        }
        assistant.update_editor_settings(overrides, "editor settings")
        assert wait_for(
            lambda: set(index.store.files()) == {"app.py", ".gitignore", "vendor/lib.py"}
        )
        # a secret pattern added at run time: the file leaves the index
        overrides["index"]["secret_patterns"] = ["app.py"]
        assistant.update_editor_settings(overrides, "editor settings")
        assert wait_for(lambda: "app.py" not in index.store.files())
        # repotune.toml edited in the workspace: re-read through the watcher and applied
        assistant.update_editor_settings(
            {"index": {"dense": False, "debounce_ms": 50}}, "editor settings"
        )
        assert wait_for(lambda: "docs/guide.md" in index.store.files())
        (repo / "repotune.toml").write_text('[index]\nexclude = ["app.py"]\n')
        assert wait_for(lambda: "app.py" not in index.store.files()), (
            assistant.status()["errors"],
            index.filter._exclude,
            index.watched_directories(),
        )
        assert assistant.settings_for_path(repo / "app.py").index.exclude == ["app.py"]
        # reindex re-reads it too (here: after an edit the watcher could not have seen)
        (repo / "repotune.toml").write_text('[index]\nexclude = ["docs/"]\n')
        assistant.reindex()
        assert wait_for(lambda: "app.py" in index.store.files())
        assert wait_for(lambda: "docs/guide.md" not in index.store.files())
    finally:
        assistant.close()


def test_a_deleted_and_recreated_folder_is_indexed_again(tmp_path: Path) -> None:
    import shutil

    repo = make_repo(tmp_path / "repo")
    settings = Settings.model_validate(
        {"index": {"index_dir": str(tmp_path / "index"), "debounce_ms": 50}}
    )
    with WorkspaceIndex(repo, settings) as index:
        index.start(watch=True, dense=False)
        assert index.wait_idle(30) and "app.py" in index.store.files()
        shutil.rmtree(repo)
        assert wait_for(lambda: index.stats()["root_missing"])
        repo.mkdir()
        (repo / "fresh.py").write_text("def fresh_function():\n    return 3\n")
        assert wait_for(lambda: "fresh.py" in index.store.files())
        (repo / "later.py").write_text("def later_function():\n    return 4\n")
        assert wait_for(lambda: "later.py" in index.store.files())  # watched again


@pytest.mark.slow
def test_a_secret_pasted_into_a_question_never_reaches_the_endpoint(tmp_path: Path) -> None:
    """The question is redacted like a buffer before it becomes a prompt (here, to an endpoint
    that records what it is sent)."""
    repo = make_repo(tmp_path / "repo")
    with (
        recording_endpoint() as (url, bodies),
        assistant_on_endpoint(url, repo, tmp_path / "index") as assistant,
        pytest.raises(Exception, match="503"),
    ):
        assistant.ask(f'why does handler give 401 with API_TOKEN = "{TOKEN}"?')
    sent = json.dumps(bodies)
    assert bodies and "give 401" in sent and "<redacted>" in sent and TOKEN not in sent


def test_the_prompt_never_holds_a_secret_from_the_buffer_or_the_index(
    tmp_path: Path, generator_model: object
) -> None:
    """The real engine builds the prompt; every prompt it built is checked for the token."""
    repo = make_repo(tmp_path / "repo")
    (repo / "config.py").write_text(CONFIG_PY)
    overrides = {
        "model": {"generator": str(generator_model.path)},  # type: ignore[attr-defined]
        "index": {"index_dir": str(tmp_path / "index"), "dense": False},
    }
    assistant = Assistant(overrides)
    try:
        assistant.add_folder(repo, watch=False)
        assert assistant.folders.index_for(repo.resolve()).wait_idle(30)
        assistant.start()
        engine = assistant.engine
        assert wait_for(lambda: engine.ready or bool(engine.load_error), 240)
        assert engine.ready, engine.load_error
        prompts: list[str] = []
        build = engine.build_prompt

        def spy(request: object, *args: object) -> object:
            built = build(request, *args)
            prompts.append("".join(segment.text for segment in built.segments))
            return built

        engine.build_prompt = spy
        # the open buffer holds the token too (a copy of config.py being edited)
        buffer = CONFIG_PY + "\n\ndef client_headers() -> dict[str, str]:\n    token = "
        assistant.complete(repo / "client.py", buffer, len(buffer), "python")
        assert prompts, "no prompt was built"
        assert 'API_TOKEN = "<redacted>"' in prompts[-1]  # the context and the buffer are there
        assert all(TOKEN not in prompt for prompt in prompts)
    finally:
        assistant.close()
