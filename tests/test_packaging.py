"""The set-up files agree with each other, so a learner gets the same course whichever they use."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = _pyproject()["project"]
    wanted = sorted(project["dependencies"] + project["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = sorted(r for r in pip_section if not r.startswith("-"))
    assert listed == wanted
    assert "-e .[dev]" in pip_section and "-c constraints.txt" in pip_section
    assert "python=3.11" in env["dependencies"]


def test_constraints_pin_the_torch_releases_ci_uses():
    pins = dict(
        line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert {k: pins[k] for k in ("torch", "torchvision")} == {"torch": "2.14.1", "torchvision": "0.29.1"}
    # every heavy dependency comes pinned too, torchao (notebook 11's cross-check) among them
    assert {"torchao", "numpy", "scipy", "scikit-learn", "matplotlib"} <= pins.keys()
    makefile = (ROOT / "Makefile").read_text()
    assert "-c constraints.txt" in makefile


def test_package_discovery_is_explicit():
    find = _pyproject()["tool"]["setuptools"]["packages"]["find"]
    assert find["include"] == ["pruning_utils*"]


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / "README.md").read_text()
    assert re.search(r"^\s*make test\b", (ROOT / ".ci" / "run").read_text(), re.M)


def test_every_public_name_is_exported():
    import pruning_utils

    for name in ["get_profile", "seed_everything", "get_device", "get_loaders", "SmallCNN", "MLP",
                 "cifar_resnet", "train", "evaluate", "train_baseline"]:
        assert hasattr(pruning_utils, name), name
