import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from _short_baseline import cache_short_baseline
from pruning_utils import pipeline
from pruning_utils.config import CheckpointError, get_profile, load_checkpoint, save_checkpoint, seed_everything
from pruning_utils.data import get_loaders
from pruning_utils.masks import magnitude_prune, make_permanent, prunable_layers
from pruning_utils.pipeline import PipelineResult, create_pruning_pipeline, load_pruned_model, main
from pruning_utils.training import baseline_path, build_model_for, evaluate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One cache for the module holding a quick baseline trained for 3 epochs instead of 20 (speed)."""
    cache = tmp_path_factory.mktemp("pipeline-cache")
    cache_short_baseline(cache)
    return cache


@pytest.fixture(scope="module")
def cli_run(shared_cache, tmp_path_factory):
    """``python -m pruning_utils.pipeline`` on the quick profile, 2 epochs, in a fresh process."""
    out = tmp_path_factory.mktemp("pipeline-out") / "pruned.pt"
    env = {k: v for k, v in os.environ.items() if k not in ("PRUNING_DATA_DIR", "PRUNING_PROFILE")}
    env.update(PRUNING_CACHE_DIR=str(shared_cache), OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"))
    proc = subprocess.run(
        [sys.executable, "-m", "pruning_utils.pipeline", "--profile", "quick", "--sparsity", "0.9",
         "--epochs", "2", "--out", str(out), "--no-progress", "--device", "cpu"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr  # e.g. runpy's "found in sys.modules" warning
    return out, proc.stdout


def prunable_zeros(model):
    """Brute force: zeros among the conv/linear weights, and how many such weights there are."""
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return sum(int((w == 0).sum()) for w in weights), sum(w.numel() for w in weights)


def test_cli_writes_a_checkpoint_that_reproduces_the_reported_numbers(cli_run, shared_cache):
    out, stdout = cli_run
    assert out.is_file() and not list(out.parent.glob("*.tmp"))  # atomic: no temp file left behind
    ckpt = load_checkpoint(out)  # weights_only=True
    model = build_model_for("quick")
    model.load_state_dict(ckpt["state_dict"])  # plain weights: the masks were made permanent
    assert not any("parametrizations" in k for k in ckpt["state_dict"])
    zeros, total = prunable_zeros(model)
    assert zeros == round(0.9 * total)
    assert ckpt["sparsity"] == pytest.approx(zeros / total)
    accuracy = evaluate(model, get_loaders("quick").test, device="cpu")["accuracy"]
    assert accuracy == ckpt["test_accuracy"]
    assert accuracy > 0.8  # 2 epochs of distillation recover most of the dense accuracy at 90%
    assert ckpt["epochs"] == 2 and ckpt["target_sparsity"] == 0.9 and ckpt["profile"] == "quick"
    # what it printed is what it saved
    assert f"pruned {ckpt['test_accuracy']:.2%}" in stdout and f"{ckpt['sparsity']:.2%} sparsity" in stdout
    assert str(out) in stdout
    # the teacher was the cached baseline
    assert ckpt["dense_accuracy"] == load_checkpoint(shared_cache / baseline_path("quick").name)["test_accuracy"]


def test_function_returns_a_result_record(cli_run, shared_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNING_CACHE_DIR", str(shared_cache))  # reuse the baseline the CLI trained
    out = tmp_path / "sub" / "pruned.pt"
    result = create_pruning_pipeline("quick", sparsity=0.8, epochs=1, out=out, alpha=0.5, device="cpu",
                                     progress=False)
    assert isinstance(result, PipelineResult) and result.checkpoint == out and out.is_file()
    model, ckpt = load_pruned_model(out)
    zeros, total = prunable_zeros(model)
    assert result.sparsity == zeros / total == round(0.8 * total) / total
    assert result.pruned_accuracy == evaluate(model, get_loaders("quick").test)["accuracy"]
    assert result.dense_accuracy == load_checkpoint(baseline_path("quick"))["test_accuracy"]
    params = list(model.parameters())
    assert result.total_params == sum(p.numel() for p in params)
    assert result.nonzero_params == sum(int((p != 0).sum()) for p in params)
    assert result.compression_ratio == pytest.approx(result.total_params / result.nonzero_params)
    assert result.sparse_size_mb == pytest.approx(result.nonzero_params * 4 / 2**20)
    assert result.checkpoint_mb == pytest.approx(out.stat().st_size / 2**20)
    assert len(result.history["epoch"]) == 1 and result.sparsity_history[-1]["target"] == 0.8
    assert result.summary()["accuracy_drop"] == pytest.approx(result.dense_accuracy - result.pruned_accuracy)
    assert torch.equal(result.model.fc.weight.cpu(), model.fc.weight)
    assert ckpt["alpha"] == 0.5 and ckpt["temperature"] == 4.0


@pytest.mark.parametrize("argv, message", [
    (["--sparsity", "1.0"], r"sparsity must be in \[0, 1\)"),
    (["--sparsity", "-0.2"], r"sparsity must be in \[0, 1\)"),
    (["--epochs", "0"], "epochs must be an int >= 1"),
    (["--temperature", "0"], "temperature must be a finite number > 0"),
    (["--alpha", "2"], r"alpha must be in \[0, 1\]"),
    (["--lr", "-1"], "lr must be a finite number > 0"),
    (["--profile", "huge"], "invalid choice: 'huge'"),
    (["--sparsity", "lots"], "invalid float value"),
])
def test_cli_bad_inputs_exit_with_a_clear_message(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--out", str(tmp_path / "x.pt"), "--no-progress", "--device", "cpu"])
    assert exit_info.value.code == 2
    assert __import__("re").search(message, capsys.readouterr().err)
    assert not (tmp_path / "x.pt").exists()


def test_function_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="prune_fraction must be in \\(0, 1\\]"):
        create_pruning_pipeline("quick", 0.5, 1, tmp_path / "a.pt", prune_fraction=0)
    with pytest.raises(ValueError, match="out must be a file path, not a directory"):
        create_pruning_pipeline("quick", 0.5, 1, tmp_path)
    with pytest.raises(ValueError, match="profile must be one of"):
        create_pruning_pipeline("tiny", 0.5, 1, tmp_path / "a.pt")
    with pytest.raises(ValueError, match="scope must be 'global' or 'layer'"):
        create_pruning_pipeline("quick", 0.5, 1, tmp_path / "a.pt", scope="row")
    with pytest.raises(TypeError, match=r"sparsity must be a number in \[0, 1\)"):
        create_pruning_pipeline("quick", "90%", 1, tmp_path / "a.pt")


# --- arguments, output path and device: all checked before any training starts -------------------


@pytest.fixture
def no_training(monkeypatch):
    """Training must not start: the baseline (the first training step) raises if it is reached."""
    def refuse(*args, **kwargs):
        raise AssertionError("training started before the arguments were checked")
    monkeypatch.setattr(pipeline, "train_baseline", refuse)


def cli_error(capsys) -> str:
    """The one error line argparse printed (after the usage lines); no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and err.rstrip().splitlines()[-1] == errors[0], err
    assert errors[0].startswith("python -m pruning_utils.pipeline: error: "), err
    return errors[0]


