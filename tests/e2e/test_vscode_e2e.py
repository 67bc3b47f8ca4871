"""RepoTune in a real VS Code: code-server (VS Code in the browser) in headless Chromium.

As a user would: the .vsix from `make vsix` is installed into a fresh extensions folder,
`repotune.pythonPath` is set in the User settings, a workspace folder of a few files is opened.
Then, driven by Playwright through the page: the status bar names the model; typing in a file
shows grey ghost text (read from the editor's DOM) and Tab puts it in the buffer (saved to disk);
"RepoTune: Ask about this codebase" renders an answer whose file:line link opens the file; killing
the server process makes the extension start a new one. Each step saves a screenshot under
test-output/vscode/. The server, models and index are the real ones.

code-server, Node 24 and Chromium come from `make vscode-e2e-deps` (tests/vscode/install.sh),
cached outside the repository. Without them the test is skipped, unless REPOTUNE_E2E_REQUIRED=1
(set by `make test`), where it fails. The tests run in order on one editor session.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = ROOT / "tests" / "vscode" / "install.sh"
SERVE_SCRIPT = ROOT / "tests" / "vscode" / "serve.cjs"
VSIX = ROOT / "extension" / "repotune.vsix"
OUTPUT = ROOT / "test-output" / "vscode"
CHROMIUM = Path("/usr/bin/chromium")
# No background connections: on a closed network Chromium's attempts are refused, many at a time.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Generous: the model loads beside a training job on two cores.
WORKBENCH_TIMEOUT_S = 300
SERVER_READY_TIMEOUT_S = 600  # the extension host alone took 4+ min at load 9
GHOST_TIMEOUT_S = 240
ANSWER_TIMEOUT_S = 300

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    # `make test` and `make test-vscode-e2e` set it after installing the browser and code-server;
    # a bare pytest run has neither.
    pytest.mark.skipif(
        os.environ.get("REPOTUNE_E2E") != "1",
        reason="the real-editor test runs under `make test` (REPOTUNE_E2E=1)",
    ),
]

GEOMETRY = '''"""Shapes and their areas."""
import math


def area_of_circle(radius: float) -> float:
    """Area of a circle with the given radius."""
    return math.pi * radius * radius


def area_of_square(side: float) -> float:
    """Area of a square with the given side."""
    return side * side
'''

# The cursor goes at the end of the `for` line; the test types the loop body's first words.
TOTALS = '''"""Totals over many shapes."""
from geometry import area_of_circle, area_of_square


def total_area(radii: list[float]) -> float:
    """Sum of the areas of circles with these radii."""
    total = 0.0
    for radius in radii:
'''
TOTALS_TAIL = """    return total
"""
TYPED = "total += area_"

README = "# Shapes\n\nArea helpers (geometry.py) and totals over many shapes (totals.py).\n"

SETTINGS = {
    "workbench.startupEditor": "none",
    "workbench.secondarySideBar.defaultVisibility": "hidden",
    "workbench.tips.enabled": False,
    "workbench.enableExperiments": False,
    "security.workspace.trust.enabled": False,
    "extensions.ignoreRecommendations": True,
    "extensions.autoCheckUpdates": False,
    "update.mode": "none",
    "telemetry.telemetryLevel": "off",
    "chat.disableAIFeatures": True,
    "git.enabled": False,
    "files.autoSave": "off",
    # Only RepoTune's ghost text: no suggest widget that Tab would accept instead.
    "editor.quickSuggestions": {"other": "off", "comments": "off", "strings": "off"},
    "editor.suggestOnTriggerCharacters": False,
    "editor.wordBasedSuggestions": "off",
    "editor.inlineSuggest.enabled": True,
    "editor.autoClosingBrackets": "never",
}

T = TypeVar("T")


def _required() -> bool:
    return os.environ.get("REPOTUNE_E2E_REQUIRED") == "1"


def _missing(reason: str) -> None:
    if _required():
        pytest.fail(f"{reason} (REPOTUNE_E2E_REQUIRED=1)")
    pytest.skip(reason)


def _wait_for(what: str, timeout_s: float, probe: Callable[[], T | None], every_s: float = 1) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve_pids(workspace: Path) -> list[int]:
    """The RepoTune servers running for this workspace (`python -m repotune serve` in it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if b"repotune" in argv and b"serve" in argv and Path(cwd) == workspace:
            pids.append(int(entry.name))
    return sorted(pids)


@dataclass
class Editor:
    page: Any
    workspace: Path
    log: Path
    user_data: Path

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(OUTPUT / f"{name}.png"))

    def wait_for(
        self, what: str, timeout_s: float, probe: Callable[[], T | None], every_s: float = 1
    ) -> T:
        """`_wait_for`, with a screenshot of the page when it times out."""
        try:
            return _wait_for(what, timeout_s, probe, every_s)
        except AssertionError as timed_out:
            name = "failed-" + re.sub(r"\W+", "-", what).strip("-")
            self.shot(name)
            frames = []
            for frame in self.page.frames:
                with contextlib.suppress(Exception):
                    frames.append(f"--- {frame.url}\n{frame.locator('body').inner_text()[:3000]}")
            (OUTPUT / f"{name}.txt").write_text("\n".join(frames))
            # CI shows only the test's output: what the editor and the server said goes with it.
            raise AssertionError(f"{timed_out}\n{self.diagnosis()}") from None

    def diagnosis(self) -> str:
        lines = []
        with contextlib.suppress(Exception):  # a closed page must not hide the timeout
            lines.append(f"status bar items naming RepoTune: {self.status_texts()}")
        logs = [
            *sorted(self.user_data.glob("logs/*/exthost*/*repotune*/*.log")),
            *sorted(self.user_data.glob("logs/*/exthost*/remoteexthost.log")),
            self.log,
        ]
        for path in logs:
            with contextlib.suppress(OSError):
                tail = path.read_text(errors="replace").splitlines()[-40:]
                lines += [f"--- last lines of {path.name}", *tail]
        return "\n".join(lines)

    def status_texts(self) -> list[str]:
        return [
            str(t)
            for t in self.page.locator(".statusbar-item", has_text="RepoTune").all_inner_texts()
        ]

    def model_in_status(self) -> str | None:
        """RepoTune's own status item once it names the model. Indexing progress, a second item
        with "RepoTune" in it, may stand before it."""
        for text in self.status_texts():
            if "·" in text and "gemma" in text.lower():
                return text
        return None

    def run_command(self, title: str) -> None:
        self.page.keyboard.press("F1")
        box = self.page.locator(".quick-input-widget input")
        box.wait_for(state="visible")
        box.fill(f">{title}")
        self.page.locator(".quick-input-list .monaco-list-row", has_text=title).first.wait_for()
        self.page.keyboard.press("Enter")

    def open_file(self, name: str, showing: str) -> None:
        """Quick Open `name`, then wait until the editor shows the text `showing`."""
        page = self.page
        page.keyboard.press("Control+P")
        page.locator(".quick-input-widget input").fill(name)
        page.locator(".quick-input-list .monaco-list-row", has_text=name).first.wait_for()
        page.keyboard.press("Enter")
        page.locator(".monaco-editor .view-lines", has_text=showing).wait_for()

    def go_to_line(self, line: int) -> None:
        page = self.page
        page.keyboard.press("Control+G")
        page.locator(".quick-input-widget input").fill(f":{line}")
        page.keyboard.press("Enter")
        page.locator(".quick-input-widget").wait_for(state="hidden")

    def ask(self, question: str) -> None:
        """RepoTune's ask command, as a user types it."""
        self.run_command("RepoTune: Ask about this codebase")
        box = self.page.locator(".quick-input-widget input")
        box.wait_for(state="visible")
        box.fill(question)
        self.page.keyboard.press("Enter")

    def answer_link(self, what: str, text: re.Pattern[str]) -> Any:
        """The first link whose text matches `text` in a rendered answer, once one shows."""

        def link() -> Any:
            for frame in self.page.frames:
                with contextlib.suppress(Exception):
                    anchor = frame.locator("a", has_text=text).first
                    if anchor.count():
                        return anchor
            return None

        return self.wait_for(what, ANSWER_TIMEOUT_S, link)


