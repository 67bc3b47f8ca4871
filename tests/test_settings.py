"""Settings precedence and errors: defaults < repotune.toml / [tool.repotune] < editor values."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from repotune.server.config import (
    Settings,
    SettingsError,
    load_settings,
    settings_with,
)
from repotune.server.index.redact import DEFAULT_SECRET_PATTERNS
from repotune.server.repository_settings import MODEL_REFERENCES, NETWORK_SETTINGS


def test_defaults_without_any_file(tmp_path: Path) -> None:
    settings = load_settings(tmp_path)
    assert settings == Settings()
    assert settings.model.generator == "default"
    assert settings.index.max_file_bytes == 1_000_000
    assert ".env" in settings.index.secret_patterns


def test_workspace_file_overrides_defaults_and_editor_overrides_file(tmp_path: Path) -> None:
    (tmp_path / "repotune.toml").write_text(
        '[completion]\ncontext_tokens = 300\nmax_tokens_line = 20\n[model]\nadapter = "a.gguf"\n'
    )
    from_file = load_settings(tmp_path)
    assert from_file.completion.context_tokens == 300
    assert from_file.completion.max_tokens_line == 20
    assert from_file.model.adapter == str(tmp_path / "a.gguf")  # relative to the workspace
    merged = load_settings(tmp_path, {"completion": {"context_tokens": 100}})
    assert merged.completion.context_tokens == 100  # editor wins
    assert merged.completion.max_tokens_line == 20  # file value kept where editor is silent
    assert merged.model.adapter == str(tmp_path / "a.gguf")


def test_pyproject_tool_table_is_read(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.repotune.index]\nmax_file_bytes = 1234\n'
    )
    assert load_settings(tmp_path).index.max_file_bytes == 1234


def test_repotune_toml_wins_over_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.repotune.index]\nmax_file_bytes = 1\n")
    (tmp_path / "repotune.toml").write_text("[index]\nmax_file_bytes = 2\n")
    assert load_settings(tmp_path).index.max_file_bytes == 2


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    config = tmp_path / "repotune.toml"
    config.write_text("[completion]\ncontext_tokenz = 3\n")
    with pytest.raises(SettingsError) as error:
        load_settings(tmp_path)
    message = str(error.value)
    assert "completion.context_tokenz" in message
    assert str(config) in message
    assert "unknown" in message


def test_wrong_type_names_key_and_file(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.repotune.index]\nmax_file_bytes = "big"\n')
    with pytest.raises(SettingsError) as error:
        load_settings(tmp_path)
    assert "index.max_file_bytes" in str(error.value)
    assert "pyproject.toml" in str(error.value)


def test_invalid_toml_is_reported_with_file(tmp_path: Path) -> None:
    (tmp_path / "repotune.toml").write_text("[completion\n")
    with pytest.raises(SettingsError, match=r"repotune\.toml: not valid TOML"):
        load_settings(tmp_path)


def test_a_settings_file_that_is_not_a_regular_file_or_is_huge_is_an_error(
    tmp_path: Path,
) -> None:
    """A FIFO would block, a link to /dev/zero or into /proc would never end: each is a
    clear error naming the file; a broken link is no file at all."""
    os.mkfifo(tmp_path / "repotune.toml")
    with pytest.raises(SettingsError, match=r"repotune\.toml: cannot be read: .*FIFO"):
        load_settings(tmp_path)
    (tmp_path / "repotune.toml").unlink()
    (tmp_path / "repotune.toml").symlink_to("/dev/zero")
    with pytest.raises(SettingsError, match=r"repotune\.toml: cannot be read: .*device"):
        load_settings(tmp_path)
    (tmp_path / "repotune.toml").unlink()
    (tmp_path / "pyproject.toml").write_text("# padding\n" * 200_000)
    with pytest.raises(SettingsError, match=r"pyproject\.toml: larger than"):
        load_settings(tmp_path)
    (tmp_path / "pyproject.toml").unlink()
    (tmp_path / "repotune.toml").symlink_to(tmp_path / "gone.toml")
    assert load_settings(tmp_path) == Settings()


def test_editor_error_names_editor_source(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"editor settings: setting 'model\.threads'"):
        load_settings(tmp_path, {"model": {"threads": -3}})


def test_settings_with_keeps_previous_on_error() -> None:
    base = Settings()
    changed = settings_with(base, {"retrieval": {"top_k": 9}}, "didChangeConfiguration")
    assert changed.retrieval.top_k == 9
    with pytest.raises(SettingsError, match="didChangeConfiguration"):
        settings_with(changed, {"retrieval": {"top_k": "many"}}, "didChangeConfiguration")
    assert changed.retrieval.top_k == 9


def test_model_paths_in_a_workspace_file_are_relative_to_the_workspace(tmp_path: Path) -> None:
    (tmp_path / "repotune.toml").write_text(
        '[model]\nadapter = ".repotune/adapter.gguf"\ngenerator = "models/m.gguf"\n'
    )
    settings = load_settings(tmp_path)
    assert settings.model.adapter == str(tmp_path / ".repotune" / "adapter.gguf")
    assert settings.model.generator == str(tmp_path / "models" / "m.gguf")
    # a layer given with it (the command line's) is taken as given: relative to the current
    # folder; the server anchors the editor's per folder (WorkspaceFolders.load_settings)
    assert load_settings(tmp_path, {"model": {"adapter": "x.gguf"}}).model.adapter == "x.gguf"


@pytest.mark.parametrize(("section", "key"), NETWORK_SETTINGS)
def test_no_network_setting_may_come_from_a_repository_file(
    tmp_path: Path, section: str, key: str
) -> None:
    """Every setting that decides where data derived from the code goes, or which secret goes
    with it, is refused from the repository's own file (an untrusted repository)."""
    value: object = "http://attacker.example:8000" if key.endswith(("url", "endpoint")) else "HOME"
    value = {"endpoint_timeout_ms": 1000, "endpoint_fallback": False}.get(key, value)
    # JSON's strings, integers and booleans read the same in TOML
    (tmp_path / "repotune.toml").write_text(f"[{section}]\n{key} = {json.dumps(value)}\n")
    with pytest.raises(SettingsError) as raised:
        load_settings(tmp_path)
    assert f"'{section}.{key}'" in str(raised.value)
    assert load_settings(None, {section: {key: value}})  # the editor layer may set it


