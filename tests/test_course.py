"""The course runner: recorded results, the summary, figures, Colab addresses."""

import json
import re
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pytest  # noqa: E402
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook  # noqa: E402

from scipy.stats import binomtest  # noqa: E402

from pruning_utils import course  # noqa: E402
from pruning_utils.stats import Interval, accuracy_interval, seed_interval  # noqa: E402


@pytest.fixture
def results(tmp_path, monkeypatch):
    folder = tmp_path / "results"
    monkeypatch.setenv(course.RESULTS_ENV, str(folder))
    return folder


def test_results_default_to_the_cache_so_nbval_leaves_the_checkout_alone(monkeypatch, tmp_path):
    monkeypatch.delenv(course.RESULTS_ENV, raising=False)
    assert course.results_dir() == tmp_path / "cache" / "results"  # conftest points the cache at tmp_path


def test_record_results_writes_one_file_per_notebook(results):
    acc = accuracy_interval(351, 360)
    path = course.record_results("03", "  50% of filters: 2.5x faster ", accuracy=acc, seeds=1, params=7234,
                                 flops=306688, latency_ms=7.1)
    assert path == results / "03.json"
    assert json.loads(path.read_text()) == {"notebook": "03", "headline": "50% of filters: 2.5x faster",
                                            "accuracy": 351 / 360, "accuracy_low": acc.low, "accuracy_high": acc.high,
                                            "accuracy_confidence": 0.95, "seeds": 1,
                                            "params": 7234, "flops": 306688, "latency_ms": 7.1}
    course.record_results("03", "again", sparsity=0.5)  # a rerun replaces the record
    assert json.loads(path.read_text()) == {"notebook": "03", "headline": "again", "sparsity": 0.5}
    assert sorted(p.name for p in results.iterdir()) == ["03.json"]  # no temp file left


@pytest.mark.parametrize("kwargs, message", [
    ({"notebook": "3", "headline": "x"}, "two-digit number"),
    ({"notebook": "03", "headline": " "}, "headline must be"),
    ({"notebook": "03", "headline": "x", "accuracy": 0.95, "seeds": 1}, "accuracy must be a pruning_utils.stats.Interval"),
    ({"notebook": "03", "headline": "x", "accuracy": accuracy_interval(9, 10)}, "seeds must say how many seeds"),
    ({"notebook": "03", "headline": "x", "accuracy": accuracy_interval(9, 10), "seeds": 0}, "seeds must be"),
    ({"notebook": "03", "headline": "x", "accuracy": seed_interval([0.5, 0.6], percent=False), "seeds": 2},
     "accuracy must be a pruning_utils.stats.Interval"),
    ({"notebook": "03", "headline": "x", "accuracy": Interval(float("nan"), 0.1, 0.2), "seeds": 2},
     r"accuracy must be in \[0, 1\]"),
    ({"notebook": "03", "headline": "x", "accuracy": Interval(0.5, 0.6, 0.7), "seeds": 2}, "inside its interval"),
    ({"notebook": "03", "headline": "x", "params": "7k"}, "params must be an int"),
    ({"notebook": "03", "headline": "x", "sparsity": 1.5}, r"sparsity must be in \[0, 1\]"),
    ({"notebook": "03", "headline": "x", "latency_ms": -1.0}, "latency_ms must be a finite number > 0"),
])
def test_record_results_refuses_bad_input(results, kwargs, message):
    with pytest.raises((TypeError, ValueError), match=message):
        course.record_results(**kwargs)
    assert not results.exists() or not list(results.iterdir())


