"""Colab, simulated: a fresh environment that already has Colab's stack (torch included) but no course.

The first cell of every notebook must install the course there from its git address, pull none of the
course's development tools (jupyterlab, nbval, pytest, playwright) and no second torch, and the
notebook must then run. No network: the "Colab" packages are this environment's own, linked into a new
virtual environment; pip runs with ``--no-index``, so asking for anything Colab lacks fails the test.
"""

import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "00_setup_and_baseline.ipynb"
# What a Colab runtime has preinstalled (and the course needs); their dependencies come along.
COLAB = ["torch", "torchvision", "numpy", "scipy", "scikit-learn", "matplotlib", "tqdm", "pillow", "ipykernel",
         "ipywidgets", "setuptools", "pip"]
DEV_TOOLS = ["jupyterlab", "nbval", "pytest", "playwright"]

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git (pip installs the course from a git URL)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(roots):
    """The installed distributions ``roots`` need, extras of their requirements included."""
    dists = {_norm(d.metadata["Name"]): d for d in md.distributions()}
    env, seen, todo = default_environment(), {}, [(_norm(r), "") for r in roots]
    done = set()
    while todo:
        name, extra = todo.pop()
        if (name, extra) in done or name not in dists:
            continue
        done.add((name, extra))
        seen[name] = dists[name]
        for text in dists[name].requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({**env, "extra": extra}):
                if req.marker is None and extra:
                    continue  # already taken with the plain requirement
                todo += [(_norm(req.name), "")] + [(_norm(req.name), e) for e in req.extras]
    return seen


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """A venv whose site has Colab's packages (linked from here) and a stub ``google.colab``, imported at start."""
    tmp = tmp_path_factory.mktemp("colab")
    dists = _closure(COLAB)
    assert not set(DEV_TOOLS) & set(dists), "the simulated Colab must lack the course's dev tools"
    preinstalled = tmp / "preinstalled"
    preinstalled.mkdir()
    for dist in dists.values():
        base = Path(dist.locate_file(""))
        for entry in {str(f).split("/")[0] for f in dist.files or [] if not str(f).startswith("..")}:
            link = preinstalled / entry
            if not link.exists() and (base / entry).exists():
                link.symlink_to(base / entry)
    stub = tmp / "stub" / "google" / "colab"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text('"""Stands in for Colab\'s own module: its presence is how the cell knows."""\n')
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)  # pip: Colab's, below
    python = venv / "bin" / "python"
    site = Path(subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    (site / "a_colab_preinstalled.pth").write_text(f"{preinstalled}\n{tmp / 'stub'}\n")
    (site / "zz_colab_runtime.pth").write_text("import google.colab\n")
    # The course, published as a git repository (what the cell installs from): this checkout's files.
    repo = tmp / "repo"
    shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(".git", ".venv", ".cache", "results", "node_modules",
                                                               "__pycache__", "*.egg-info", "build", ".pytest_cache"))
    git = ["git", "-C", str(repo), "-c", "user.name=ci", "-c", "user.email=ci@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "course"], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRUNING_", "PYTHON", "VIRTUAL_ENV", "JUPYTER"))}
    env.update(PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0", PIP_DISABLE_PIP_VERSION_CHECK="1",
               PRUNING_COURSE_REPO=_url(repo), PRUNING_CACHE_DIR=str(tmp / "cache"),
               PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    return {"tmp": tmp, "python": python, "env": env, "site": site, "repo": repo}


def _url(path: Path) -> str:
    """A file:// git address with a host part: this pip (23.2) refuses ``git+file:///path`` URLs."""
    return f"file://localhost{path}"


def _first_cell() -> str:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    return next(c.source for c in nb.cells if c.cell_type == "code")


def _installed(colab) -> dict[str, str]:
    out = subprocess.check_output([colab["python"], "-m", "pip", "list", "--format=json"], env=colab["env"], text=True)
    return {_norm(p["name"]): p["version"] for p in json.loads(out)}


def test_first_cell_installs_the_course_only_and_the_notebook_runs(colab):
    assert "pruning-utils" not in _installed(colab)
    torch_before = subprocess.check_output([colab["python"], "-c", "import torch; print(torch.__file__)"],
                                           env=colab["env"], text=True)
    # Run notebook 00 in that environment's kernel, as Colab would: the first cell installs the course.
    kernels = colab["tmp"] / "jupyter" / "kernels" / "colab"
    kernels.mkdir(parents=True, exist_ok=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(colab["python"]), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "simulated Colab", "language": "python", "env": colab["env"]}))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    workdir = colab["tmp"] / "work"
    workdir.mkdir(exist_ok=True)
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = str(colab["tmp"] / "jupyter")
    try:
        NotebookClient(nb, timeout=600, kernel_name="colab", resources={"metadata": {"path": str(workdir)}}).execute()
    finally:
        if old is None:
            os.environ.pop("JUPYTER_PATH")
        else:
            os.environ["JUPYTER_PATH"] = old
    installed = _installed(colab)
    assert "pruning-utils" in installed
    assert not [tool for tool in DEV_TOOLS if tool in installed], "the first cell pulled a development tool"
    where = subprocess.check_output(
        [colab["python"], "-c", "import pruning_utils, torch; print(pruning_utils.__file__); print(torch.__file__)"],
        env=colab["env"], text=True, cwd=workdir).splitlines()
    assert where[0].startswith(str(colab["site"])), "the course must come from the install, not the checkout"
    assert where[1] == torch_before.strip(), "a second torch was installed"
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "profile=quick" in "".join(o.get("text", "") for o in first.outputs), "on a CPU runtime: the quick profile"


def test_a_wrong_address_says_what_to_do_instead_of_a_pip_traceback(colab):
    env = {**colab["env"], "PRUNING_COURSE_REPO": _url(colab["tmp"] / "no-such-repo")}
    run = subprocess.run([colab["python"], "-c", _first_cell()], env=env, text=True, capture_output=True,
                         cwd=colab["tmp"])
    assert run.returncode != 0
    assert "Could not install the course from git+file://localhost" in run.stderr
    assert "Check COURSE_REPO and COURSE_REF above" in run.stderr and "pip install -e" in run.stderr
    assert "Traceback" not in run.stderr