def run_cli(*argv):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--no-progress"])
    assert exit_info.value.code == 2


def test_cli_refuses_a_device_this_machine_lacks(capsys, tmp_path, monkeypatch, no_training):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run_cli("--device", "cuda", "--out", str(tmp_path / "x.pt"))
    assert "device 'cuda' is not available: torch sees no CUDA GPU" in cli_error(capsys)
    run_cli("--device", "nonsense", "--out", str(tmp_path / "x.pt"))
    assert "device must be a torch device name such as 'cpu' or 'cuda'; got 'nonsense'" in cli_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_an_output_path_it_cannot_write(capsys, tmp_path, no_training):
    (tmp_path / "a_file").write_text("x")
    run_cli("--out", str(tmp_path / "a_file" / "sub" / "x.pt"), "--device", "cpu")
    folder, blocker = str(tmp_path / "a_file" / "sub"), str(tmp_path / "a_file")
    assert f"out's folder {folder!r} cannot be created: {blocker!r} is a file" in cli_error(capsys)
    run_cli("--out", str(tmp_path), "--device", "cpu")
    assert "out must be a file path, not a directory" in cli_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_an_unwritable_output_folder_is_refused(tmp_path, monkeypatch, no_training):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # os.access is what the OS answers for this process (also for read-only file systems); as root a
    # chmod cannot make a folder unwritable, so the OS's "no" is simulated for this one folder
    monkeypatch.setattr(pipeline.os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))
    with pytest.raises(ValueError, match=f"out's folder {re.escape(repr(str(locked)))} is not writable"):
        create_pruning_pipeline("quick", 0.5, 1, locked / "deeper" / "x.pt", device="cpu")
    assert not (locked / "deeper").exists()


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="root may write into any folder")
def test_a_read_only_output_folder_is_refused(tmp_path, no_training):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(ValueError, match="is not writable"):
            create_pruning_pipeline("quick", 0.5, 1, locked / "x.pt", device="cpu")
    finally:
        locked.chmod(0o755)


