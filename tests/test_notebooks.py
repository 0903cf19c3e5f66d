"""Static checks of the notebooks (nbval runs them; these check what a run cannot)."""

import json
import re
from pathlib import Path

import pytest

from pruning_utils.course import find_notebooks

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def load(path):
    return json.loads(path.read_text())


def code_cells(nb):
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def test_every_notebook_is_on_the_course_map_under_its_number():
    readme = (NOTEBOOKS.parent / "README.md").read_text()
    numbers = [p.name[:2] for p in find_notebooks(NOTEBOOKS)]
    assert numbers[0] == "00" and len(set(numbers)) == len(numbers)
    for path in find_notebooks(NOTEBOOKS):
        assert re.search(rf"^\| {path.name[:2]} \| `{re.escape(path.stem)}` \|", readme, re.M), path.name


@pytest.mark.parametrize("path", find_notebooks(NOTEBOOKS), ids=lambda p: p.name)
def test_notebook_shape(path):
    nb = load(path)
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    first = nb["cells"][0]
    assert first["cell_type"] == "markdown" and re.match(rf"# {path.name[:2]} · ", "".join(first["source"]))
    # every notebook starts with the same set-up cell as notebook 00
    reference = code_cells(load(find_notebooks(NOTEBOOKS)[0]))[0]
    assert code_cells(nb)[0] == reference
    assert "google.colab" in reference
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", f"{path.name} has a saved error output"
    text = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert "## Summary" in text and "## Exercises" in text


def test_find_notebooks_refuses_an_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="no notebooks"):
        find_notebooks(tmp_path)
