"""Real codebases for benchmarks and evaluation: pinned PyPI releases, fetched once with pip.

A pinned wheel's source is code nobody here wrote, identical on every machine, so figures measured
on it can be reproduced. Unpacked under ``cache_dir()/corpora/NAME-VERSION``.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from repotune.server.config import cache_dir


def ensure_corpus(spec: str) -> Path:
    """Download (once) and unpack a pinned PyPI package's wheel; return the folder.

    Uses pip (the ordinary client); the result lives in ``cache_dir()/corpora/NAME-VERSION``.
    """
    if "==" not in spec:
        raise SystemExit(f"repotune: pin the corpus version, e.g. requests==2.32.3 (got {spec!r})")
    name, version = spec.split("==", 1)
    target = cache_dir() / "corpora" / f"{name}-{version}"
    marker = target / ".complete"
    if marker.exists():
        return target
    download = cache_dir() / "corpora" / "downloads"
    download.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
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
