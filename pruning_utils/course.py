"""The course as a whole: where it is published, running every notebook, collecting the key results.

``python -m pruning_utils.course notebooks --results results`` (what ``make course`` runs) executes
each notebook top to bottom in its own kernel with the current environment's profile, writes the
outputs back into the notebook and prints one line per notebook. Each notebook records its key numbers
with :func:`record_results` and its main figure with :func:`save_figure`; after the run
``results/summary.md`` collects them with every notebook's run time. It stops at the first notebook
that fails. Every file is written atomically (:func:`pruning_utils.config.atomic_path`), so a reader
never sees half a notebook, record or summary.

``COURSE_REPO`` and ``COURSE_REF`` say where the course is published: the Colab set-up cell of every
notebook installs from there, and the README's "Open in Colab" badges point there
(:func:`colab_url`); tests keep all three in agreement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sys
import time
from pathlib import Path

from .checks import check_int, check_positive, check_unit
from .config import atomic_path, cache_dir, write_atomic

COURSE_REPO = "https://github.com/pruning-course/pruning-course"
COURSE_REF = "main"
RESULTS_ENV = "PRUNING_RESULTS_DIR"
NOTEBOOK_PATTERN = "[0-9][0-9]_*.ipynb"

__all__ = [
    "COURSE_REF",
    "COURSE_REPO",
    "claim_checker",
    "colab_url",
    "find_notebooks",
    "record_results",
    "results_dir",
    "run_notebook",
    "save_figure",
    "write_summary",
]


# ---------------------------------------------------------------------------------------------
# Where the course lives
# ---------------------------------------------------------------------------------------------


def colab_url(notebook: str | Path, repo: str = COURSE_REPO, ref: str = COURSE_REF) -> str:
    """The "Open in Colab" address of ``notebooks/<name>.ipynb`` in the published repository."""
    if not isinstance(notebook, (str, Path)):
        raise TypeError(f"notebook must be a notebook's file name or path; got {type(notebook).__name__}")
    name = Path(notebook).name
    if not re.fullmatch(r"\d\d_[A-Za-z0-9_-]+\.ipynb", name) or str(notebook).startswith(".."):
        raise ValueError(f"notebook must name a course notebook such as '00_setup_and_baseline.ipynb'; got {notebook!r}")
    match = re.fullmatch(r"https://github\.com/([^/]+/[^/]+?)(?:\.git)?/?", repo)
    if not match:
        raise ValueError(f"repo must be a https://github.com/<owner>/<name> address; got {repo!r}")
    return f"https://colab.research.google.com/github/{match.group(1)}/blob/{ref}/notebooks/{name}"


def colab_badge(notebook: str | Path) -> str:
    """Markdown for the "Open in Colab" badge of one notebook."""
    return f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(notebook)})"


# ---------------------------------------------------------------------------------------------
# Key results, recorded by the notebooks
# ---------------------------------------------------------------------------------------------


def results_dir() -> Path:
    """Where notebooks record results: ``$PRUNING_RESULTS_DIR`` (``make course``: ``results/``),
    else ``<cache>/results`` so that a notebook run by hand or by nbval leaves the checkout alone."""
    env = os.environ.get(RESULTS_ENV)
    if env:
        return Path(env).expanduser()
    return cache_dir() / "results"


_RESULT_RULES = {
    "sparsity": lambda v, n: check_unit(v, n, " (a fraction: 0.9 for 90%)"),
    "params": lambda v, n: check_int(v, n, 0),
    "flops": lambda v, n: check_int(v, n, 0),
    "latency_ms": check_positive,
}


def record_results(notebook: str, headline: str, *, accuracy=None, seeds: int | None = None,
                   sparsity: float | None = None, params: int | None = None, flops: int | None = None,
                   latency_ms: float | None = None) -> Path:
    """Save one notebook's key result for the course summary; return the file written.

    ``notebook`` is the notebook's number (``"03"``); ``headline`` one sentence with the measured
    numbers; the keywords are the columns of the summary table (test accuracy, sparsity as a fraction,
    non-zero parameters, FLOPs of one forward pass, latency in milliseconds).

    ``accuracy`` is a :class:`pruning_utils.stats.Interval` with ``seeds`` saying where it came from:
    ``seeds=1`` for one model and its Wilson interval on the test images
    (:func:`~pruning_utils.stats.accuracy_interval`), ``seeds=3`` for the mean and t-interval over three
    seeds (:func:`~pruning_utils.stats.seed_interval`). The summary prints both, so no accuracy in it
    stands without its uncertainty.
    """
    if not isinstance(notebook, str) or not re.fullmatch(r"\d\d", notebook):
        raise ValueError(f"notebook must be the notebook's two-digit number, e.g. '03'; got {notebook!r}")
    if not isinstance(headline, str) or not headline.strip():
        raise ValueError("headline must be a non-empty sentence")
    numbers = {k: _RESULT_RULES[k](v, k) for k, v in dict(sparsity=sparsity, params=params, flops=flops,
                                                  latency_ms=latency_ms).items() if v is not None}
    if accuracy is not None or seeds is not None:
        numbers.update(_check_accuracy(accuracy, seeds))
    path = results_dir() / f"{notebook}.json"
    return write_atomic(path, json.dumps({"notebook": notebook, "headline": headline.strip(), **numbers}, indent=1))


def _check_accuracy(accuracy, seeds) -> dict:
    from .stats import Interval

    if not isinstance(accuracy, Interval) or accuracy.percent is False:
        raise TypeError("accuracy must be a pruning_utils.stats.Interval of an accuracy (accuracy_interval(...) "
                        f"for one model, seed_interval(...) over seeds); got {type(accuracy).__name__}")
    if seeds is None:
        raise TypeError("seeds must say how many seeds the accuracy interval comes from (1 for one model's "
                        "interval on the test images)")
    seeds = check_int(seeds, "seeds", 1)
    values = {}
    for key, value in (("accuracy", accuracy.estimate), ("accuracy_low", accuracy.low),
                       ("accuracy_high", accuracy.high)):
        values[key] = check_unit(min(max(value, 0.0), 1.0) if key != "accuracy" else value, key,
                                 " (a fraction: 0.95 for 95%)")
    if not values["accuracy_low"] <= values["accuracy"] <= values["accuracy_high"]:
        raise ValueError(f"accuracy must lie inside its interval; got {accuracy}")
    return {**values, "accuracy_confidence": accuracy.confidence, "seeds": seeds}


def claim_checker(profile=None):
    """``check = claim_checker(PROFILE)``, then ``check(condition, "what the notebook claims")``.

    On a profile whose sizes support the notebook's claims (``profile.check_claims``, the quick
    profile) ``check`` is an assert: a false claim stops the notebook. On the smoke profile (toy sizes:
    it checks that the code runs) and on profiles whose claims are not measured yet, it prints the claim
    as not checked instead, so the skip is visible in the output and nowhere else.
    """
    from .config import get_profile

    prof = get_profile(profile)

    def check(condition, claim: str) -> bool:
        if not isinstance(claim, str) or not claim.strip():
            raise ValueError("claim must say, in words, what the notebook claims")
        holds = bool(condition)
        if prof.check_claims:
            if not holds:
                raise AssertionError(claim)
        else:
            print(f"[not checked on the {prof.name} profile] {claim}")
        return holds

    return check


def save_figure(fig, name: str) -> Path:
    """Save a matplotlib figure as ``<results>/figures/<name>.png`` (the README shows some of them)."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ValueError(f"name must be letters, digits, '_' or '-' (no extension); got {name!r}")
    path = results_dir() / "figures" / f"{name}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def _fmt(key: str, value) -> str:
    if value is None:
        return "–"
    if key == "sparsity":
        return f"{100 * value:.1f}%"
    if key == "params":
        return f"{value:,}"
    if key == "flops":
        return f"{value / 1e6:.2f} M"
    if key == "latency_ms":
        return f"{value:.2f} ms"
    if key == "seconds":
        return f"{value:.0f} s"
    return str(value)


