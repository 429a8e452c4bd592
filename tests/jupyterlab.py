"""JupyterLab in a real browser, as a learner uses it: the browser tests' driver (not a test file itself).

:func:`start_server` starts JupyterLab from this checkout's venv on 127.0.0.1 at a free port with a token,
its root a folder of the test's (a copy of ``notebooks/`` beside ``data`` and ``build``, so the notebooks'
own ``../data`` and ``../build`` work). :class:`Browser` drives Debian's Chromium with Playwright for
Python (``executable_path=/usr/bin/chromium``, headless, no sandbox, background networking off: no browser
is ever downloaded) and runs a notebook from the UI as a learner does: opens it, *Run > Run All Cells*,
waits until the kernel is idle and no cell is queued, and reads every cell's prompt and outputs from the
page. An error shown in the page (a traceback), a cell left unrun, or a "check your work" cross is what
:class:`NotebookRun` reports, naming the notebook and the cell (``In [N]``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clicklab.live.watch import wait_for as wait_until  # poll a condition until it holds, or fail saying what

CHROMIUM = Path("/usr/bin/chromium")
#: As the machine's own probe starts it: no sandbox (root), and no background networking (the network is closed).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HOST = "127.0.0.1"
#: JupyterLab's settings for a test: start the notebook's kernel without asking, render every cell (no
#: windowing, so all outputs are in the page), and no news or update checks (the network is closed).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"autoStartDefaultKernel": True,
                                                                   "windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
}
#: A traceback as IPython prints it: a rule, then ``SomeError   Traceback (most recent call last)``; or the
#: short form of a syntax error (``Cell In[3], line 1``).
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s*Cell In\[\d+\], line \d+", re.MULTILINE)


def missing() -> str | None:
    """Why a browser test cannot run here (one line saying how to install what is missing), or ``None``."""
    if not CHROMIUM.is_file():
        return f"needs Debian's Chromium at {CHROMIUM}: `apt-get install chromium` (.ci/run installs it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "needs Playwright for Python: `make test` installs it (pyproject.toml, dev extra)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


@dataclass
class Server:
    """A running JupyterLab: its process, port, token and root folder."""

    process: subprocess.Popen[bytes]
    port: int
    token: str
    root: Path
    log: Path

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"http://{HOST}:{self.port}/{path}{sep}token={self.token}"

    def rest(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(self.url(path), method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def sessions(self) -> list[dict[str, Any]]:
        return self.rest("api/sessions")

    def shut_down_kernels(self) -> None:
        """End every notebook's session and kernel (a learner closing the notebook and its kernel)."""
        for session in self.sessions():
            self.rest(f"api/sessions/{session['id']}", method="DELETE")
        wait_until("the kernels ended", lambda: not self.rest("api/kernels"), 60)

    def stop(self) -> None:
        """Shut JupyterLab down (its kernels with it) and check that nothing of it is left: process, port."""
        if self.process.poll() is None:
            with contextlib.suppress(urllib.error.URLError, OSError):
                self.rest("api/shutdown", method="POST")
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        wait_until(f"JupyterLab's port {self.port} closed", lambda: not port_open(self.port), 30)


