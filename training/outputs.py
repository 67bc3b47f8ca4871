"""Where the training commands write when no --out is given: below the repository's `.repotune/`.

A repository is untrusted and can commit symlinks: `.repotune/dataset/stats.json -> ~/.bashrc`
would make `repotune train` overwrite that file, and a linked `.repotune/` would move every output
elsewhere. A default place is used only when no symlink lies on the way to it, beside it or
below it.
"""

from __future__ import annotations

import os
from pathlib import Path

from repotune.server.index.folder import first_symlink_below
from repotune.training.base import TrainError

OWN_DIR = ".repotune"  # the repository's own folder for training outputs (never indexed)


def symlink_on_the_way(root: Path, target: Path) -> Path | None:
    """The first symlink from `root` (exclusive) down to `target`, beside `target` (where
    temporary and merged files are written: `adapter.gguf.tmp<pid>`, `adapter-q8_0.gguf`), or
    anywhere below it."""
    node = root
    for part in target.relative_to(root).parts:
        node = node / part
        if node.is_symlink():
            return node
    if target.parent.is_dir():
        for sibling in sorted(target.parent.iterdir()):
            if sibling.is_symlink():
                return sibling
    return first_symlink_below(target)


def default_output(root: Path, *parts: str) -> Path:
    """`root/parts...`, or a TrainError naming the symlink that would redirect writes there."""
    target = root.joinpath(*parts)
    link = symlink_on_the_way(root, target)
    if link is not None:
        raise TrainError(
            f"{link} is a symlink (to {os.readlink(link)}): RepoTune does not write through links "
            "in an output folder, which a repository can point at any file; remove it or pass "
            "--out"
        )
    return target


def repository_output(repo: Path, name: str) -> Path:
    """`<repo>/.repotune/<name>`, checked as `default_output` does."""
    return default_output(repo, OWN_DIR, name)


def check_output(path: Path, folder: bool) -> Path:
    """`path` as an output folder (or file): a TrainError before any work when it cannot be one,
    instead of a traceback once the work is done."""
    if folder and path.exists() and not path.is_dir():
        raise TrainError(f"{path} is not a folder: choose another --out")
    if not folder and path.is_dir():
        raise TrainError(f"{path} is a folder: --out names the file to write")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise TrainError(f"{path} cannot be written: {parent} is not a folder")
            break
    return path