def test_function_checks_out_and_progress_types(tmp_path, no_training):
    with pytest.raises(TypeError, match="out must be a file path \\(str or Path\\); got 3"):
        create_pruning_pipeline("quick", 0.5, 1, 3)
    with pytest.raises(TypeError, match="progress must be True or False"):
        create_pruning_pipeline("quick", 0.5, 1, tmp_path / "x.pt", progress="no")


def test_cli_reports_a_damaged_cached_baseline_in_one_line(capsys, tmp_path):
    baseline = baseline_path("quick")
    torch.save({"state_dict": {}, "where": Path("x")}, baseline)  # weights_only refuses the Path
    run_cli("--out", str(tmp_path / "x.pt"), "--device", "cpu", "--epochs", "1")
    line = cli_error(capsys)
    assert str(baseline) in line and "weights_only=True) refuses" in line and "\x1b" not in line
    assert not (tmp_path / "x.pt").exists()


# --- reading pipeline checkpoints --------------------------------------------------------------


def pipeline_checkpoint(**changes):
    """A checkpoint as the pipeline writes it, of a quick model pruned to 80%, with ``changes`` applied."""
    seed_everything(0)
    model = build_model_for("quick")
    magnitude_prune(prunable_layers(model), 0.8)
    make_permanent(model)
    zeros, total = prunable_zeros(model)
    ckpt = pipeline._checkpoint(model, get_profile("quick"), target_sparsity=0.8, sparsity=zeros / total,
                                test_accuracy=0.9, dense_accuracy=0.95, epochs=2, temperature=4.0, alpha=0.7, seed=0)
    for key, value in changes.items():
        if value is DELETE:
            del ckpt[key]
        else:
            ckpt[key] = value(ckpt) if callable(value) else value
    return model, ckpt


DELETE = object()


def test_a_well_formed_pipeline_checkpoint_loads(tmp_path):
    model, ckpt = pipeline_checkpoint()
    path = save_checkpoint(ckpt, tmp_path / "p.pt")
    loaded, meta = load_pruned_model(path, device="cpu")
    assert not loaded.training and meta["sparsity"] == ckpt["sparsity"]
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))


def fewer_zeros(ckpt):
    state = dict(ckpt["state_dict"])
    state["fc.weight"] = torch.ones_like(state["fc.weight"])
    return state