def test_save_figure_and_summary(results):
    course.record_results("01", "per-layer 90%: 95.00% fine-tuned", accuracy=seed_interval([0.94, 0.95, 0.96]),
                          seeds=3, sparsity=0.9)
    course.record_results("00", "dense: 98.33%", accuracy=accuracy_interval(354, 360), seeds=1, sparsity=0.0,
                          params=25978, flops=1203200)
    record = json.loads((results / "01.json").read_text())
    (results / "01.json").write_text(json.dumps({**record, "seconds": 20.4}))
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    assert course.save_figure(fig, "01_curve") == results / "figures" / "01_curve.png"
    with pytest.raises(ValueError, match="name must be"):
        course.save_figure(fig, "../escape.png")
    plt.close(fig)
    text = course.write_summary(results, profile="quick").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| 0")]
    wilson = binomtest(354, 360).proportion_ci(method="wilson")  # scipy's, independent of the stats module
    assert rows == [f"| 00 | – | dense: 98.33% | 98.33% [{100 * wilson.low:.2f}, {100 * wilson.high:.2f}], 1 model | "
                    "0.0% | 25,978 | 1.20 M | – |",
                    # mean 95%, sd 1 point, t(0.975, 2) = 4.303: half-width 4.303 / sqrt(3) = 2.48 points
                    "| 01 | 20 s | per-layer 90%: 95.00% fine-tuned | 95.00% [92.52, 97.48], 3 seeds | 90.0% | – | – | – |"]
    assert "profile `quick`" in text and "![01_curve](figures/01_curve.png)" in text
    assert "All 2 notebooks: 0.3 minutes (20 s)." in text


def test_summary_needs_results(tmp_path):
    with pytest.raises(ValueError, match="no notebook results"):
        course.write_summary(tmp_path)


def test_colab_url_is_built_from_the_course_constants():
    url = course.colab_url("notebooks/03_structured_pruning.ipynb")
    owner_repo = course.COURSE_REPO.removeprefix("https://github.com/")
    assert url == (f"https://colab.research.google.com/github/{owner_repo}/blob/{course.COURSE_REF}/"
                   "notebooks/03_structured_pruning.ipynb")
    assert course.colab_url("01_x.ipynb", repo="https://github.com/a/b.git", ref="v1").endswith("/a/b/blob/v1/notebooks/01_x.ipynb")
    with pytest.raises(ValueError, match="repo must be"):
        course.colab_url("01_x.ipynb", repo="https://gitlab.com/a/b")


def write_notebook(path, number, fail=False):
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    code = (f"from pruning_utils import record_results\n"
            f"_ = record_results({number!r}, 'notebook {number} ran', sparsity=0.5)")
    nb.cells = [new_markdown_cell(f"# {number} · test"), new_code_cell("raise RuntimeError('boom')" if fail else code)]
    nbformat.write(nb, path)


