"""Fixtures for the end-to-end browser test: a throw-away JupyterLab server and headless Debian Chromium.

Nothing here touches the checkout or the user's Jupyter settings: the notebooks are served from a
temporary copy (outputs stripped), and Jupyter's config, data, runtime and IPython directories are
temporary too. Whatever happens, the server, its kernels and the browser are shut down.
"""

import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
CHROMIUM = os.environ.get("PRUNING_E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SERVER_START_TIMEOUT = 120  # seconds until /api/status answers


def _required() -> bool:
    return os.environ.get("PRUNING_E2E_REQUIRED", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(autouse=True)
def _isolated_cache():
    """Override tests/conftest.py's per-test cache: the server's kernel gets the caller's profile and cache.

    `make e2e` exports PRUNING_PROFILE (quick) and PRUNING_CACHE_DIR (the checkout's .cache), so the
    browser runs the notebook exactly as a learner's `make lab` would.
    """
    yield


@pytest.fixture(scope="session")
def chromium_executable():
    """Debian's Chromium and the playwright package, or a skip (a failure when PRUNING_E2E_REQUIRED=1)."""
    missing = []
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} not found (apt-get install chromium, or `make e2e` installs it)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the Python package playwright is not installed (pip install -e '.[dev]')")
    if missing:
        reason = "end-to-end browser test needs " + "; ".join(missing)
        if _required():
            pytest.fail(reason + " [PRUNING_E2E_REQUIRED is set]", pytrace=False)
        pytest.skip(reason)
    return CHROMIUM


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _copy_notebooks(dest: Path) -> Path:
    """Copy notebooks/ with every output and execution count stripped, so what the test sees is new."""
    dest.mkdir(parents=True)
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                cell["outputs"] = []
                cell["execution_count"] = None
        (dest / path.name).write_text(json.dumps(nb, indent=1) + "\n")
    return dest


def _kernel_pids(runtime_dir: Path) -> list[int]:
    """Processes whose command line names this server's private runtime dir (its kernels), Linux only."""
    pids = []
    marker = str(runtime_dir).encode()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (proc / "cmdline").read_bytes() and int(proc.name) != os.getpid():
                pids.append(int(proc.name))
        except (OSError, ValueError):
            continue
    return pids


@dataclass
class LabServer:
    base_url: str
    token: str
    root_dir: Path
    runtime_dir: Path
    log_path: Path
    process: subprocess.Popen

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}{path}{sep}token={self.token}"

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no server log)"


def _wait_until_up(server: LabServer) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    last = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url("/api/status"), timeout=5) as response:
                if response.status == 200:
                    json.load(response)
                    return
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = exc
        time.sleep(0.5)
    raise RuntimeError(f"jupyter lab did not answer /api/status in {SERVER_START_TIMEOUT} s ({last}):\n"
                       f"{server.log_tail()}")


def _stop(server: LabServer) -> None:
    """Ask the server to shut down (it stops its kernels), then SIGTERM, then SIGKILL its process group."""
    proc = server.process
    if proc.poll() is None:
        try:
            request = urllib.request.Request(server.url("/api/shutdown"), method="POST", data=b"")
            urllib.request.urlopen(request, timeout=5).close()
        except (urllib.error.URLError, OSError):
            pass
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)  # the server runs in a session of its own (start_new_session)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass
    # Kernels run in sessions of their own; they exit when the server does, but make sure.
    deadline = time.monotonic() + 10
    while _kernel_pids(server.runtime_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in _kernel_pids(server.runtime_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _sigterm_to_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture
def lab_server(tmp_path, chromium_executable):
    """JupyterLab from this venv on a free localhost port, serving a temporary copy of notebooks/."""
    root_dir = _copy_notebooks(tmp_path / "notebooks")
    jupyter = {name: tmp_path / name for name in ("config", "data", "runtime", "ipython")}
    for path in jupyter.values():
        path.mkdir()
    # A fresh lab would ask about Jupyter news in a toast over the screenshot: answer "never" up front.
    settings = jupyter["config"] / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    token = secrets.token_hex(24)
    port = _free_port()

    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(jupyter["config"]),
        JUPYTER_DATA_DIR=str(jupyter["data"]),
        JUPYTER_RUNTIME_DIR=str(jupyter["runtime"]),
        JUPYTERLAB_SETTINGS_DIR=str(jupyter["config"] / "lab" / "user-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(jupyter["data"] / "lab" / "workspaces"),
        IPYTHONDIR=str(jupyter["ipython"]),
        PRUNING_PROFILE=os.environ.get("PRUNING_PROFILE") or "quick",
        PRUNING_CACHE_DIR=os.environ.get("PRUNING_CACHE_DIR") or str(tmp_path / "cache"),
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    env.pop("MPLBACKEND", None)  # the kernel must use the inline backend so plots reach the page
    env.pop("JUPYTER_TOKEN", None)

    command = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")

    log_path = tmp_path / "jupyterlab.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=root_dir, env=env, stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = LabServer(f"http://127.0.0.1:{port}", token, root_dir, jupyter["runtime"], log_path, process)
    # A CI timeout sends SIGTERM, which would end pytest without any teardown and leave the server (in a
    # session of its own) running: turn it into KeyboardInterrupt so the `finally` below still runs.
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    try:
        _wait_until_up(server)
        yield server
    finally:
        _stop(server)
        if previous == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, previous)
        print(f"\nJupyterLab log: {log_path}")


@pytest.fixture
def page(chromium_executable, lab_server, tmp_path):
    """A page in headless Debian Chromium (playwright with executable_path; no browser download)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_executable, headless=True, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.console_errors = []
            page.on("console", lambda msg: msg.type == "error" and page.console_errors.append(msg.text))
            yield page
        finally:
            browser.close()  # the playwright context manager then stops its driver
