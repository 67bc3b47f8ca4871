"""A repository's own settings file is untrusted input.

Opening a repository must not let it choose where RepoTune sends data derived from its code
(network settings) or where RepoTune writes and deletes (the index folder); model paths it names
are relative to the repository, not to wherever the editor started the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Settings that send data (chunk vectors, code) to a network address: a repository is untrusted,
# so its own file may not set them (only the editor, the command line or the user may).
NETWORK_SETTINGS: tuple[tuple[str, str], ...] = (
    ("index", "chroma_url"),
    ("index", "chroma_tenant"),
    ("index", "chroma_database"),
    ("index", "chroma_token_env"),
    ("train", "teacher_endpoint"),  # receives snippets of the repository's code
    ("train", "teacher_api_key_env"),  # names which environment variable is sent as a key
    ("model", "endpoint"),  # receives prompts (the code around the cursor, retrieved snippets)
    ("model", "endpoint_model"),
    ("model", "endpoint_key_env"),  # names which environment variable is sent as a key
    ("model", "endpoint_timeout_ms"),
    ("model", "endpoint_fallback"),
)


def anchor_model_paths(values: Mapping[str, Any], workspace: Path) -> dict[str, Any]:
    """Model paths written in a workspace's file are relative to that workspace, not to
    whatever directory the editor started the server in."""
    model = values.get("model")
    if not isinstance(model, Mapping):
        return dict(values)
    anchored = dict(model)
    for key in ("generator", "embedder", "adapter"):
        reference = anchored.get(key)
        if not isinstance(reference, str) or reference in ("default", "none"):
            continue
        if reference.startswith("hf:"):
            continue
        path = Path(reference).expanduser()
        if not path.is_absolute():
            anchored[key] = str(workspace / path)
    return {**values, "model": anchored}


def repository_index_dir_problem(workspace: Path, value: str, cache_root: Path) -> str | None:
    """Why a repository's own settings may not put the index at `value`, or None.

    A repository is untrusted: a folder it names is where RepoTune writes (and, on a rebuild,
    deletes its own files), so it may only name a folder below its own `.repotune/` (never that
    folder itself, which holds training outputs) or inside RepoTune's cache. Symlinks and `..`
    are resolved before the check."""
    root = workspace.resolve()
    configured = Path(value).expanduser()
    target = (configured if configured.is_absolute() else root / configured).resolve()
    own = (root / ".repotune").resolve()
    if target.is_relative_to(own) and target != own:
        return None
    if target.is_relative_to(cache_root.resolve()):
        return None
    return (
        f"setting 'index.index_dir' ({value!r} -> {target}) points outside the repository's "
        f"own .repotune/ folder and RepoTune's cache; a repository may not choose where RepoTune "
        "writes (use a folder such as '.repotune/index', or set it in the editor settings)"
    )


def repository_network_problem(values: Mapping[str, Any]) -> str | None:
    """Why a repository's own settings may not be used as they are (a network setting), or None."""
    for section, key in NETWORK_SETTINGS:
        table = values.get(section)
        if isinstance(table, Mapping) and key in table:
            return (
                f"setting '{section}.{key}' may not come from a repository's own file (it would "
                "let the repository choose where RepoTune sends data derived from its code); set "
                "it in the editor settings or on the command line (--set)"
            )
    return None
