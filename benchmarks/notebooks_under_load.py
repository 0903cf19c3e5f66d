"""The notebooks under nbval while other processes keep the CPU cores busy (issue 14).

Run from the repository root::

    .venv/bin/python benchmarks/notebooks_under_load.py                     # every notebook, 2 hogs
    .venv/bin/python benchmarks/notebooks_under_load.py notebooks/03_structured_pruning.ipynb notebooks/08_analysis.ipynb
    .venv/bin/python benchmarks/notebooks_under_load.py --hogs 0           # the same run on a quiet machine
    .venv/bin/python benchmarks/notebooks_under_load.py --kind numpy       # hogs multiply matrices instead

A learner's laptop is rarely idle. This starts ``--hogs`` CPU hogs (default 2, one core each: a pure-python
busy loop, or single-threaded numpy matrix products with ``--kind numpy``), runs
``python -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider <notebooks> -q`` as ``make test``
does (same cell timeout, ``PRUNING_CACHE_DIR`` and ``PRUNING_PROFILE`` defaults as the Makefile), stops
the hogs (also on Ctrl-C or an error; a hog also exits by itself when this script dies), and prints one
row per notebook: passed or failed, and its seconds (the sum of its cells' setup, run and teardown
times from pytest's JUnit report). The exit code is 1 when a notebook failed or did not run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load, machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# Each hog runs until it is stopped, or until its parent (this script) is gone: it checks its parent's
# pid between bursts of work, so a killed driver never leaves a core busy for good.
HOGS = {
    "python": "while True: pass",
    "numpy": ("import numpy as np\n"
              "a = np.random.default_rng(0).standard_normal((1024, 1024))\n"
              "while True: a = np.tanh(a @ a)"),
}
HOG_WRAPPER = """
import os, signal, sys, threading
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the driver, which stops the hogs
parent = int(sys.argv[1])
def watch():
    import time
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
exec(sys.argv[2])
"""
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def start_hogs(count: int, kind: str) -> list[subprocess.Popen]:
    env = {**os.environ, **ONE_THREAD}
    hogs = []
    try:
        for _ in range(count):
            hogs.append(subprocess.Popen([sys.executable, "-c", HOG_WRAPPER, str(os.getpid()), HOGS[kind]], env=env,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL))
    except BaseException:
        stop_hogs(hogs)
        raise
    return hogs


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a running process (Linux /proc), None where unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def stop_hogs(hogs: list[subprocess.Popen]) -> None:
    for hog in hogs:
        if hog.poll() is None:
            hog.terminate()
    for hog in hogs:
        try:
            hog.wait(timeout=5)
        except subprocess.TimeoutExpired:
            hog.kill()
            hog.wait()


def run_pytest(command: list[str], env: dict) -> int:
    """pytest's exit code. On Ctrl-C (which pytest receives too) give it 10 s to stop its kernels, then end it."""
    proc = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        raise


def per_notebook(report: Path, notebooks: list[Path]) -> dict[Path, tuple[str, float]]:
    """{notebook: (status, seconds)} from pytest's JUnit XML; a notebook with no test case 'not run'."""
    cases: dict[Path, list] = defaultdict(list)
    if report.exists() and report.stat().st_size:
        for case in ET.parse(report).iter("testcase"):
            # nbval names a cell's test "<path>::Cell <n>"; pytest writes the path, dotted, as the classname
            classname = case.get("classname", "")
            for nb in notebooks:
                if classname == ".".join(nb.with_suffix("").parts) + ".ipynb" or classname.endswith(nb.name):
                    cases[nb].append(case)
                    break
    table = {}
    for nb in notebooks:
        if not cases[nb]:
            table[nb] = ("not run", 0.0)
            continue
        failed = any(case.find(tag) is not None for case in cases[nb] for tag in ("failure", "error"))
        table[nb] = ("FAILED" if failed else "passed", sum(float(case.get("time", 0)) for case in cases[nb]))
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to run (default: notebooks/*.ipynb)")
    parser.add_argument("--hogs", type=int, default=2, help="CPU hog processes, one core each (default 2)")
    parser.add_argument("--kind", choices=sorted(HOGS), default="python", help="what a hog runs (default python)")
    parser.add_argument("--cell-timeout", type=int, default=600, help="nbval's per-cell timeout in s (default 600)")
    parser.add_argument("--python", default=None, help="interpreter with nbval (default: .venv/bin/python)")
    args = parser.parse_args(argv)
    if args.hogs < 0:
        parser.error(f"--hogs must be 0 or more; got {args.hogs}")
    if args.cell_timeout < 1:
        parser.error(f"--cell-timeout must be at least 1 s; got {args.cell_timeout}")
    notebooks = [Path(os.path.relpath(nb.resolve(), ROOT)) for nb in args.notebooks] or sorted(
        nb.relative_to(ROOT) for nb in (ROOT / "notebooks").glob("*.ipynb"))
    missing = [str(nb) for nb in notebooks if not (ROOT / nb).is_file() or nb.suffix != ".ipynb"]
    if missing:
        parser.error(f"not a notebook (.ipynb file in this checkout): {', '.join(missing)}")
    venv_python = ROOT / ".venv" / "bin" / "python"
    python = args.python or (str(venv_python) if venv_python.exists() else sys.executable)

    env = dict(os.environ)
    env.setdefault("PRUNING_CACHE_DIR", str(ROOT / ".cache"))  # the Makefile's defaults
    env.setdefault("PRUNING_PROFILE", "quick")
    print(machine())
    print(f"load before: {load()} | {args.hogs} {args.kind} hog(s) | profile {env['PRUNING_PROFILE']} | "
          f"cache {env['PRUNING_CACHE_DIR']}", flush=True)

    with tempfile.TemporaryDirectory(prefix="nbload-") as tmp:
        report = Path(tmp) / "junit.xml"
        command = [python, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
                   f"--nbval-cell-timeout={args.cell_timeout}", "-p", "no:cacheprovider", f"--junitxml={report}",
                   *map(str, notebooks), "-q"]
        hogs = start_hogs(args.hogs, args.kind)
        start = time.perf_counter()
        try:
            pytest_rc = run_pytest(command, env)
        except KeyboardInterrupt:
            print("\ninterrupted: hogs and pytest stopped", file=sys.stderr)
            return 130
        finally:
            wall = time.perf_counter() - start
            used = [cpu_seconds(hog.pid) for hog in hogs]
            hog_cpu = None if None in used else sum(used)
            stop_hogs(hogs)
        table = per_notebook(report, notebooks)

    width = max(len(str(nb)) for nb in notebooks)
    print(f"\n{'notebook':<{width}}  {'result':<8} {'seconds':>8}")
    for nb, (status, seconds) in table.items():
        print(f"{str(nb):<{width}}  {status:<8} {seconds:>8.1f}")
    busy = f"hogs used {hog_cpu:.0f} CPU-s ({hog_cpu / wall:.2f} cores) | " if hogs and hog_cpu is not None else ""
    print(f"wall {wall:.0f} s | {busy}load after: {load()} | pytest exit code {pytest_rc}")
    ok = pytest_rc == 0 and all(status == "passed" for status, _ in table.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
