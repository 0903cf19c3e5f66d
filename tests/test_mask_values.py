"""Masks are values, nothing is written into a stored weight, shared weights are refused, layers are checked."""

import copy
import io
import pickle

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from pruning_utils import ThresholdPruner, count_parameters
from pruning_utils.masks import (
    MaskSerializationError,
    apply_mask,
    check_layers,
    get_mask,
    load_weights_keep_masks,
    magnitude_prune,
    make_permanent,
    prunable_layers,
    smallest_k,
    sparsity,
)
from pruning_utils.models import MLP, SmallCNN


def mlp(seed=0):
    torch.manual_seed(seed)
    return MLP(in_features=16, hidden=(24,), num_classes=4)


def cnn(seed=0):
    torch.manual_seed(seed)
    return SmallCNN(widths=(4, 8), input_size=8)


# --- masks are values -------------------------------------------------------------------------------


def test_apply_mask_copies_the_mask_it_is_given():
    model = mlp()
    layer = model.net[0] if hasattr(model, "net") else prunable_layers(model)[0][1]
    mask = torch.ones_like(layer.weight)
    mask[0, :5] = 0
    apply_mask(layer, mask)
    mask.zero_()  # the caller's tensor changes; the layer's mask must not
    assert int((layer.weight == 0).sum()) == 5


def test_two_layers_given_one_tensor_do_not_share_a_buffer():
    a, b = nn.Linear(6, 6), nn.Linear(6, 6)
    mask = torch.ones(6, 6)
    mask[0] = 0
    apply_mask(a, mask)
    apply_mask(b, mask)
    mask_a = a.parametrizations.weight[0].mask
    mask_b = b.parametrizations.weight[0].mask
    assert mask_a.data_ptr() != mask_b.data_ptr()
    more = torch.ones(6, 6)
    more[1] = 0
    apply_mask(a, more)  # a second mask on a only
    assert int((b.weight == 0).sum()) == 6 and int((a.weight == 0).sum()) == 12


def test_get_mask_and_threshold_pruner_masks_do_not_change_after_a_later_prune():
    model = cnn()
    layers = prunable_layers(model)
    magnitude_prune(layers, 0.3)
    held = get_mask(layers[0][1])
    before = held.clone()
    pruner = ThresholdPruner(model)
    pruner.apply_global_pruning(0.5)
    masks_then = {k: v.clone() for k, v in pruner.masks.items()}
    dict_view = pruner.masks
    magnitude_prune(layers, 0.8)
    assert torch.equal(held, before)
    assert all(torch.equal(dict_view[k], masks_then[k]) for k in masks_then)
    assert not torch.equal(get_mask(layers[0][1]), before)  # the layer itself did change


@pytest.mark.parametrize("bad, error, message", [
    (torch.full((6, 6), 0.5), ValueError, "only 0 and 1"),
    (torch.full((6, 6), float("nan")), ValueError, "only 0 and 1"),
    (torch.full((6, 6), float("inf")), ValueError, "only 0 and 1"),
    (torch.ones(6, 5), ValueError, "does not match weight shape"),
    ([[1.0] * 6] * 6, TypeError, "must be a torch.Tensor"),
    (torch.ones(6, 6, dtype=torch.complex64), TypeError, "complex"),
])
def test_apply_mask_refuses_what_is_not_a_0_1_mask(bad, error, message):
    layer = nn.Linear(6, 6)
    with pytest.raises(error, match=message):
        apply_mask(layer, bad)
    assert not parametrize.is_parametrized(layer)


@pytest.mark.parametrize("dtype", [torch.bool, torch.int64, torch.float16, torch.float64])
def test_apply_mask_accepts_bool_int_and_float_masks(dtype):
    layer = nn.Linear(4, 4)
    keep = torch.eye(4).to(dtype)
    apply_mask(layer, keep)
    assert int((layer.weight == 0).sum()) == 12 and layer.weight.dtype == torch.float32


# --- nothing written into the stored weight -----------------------------------------------------------


def test_pruning_never_writes_into_the_stored_weight():
    model = cnn()
    stored = {n: m.weight.detach().clone() for n, m in prunable_layers(model)}
    magnitude_prune(prunable_layers(model), 0.7)
    ThresholdPruner(model).apply_global_pruning(0.8)
    for name, module in prunable_layers(model):
        assert torch.equal(module.parametrizations.weight.original, stored[name])
        assert torch.equal(module.weight, stored[name] * get_mask(module))