def _fmt_accuracy(record: dict) -> str:
    if record.get("accuracy") is None:
        return "–"
    text = f"{100 * record['accuracy']:.2f}%"
    if "accuracy_low" in record:
        seeds = record["seeds"]
        text += (f" [{100 * record['accuracy_low']:.2f}, {100 * record['accuracy_high']:.2f}], "
                 + ("1 model" if seeds == 1 else f"{seeds} seeds"))
    return text


def _machine() -> str:
    import torch

    return (f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def write_summary(folder: Path | None = None, profile: str | None = None) -> Path:
    """Collect every ``NN.json`` of ``folder`` (default :func:`results_dir`) into ``summary.md``."""
    folder = results_dir() if folder is None else Path(folder)
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("[0-9][0-9].json"))]
    if not records:
        raise ValueError(f"no notebook results (NN.json) in {str(folder)!r}; run the notebooks first")
    total = sum(r.get("seconds", 0.0) for r in records)
    profile = profile or os.environ.get("PRUNING_PROFILE", "quick")
    lines = [
        "# Course results",
        "",
        f"Written by `make course` (`python -m pruning_utils.course notebooks --results results`): profile "
        f"`{profile}`, {_machine()}. Each notebook records its key numbers with `record_results`; the run "
        f"time is the notebook's wall time top to bottom. Test accuracy is on the held-out test split, with "
        f"its 95% interval: for one model the Wilson interval on the test images, over seeds the t-interval "
        f"of the mean.",
        "",
        "| # | run time | key result | test accuracy | sparsity | non-zero params | FLOPs | latency |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        cells = [_fmt(k, r.get(k)) for k in ("seconds", "headline", "accuracy", "sparsity", "params", "flops",
                                              "latency_ms")]
        cells[1] = r["headline"]
        cells[2] = _fmt_accuracy(r)
        lines.append(f"| {r['notebook']} | " + " | ".join(cells) + " |")
    lines += ["", f"All {len(records)} notebooks: {total / 60:.1f} minutes ({total:.0f} s).", ""]
    figures = sorted((folder / "figures").glob("*.png"))
    if figures:
        lines += ["## Figures", ""] + [f"![{p.stem}](figures/{p.name})" for p in figures] + [""]
    return write_atomic(folder / "summary.md", "\n".join(lines))


