"""A CLI error line survives llama.cpp's silencing of stderr (fd 2 pointed at /dev/null while a
model loads, for the whole process), in a real process as a user runs it."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import os, sys
from repotune.server.cli.console import print_error
# what llama-cpp-python's suppress_stdout_stderr does around a model load (verbose=False)
null = open(os.devnull, "w")
saved_fd, saved_stream = os.dup(2), sys.stderr
os.dup2(null.fileno(), 2)
sys.stderr = null
try:
    print_error("repotune: the model could not be loaded")
finally:
    os.dup2(saved_fd, 2)
    sys.stderr = saved_stream
"""


def test_error_line_survives_a_silenced_stderr() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "repotune: the model could not be loaded"
