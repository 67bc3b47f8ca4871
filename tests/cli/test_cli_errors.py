"""`repotune` reports a dependency it cannot import by name, with how to install it, and an
index folder it may not use in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from endpoint_server import recording_endpoint
from repotune.server.cli.app import missing_dependency

# `None` in sys.modules makes `import NAME` raise ModuleNotFoundError, as if not installed.
BLOCKED_RUN = (
    "import sys; sys.modules[{module!r}] = None; "
    "from repotune.server.cli.app import main; sys.argv = ['repotune', *{args!r}]; main()"
)


def run_without(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    code = BLOCKED_RUN.format(module=module, args=list(args))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_serve_without_pygls_names_it_and_how_to_install() -> None:
    result = run_without("pygls", "serve")
    assert result.returncode == 1, result
    message = result.stderr.strip()
    assert "not implemented" not in message
    assert "the Python module 'pygls' (from the package pygls" in message
    assert "pip install repotune" in message and "make install-server" in message
    assert "Traceback" not in message


@pytest.mark.parametrize(
    ("module", "package", "how"),
    [
        ("llama_cpp", "llama-cpp-python==0.3.36", "pip install repotune "),
        ("tree_sitter", "tree-sitter", "pip install repotune "),
        ("tree_sitter_languages", "tree-sitter-languages==1.10.2", "pip install repotune "),
        ("torch", "torch==2.13.0", "pip install 'repotune[train]'"),
        ("peft", "peft", "pip install 'repotune[train]'"),
    ],
)
def test_missing_module_is_mapped_to_its_package_and_extra(
    module: str, package: str, how: str
) -> None:
    message = missing_dependency(ModuleNotFoundError(f"No module named '{module}'", name=module))
    assert f"the Python module '{module}' (from the package {package}" in message
    assert how in message


def test_an_incompatible_version_is_reported_as_such() -> None:
    error = ImportError(
        "cannot import name 'JsonRPCServer' from 'pygls.server'", name="pygls.server"
    )
    message = missing_dependency(error)
    assert "could not import from 'pygls'" in message and "version" in message


def test_an_unusable_index_folder_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".repotune" / "index").mkdir(parents=True)
    (repo / "app.py").write_text("def f():\n    return 1\n")
    (repo / "repotune.toml").write_text('[index]\nindex_dir = ".repotune/index"\n')
    (repo / ".repotune" / "index" / "index.sqlite3").symlink_to(tmp_path / "elsewhere.sqlite3")
    result = subprocess.run(
        [sys.executable, "-m", "repotune", "index", str(repo), "--set", "index.dense=false"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "REPOTUNE_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    assert "holds a symlink" in result.stderr and "index.sqlite3 ->" in result.stderr
    assert not (tmp_path / "elsewhere.sqlite3").exists()


def test_the_command_line_never_indexes_the_home_folder(tmp_path: Path) -> None:
    """As the server refuses it: `repotune complete ~/scratch.py` (no git root: the file's
    folder would be the workspace) completes without retrieval, and index, search and ask say
    why in one line; nothing of the home folder reaches an index."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bash_history").write_text("export DB_PASSWORD=correct-horse\n")
    (home / "scratch.py").write_text("def double(x):\n    return x * 2\n")
    cache = tmp_path / "cache"
    env = {**os.environ, "HOME": str(home), "REPOTUNE_CACHE_DIR": str(cache)}
    repotune = [sys.executable, "-m", "repotune"]
    for args in (["index", str(home)], ["search", str(home), "password"], ["ask", str(home), "?"]):
        result = subprocess.run(
            [*repotune, *args],
            capture_output=True, text=True, timeout=300, env=env,
        )  # fmt: skip
        assert result.returncode == 1, result
        assert "not indexed: it is your home folder" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    result = subprocess.run(
        [*repotune, "complete", f"{home / 'scratch.py'}:2:5", "--json"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert "not indexed: it is your home folder" in result.stdout, result
    assert not (cache / "indexes").exists() or not any((cache / "indexes").iterdir())


def test_complete_keeps_secrets_out_of_the_prompt_it_sends(tmp_path: Path) -> None:
    """`repotune complete --endpoint URL` sends what the editor would: the token typed above the
    cursor is redacted, and a .env is never sent at all."""
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    (repo / "client.py").write_text(f'GITHUB_TOKEN = "{token}"\n\ndef headers():\n    return \n')
    (repo / ".env").write_text("DB_PASSWORD=correct-horse\n")
    env = {**os.environ, "REPOTUNE_CACHE_DIR": str(tmp_path / "cache")}
    with recording_endpoint() as (url, bodies):
        command = [sys.executable, "-m", "repotune", "complete", "--no-context", "--endpoint", url]
        subprocess.run(
            [*command, f"{repo / 'client.py'}:4:12", "--json"],
            capture_output=True, text=True, timeout=300, env=env,
        )  # fmt: skip
        secret_file = subprocess.run(
            [*command, f"{repo / '.env'}:1:13"], capture_output=True, text=True, timeout=60, env=env
        )
    assert bodies, "the endpoint was asked nothing"
    prompt = bodies[0]["prompt"]
    assert "def headers" in prompt and token not in prompt and "<redacted>" in prompt
    assert secret_file.returncode == 1 and "never put into a prompt" in secret_file.stderr
    assert len(bodies) == 1  # nothing of the .env was sent


def test_a_file_as_the_workspace_and_an_empty_question_are_one_line_each(tmp_path: Path) -> None:
    """A file named as the workspace said "app.py/repotune.toml: cannot be read: Not a
    directory"; an empty question ran the model for seconds, an empty query searched."""
    (tmp_path / "app.py").write_text("def double(x):\n    return x * 2\n")
    env = {**os.environ, "REPOTUNE_CACHE_DIR": str(tmp_path / "cache")}

    def repotune(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "repotune", *args],
            capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
        )  # fmt: skip

    for args in (["index", "app.py"], ["search", "app.py", "double"], ["ask", "app.py", "why?"]):
        result = repotune(*args)
        assert result.returncode == 1, result
        assert result.stderr == f"repotune: {tmp_path / 'app.py'} is not a directory\n"
    doctor = repotune("doctor", "--workspace", "app.py")
    assert f"workspace {tmp_path / 'app.py'} is not a directory" in doctor.stdout, doctor
    assert "repotune.toml" not in doctor.stdout
    for args, what in ((["search", ".", " "], "query"), (["ask", ".", ""], "question")):
        result = repotune(*args)
        assert (result.returncode, result.stderr) == (2, f"repotune: the {what} is empty\n")


def test_an_unusable_cache_folder_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "cache").write_text("not a folder")
    (tmp_path / "repo").mkdir()
    env = {**os.environ, "REPOTUNE_CACHE_DIR": str(tmp_path / "cache")}
    for args in (["doctor"], ["index", str(tmp_path / "repo")]):
        result = subprocess.run(
            [sys.executable, "-m", "repotune", *args],
            capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 1, result
        assert "Traceback" not in result.stderr
        assert result.stderr.endswith(
            f"cache folder {tmp_path / 'cache'} (REPOTUNE_CACHE_DIR) cannot be used: File exists\n"
        ), result.stderr


def test_an_unusable_model_folder_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "models").write_text("not a folder")
    (tmp_path / "app.py").write_text("def double(x):\n    return x * 2\n")
    result = subprocess.run(
        [sys.executable, "-m", "repotune", "complete", "app.py:2:5", "--no-context"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "REPOTUNE_CACHE_DIR": str(tmp_path / "cache")},
    )  # fmt: skip
    assert result.returncode == 1, result
    message = f"the model folder {tmp_path / 'cache' / 'models'} cannot be used: File exists\n"
    assert result.stderr.endswith(message), result.stderr
    assert "unexpected error" not in result.stderr


