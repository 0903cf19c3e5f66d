import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from pruning_utils.config import load_checkpoint, save_checkpoint, seed_everything
from pruning_utils.data import get_loaders
from pruning_utils.pipeline import PipelineResult, create_pruning_pipeline, load_pruned_model, main
from pruning_utils.training import baseline_path, build_model_for, evaluate, train

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One cache for the module holding a quick baseline trained for 3 epochs instead of 20 (speed).

    It is stored where and how ``train_baseline`` caches it, so the pipeline takes it as its teacher.
    """
    cache = tmp_path_factory.mktemp("pipeline-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PRUNING_CACHE_DIR", str(cache))
        seed_everything(0)
        model = build_model_for("quick")
        loaders = get_loaders("quick")
        history = train(model, loaders.train, epochs=3, profile="quick", device="cpu", progress=False)
        save_checkpoint({"state_dict": model.state_dict(), "history": history,
                         "test_accuracy": evaluate(model, loaders.test)["accuracy"],
                         "val_accuracy": evaluate(model, loaders.val)["accuracy"]}, baseline_path("quick"))
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
