"""Repositories to evaluate on: a pinned PyPI or npm package (downloaded once, cached) or a folder.

Pinned packages go through the server's corpus fetcher (`repotune.server.corpora.ensure_corpus`:
pip download of the wheel, or `npm pack` of an npm:NAME@VERSION tarball whose TypeScript sources
are kept; unpacked under `cache_dir()/corpora/`), so the benchmarks and the evaluation read the
same bytes. Errors come back as one line (pip's own last ERROR line).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repotune.training.base import TrainError

_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")


class EvalError(TrainError):
    """The evaluation cannot go on; the message (one line) is meant for the user."""


@dataclass(frozen=True)
class Repo:
    label: str  # short name used in tables and `--adapter LABEL=PATH`
    spec: str  # NAME==VERSION, npm:NAME@VERSION, or the folder as given
    root: Path
    pinned: bool

    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]", "_", self.spec if self.pinned else self.label)

    def to_json(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "label": self.label,
            "spec": self.spec,
            "root": str(self.root),
            "pinned": self.pinned,
        }
        if self.pinned:
            wheels = sorted(self.root.glob("*.dist-info"))
            info["dist_info"] = wheels[0].name if wheels else None
        return info


def parse_pin(spec: str) -> tuple[str, str]:
    """NAME==VERSION, both non-empty; a clear error otherwise."""
    name, sep, version = spec.partition("==")
    name, version = name.strip(), version.strip()
    if not sep or not name or not version or not _NAME.match(name) or " " in version:
        raise EvalError(f"--repo wants a folder or a pinned package NAME==VERSION, got '{spec}'")
    return name, version


def _pip_error(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    if errors:
        return errors[-1].removeprefix("ERROR:").strip()
    return lines[-1] if lines else "unknown error"


def resolve_repo(spec: str) -> Repo:
    """A folder as it is, or a pinned package fetched (once) into the cache."""
    folder = Path(spec).expanduser()
    if spec.startswith("npm:"):
        return _npm_repo(spec)
    if "==" not in spec:
        if folder.is_dir():
            root = folder.resolve()
            return Repo(root.name, spec, root, pinned=False)
        raise EvalError(f"--repo '{spec}' is neither a folder nor a pinned package NAME==VERSION")
    name, version = parse_pin(spec)
    from repotune.server.corpora import ensure_corpus

    try:
        root = ensure_corpus(f"{name}=={version}")
    except SystemExit as exc:
        raise EvalError(
            f"package {name}=={version} is not available: {_pip_error(str(exc.code))}"
        ) from None
    except (OSError, ValueError) as exc:
        raise EvalError(f"package {name}=={version} could not be unpacked: {exc}") from None
    return Repo(name, f"{name}=={version}", Path(root), pinned=True)


def _npm_repo(spec: str) -> Repo:
    from repotune.server.corpora import ensure_corpus, npm_name_version

    try:
        name, _version = npm_name_version(spec[len("npm:") :])
        root = ensure_corpus(spec)
    except SystemExit as exc:
        raise EvalError(f"package {spec} is not available: {_pip_error(str(exc.code))}") from None
    except (OSError, ValueError) as exc:
        raise EvalError(f"package {spec} could not be unpacked: {exc}") from None
    return Repo(name.rsplit("/", 1)[-1], spec, Path(root), pinned=True)


def files_digest(texts: dict[str, str]) -> str:
    """A digest of a repository's files (path and content), for cache keys of local folders."""
    digest = hashlib.sha256()
    for path in sorted(texts):
        digest.update(path.encode() + b"\0" + texts[path].encode("utf-8", "replace") + b"\0")
    return digest.hexdigest()
