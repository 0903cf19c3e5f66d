"""The sparse checkpoint format: exact round trips (CSR layers and empty tensors included), sizes, and
every damaged or foreign file refused with a CheckpointError naming it."""

import copy
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from pruning_utils.config import CheckpointError, save_checkpoint
from pruning_utils.csr import CSRLinear, to_sparse_linear
from pruning_utils.masks import magnitude_prune, make_permanent, prunable_layers
from pruning_utils.models import MLP, SmallCNN, cifar_resnet
from pruning_utils.params import plain_state_dict
from pruning_utils.sparse_format import SPARSE_FORMAT, SPARSE_VERSION, checkpoint_sizes, load_sparse, save_sparse
from _pruned_models import pruned_cnn, pruned_mlp

ENCODINGS = ["bitmask", "csr"]


def assert_same_state(restored, expected):
    """Exact equality, entry by entry: dtype, layout and values (a CSR tensor's own indices included)."""
    assert list(restored) == list(expected)
    for key, value in expected.items():
        got = restored[key]
        assert got.dtype == value.dtype and got.layout == value.layout and got.shape == value.shape, key
        if value.layout == torch.sparse_csr:
            for part in ("crow_indices", "col_indices", "values"):
                a, b = getattr(got, part)(), getattr(value, part)()
                assert a.dtype == b.dtype and torch.equal(a, b), (key, part)
        else:
            assert torch.equal(got, value), key


# --- round trips (the first four duplicate tests of test_metrics.py) ---------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_sparse_checkpoint_round_trips_exactly_and_is_smaller(tmp_path, encoding):
    model = pruned_cnn()
    path = save_sparse(model, tmp_path / "model.pt", encoding=encoding)
    restored = load_sparse(path)
    expected = plain_state_dict(model)
    assert_same_state(restored, expected)
    dense_path = save_checkpoint(expected, tmp_path / "dense.pt")
    assert os.path.getsize(path) < os.path.getsize(dense_path)
    fresh = SmallCNN(widths=(8, 16, 16))
    fresh.load_state_dict(restored)
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(fresh.eval()(x), model.eval()(x))
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_sparse_checkpoint_size_goal_at_90_percent():
    # at 90% a bitmask file can be at most 1 / (0.1 + 1/32) = 7.6x smaller; the goal is 7x
    sizes = checkpoint_sizes(pruned_mlp(0.9, in_features=512, hidden=(512, 512)))
    assert sizes["size_ratio"] >= 7.0
    assert checkpoint_sizes(pruned_mlp(0.5, in_features=512, hidden=(512, 512)))["size_ratio"] > 1.5
    torch.manual_seed(0)
    resnet = cifar_resnet(20)  # 116 state-dict entries: the bookkeeping must stay small
    magnitude_prune(prunable_layers(resnet), 0.9)
    assert checkpoint_sizes(resnet)["size_ratio"] >= 7.0


def test_fp16_values_halve_the_file_and_stay_close(tmp_path):
    model = pruned_mlp(0.9)
    exact = save_sparse(model, tmp_path / "fp32.pt")
    half = save_sparse(model, tmp_path / "fp16.pt", fp16=True)
    assert os.path.getsize(half) < 0.7 * os.path.getsize(exact)
    restored, expected = load_sparse(half), plain_state_dict(model)
    for key, value in expected.items():
        assert restored[key].dtype == value.dtype
        torch.testing.assert_close(restored[key], value, rtol=1e-3, atol=1e-4)
        assert torch.equal(restored[key] == 0, value == 0)