def test_a_weight_that_views_outside_memory_is_left_untouched():
    base = torch.randn(8, 8)
    layer = nn.Linear(8, 8, bias=False)
    layer.weight = nn.Parameter(base[:, :])  # shares base's storage
    layer.weight.data = base  # same storage as the caller's tensor
    copy_of_base = base.clone()
    magnitude_prune([("layer", layer)], 0.5)
    assert torch.equal(base, copy_of_base)
    assert int((layer.weight == 0).sum()) == 32


class AddOne(nn.Module):
    def forward(self, x):
        return x + 1.0


class Flip(nn.Module):
    def forward(self, x):
        return x.flip(0)


@pytest.mark.parametrize("P", [AddOne, Flip])
def test_a_mask_on_top_of_another_parametrization_is_exact(P):
    torch.manual_seed(0)
    layer = nn.Linear(5, 7)
    parametrize.register_parametrization(layer, "weight", P())
    magnitude_prune([("layer", layer)], 0.5)
    original = layer.parametrizations.weight.original
    mask = get_mask(layer)
    assert torch.equal(layer.weight, P()(original) * mask)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    for _ in range(3):
        opt.zero_grad()
        layer(torch.randn(4, 5)).pow(2).sum().backward()
        opt.step()
    assert torch.equal(layer.weight, P()(layer.parametrizations.weight.original) * mask)
    expected = layer.weight.detach().clone()
    make_permanent(layer)
    assert torch.equal(layer.weight, expected) and not parametrize.is_parametrized(layer)


# --- shared weights ----------------------------------------------------------------------------------


class TiedLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 6)
        self.head = nn.Linear(6, 10, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, x):
        return self.head(self.embed(x))


def test_a_weight_tied_to_an_embedding_is_refused_naming_both():
    model = TiedLM()
    with pytest.raises(ValueError, match=r"'head'.*shares its weight with 'embed'"):
        prunable_layers(model)
    with pytest.raises(ValueError, match="shares its weight"):
        ThresholdPruner(model)
    assert not parametrize.is_parametrized(model.head)


def test_weights_shared_by_assignment_are_refused_naming_both():
    model = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 6))
    model[2].weight = model[0].weight
    with pytest.raises(ValueError, match=r"'0'.*shares its weight with '2'"):
        prunable_layers(model)
    with pytest.raises(ValueError, match="shares its weight"):
        magnitude_prune([("a", model[0]), ("b", model[2])], 0.5)


def test_a_module_used_twice_is_one_layer_pruned_once():
    torch.manual_seed(0)
    lin = nn.Linear(6, 6)
    model = nn.Sequential(lin, nn.ReLU(), lin)
    layers = prunable_layers(model)
    assert [n for n, _ in layers] == ["0"]
    magnitude_prune(layers, 0.5)
    x = torch.randn(3, 6)
    w, b = lin.weight, lin.bias
    assert torch.allclose(model(x), torch.relu(x @ w.T + b) @ w.T + b)
    assert sparsity(model) == 0.5
    counts = count_parameters(model)
    assert counts["prunable_params"] == 36 and counts["non_zero_prunable_params"] == 18


def test_counting_a_tied_model_keeps_the_shared_weight_prunable():
    counts = count_parameters(TiedLM())
    assert counts["total_params"] == 60
    assert counts["prunable_params"] == 60  # the head's weight, held first by the embedding
    assert sparsity(TiedLM()) == 0.0  # measuring does not refuse


# --- serialization -----------------------------------------------------------------------------------


def test_pickling_a_masked_model_raises_the_packages_error_with_both_fixes():
    model = cnn()
    magnitude_prune(prunable_layers(model), 0.5)
    for save in (pickle.dumps, lambda m: torch.save(m, io.BytesIO())):
        with pytest.raises(MaskSerializationError, match=r"state_dict\(\).*make_permanent"):
            save(model)
    copy.deepcopy(model)  # deep copies still work
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)  # the state dict holds the masks
    make_permanent(model)
    restored = pickle.loads(pickle.dumps(model))
    assert sparsity(restored) == 0.5


# --- layers checked where they enter -----------------------------------------------------------------


