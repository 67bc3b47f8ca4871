"""A repository's own settings file is untrusted input.

Opening a repository must not let it choose where RepoTune sends data derived from its code
(network settings), what it downloads (Hugging Face models), where it writes and deletes (the
index folder) or which files stop counting as secrets (it may only add secret patterns); model
paths it names are relative to the repository, not to wherever the editor started the server.
`repository_problem` says why a file is refused; `repository_values` is what a file sets.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from repotune.server.index.redact import DEFAULT_SECRET_PATTERNS

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
# Model references that may name a Hugging Face model ("hf:ORG/REPO[:FILE]"), which RepoTune
# would download (with the user's own hub token) into the Hugging Face cache.
MODEL_REFERENCES: tuple[str, ...] = ("generator", "embedder", "adapter")
HUB_PREFIX = "hf:"


def anchor_model_paths(values: Mapping[str, Any], workspace: Path) -> dict[str, Any]:
    """Relative model paths in a workspace's file or in the editor's settings for it are
    relative to that workspace, not to whatever directory the editor started the server in."""
    model = values.get("model")
    if not isinstance(model, Mapping):
        return dict(values)
    anchored = dict(model)
    for key in ("generator", "embedder", "adapter"):
        reference = anchored.get(key)
        if not isinstance(reference, str) or reference in ("default", "none"):
            continue
        if reference.startswith(HUB_PREFIX):
            continue
        path = Path(reference).expanduser()
        if not path.is_absolute():
            anchored[key] = str(workspace / path)
    return {**values, "model": anchored}


def repository_index_dir_problem(workspace: Path, value: str, cache_root: Path) -> str | None:
    """Why a repository's own settings may not put the index at `value`, or None.

    A repository is untrusted: a folder it names is where RepoTune writes (and, on a rebuild,
    deletes its own files), so it may only name a folder below its own `.repotune/` (never that
    folder itself, which holds training outputs) or, as an absolute path, a folder inside
    RepoTune's cache (each workspace then gets its own folder in it: a relative path into the
    cache could name another folder's index). Symlinks and `..` are resolved before the check."""
    root = workspace.resolve()
    configured = Path(value).expanduser()
    target = (configured if configured.is_absolute() else root / configured).resolve()
    own = (root / ".repotune").resolve()
    if target.is_relative_to(own) and target != own:
        return None
    if configured.is_absolute() and target.is_relative_to(cache_root.resolve()):
        return None
    return (
        f"setting 'index.index_dir' ({value!r} -> {target}) points outside the repository's "
        f"own .repotune/ folder and RepoTune's cache (an absolute path there); a repository may "
        "not choose where RepoTune writes (use a folder such as '.repotune/index', or set it in "
        "the editor settings)"
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


def repository_trust_problem(values: Mapping[str, Any]) -> str | None:
    """Why a repository's own file may not say whether its model files are trusted, or None."""
    model = values.get("model")
    if isinstance(model, Mapping) and "repository_models" in model:
        return (
            "setting 'model.repository_models' may not come from a repository's own file (it "
            "says whether that file's model files are loaded); set it in the editor settings or "
            "on the command line (--set)"
        )
    return None


def repository_hub_problem(values: Mapping[str, Any]) -> str | None:
    """Why a repository's own file may not name this model, or None: a hub reference would make
    RepoTune download what the repository chose (network access and a write outside its own
    folders); only the user (editor settings, command line) names a hub model."""
    model = values.get("model")
    if not isinstance(model, Mapping):
        return None
    for key in MODEL_REFERENCES:
        reference = model.get(key)
        if isinstance(reference, str) and reference.strip().startswith(HUB_PREFIX):
            return (
                f"setting 'model.{key}' ({reference!r}) may not name a Hugging Face model in a "
                "repository's own file (RepoTune would download what the repository chose); set "
                "it in the editor settings or on the command line (--set)"
            )
    return None


def repository_secret_problem(values: Mapping[str, Any]) -> str | None:
    """Why a repository's own secret patterns may not be used, or None: a negated pattern
    ("!.env") would let the repository un-mark a file as secret (the user's own .env, keys)."""
    index = values.get("index")
    patterns = index.get("secret_patterns") if isinstance(index, Mapping) else None
    if not isinstance(patterns, list):
        return None
    negated = [p for p in patterns if isinstance(p, str) and p.strip().startswith("!")]
    if negated:
        return (
            f"setting 'index.secret_patterns' may not un-mark files as secret ({negated[0]!r}) "
            "in a repository's own file: it may only add patterns; set the full list in the "
            "editor settings or on the command line (--set)"
        )
    return None


def with_default_secret_patterns(values: Mapping[str, Any]) -> dict[str, Any]:
    """A repository's own secret patterns are added to the defaults, never replace them: an
    empty list must not put a user's local .env or keys into the index and the prompts."""
    index = values.get("index")
    if not isinstance(index, Mapping) or not isinstance(index.get("secret_patterns"), list):
        return dict(values)
    added = [p for p in index["secret_patterns"] if p not in DEFAULT_SECRET_PATTERNS]
    widened = {**index, "secret_patterns": [*DEFAULT_SECRET_PATTERNS, *added]}
    return {**values, "index": widened}


def repository_problem(
    values: Mapping[str, Any], workspace: Path, cache_root: Path, editor_sets_index_dir: bool
) -> str | None:
    """Why a repository's own file is refused as a whole, or None (checks in the order a user
    would fix them: network, downloads, secrets, then the index folder)."""
    problem = (
        repository_network_problem(values)
        or repository_trust_problem(values)
        or repository_hub_problem(values)
        or repository_secret_problem(values)
    )
    if problem:
        return problem
    index_dir = (values.get("index") or {}).get("index_dir")
    if isinstance(index_dir, str) and not editor_sets_index_dir:
        return repository_index_dir_problem(workspace, index_dir, cache_root)
    return None


def repository_values(
    values: Mapping[str, Any], workspace: Path, use_models: bool = True
) -> dict[str, Any]:
    """What an accepted repository file sets: model paths anchored at the repository (or left
    out, where the user does not trust the workspace with model files), secret patterns on top
    of the defaults."""
    values = anchor_model_paths(values, workspace)
    model = values.get("model")
    if not use_models and isinstance(model, Mapping):
        kept = {key: value for key, value in model.items() if key not in MODEL_REFERENCES}
        values = {**values, "model": kept}
    return with_default_secret_patterns(values)