def test_main_runs_a_folder_afresh_and_writes_the_summary(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(course.RESULTS_ENV, "restored after the test")  # main() sets it for its kernels
    folder, results = tmp_path / "nbs", tmp_path / "results"
    folder.mkdir()
    results.mkdir()
    (results / "07.json").write_text(json.dumps({"notebook": "07", "headline": "stale"}))  # from an older run
    for number in ("00", "01"):
        write_notebook(folder / f"{number}_demo.ipynb", number)
    assert course.main([str(folder), "--results", str(results)]) == 0
    assert sorted(p.name for p in results.glob("*.json")) == ["00.json", "01.json"]
    record = json.loads((results / "01.json").read_text())
    assert record["headline"] == "notebook 01 ran" and record["seconds"] > 0
    assert "| 01 |" in (results / "summary.md").read_text()
    executed = nbformat.read(folder / "01_demo.ipynb", as_version=4)
    assert executed.cells[1].execution_count == 1  # outputs written back
    assert "summary:" in capsys.readouterr().out


def test_main_stops_at_a_failing_notebook(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(course.RESULTS_ENV, "restored after the test")
    folder = tmp_path / "nbs"
    folder.mkdir()
    write_notebook(folder / "00_bad.ipynb", "00", fail=True)
    write_notebook(folder / "01_good.ipynb", "01")
    assert course.main([str(folder), "--results", str(tmp_path / "results")]) == 1
    out = capsys.readouterr().out
    assert "00_bad.ipynb" in out and "FAILED" in out and "01_good" not in out


def test_check_only_runs_every_notebook_saves_nothing_and_reports_each_failure(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(course.RESULTS_ENV, str(tmp_path / "must stay empty"))
    folder = tmp_path / "nbs"
    folder.mkdir()
    write_notebook(folder / "00_bad.ipynb", "00", fail=True)
    write_notebook(folder / "01_good.ipynb", "01")
    write_notebook(folder / "02_bad.ipynb", "02", fail=True)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert course.main([str(folder), "--check-only", "--jobs", "2"]) == 1
    out = capsys.readouterr().out
    failed = re.findall(r"^(\S+\.ipynb) +FAILED$", out, re.M)
    assert [Path(f).name for f in failed] == ["00_bad.ipynb", "02_bad.ipynb"]  # all run, each failure named
    assert "1 of 3 notebooks ran cleanly" in out and "boom" in out  # the error itself is shown
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing written back
    assert not (tmp_path / "must stay empty").exists()  # records went to a temporary folder
    assert course.main([str(folder / "01_good.ipynb"), "--check-only"]) == 0


def test_claims_are_asserted_where_the_profile_supports_them_and_shown_unchecked_elsewhere(capsys):
    from pruning_utils import get_profile

    check = course.claim_checker(get_profile("quick"))
    assert check(2 > 1, "two beats one") is True
    with pytest.raises(AssertionError, match="one beats two"):
        check(1 > 2, "one beats two")
    smoke = course.claim_checker("smoke")
    assert smoke(1 > 2, "one beats two") is False  # not raised: toy sizes check execution only
    assert "[not checked on the smoke profile] one beats two" in capsys.readouterr().out
    with pytest.raises(ValueError, match="claim must say"):
        check(True, " ")


# --- every file is written atomically, through unique temp files ----------------------------------


def temps(folder):
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name)


def test_rewrites_replace_the_file_so_a_reader_keeps_the_complete_old_one(results):
    """Atomic means rename: a reader that opened the old file still reads all of it, never a half-written new one."""
    course.record_results("00", "first run", sparsity=0.5)
    course.record_results("01", "first run", sparsity=0.5)
    summary = course.write_summary(results)
    old_summary, old_record = summary.read_text(), (results / "01.json").read_text()
    with open(summary) as summary_reader, open(results / "01.json") as record_reader:
        course.record_results("01", "second run, a longer headline than before", sparsity=0.5)
        course._add_time(results, Path("01_demo.ipynb"), 12.3)
        course.write_summary(results)
        assert summary_reader.read() == old_summary and record_reader.read() == old_record
    assert json.loads((results / "01.json").read_text())["seconds"] == 12.3
    assert "second run" in summary.read_text() and temps(results) == []


def test_concurrent_writers_use_unique_temp_files(results, monkeypatch):
    sources = []
    real_replace = os.replace

    def spy(src, dst):
        sources.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    course.record_results("03", "a", sparsity=0.5)
    course.record_results("03", "b", sparsity=0.5)
    fig, ax = plt.subplots()
    course.save_figure(fig, "03_curve")
    course.save_figure(fig, "03_curve")
    plt.close(fig)
    (a, dst_a), (b, dst_b), (c, dst_c), (d, dst_d) = sources
    assert dst_a == dst_b == results / "03.json" and dst_c == dst_d == results / "figures" / "03_curve.png"
    assert len({a, b, c, d}) == 4  # a fixed temp name would let two writers of one file collide
    assert all(src.parent.parent == dst.parent and src.parent.name.startswith(".") for src, dst in sources)


def test_a_failing_figure_leaves_the_old_one_and_no_temp_file(results):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    path = course.save_figure(fig, "05_curve")
    before = path.read_bytes()

    def broken_savefig(f, **kwargs):
        Path(f).write_bytes(b"\x89PNG half")
        raise RuntimeError("renderer crashed")

    fig.savefig = broken_savefig
    with pytest.raises(RuntimeError, match="renderer crashed"):
        course.save_figure(fig, "05_curve")
    plt.close(fig)
    assert path.read_bytes() == before and temps(results) == []


def test_a_run_notebook_is_replaced_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv(course.RESULTS_ENV, str(tmp_path / "results"))
    path = tmp_path / "00_demo.ipynb"
    write_notebook(path, "00")
    before = path.read_text()
    with open(path) as reader:
        course.run_notebook(path)
        assert reader.read() == before  # the old notebook, whole
    executed = nbformat.read(path, as_version=4)
    assert executed.cells[1].execution_count == 1 and path.read_text().endswith("\n")
    assert temps(tmp_path) == [] and nbformat.validate(executed) is None