def test_layers_may_be_a_generator_read_once():
    model = cnn()
    magnitude_prune((item for item in prunable_layers(model)), 0.6)
    assert abs(sparsity(model) - 0.6) < 1e-3


@pytest.mark.parametrize("layers, error, message", [
    ([], ValueError, "layers is empty"),
    ("conv1", TypeError, "list of \\(name, module\\) pairs"),
    (nn.Linear(3, 3), TypeError, "list of \\(name, module\\) pairs"),
    ([nn.Linear(3, 3)], TypeError, r"layers\[0\] must be a \(name, module\) pair"),
    ([("relu", nn.ReLU())], TypeError, "has no weight tensor"),
    ([(3, nn.Linear(3, 3))], TypeError, r"layers\[0\] must be a \(name, module\) pair"),
])
def test_bad_layers_are_refused_naming_the_item(layers, error, message):
    with pytest.raises(error, match=message):
        magnitude_prune(layers, 0.5)


def test_the_same_module_twice_is_refused():
    lin = nn.Linear(4, 4)
    with pytest.raises(ValueError, match="same module twice"):
        check_layers([("a", lin), ("b", lin)])


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_layer(value):
    model = cnn()
    with torch.no_grad():
        model.conv2.weight[0, 0, 0, 0] = value
    with pytest.raises(ValueError, match="'conv2' has NaN or inf"):
        magnitude_prune(prunable_layers(model), 0.5)
    assert not any(parametrize.is_parametrized(m) for _, m in prunable_layers(model))


def test_a_layer_pruned_with_torch_prune_is_refused_with_the_fix():
    from torch.nn.utils import prune

    layer = nn.Linear(4, 4)
    prune.l1_unstructured(layer, "weight", amount=0.5)
    with pytest.raises(ValueError, match=r"prune.remove"):
        magnitude_prune([("layer", layer)], 0.5)


def test_channels_last_and_non_contiguous_weights_prune_like_contiguous_ones():
    ref, cl = cnn(), cnn()
    cl = cl.to(memory_format=torch.channels_last)
    assert not cl.conv2.weight.is_contiguous()
    with torch.no_grad():
        cl.fc.weight = nn.Parameter(cl.fc.weight.detach().t().contiguous().t())  # a transposed (strided) weight
    assert not cl.fc.weight.is_contiguous()
    for model in (ref, cl):
        magnitude_prune(prunable_layers(model), 0.7)
    for (_, a), (_, b) in zip(prunable_layers(ref), prunable_layers(cl)):
        assert torch.equal(get_mask(a), get_mask(b))


def test_a_mixed_precision_model_prunes_exactly_with_one_global_ranking():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 16))
    model[0].half()
    model[1].to(torch.bfloat16)
    reference = [m.weight.detach().float().abs() for m in model]
    magnitude_prune(prunable_layers(model), 0.5)
    assert sparsity(model) == 0.5
    cut = torch.cat([r.reshape(-1) for r in reference]).kthvalue(384).values
    for m, r in zip(model, reference):
        assert torch.equal(get_mask(m).bool(), r > cut)
        assert get_mask(m).dtype == m.weight.dtype