@pytest.mark.parametrize("content, phrase", [
    (lambda: build_model_for("quick").state_dict(), "lacks the key(s) ['state_dict', 'profile'"),  # a plain state_dict
    (lambda: [1, 2], "holds a list, not the dict"),
    (lambda: torch.zeros(3), "holds a tensor of shape (3,)"),
    (lambda: pipeline_checkpoint(sparsity=DELETE)[1], "lacks the key(s) ['sparsity']"),
    (lambda: pipeline_checkpoint(state_dict=DELETE, seed=DELETE)[1], "lacks the key(s) ['state_dict', 'seed']"),
    (lambda: pipeline_checkpoint(sparsity="0.8")[1], "'sparsity' should be of type Real; it is a str"),
    (lambda: pipeline_checkpoint(epochs=2.0)[1], "'epochs' should be of type Integral; it is a float"),
    (lambda: pipeline_checkpoint(model_kwargs=[1])[1], "'model_kwargs' should be of type dict"),
    (lambda: pipeline_checkpoint(state_dict=lambda c: {**c["state_dict"], "fc.bias": [0.0] * 10})[1],
     "has a state_dict entry 'fc.bias' that is not a tensor (list)"),
    (lambda: pipeline_checkpoint(profile="turbo")[1], "names profile 'turbo', which this course does not have"),
    (lambda: pipeline_checkpoint(model="transformer")[1], "records model 'transformer' with model_kwargs"),
    (lambda: pipeline_checkpoint(model_kwargs={"depth": 20})[1], "which does not build (TypeError"),
    (lambda: pipeline_checkpoint(model_kwargs=lambda c: {**c["model_kwargs"], "widths": (8, 16, 16)})[1],
     "has weights that do not fit its model 'small_cnn'"),
    (lambda: pipeline_checkpoint(state_dict=lambda c: {k: v for k, v in c["state_dict"].items() if k != "fc.bias"})[1],
     "has weights that do not fit its model"),
    (lambda: pipeline_checkpoint(input_shape=[3, 32, 32])[1],
     "records input_shape [3, 32, 32], which its model does not take"),
    (lambda: pipeline_checkpoint(input_shape=[1, 8])[1], "input_shape must be (channels, height, width)"),
    (lambda: pipeline_checkpoint(sparsity=0.5)[1], "records sparsity 0.5, but its prunable weights are 0.79999"),
    (lambda: pipeline_checkpoint(state_dict=fewer_zeros)[1], "records sparsity 0.79999"),
    (lambda: pipeline_checkpoint(sparsity=1.5)[1], "has a bad value: sparsity must be in [0, 1]"),
    (lambda: pipeline_checkpoint(target_sparsity=1.0)[1], "has a bad value: target_sparsity must be in [0, 1)"),
    (lambda: pipeline_checkpoint(test_accuracy=97.5)[1], "has a bad value: test_accuracy must be in [0, 1]"),
    (lambda: pipeline_checkpoint(epochs=0)[1], "has a bad value: epochs must be an int >= 1"),
    (lambda: pipeline_checkpoint(temperature=-1.0)[1], "has a bad value: temperature must be a finite number > 0"),
])
def test_malformed_or_foreign_pipeline_checkpoints_raise_checkpoint_errors(tmp_path, content, phrase):
    path = save_checkpoint(content(), tmp_path / "p.pt")
    with pytest.raises(CheckpointError) as info:
        load_pruned_model(path)
    message = str(info.value)
    assert str(path) in message and phrase in message, message
    assert "\n" not in message


def test_unreadable_pipeline_checkpoints(tmp_path):
    good = save_checkpoint(pipeline_checkpoint()[1], tmp_path / "good.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "truncated.pt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "folder.pt").mkdir()
    torch.save({**pipeline_checkpoint()[1], "out": Path("x")}, tmp_path / "object.pt")
    for name, phrase in [("empty.pt", "is empty"), ("truncated.pt", "truncated"), ("folder.pt", "is a directory"),
                         ("object.pt", "weights_only=True) refuses"), ("absent.pt", "does not exist")]:
        with pytest.raises(CheckpointError) as info:
            load_pruned_model(tmp_path / name)
        assert str(tmp_path / name) in str(info.value) and phrase in str(info.value), str(info.value)