def start_server(root: Path, env: dict[str, str], log: Path, timeout_s: float = 120) -> Server:
    """Start JupyterLab on ``root`` (loopback, free port, token), with the kernels' environment ``env``."""
    settings_dir = root / ".lab-settings"
    for name, values in LAB_SETTINGS.items():
        path = settings_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values), encoding="utf-8")
    port, token = free_port(), secrets.token_hex(16)
    jupyter = Path(sys.executable).parent / "jupyter"
    cmd = [str(jupyter), "lab", "--no-browser", f"--ServerApp.ip={HOST}", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    full_env = {**env, "JUPYTERLAB_SETTINGS_DIR": str(settings_dir), "JUPYTER_RUNTIME_DIR": str(root / ".runtime"),
                "PATH": f"{jupyter.parent}{os.pathsep}{env.get('PATH', '')}"}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(cmd, cwd=root, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    server = Server(process, port, token, root, log)

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"JupyterLab exited with {process.returncode}: see {log}")
        try:
            return bool(server.rest("api/status"))
        except (urllib.error.URLError, OSError):
            return False

    wait_until(f"JupyterLab answering on {HOST}:{port} (log: {log})", up, timeout_s)
    return server


@dataclass
class Cell:
    """A code cell as the page shows it after the run."""

    index: int  # 1-based position among the notebook's cells
    prompt: str  # "[3]:", "[ ]:", "[*]:"
    outputs: list[str]

    @property
    def count(self) -> str:
        return self.prompt.strip("[]: ") or " "


@dataclass
class NotebookRun:
    """One notebook run from the UI: its cells as shown, how long it took, the screenshot."""

    notebook: str
    cells: list[Cell]
    seconds: float
    screenshot: Path
    notes: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """Errors shown, cells not run and crosses, each naming the notebook and the cell."""
        found = []
        for cell in self.cells:
            where = f"{self.notebook}, In [{cell.count}] (cell {cell.index})"
            for text in cell.outputs:
                if TRACEBACK.search(text):
                    lines = [line for line in text.strip().splitlines() if line.strip()]
                    found.append(f"{where}: error shown: {lines[-1][:300] if lines else text[:300]}")
                found += [f"{where}: {line.strip()}" for line in text.splitlines() if line.strip().startswith("✗")]
            if cell.count in (" ", "*"):
                found.append(f"{where}: not run (prompt {cell.prompt})")
        return found

    def text(self) -> str:
        return "\n".join(o for c in self.cells for o in c.outputs)


_READ_CELLS = """() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell')]
  .map((c, i) => ({index: i + 1, code: c.classList.contains('jp-CodeCell'),
                   prompt: c.querySelector('.jp-InputPrompt')?.innerText?.trim() ?? '',
                   outputs: [...c.querySelectorAll('.jp-OutputArea-output')].map(o => o.innerText)}))"""


class Browser:
    """Headless Chromium driven by Playwright, one page on JupyterLab."""

    def __init__(self, server: Server, screenshots: Path) -> None:
        self.server = server
        self.screenshots = screenshots

    #: One Playwright driver per process, shared by the browsers open at a time (two module-scoped labs of one
    #: pytest run overlap): a second ``sync_playwright().start()`` while one runs fails ("Sync API inside the
    #: asyncio loop").
    _driver: Any = None
    _open = 0

    def __enter__(self) -> Browser:
        from playwright.sync_api import sync_playwright

        if Browser._driver is None:
            Browser._driver = sync_playwright().start()
        Browser._open += 1
        try:
            self._browser = Browser._driver.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                                             args=CHROMIUM_ARGS)
            self.page = self._browser.new_page(viewport={"width": 1400, "height": 1000})
        except BaseException:
            self._release_driver()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._browser.close()
        finally:
            self._release_driver()

    @staticmethod
    def _release_driver() -> None:
        Browser._open -= 1
        if Browser._open == 0:
            Browser._driver.stop()
            Browser._driver = None

    def cells(self) -> list[Cell]:
        return [Cell(c["index"], c["prompt"], c["outputs"]) for c in self.page.evaluate(_READ_CELLS) if c["code"]]

    def kernel_idle(self) -> bool:
        sessions = self.server.sessions()
        return bool(sessions) and all(s["kernel"]["execution_state"] == "idle" for s in sessions)

    def open(self, notebook: str, timeout_s: float = 120) -> None:
        """Open ``notebooks/<notebook>.ipynb`` in a fresh workspace and wait for its kernel."""
        self.page.goto(self.server.url(f"lab/tree/notebooks/{notebook}.ipynb") + "&reset")
        self.page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=timeout_s * 1000)
        # ready when the server's kernel is idle and the page knows it (the status bar reads "| Idle")
        wait_until(f"{notebook}: its kernel started and idle", lambda: self.kernel_idle() and re.search(
            r"\|\s*Idle", self.page.inner_text("#jp-main-statusbar")), timeout_s)

    def run_all(self, notebook: str, timeout_s: float = 900, reopen: bool = True,
                on_poll: Callable[[Browser], None] | None = None) -> NotebookRun:
        """Open ``notebook``, *Run > Run All Cells*, wait until it is done; the cells as shown, and a screenshot.

        ``reopen=False``: run all cells again in the notebook already open, in the same kernel (a learner
        running everything twice). ``on_poll`` is called about every second while cells run (to watch a
        live table refresh)."""
        started = time.monotonic()
        before = {c.index: c.count for c in self.cells()} if not reopen else {}
        if reopen:
            self.open(notebook)
        self.page.click(".lm-MenuBar-itemLabel:text-is('Run')")
        self.page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
        wait_until(f"{notebook}: cells start running",
                   lambda: any(c.count not in (" ", before.get(c.index)) for c in self.cells()), 60, poll_s=0.2)

        def done() -> bool:
            if on_poll is not None:
                on_poll(self)
            return not any(c.count == "*" for c in self.cells()) and self.kernel_idle()

        wait_until(f"{notebook}: all cells run (Run All Cells)", done, timeout_s, poll_s=1.0)
        cells = self.cells()
        shot = self.screenshot(notebook)
        return NotebookRun(notebook, cells, time.monotonic() - started, shot)

    def screenshot(self, name: str, scroll_to: str | None = None) -> Path:
        """A screenshot of what the learner sees, scrolled to the last output (or to ``scroll_to``'s last match)."""
        self.screenshots.mkdir(parents=True, exist_ok=True)
        target = self.page.locator(scroll_to or ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output")
        if target.count():
            target.last.scroll_into_view_if_needed()
        path = self.screenshots / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path
