"""Static checks of the notebooks (nbval runs them; these check what a run cannot)."""

import json
import re
from pathlib import Path

import pytest

from pruning_utils import course
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


def test_notebook_numbers_have_no_gaps():
    numbers = [int(p.name[:2]) for p in find_notebooks(NOTEBOOKS)]
    assert numbers == list(range(len(numbers))), numbers


def test_colab_cell_installs_from_the_one_published_address():
    setup = code_cells(load(find_notebooks(NOTEBOOKS)[0]))[0]
    assert re.search(rf'^COURSE_REPO = "{re.escape(course.COURSE_REPO)}"', setup, re.M), "COURSE_REPO differs"
    assert re.search(rf'^COURSE_REF = "{re.escape(course.COURSE_REF)}"', setup, re.M), "COURSE_REF differs"
    assert 'os.environ.setdefault("PRUNING_PROFILE", "gpu")' in setup  # a GPU on Colab selects the gpu profile
    # a fork overrides the address without editing 20 notebooks; the install pulls no extras
    assert "PRUNING_COURSE_REPO" in setup and "PRUNING_COURSE_REF" in setup
    assert '"pruning-utils @ {source}"' in setup and "[dev]" not in setup


def test_readme_has_a_colab_badge_for_every_notebook():
    readme = (NOTEBOOKS.parent / "README.md").read_text()
    for path in find_notebooks(NOTEBOOKS):
        row = re.search(rf"^\| {path.name[:2]} \|.*$", readme, re.M)
        assert row and f"({course.colab_url(path)})" in row.group(0), f"{path.name}: no Colab badge on its row"


@pytest.mark.parametrize("path", find_notebooks(NOTEBOOKS), ids=lambda p: p.name)
def test_notebook_records_its_key_result_for_the_summary(path):
    cells = code_cells(load(path))
    assert any(f'record_results("{path.name[:2]}"' in c for c in cells), path.name


def test_find_notebooks_refuses_an_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="no notebooks"):
        find_notebooks(tmp_path)


def test_readme_results_table_is_the_one_make_course_wrote():
    summary = (NOTEBOOKS.parent / "results" / "summary.md").read_text()
    readme = (NOTEBOOKS.parent / "README.md").read_text()
    rows = [line for line in summary.splitlines() if re.match(r"\| \d\d \|", line)]
    assert [p.name[:2] for p in find_notebooks(NOTEBOOKS)] == [r[2:4] for r in rows], "summary lacks a notebook"
    for row in rows:  # every accuracy stands with its 95% interval and where it came from
        accuracy = row.split(" | ")[3]
        assert accuracy == "–" or re.fullmatch(r"\d+\.\d\d% \[\d+\.\d\d, \d+\.\d\d\], (1 model|\d+ seeds)",
                                                accuracy), f"notebook {row[2:4]}: accuracy without interval: {accuracy}"
    missing = [r[:8] for r in rows if r not in readme]
    assert not missing, f"README's results rows differ from results/summary.md (rerun make course, copy): {missing}"
    for figure in re.findall(r"\]\((results/figures/[^)]+)\)", readme):
        assert (NOTEBOOKS.parent / figure).is_file(), figure


SOLUTIONS = sorted((NOTEBOOKS / "solutions").glob("[0-9][0-9]_*_solutions.ipynb"))


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_solutions_notebook_shape(path):
    """A solutions notebook belongs to a topic notebook, starts like it and runs under nbval like it."""
    topic = NOTEBOOKS / path.name.replace("_solutions.ipynb", ".ipynb")
    assert topic.exists(), f"{path.name} has no topic notebook {topic.name}"
    nb = load(path)
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    first = nb["cells"][0]
    assert first["cell_type"] == "markdown" and re.match(rf"# {path.name[:2]} · Solutions", "".join(first["source"]))
    assert code_cells(nb)[0] == code_cells(load(topic))[0]
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", f"{path.name} has a saved error output"
    topic_text = "".join("".join(c["source"]) for c in load(topic)["cells"] if c["cell_type"] == "markdown")
    assert "solutions/" in topic_text, f"{topic.name} does not point the learner to its solutions"


def test_every_topic_notebook_has_its_worked_solutions():
    missing = [p.name for p in find_notebooks(NOTEBOOKS)
               if not (NOTEBOOKS / "solutions" / p.name.replace(".ipynb", "_solutions.ipynb")).exists()]
    assert not missing, f"notebooks without a solutions notebook: {missing}"