# ---------------------------------------------------------------------------------------------
# Running the notebooks
# ---------------------------------------------------------------------------------------------


def run_notebook(path: Path, timeout: int = 600, save: bool = True) -> float:
    """Execute ``path`` top to bottom (cwd = its folder), save it with outputs (unless ``save`` is
    False), return seconds taken."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    if save:
        text = nbformat.writes(nb)  # what nbformat.write(nb, path) writes, but atomically
        write_atomic(path, text if text.endswith("\n") else text + "\n")
    return seconds


def find_notebooks(folder: Path) -> list[Path]:
    """The course notebooks (``NN_name.ipynb``) in order."""
    notebooks = sorted(p for p in Path(folder).glob(NOTEBOOK_PATTERN))
    if not notebooks:
        raise ValueError(f"no notebooks named NN_*.ipynb in {str(folder)!r}")
    return notebooks


def _add_time(folder: Path, notebook: Path, seconds: float) -> None:
    path = folder / f"{notebook.name[:2]}.json"
    if path.is_file():  # a notebook that records nothing gets no row
        record = json.loads(path.read_text())
        record["seconds"] = round(seconds, 1)
        write_atomic(path, json.dumps(record, indent=1))


def _check_only(notebooks: list[Path], timeout: int, jobs: int) -> int:
    """Run each notebook in memory (nothing saved, results to a temporary folder); report every failure."""
    import subprocess
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    def one(nb: Path):
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="course-check-") as results:
            run = subprocess.run([sys.executable, "-m", "pruning_utils.course", "--timeout", str(timeout),
                                  "--no-save", str(nb)], capture_output=True, text=True,
                                 env={**os.environ, RESULTS_ENV: results})
        return nb, run, time.perf_counter() - start

    failed = 0
    print(f"{'notebook (checked, not saved)':<50} {'seconds':>8}", flush=True)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for nb, run, seconds in pool.map(one, notebooks):
            if run.returncode:
                failed += 1
                print(f"{str(nb):<50} FAILED\n{(run.stdout + run.stderr).strip()[-4000:]}", flush=True)
            else:
                print(f"{str(nb):<50} {seconds:8.1f}", flush=True)
    print(f"{len(notebooks) - failed} of {len(notebooks)} notebooks ran cleanly")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", default=["notebooks"],
                        help="the notebooks folder (default), or single notebooks to run")
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    parser.add_argument("--results", default=None,
                        help="folder for the recorded results and summary.md (make course: results); running a "
                             "whole folder starts it afresh")
    parser.add_argument("--no-save", action="store_true", help="do not write the outputs back into the notebooks")
    parser.add_argument("--check-only", action="store_true",
                        help="run every notebook without saving anything (make smoke), each in its own process, "
                             "and report all failures")
    parser.add_argument("--jobs", type=int, default=1, help="with --check-only: notebooks run at the same time")
    args = parser.parse_args(argv)
    notebooks, whole_folder = [], False
    for p in map(Path, args.paths):
        if p.suffix == ".ipynb":
            notebooks.append(p)
        else:
            notebooks += find_notebooks(p)
            whole_folder = True
    if args.check_only:
        return _check_only(notebooks, args.timeout, check_int(args.jobs, "jobs", 1))
    results = None
    if args.results:
        results = Path(args.results).resolve()
        if whole_folder and results.exists():  # a clean run: nothing stale survives
            for old in list(results.glob("[0-9][0-9].json")) + [results / "summary.md"]:
                old.unlink(missing_ok=True)
            shutil.rmtree(results / "figures", ignore_errors=True)
        results.mkdir(parents=True, exist_ok=True)
        os.environ[RESULTS_ENV] = str(results)  # the kernels inherit it
    total = 0.0
    print(f"{'notebook':<40} {'seconds':>8}")
    for nb in notebooks:
        try:
            seconds = run_notebook(nb, timeout=args.timeout, save=not args.no_save)
        except Exception as exc:
            message = str(exc) if args.no_save else (str(exc).splitlines()[-1] if str(exc) else "")
            print(f"{nb.name:<40} FAILED: {type(exc).__name__}: {message}")
            return 1
        total += seconds
        if results is not None:
            _add_time(results, nb, seconds)
        print(f"{nb.name:<40} {seconds:8.1f}", flush=True)
    print(f"{'total':<40} {total:8.1f}")
    if results is not None:
        print(f"summary: {write_summary(results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