def test_a_model_that_fails_to_load_is_said_once(tmp_path: Path) -> None:
    """`complete`, `ask` and `bench complete` print the failure as their own line; the model
    slot's log record of it came first, so the terminal showed the same error twice."""
    functions = (f"def times_{n}(x):\n    return x * {n}\n\n\n" for n in range(2, 40))
    (tmp_path / "app.py").write_text("".join(functions))
    (tmp_path / "broken.gguf").write_bytes(b"not a model")
    (tmp_path / "repotune.toml").write_text('[model]\ngenerator = "broken.gguf"\n')
    model = tmp_path / "broken.gguf"
    error = f"repotune: model '{model}': {model} is not a GGUF file (bad magic)\n"
    for args in (
        ["complete", "app.py:2:5", "--no-context"],
        ["ask", ".", "what is times_2?"],
        ["bench", "complete", ".", "--samples", "2"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "repotune", *args],
            capture_output=True, text=True, timeout=180, cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 1, result
        assert result.stderr == error, result.stderr


def test_a_benchmark_asked_for_nothing_is_refused(tmp_path: Path) -> None:
    """`--samples 0` (or below) printed an empty report and exited 0, as if measured."""
    from repotune.server.cli.app import app
    from typer.testing import CliRunner

    for args in (
        ["bench", "complete", str(tmp_path), "--samples", "0"],
        ["bench", "lsp", str(tmp_path), "--samples", "-1"],
        ["bench", "endpoint", str(tmp_path), "--samples", "0"],
        ["bench", "complete", str(tmp_path), "--dwell-ms", "-5"],
        ["bench", "decode", str(tmp_path), "--new-tokens", "0"],
        ["search", str(tmp_path), "query", "-k", "0"],
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and "Invalid value" in result.output, (args, result.output)
