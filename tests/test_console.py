"""A CLI error line survives llama.cpp's silencing of stderr (fd 2 pointed at /dev/null while a
model loads, for the whole process), in a real process as a user runs it."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import os
from repotune.server.console import print_error
devnull = os.open(os.devnull, os.O_WRONLY)
saved = os.dup(2)
os.dup2(devnull, 2)  # what llama-cpp-python does around a model load (verbose=False)
try:
    print_error("repotune: the model could not be loaded")
finally:
    os.dup2(saved, 2)
"""


def test_error_line_survives_a_silenced_stderr() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "repotune: the model could not be loaded"
