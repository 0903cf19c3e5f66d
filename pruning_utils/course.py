"""Run every course notebook headless, in order, and report how long each took.

``python -m pruning_utils.course notebooks`` (what ``make course`` runs) executes each notebook in
its own kernel with the current environment's profile, writes the outputs back into the notebook and
prints one line per notebook. It stops at the first notebook that fails.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def run_notebook(path: Path, timeout: int = 600) -> float:
    """Execute ``path`` top to bottom (cwd = its folder), save it with outputs, return seconds taken."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    nbformat.write(nb, path)
    return seconds


def find_notebooks(folder: Path) -> list[Path]:
    """The course notebooks (``NN_name.ipynb``) in order."""
    notebooks = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise ValueError(f"no notebooks named NN_*.ipynb in {str(folder)!r}")
    return notebooks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", default=["notebooks"],
                        help="the notebooks folder (default), or single notebooks to run")
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    total = 0.0
    print(f"{'notebook':<40} {'seconds':>8}")
    notebooks = []
    for p in map(Path, args.paths):
        notebooks += [p] if p.suffix == ".ipynb" else find_notebooks(p)
    for nb in notebooks:
        try:
            seconds = run_notebook(nb, timeout=args.timeout)
        except Exception as exc:
            print(f"{nb.name:<40} FAILED: {type(exc).__name__}: {str(exc).splitlines()[-1] if str(exc) else ''}")
            return 1
        total += seconds
        print(f"{nb.name:<40} {seconds:8.1f}", flush=True)
    print(f"{'total':<40} {total:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