def test_meta_weights_are_refused_as_having_no_values():
    with pytest.raises(ValueError, match="meta device"):
        magnitude_prune([("a", nn.Linear(4, 4, device="meta"))], 0.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_layers_on_two_devices_are_refused_for_a_global_ranking():
    a, b = nn.Linear(4, 4), nn.Linear(4, 4, device="cuda")
    with pytest.raises(ValueError, match="several devices"):
        magnitude_prune([("a", a), ("b", b)], 0.5)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_empty_weights_do_not_divide_by_zero():
    model = nn.Sequential(nn.Linear(0, 3), nn.Linear(3, 0))
    assert sparsity(model) == 0.0
    magnitude_prune(prunable_layers(model), 0.5)


# --- smallest_k, compute_threshold, create_mask -------------------------------------------------------


@pytest.mark.parametrize("k, error", [(True, TypeError), (2.0, TypeError), (-1, ValueError), (11, ValueError),
                                      ("3", TypeError)])
def test_smallest_k_refuses_bad_k(k, error):
    with pytest.raises(error, match="k must be"):
        smallest_k(torch.arange(10.0), k)


def test_smallest_k_refuses_nan_and_non_tensors():
    with pytest.raises(ValueError, match="NaN"):
        smallest_k(torch.tensor([1.0, float("nan"), 0.0]), 1)
    with pytest.raises(TypeError, match="scores must be a torch.Tensor"):
        smallest_k([3, 1, 2], 1)


def test_compute_threshold_takes_a_percent_and_refuses_a_fraction():
    w = torch.arange(1.0, 101.0)
    assert ThresholdPruner.compute_threshold(w, 90) == 90.0
    with pytest.raises(ValueError, match="pass 90 for 90%"):
        ThresholdPruner.compute_threshold(w, 0.9)
    for bad, error in ((True, TypeError), (101, ValueError), (float("nan"), ValueError), ("90", TypeError)):
        with pytest.raises(error, match="percentile"):
            ThresholdPruner.compute_threshold(w, bad)
    with pytest.raises(ValueError, match="weights holds NaN"):
        ThresholdPruner.compute_threshold(torch.tensor([1.0, float("nan")]), 50)
    with pytest.raises(ValueError, match="threshold must be a finite"):
        ThresholdPruner.create_mask(w, float("nan"))


# --- load_weights_keep_masks -------------------------------------------------------------------------


def masked_mlp():
    model = mlp()
    magnitude_prune(prunable_layers(model), 0.5)
    return model


def plain_state(seed=1):
    return mlp(seed).state_dict()


def test_load_weights_keep_masks_loads_survivors_and_keeps_masks():
    model = masked_mlp()
    masks = {n: get_mask(m) for n, m in prunable_layers(model)}
    state = plain_state()
    load_weights_keep_masks(model, state)
    for name, module in prunable_layers(model):
        assert torch.equal(get_mask(module), masks[name])
        assert torch.equal(module.weight, state[f"{name}.weight"] * masks[name])


@pytest.mark.parametrize("change, error, message", [
    (lambda s: {}, ValueError, "state_dict is empty"),
    (lambda s: {k: (v[:1] if k.endswith("bias") else v) for k, v in s.items()}, ValueError, "has shape"),
    (lambda s: {k: v for i, (k, v) in enumerate(s.items()) if i}, ValueError, "model entries it lacks"),
    (lambda s: {**s, "extra.weight": torch.ones(1)}, ValueError, "entries the model lacks"),
    (lambda s: {**s, "0.parametrizations.weight.0.mask": torch.ones(1)}, ValueError, "keeps the model's masks"),
    (lambda s: [(k, v) for k, v in s.items()], TypeError, "must be a dict"),
    (lambda s: {k: v.tolist() for k, v in s.items()}, TypeError, "must be a tensor"),
])
def test_load_weights_keep_masks_refuses_mismatched_dicts_and_copies_nothing(change, error, message):
    model = masked_mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = plain_state()
    first = next(iter(state))
    if change(state) and "has shape" in message:
        state[first] = state[first]  # keep the first entry right: nothing may be copied even so
    with pytest.raises(error, match=message):
        load_weights_keep_masks(model, change(state))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_load_weights_keep_masks_never_broadcasts():
    model = masked_mlp()
    state = plain_state()
    key = next(k for k in state if k.endswith("bias"))
    state[key] = torch.ones(1)
    with pytest.raises(ValueError, match="has shape"):
        load_weights_keep_masks(model, state)


# --- structured pruner inputs ------------------------------------------------------------------------


def test_structured_pruner_refuses_nan_weights_naming_the_layer():
    from pruning_utils import StructuredPruner

    model = cnn()
    with torch.no_grad():
        model.conv1.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="'conv1' are not all finite"):
        StructuredPruner(model).prune(0.5)


@pytest.mark.parametrize("keep, error, message", [
    ([0, 99], ValueError, r"must lie in \[0, 8\)"),
    ([-1, 2], ValueError, r"must lie in \[0, 8\)"),
    ([1, 1], ValueError, "repeated"),
    ([], TypeError, "non-empty"),
    ([0.5, 1.0], TypeError, "int channel indices"),
    ("01", TypeError, "keep_indices"),
])
def test_adjust_next_layer_refuses_bad_keep_indices(keep, error, message):
    from pruning_utils import StructuredPruner

    pruner = StructuredPruner(cnn())
    with pytest.raises(error, match=message):
        pruner.adjust_next_layer(nn.Conv2d(8, 3, 1), keep)
