"""Real codebases for benchmarks, evaluation and training: pinned releases, fetched once.

A pinned release's source is code nobody here wrote, identical on every machine, so figures
measured on it can be reproduced. `NAME==VERSION` is a PyPI wheel (fetched with pip),
`npm:NAME@VERSION` an npm package tarball (fetched with `npm pack`; TypeScript packages that ship
their sources). Unpacked under ``cache_dir()/corpora/``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from repotune.server.config import cache_dir

NPM_PREFIX = "npm:"
# An npm tarball also holds its compiled output and type declarations; a corpus is the TypeScript
# its authors wrote. Written as the unpacked package's .repotuneignore, so the index, training and
# evaluation all skip them.
NPM_IGNORE = ("dist/", "build/", "*.d.ts", "*.js", "*.mjs", "*.cjs", "*.map")


def ensure_corpus(spec: str) -> Path:
    """Download (once) and unpack a pinned package; return the folder holding its files.

    Uses the ordinary clients (pip, npm); the result lives in ``cache_dir()/corpora/``.
    """
    if spec.startswith(NPM_PREFIX):
        return _ensure_npm(spec[len(NPM_PREFIX) :])
    if "==" not in spec:
        raise SystemExit(f"repotune: pin the corpus version, e.g. requests==2.32.3 (got {spec!r})")
    name, version = spec.split("==", 1)
    target = cache_dir() / "corpora" / f"{name}-{version}"
    marker = target / ".complete"
    if marker.exists():
        return target
    download = cache_dir() / "corpora" / "downloads"
    download.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-P", "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
    command += ["-d", str(download), spec]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise SystemExit(f"repotune: pip download {spec} failed:\n{result.stderr[-2000:]}")
    normalized = name.replace("-", "_").lower()
    wheels = [
        p for p in download.glob("*.whl") if p.name.lower().startswith(f"{normalized}-{version}-")
    ]
    if not wheels:
        raise SystemExit(f"repotune: no wheel for {spec} in {download}")
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels[0]) as archive:
        archive.extractall(target)
    marker.write_text(spec)
    return target


def npm_name_version(spec: str) -> tuple[str, str]:
    """("@scope/name", "1.2.3") from "@scope/name@1.2.3"; SystemExit when not pinned."""
    name, _, version = spec.rpartition("@")
    if not name or name == "@" or not version or not version[0].isdigit():
        raise SystemExit(f"repotune: pin the npm version, e.g. npm:rxjs@7.8.1 (got {spec!r})")
    return name, version


def _ensure_npm(spec: str) -> Path:
    name, version = npm_name_version(spec)
    target = cache_dir() / "corpora" / f"npm-{name.replace('/', '+')}-{version}"
    marker = target / ".complete"
    if marker.exists():
        return target / "package"
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit(f"repotune: npm:{spec} needs npm (Node.js) on PATH")
    download = cache_dir() / "corpora" / "downloads"
    download.mkdir(parents=True, exist_ok=True)
    command = [npm, "pack", f"{name}@{version}", "--silent", "--pack-destination", str(download)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0 or not result.stdout.strip():
        raise SystemExit(f"repotune: npm pack {name}@{version} failed:\n{result.stderr[-2000:]}")
    unpack_npm(download / result.stdout.strip().splitlines()[-1], target)
    marker.write_text(f"npm:{spec}")
    return target / "package"


def unpack_npm(tarball: Path, target: Path) -> None:
    """An npm tarball (one folder, package/) into `target`, with NPM_IGNORE as its
    .repotuneignore; entries that would land outside `target`, links and device files are
    refused by tarfile's "data" filter."""
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "r:gz") as archive:
        archive.extractall(target, filter="data")
    package = target / "package"
    if not package.is_dir():
        raise SystemExit(f"repotune: {tarball.name} is not an npm package (no package/ folder)")
    (package / ".repotuneignore").write_text("\n".join(NPM_IGNORE) + "\n")