@pytest.mark.parametrize("key", MODEL_REFERENCES)
def test_no_hub_model_may_come_from_a_repository_file(tmp_path: Path, key: str) -> None:
    """A hub reference in the repository's own file would make RepoTune download what the
    repository chose (network, and a write into the Hugging Face cache): refused; the user may
    name one."""
    (tmp_path / "repotune.toml").write_text(f'[model]\n{key} = " hf:attacker/beacon:x.gguf"\n')
    with pytest.raises(SettingsError) as raised:
        load_settings(tmp_path)
    assert f"'model.{key}'" in str(raised.value) and "Hugging Face" in str(raised.value)
    (tmp_path / "pyproject.toml").write_text(f'[tool.repotune.model]\n{key} = "hf:a/b"\n')
    (tmp_path / "repotune.toml").unlink()
    with pytest.raises(SettingsError, match=rf"pyproject\.toml.*'model\.{key}'"):
        load_settings(tmp_path)
    from_editor = load_settings(None, {"model": {key: "hf:org/model:m.gguf"}})
    assert getattr(from_editor.model, key) == "hf:org/model:m.gguf"


def test_a_repository_file_adds_secret_patterns_and_never_removes_one(tmp_path: Path) -> None:
    """An empty list, or a list without .env, must not put a user's own .env or keys into the
    index: the file's patterns are added to the defaults."""
    (tmp_path / "repotune.toml").write_text("[index]\nsecret_patterns = []\n")
    assert load_settings(tmp_path).index.secret_patterns == DEFAULT_SECRET_PATTERNS
    (tmp_path / "repotune.toml").write_text('[index]\nsecret_patterns = ["deploy.cfg", ".env"]\n')
    assert load_settings(tmp_path).index.secret_patterns == [*DEFAULT_SECRET_PATTERNS, "deploy.cfg"]
    # a negated pattern would un-mark a file: the file is refused, naming the setting
    (tmp_path / "repotune.toml").write_text('[index]\nsecret_patterns = ["*.cfg", "!.env"]\n')
    with pytest.raises(SettingsError, match=r"'index\.secret_patterns'.*'!\.env'"):
        load_settings(tmp_path)
    # the user decides the whole list (editor settings, command line)
    editor = {"index": {"secret_patterns": ["only-this.txt"]}}
    assert load_settings(None, editor).index.secret_patterns == ["only-this.txt"]
    (tmp_path / "repotune.toml").write_text('[index]\nsecret_patterns = ["deploy.cfg"]\n')
    assert load_settings(tmp_path, editor).index.secret_patterns == ["only-this.txt"]


def test_model_files_of_an_untrusted_repository_are_not_used(tmp_path: Path) -> None:
    """In an untrusted workspace the editor says model.repository_models = false: the model
    files the repository's own file names are left out (a crafted GGUF never reaches llama.cpp);
    its other settings still apply, and the repository cannot say it is trusted."""
    (tmp_path / "repotune.toml").write_text(
        '[model]\nadapter = ".repotune/evil.gguf"\ngenerator = "m.gguf"\nthreads = 3\n'
    )
    trusted = load_settings(tmp_path)
    assert trusted.model.adapter == str(tmp_path / ".repotune" / "evil.gguf")
    untrusted = load_settings(tmp_path, {"model": {"repository_models": False}})
    assert untrusted.model.adapter == "default" and untrusted.model.generator == "default"
    assert untrusted.model.threads == 3
    editor = {"model": {"repository_models": False, "adapter": "/mine/a.gguf"}}
    assert load_settings(tmp_path, editor).model.adapter == "/mine/a.gguf"
    (tmp_path / "repotune.toml").write_text("[model]\nrepository_models = true\n")
    with pytest.raises(SettingsError, match=r"'model\.repository_models' may not come"):
        load_settings(tmp_path, {"model": {"repository_models": False}})