def test_sparse_checkpoint_bad_input_and_foreign_files(tmp_path):
    model = pruned_mlp(0.5)
    with pytest.raises(ValueError, match="encoding must be one of"):
        save_sparse(model, tmp_path / "x.pt", encoding="coo")
    with pytest.raises(TypeError, match="model_or_state_dict"):
        save_sparse([1, 2], tmp_path / "x.pt")
    with pytest.raises(TypeError, match="'bad' is not a tensor"):
        save_sparse({"w": torch.zeros(3), "bad": 1.5}, tmp_path / "x.pt")
    with pytest.raises(TypeError, match="'coo' has layout torch.sparse_coo"):
        save_sparse({"coo": torch.eye(3).to_sparse()}, tmp_path / "x.pt")
    with pytest.raises(TypeError, match="fp16 must be True or False"):
        save_sparse(model, tmp_path / "x.pt", fp16="yes")
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    save_checkpoint({"w": torch.zeros(3)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a sparse checkpoint"):
        load_sparse(tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_sparse(tmp_path / "missing.pt")


# --- models converted with to_sparse_linear --------------------------------------------------


def permanent_cnn(seed):
    model = pruned_cnn(0.8, seed)
    make_permanent(model)  # the convolutions keep their zeros as plain weights; the Linear becomes CSR
    return model


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("build", [lambda seed: pruned_mlp(0.9, seed), permanent_cnn], ids=["mlp", "cnn"])
def test_models_with_csr_layers_round_trip_exactly(tmp_path, encoding, build):
    sparse_model = to_sparse_linear(build(0))
    path = save_sparse(sparse_model, tmp_path / "csr.pt", encoding=encoding)
    restored = load_sparse(path)
    assert_same_state(restored, sparse_model.state_dict())  # the CSR weights come back as the same CSR tensors
    # into another converted model of the same architecture (other weights, other number of non-zeros)
    other = to_sparse_linear(build(1))
    other.load_state_dict(restored, assign=True)
    assert_same_state(other.state_dict(), sparse_model.state_dict())
    x = torch.randn(16, *((1, 28, 28) if isinstance(sparse_model, MLP) else (1, 8, 8)))
    with torch.no_grad():
        assert torch.equal(other(x), sparse_model(x))
    # and into a copy of itself, in place (same number of non-zeros)
    twin = copy.deepcopy(sparse_model)
    twin.load_state_dict(restored)
    with torch.no_grad():
        assert torch.equal(twin(x), sparse_model(x))
    assert isinstance(other.fc1 if hasattr(other, "fc1") else other.fc, CSRLinear)


def test_csr_layers_with_fp16_values(tmp_path):
    sparse_model = to_sparse_linear(pruned_mlp(0.9))
    restored = load_sparse(save_sparse(sparse_model, tmp_path / "h.pt", fp16=True))
    weight, original = restored["fc1.weight"], sparse_model.fc1.weight
    assert weight.layout == torch.sparse_csr and weight.dtype == torch.float32
    assert torch.equal(weight.crow_indices(), original.crow_indices())
    assert torch.equal(weight.col_indices(), original.col_indices())
    torch.testing.assert_close(weight.values(), original.values(), rtol=1e-3, atol=1e-4)


# --- empty tensors -----------------------------------------------------------------------------


class WithEmpty(nn.Module):
    def __init__(self):
        super().__init__()
        self.empty_in = nn.Linear(0, 4)  # weight (4, 0)
        self.register_buffer("nothing", torch.zeros(0))
        self.register_buffer("no_rows", torch.zeros(0, 5))
        self.register_buffer("middle", torch.zeros(2, 0, 3, dtype=torch.float64))
        self.register_buffer("no_ints", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("no_flags", torch.zeros(0, 2, dtype=torch.bool))
        self.register_buffer("scalar", torch.tensor(1.5))
        self.register_buffer("sparse", torch.tensor([[0.0, 2.0, 0.0, 0.0], [0.0] * 4, [1.0, 0.0, 0.0, 3.0]]))


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors is a no-op")
@pytest.mark.parametrize("fp16", [False, True])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_empty_tensors_round_trip(tmp_path, encoding, fp16):
    model = WithEmpty()
    restored = load_sparse(save_sparse(model, tmp_path / "e.pt", encoding=encoding, fp16=fp16))
    assert_same_state(restored, model.state_dict())
    fresh = WithEmpty()
    fresh.load_state_dict(restored)
    empty_csr = {"w": torch.zeros(0, 3).to_sparse_csr()}
    assert_same_state(load_sparse(save_sparse(empty_csr, tmp_path / "c.pt", encoding=encoding)), empty_csr)


# --- damaged and foreign files -------------------------------------------------------------------


def valid_payload(tmp_path, encoding="bitmask"):
    """A real save_sparse file of a small model with every kind of entry, as the dict it holds."""
    state = {"dense": torch.arange(6, dtype=torch.int64).reshape(2, 3), "sparse": torch.tensor([0.0, 0, 0, 2.5] * 10),
             "csr": torch.sparse_csr_tensor(torch.tensor([0, 1, 1], dtype=torch.int32),
                                            torch.tensor([2], dtype=torch.int32), torch.tensor([4.0]), (2, 3),
                                            check_invariants=True)}
    path = save_sparse(state, tmp_path / "valid.pt", encoding=encoding)
    payload = torch.load(path, weights_only=True)
    assert {e["kind"] for e in payload["entries"].values()} == {"dense", encoding, "sparse_csr"}
    return payload


def damage(tmp_path, change, encoding="bitmask"):
    payload = valid_payload(tmp_path, encoding)
    changed = change(payload)
    payload = payload if changed is None else changed
    path = tmp_path / "damaged.pt"
    torch.save(payload, path)  # written as a foreign tool would
    return path


def entry(name, **changes):
    def change(payload):
        payload["entries"][name].update(changes)
    return change


def without(key, name=None):
    def change(payload):
        (payload if name is None else payload["entries"][name]).pop(key)
    return change


def replace(key, value):
    def change(payload):
        payload[key] = value
    return change


def set_blob(name, value):
    def change(payload):
        payload["blobs"][name] = value
    return change


@pytest.mark.parametrize("change, phrase", [
    (lambda p: [1, 2], "is not a sparse checkpoint written by save_sparse (it holds a list)"),
    (lambda p: torch.zeros(3), "is not a sparse checkpoint written by save_sparse (it holds a tensor"),
    (lambda p: {"weight": torch.zeros(3)}, "is not a sparse checkpoint written by save_sparse (it holds a dict"),
    (replace("version", 2), "has sparse format version 2"),
    (without("entries"), "lacks the key(s) ['entries']"),
    (without("blobs"), "lacks the key(s) ['blobs']"),
    (replace("entries", [1]), "'entries' should be of type dict; it is a list"),
    (replace("blobs", "x"), "'blobs' should be of type dict"),
    (replace("encoding", "coo"), "has encoding 'coo'"),
    (set_blob("float32", [1.0, 2.0]), "blob 'float32' should be a 1-D tensor; it is a list"),
    (set_blob("float32", torch.zeros(2, 2)), "blob 'float32' should be a 1-D tensor; it is a tensor of shape (2, 2)"),
    (lambda p: p["entries"].update({"x": [1]}), "entry 'x': should be a dict; it is a list"),
    (lambda p: p["entries"].update({3: p["entries"]["dense"]}), "entry name 3 is not a str"),
    (entry("dense", dtype="nn"), "entry 'dense': dtype 'nn' is not a torch dtype"),
    (entry("dense", dtype=7), "entry 'dense': dtype 7 is not a torch dtype"),
    (entry("dense", shape=[-2, -3]), "shape [-2, -3] is not a list of sizes >= 0"),
    (entry("dense", shape="2x3"), "shape '2x3' is not a list of sizes >= 0"),
    (entry("dense", shape=[3, 3]), "part 'data' holds 6 values; the entry's shape needs 9"),
    (entry("dense", kind="coo"), "has unknown kind 'coo'"),
    (without("kind", "dense"), "has unknown kind None"),
    (without("data", "dense"), "part 'data' should be a [blob name, offset, length] reference; got None"),
    (entry("dense", data=["int64", 0]), "part 'data' should be a [blob name, offset, length] reference"),
    (entry("dense", data=["int64", -1, 6]), "part 'data' should be a [blob name, offset, length] reference"),
    (entry("dense", data=["int8", 0, 6]), "part 'data' refers to blob 'int8', which the file does not hold"),
    (entry("dense", data=["int64", 3, 6]), "part 'data' reads [3, 9) of blob 'int64', which holds 6 values"),
    (entry("dense", dtype="float32"), "part 'data' is torch.int64; expected torch.float32 or torch.float16"),
    (entry("dense", kind="bitmask"), "a torch.int64 tensor stored as 'bitmask'; only floating tensors are"),
    (entry("sparse", shape=[80]), "part 'bits' holds 5 values; the entry's shape needs 10"),
    (entry("sparse", values=["float32", 0, 3]), "part 'values' holds 3 values; the entry's shape needs 10"),
    (entry("sparse", bits=["float32", 0, 5]), "part 'bits' is torch.float32; expected torch.uint8"),
    (entry("csr", shape=[3, 2]), "part 'crow' holds 3 values; the entry's shape needs 4"),
    (entry("csr", shape=[2, 3, 1]), "a sparse CSR tensor must be 2-D"),
    (entry("csr", shape=[2, 2]), "its CSR indices are damaged"),  # column 2 of a 2-column matrix
    (entry("csr", crow=["int32", 2, 3]), "part 'crow' reads [2, 5) of blob 'int32', which holds 4 values"),
    (entry("csr", col=["float32", 0, 1]), "part 'col' is torch.float32; expected torch.int32 or torch.int64"),
])
def test_damaged_or_foreign_sparse_files_raise_checkpoint_errors_naming_the_file(tmp_path, change, phrase):
    path = damage(tmp_path, change)
    with pytest.raises(CheckpointError) as info:
        load_sparse(path)
    message = str(info.value)
    assert str(path) in message and phrase in message, message
    assert "\n" not in message


@pytest.mark.parametrize("change, phrase", [
    (entry("sparse", shape=[0]), "a CSR entry needs a non-empty tensor"),
    (entry("sparse", crow=["int32", 0, 1]), "part 'crow' holds 1 values; the entry's shape needs 2"),
    (entry("sparse", values=["float32", 0, 0]), "part 'values' holds 0 values; the entry's shape needs 10"),
])
def test_damaged_csr_encoded_entries(tmp_path, change, phrase):
    path = damage(tmp_path, change, encoding="csr")
    with pytest.raises(CheckpointError) as info:
        load_sparse(path)
    assert str(path) in str(info.value) and phrase in str(info.value), str(info.value)


def test_damaged_csr_indices_never_reach_a_kernel(tmp_path):
    def scramble(payload):
        ref = payload["entries"]["csr"]["col"]
        payload["blobs"][ref[0]][ref[1]] = 1000  # a column outside the matrix
    with pytest.raises(CheckpointError, match="its CSR indices are damaged"):
        load_sparse(damage(tmp_path, scramble))


def test_unreadable_sparse_files(tmp_path):
    good = save_sparse(pruned_mlp(0.5), tmp_path / "good.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "truncated.pt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "folder.pt").mkdir()
    torch.save({"format": SPARSE_FORMAT, "version": SPARSE_VERSION, "where": Path("x")}, tmp_path / "object.pt")
    for name, phrase in [("empty.pt", "is empty"), ("truncated.pt", "truncated"), ("folder.pt", "is a directory"),
                         ("object.pt", "weights_only=True) refuses")]:
        with pytest.raises(CheckpointError) as info:
            load_sparse(tmp_path / name)
        assert str(tmp_path / name) in str(info.value) and phrase in str(info.value), str(info.value)


def test_a_valid_file_with_every_kind_of_entry_loads(tmp_path):
    payload = valid_payload(tmp_path)
    restored = load_sparse(tmp_path / "valid.pt")
    assert torch.equal(restored["dense"], torch.arange(6).reshape(2, 3))
    assert torch.equal(restored["sparse"], torch.tensor([0.0, 0, 0, 2.5] * 10))
    assert torch.equal(restored["csr"].to_dense(), torch.tensor([[0.0, 0, 4], [0, 0, 0]]))
    assert payload["version"] == SPARSE_VERSION
