"""The pipeline under torchrun: DistributedDataParallel on 2 CPU processes (gloo), against one process."""

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from _short_baseline import cache_short_baseline
from pruning_utils import pipeline
from pruning_utils.config import get_profile, load_checkpoint
from pruning_utils.data import DeviceLoader, get_loaders
from pruning_utils.pipeline import _World, _process_group, _shard, create_pruning_pipeline, load_pruned_model
from pruning_utils.stats import paired_test
from pruning_utils.training import TrainState, evaluate

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 2

# Runs the CLI's entry point, pipeline.main, as `-m pruning_utils.pipeline` does, and has every rank save
# what create_pruning_pipeline returned to it (the test compares the ranks; the CLI prints rank 0's only).
SPY = textwrap.dedent("""
    import os, sys, torch
    from pruning_utils import pipeline
    real = pipeline.create_pruning_pipeline
    def spy(*args, **kwargs):
        result = real(*args, **kwargs)
        torch.save({"state": result.model.state_dict(), "history": result.history, "accuracy": result.pruned_accuracy,
                    "sparsity": result.sparsity, "checkpoint_mb": result.checkpoint_mb},
                   os.path.join(os.environ["SPY_DIR"], f"rank{os.environ['RANK']}.pt"))
        return result
    pipeline.create_pruning_pipeline = spy
    sys.exit(pipeline.main(sys.argv[1:]))
""")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One cache for the module holding a quick baseline trained for 3 epochs instead of 20 (speed)."""
    cache = tmp_path_factory.mktemp("ddp-cache")
    cache_short_baseline(cache)
    return cache


@pytest.fixture(scope="module")
def torchrun(shared_cache, tmp_path_factory):
    """The pipeline's CLI under `python -m torch.distributed.run --nproc-per-node 2` on the CPU."""
    base = tmp_path_factory.mktemp("ddp-run")
    out, spy_dir = base / "out" / "pruned.pt", base / "ranks"
    spy_dir.mkdir()
    script = base / "spy.py"
    script.write_text(SPY)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PRUNING_DATA_DIR", "PRUNING_PROFILE", "WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(PRUNING_CACHE_DIR=str(shared_cache), OMP_NUM_THREADS="1", SPY_DIR=str(spy_dir),
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
         "--master-port", str(free_port()), str(script), "--profile", "quick", "--sparsity", "0.9",
         "--epochs", str(EPOCHS), "--out", str(out), "--device", "cpu"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(spy_dir / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    return out, proc, ranks


@pytest.fixture(scope="module")
def single(shared_cache, tmp_path_factory):
    """The same run in one process (the reference)."""
    out = tmp_path_factory.mktemp("single") / "pruned.pt"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PRUNING_CACHE_DIR", str(shared_cache))
        for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
            mp.delenv(name, raising=False)
        create_pruning_pipeline("quick", sparsity=0.9, epochs=EPOCHS, out=out, device="cpu", progress=False)
    return out


def test_torchrun_trains_one_model_on_both_ranks_and_writes_one_checkpoint(torchrun):
    out, proc, (rank0, rank1) = torchrun
    # one checkpoint, nothing else in its folder (no temp file, no second copy)
    assert sorted(p.name for p in out.parent.iterdir()) == ["pruned.pt"]
    model, ckpt = load_pruned_model(out)
    # exact target sparsity, in the file and in the weights
    weights = [m.weight for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    zeros, total = sum(int((w == 0).sum()) for w in weights), sum(w.numel() for w in weights)
    assert zeros == round(0.9 * total) and ckpt["sparsity"] == zeros / total
    # both ranks end with the same network bit for bit (so the same masks), the one rank 0 saved
    assert rank0["state"].keys() == rank1["state"].keys() == ckpt["state_dict"].keys()
    for key, value in rank0["state"].items():
        assert torch.equal(value, rank1["state"][key]), key
        assert torch.equal(value, ckpt["state_dict"][key]), key
    # ... after seeing different data: each rank's own share of the batches, hence its own training loss
    assert rank0["history"]["train_loss"] != rank1["history"]["train_loss"]
    assert len(rank0["history"]["epoch"]) == EPOCHS
    # every rank reports the accuracy of the whole test set, the one in the checkpoint
    accuracy = evaluate(model, get_loaders("quick").test, device="cpu")["accuracy"]
    assert rank0["accuracy"] == rank1["accuracy"] == ckpt["test_accuracy"] == accuracy
    assert rank1["checkpoint_mb"] == rank0["checkpoint_mb"] == pytest.approx(out.stat().st_size / 2**20)
    # rank 0 alone prints the result and draws the progress bars
    assert proc.stdout.count("profile quick: pruned to") == 1, proc.stdout
    assert f"pruned {ckpt['test_accuracy']:.2%}" in proc.stdout
    assert proc.stderr.count("prune to 90%: 100%") == 1, proc.stderr[-2000:]  # one bar, run to its end
    assert "Warning" not in proc.stderr, proc.stderr[-2000:]


def test_torchrun_accuracy_matches_one_process(torchrun, single):
    """Same schedule, same global batch, same number of steps: only the batch order and batch norm's
    per-rank statistics differ, so the two pruned networks must not differ beyond noise on the test set
    (paired test on the same 360 images; its interval of the difference must hold 0)."""
    out, _, _ = torchrun
    test = get_loaders("quick").test
    correct = [evaluate(load_pruned_model(path)[0], test, device="cpu", per_image=True)["correct"]
               for path in (out, single)]
    comparison = paired_test(*correct, names=("torchrun", "one process"))
    assert comparison.difference.low <= 0.0 <= comparison.difference.high, comparison
    assert load_checkpoint(single)["epochs"] == load_checkpoint(out)["epochs"] == EPOCHS
    assert correct[0].float().mean() > 0.8  # as in one process: 2 epochs recover most of the accuracy at 90%


@pytest.mark.parametrize("world_size", [2, 3])
def test_shards_split_every_epoch_between_the_ranks(world_size):
    """DataLoader path: the ranks' batches together are one process's epoch (padded to a multiple of the
    ranks), in batches that add up to one process's batch, in a new order each epoch (set_epoch)."""
    loader = get_loaders("quick").train
    n, batch = len(loader.dataset), loader.batch_size
    shards = [_shard(loader, _World(rank, world_size, None), seed=5) for rank in range(world_size)]
    cbs = [pipeline._SetEpoch(s.sampler) for s in shards]
    epochs = []
    for epoch in range(2):
        for cb in cbs:  # as train() calls them: set_epoch(0) when it begins, set_epoch(1) after epoch 0
            state = TrainState(None, None, epoch=0)
            cb.on_train_begin(state) if epoch == 0 else cb.on_epoch_end(state)
        seen = [list(shard.sampler) for shard in shards]
        assert len({len(s) for s in seen}) == 1  # as many images on every rank
        flat = [i for s in seen for i in s]
        assert set(flat) == set(range(n)) and len(flat) == n + (-n % world_size)
        assert all(b[0].shape[0] <= -(-batch // world_size) for shard in shards for b in shard)
        assert len(shards[0]) == -(-len(seen[0]) // -(-batch // world_size))
        epochs.append(seen)
    assert epochs[0] != epochs[1]  # set_epoch reshuffled
    again = _shard(loader, _World(0, world_size, None), seed=5)
    assert list(again.sampler) == epochs[0][0]  # seeded: the same order for the same seed and epoch


def test_device_loader_shards_hold_their_images():
    """DeviceLoader path (the GPU profile): each rank's batches are its sampler's images, augmented by the
    loader (labels are the image numbers here, so a batch says which images it holds)."""
    n = 37
    images = torch.arange(n, dtype=torch.uint8).reshape(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    loader = DeviceLoader(images, torch.arange(n), batch_size=8, mean=[0.0], std=[1.0], shuffle=True,
                          generator=torch.Generator().manual_seed(0))
    shards = [_shard(loader, _World(rank, 2, None), seed=1) for rank in range(2)]
    for shard in shards:
        batches = list(shard)
        assert [len(y) for _, y in batches] == [4] * 4 + [3] and len(shard) == 5
        labels = torch.cat([y for _, y in batches])
        assert labels.tolist() == list(shard.sampler)
        pixels = torch.cat([x for x, _ in batches])[:, 0, 0, 0]
        assert torch.allclose(pixels * 255, labels.float())  # each image is the one its label names
    both = torch.cat([torch.cat([y for _, y in s]) for s in shards]).tolist()
    assert sorted(set(both)) == list(range(n)) and len(both) == n + 1  # one image repeated to even the shares


def test_process_group_is_destroyed_even_on_error(monkeypatch):
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(RuntimeError, match="boom"):
        with _process_group(torch.device("cpu")) as world:
            assert dist.is_initialized() and (world.rank, world.size) == (0, 1)
            raise RuntimeError("boom")
    assert not dist.is_initialized()


@pytest.mark.parametrize("name, value, message", [
    ("WORLD_SIZE", "two", "environment variable WORLD_SIZE must be an integer"),
    ("LOCAL_RANK", "x", "environment variable LOCAL_RANK must be an integer"),
])
def test_a_broken_torchrun_environment_is_refused_before_training(name, value, message, monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        create_pruning_pipeline("quick", epochs=1, out=tmp_path / "x.pt", device="cpu", progress=False)
    assert not list(tmp_path.iterdir()) and not dist.is_initialized()


def test_one_gpu_per_process_under_torchrun():
    with pytest.raises(ValueError, match="pass device 'cuda', not 'cuda:1'"):
        pipeline._rank_device(torch.device("cuda:1"), 0)
    with pytest.raises(ValueError, match="cuda .one GPU per process. or cpu"):
        pipeline._rank_device(torch.device("mps"), 0)
    assert pipeline._rank_device(torch.device("cpu"), 1) == torch.device("cpu")


def test_checksum_tells_apart_masks_that_differ_in_one_place():
    mask = torch.ones(6, 5)
    moved, flipped = mask.clone(), mask.clone()
    mask[0, 0] = 0
    moved[0, 1] = 0  # the same count of zeros, somewhere else
    flipped[0, 0] = 0
    flipped[3, 3] = 0
    weights = torch.randn(7)
    sums = {int(pipeline._checksum([m, weights])) for m in (mask, moved, flipped)}
    assert len(sums) == 3
    assert int(pipeline._checksum([mask.clone(), weights.clone()])) == int(pipeline._checksum([mask, weights]))
    nudged = weights.clone()
    nudged[2] = torch.nextafter(nudged[2], torch.tensor(float("inf")))  # one bit
    assert int(pipeline._checksum([mask, nudged])) != int(pipeline._checksum([mask, weights]))


@pytest.mark.parametrize("other_offset", [0, 1, -1])
def test_check_same_raises_when_another_rank_disagrees(other_offset, monkeypatch):
    """The all-reduce of (checksum, -checksum) with MAX gives the largest and the smallest checksum of all
    ranks; simulated here with a second rank whose checksum is ``other_offset`` away."""
    tensors = [torch.ones(3)]
    theirs = int(pipeline._checksum(tensors)) + other_offset

    def all_reduce(both, op=None, group=None):
        assert op == dist.ReduceOp.MAX
        both.copy_(torch.maximum(both, torch.tensor([theirs, -theirs])))

    monkeypatch.setattr(pipeline.dist, "all_reduce", all_reduce)
    world = _World(0, 2, None)
    if other_offset == 0:
        pipeline._check_same(world, tensors, "the masks")
    else:
        with pytest.raises(RuntimeError, match="the masks differ between the 2 processes"):
            pipeline._check_same(world, tensors, "the masks")