def _code_server_dir() -> Path:
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is missing: run `make vscode-e2e-deps`")
    result = subprocess.run(
        [str(INSTALL_SCRIPT), "--check"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        _missing(f"code-server is not installed: run `make vscode-e2e-deps` ({result.stderr})")
    return Path(result.stdout.strip().splitlines()[-1])


def _build_vsix() -> None:
    result = subprocess.run(
        ["make", "-C", str(ROOT / "extension"), "vsix"], capture_output=True, text=True
    )
    assert result.returncode == 0, f"make vsix failed:\n{result.stdout}\n{result.stderr}"
    assert VSIX.exists()


def _workspace(base: Path) -> Path:
    workspace = base / "shapes"
    workspace.mkdir()
    (workspace / "geometry.py").write_text(GEOMETRY)
    (workspace / "totals.py").write_text(TOTALS + TOTALS_TAIL)
    (workspace / "README.md").write_text(README)
    # The workspace's own config keeps this test's index out of the user's cache (a repository
    # may only choose a folder inside its own .repotune/).
    (workspace / "repotune.toml").write_text('[index]\nindex_dir = ".repotune/index"\n')
    return workspace


@pytest.fixture(scope="module")
def editor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Editor]:
    install = _code_server_dir()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    _build_vsix()
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for old in [*OUTPUT.glob("*.png"), *OUTPUT.glob("*.txt")]:
        old.unlink()

    base = tmp_path_factory.mktemp("vscode")
    workspace = _workspace(base)
    user_data, extensions = base / "user-data", base / "extensions"
    (user_data / "User").mkdir(parents=True)
    # What a user does: set the interpreter in the User settings.
    settings = {**SETTINGS, "repotune.pythonPath": sys.executable}
    (user_data / "User" / "settings.json").write_text(json.dumps(settings, indent=2))
    port = _free_port()
    config = base / "config.yaml"
    config.write_text(f"bind-addr: 127.0.0.1:{port}\nauth: none\ncert: false\n")
    env = {
        **os.environ,
        "PATH": f"{install / 'node' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "XDG_CONFIG_HOME": str(base / "xdg-config"),
        "XDG_DATA_HOME": str(base / "xdg-data"),
    }
    code_server = install / "code-server" / "node_modules" / ".bin" / "code-server"
    common = [f"--user-data-dir={user_data}", f"--extensions-dir={extensions}"]
    subprocess.run(
        [str(code_server), *common, "--install-extension", str(VSIX)],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    log = OUTPUT / "code-server.log"
    with log.open("w") as log_file:
        server = subprocess.Popen(
            [
                str(install / "node" / "bin" / "node"),
                str(SERVE_SCRIPT),
                str(install / "code-server" / "node_modules" / "code-server"),
                *common,
                "--auth=none",
                f"--bind-addr=127.0.0.1:{port}",
                "--disable-telemetry",
                "--disable-update-check",
                "--disable-workspace-trust",
                f"--config={config}",
                str(workspace),
            ],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{url}/healthz", timeout=5) as reply,
        ):
            return bool(reply.status == 200)
        return False

    try:
        _wait_for("code-server to answer", WORKBENCH_TIMEOUT_S, healthy)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            page = browser.new_page(viewport={"width": 1400, "height": 860})
            page.set_default_timeout(120_000)
            page.goto(f"{url}/?folder={workspace}", timeout=WORKBENCH_TIMEOUT_S * 1000)
            page.locator(".monaco-workbench").wait_for(timeout=WORKBENCH_TIMEOUT_S * 1000)
            yield Editor(page=page, workspace=workspace, log=log, user_data=user_data)
            browser.close()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=30)
        for pid in _serve_pids(workspace):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_status_bar_names_the_model(editor: Editor) -> None:
    editor.shot("01-workbench")
    text = editor.wait_for(
        "the status bar to name the model",
        SERVER_READY_TIMEOUT_S,
        editor.model_in_status,
    )
    editor.shot("02-status-bar")
    assert re.search(r"RepoTune · \S+", text), text
    assert _serve_pids(editor.workspace), "no server process for the workspace"


def test_ghost_text_appears_and_tab_accepts_it(editor: Editor) -> None:
    page = editor.page
    editor.open_file("totals.py", "for radius in radii")
    # End of the `for` line, a new line (auto-indented), then type like a user.
    for_line = TOTALS.count("\n")
    editor.go_to_line(for_line)
    page.keyboard.press("End")
    page.keyboard.press("Enter")
    # The status bar shows the cursor: on the new line, after the indentation.
    page.locator(".statusbar-item", has_text=f"Ln {for_line + 1}, Col 9").wait_for()
    page.keyboard.type(TYPED, delay=60)

    def ghost() -> str:
        texts = page.locator(".monaco-editor [class*='ghost-text']").all_inner_texts()
        return "".join(texts).strip()

    shown = editor.wait_for("grey ghost text in the editor", GHOST_TIMEOUT_S, ghost, every_s=0.5)
    editor.shot("03-ghost-text")
    page.keyboard.press("Tab")
    editor.wait_for("the ghost text to be accepted", 30, lambda: not ghost())
    page.keyboard.press("Control+S")
    first_line = shown.splitlines()[0].strip()
    saved = editor.wait_for(
        "the accepted text on disk",
        30,
        lambda: first_line in (t := (editor.workspace / "totals.py").read_text()) and t,
    )
    editor.shot("04-accepted")
    assert f"\n        {TYPED}{first_line}" in saved.replace("\u00a0", " "), (shown, saved)


def test_ask_renders_an_answer_with_a_file_link(editor: Editor) -> None:
    page = editor.page
    editor.ask("Which function computes the area of a circle?")
    what = "the rendered answer with a file:line link"
    anchor = editor.answer_link(what, re.compile(r"\w+\.py:\d+"))
    editor.shot("05-answer")
    body = str(anchor.locator("xpath=/ancestor::body").inner_text())
    assert body.count("Sources") == 1, body  # listed once, not by both the server and the extension
    target = str(anchor.inner_text())
    anchor.click()
    name, _, lines = target.partition(":")
    page.locator(".tab.active", has_text=Path(name).name).wait_for(timeout=30_000)
    # the editor's cursor is on the cited line
    first_line = int(lines.split("-")[0])
    page.get_by_text(re.compile(rf"Ln {first_line}, Col 1\b")).first.wait_for(timeout=30_000)
    editor.shot("06-link-opened")


def test_asked_from_a_function_the_answer_is_about_it(editor: Editor) -> None:
    """With the cursor in area_of_square, "What does this function do?" is answered about it."""
    editor.open_file("geometry.py", "return side * side")
    editor.go_to_line(12)
    editor.page.locator(".statusbar-item", has_text="Ln 12,").wait_for()
    editor.ask("What does this function do?")
    what = "the answer citing area_of_square"
    anchor = editor.answer_link(what, re.compile(r"^geometry\.py:10$"))
    editor.shot("06b-answer-in-view")
    body = str(anchor.locator("xpath=/ancestor::body").inner_text())
    assert "What does this function do?" in body and "area_of_square" in body, body


def test_the_extension_restarts_a_killed_server(editor: Editor) -> None:
    before = _serve_pids(editor.workspace)
    assert before, "no server process to kill"
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    restarted = editor.wait_for(
        "a new server process",
        SERVER_READY_TIMEOUT_S,
        lambda: [p for p in _serve_pids(editor.workspace) if p not in before],
    )
    editor.wait_for(
        "the status bar to name the model again",
        SERVER_READY_TIMEOUT_S,
        editor.model_in_status,
    )
    editor.shot("07-restarted")
    assert restarted
