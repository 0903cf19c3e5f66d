"""PyTorch's ``test/nn/test_pruning.py``, ported to the course's mask mechanism (issue 14).

The course masks a weight with ``torch.nn.utils.parametrize`` (``weight = original * mask``,
:mod:`pruning_utils.masks`), not with ``torch.nn.utils.prune``'s forward pre-hook, so torch's tests are
re-stated as behaviours of this package's API, not copied. Wherever a behaviour has a torch
counterpart, the test runs ``torch.nn.utils.prune`` itself on the same weights and compares: the two
are independent computations of the same masks.

Names of the course's objects for torch's ones: ``weight_orig`` is
``module.parametrizations.weight.original``, ``weight_mask`` is its ``parametrizations.weight[0].mask``
buffer (read with :func:`get_mask`), ``prune.remove`` is :func:`make_permanent`, ``l1_unstructured`` is
:class:`SimplePruner` / ``magnitude_mask`` / ``magnitude_prune(scope="layer")``, ``global_unstructured``
is :class:`ThresholdPruner` / ``magnitude_prune(scope="global")``, ``importance_scores`` are scores
given to :func:`smallest_k` (unstructured) or an ``importance`` function of :class:`StructuredPruner`,
``ln_structured`` is :class:`StructuredPruner` (which removes the channels instead of masking them).
``amount`` is a fraction only (``check_fraction``: [0, 1)); torch's int counts are refused.

torch test (34 read)                             -> test here, or why it does not apply
-----------------------------------------------  -------------------------------------------------------------
test_validate_pruning_amount_init                -> test_amount_is_a_fraction_and_bad_amounts_are_refused,
                                                    test_an_int_count_is_refused_naming_the_argument
test_validate_pruning_amount                     -> test_a_count_larger_than_the_tensor_is_refused,
                                                    test_a_fraction_of_an_empty_weight_is_fine
test_compute_nparams_to_prune                    -> test_count_pruned_is_round_amount_times_n_as_in_torch
test_random_pruning_sizes                        -> test_mask_and_original_have_the_weights_shape
                                                    (``bias``: test_only_weight_is_pruned_bias_stays_plain)
test_random_pruning_orig                         -> test_original_keeps_the_unpruned_values
test_random_pruning_new_weight                   -> test_weight_is_original_times_mask
test_identity_pruning                            -> test_mask_of_ones_changes_neither_forward_nor_backward
test_random_pruning_0perc                        -> test_pruning_zero_percent_changes_nothing
test_random_pruning                              -> test_pruned_entries_get_zero_gradient_and_do_not_move
test_random_pruning_forward                      -> test_forward_by_hand_with_a_mask
test_remove_pruning_forward                      -> test_make_permanent_keeps_the_forward
test_pruning_id_consistency                      -> test_parameter_identity_survives_pruning_and_make_permanent
test_random_pruning_pickle                       -> test_pickling_is_refused_until_made_permanent (documented
                                                    difference: a masked model raises MaskSerializationError)
test_multiple_pruning_calls                      -> test_pruning_twice_multiplies_masks_as_torch_does,
                                                    test_simple_pruner_compounds_like_torchs_pruning_container,
                                                    test_structured_after_unstructured_keeps_the_first_zeros_as_
                                                    torch_does, test_structured_after_unstructured_zeros_stay_zero_
                                                    through_training
                                                    (the hook/PruningContainer type checks: not applicable)
test_pruning_container                           -> not applicable: PruningContainer internals (add_pruning_method,
                                                    _tensor_name); the course stacks no pruning-method objects
test_pruning_container_compute_mask              -> test_l1_on_top_of_a_prior_mask_by_hand_and_as_torch,
                                                    test_pruning_again_ranks_only_live_weights_live_zeros_first_
                                                    as_torch (the unstructured part); its LnStructured steps along
                                                    dim 0/1 of a masked tensor: not applicable (no structured masks)
test_l1_unstructured_pruning                     -> test_l1_unstructured_by_hand_twice_and_as_torch
test_l1_unstructured_pruning_with_importance_scores -> test_importance_scores_by_hand_twice_and_as_torch
test_unstructured_pruning_same_magnitude         -> test_ties_prune_exactly_the_count_not_everything_at_the_cut
test_random_structured_pruning_amount            -> test_structured_pruning_removes_whole_channels_exact_count
                                                    (random choice: not applicable, no random pruner)
test_ln_structured_pruning                       -> test_structured_channel_choice_by_hand,
                                                    test_structured_channel_choice_matches_ln_structured,
                                                    test_structured_default_importance_is_l1_like_ln_structured_n1,
                                                    test_structured_pruning_computes_what_ln_structured_masking_does
                                                    (dim=1 / dim=-1: not applicable, only output channels go)
test_ln_structured_pruning_importance_scores     -> test_structured_custom_importance_matches_ln_structured_scores
test_remove_pruning                              -> test_make_permanent_leaves_a_plain_parameter (bias: see above)
test_remove_pruning_exception                    -> test_make_permanent_on_an_unmasked_model_is_a_no_op (decided:
                                                    make_permanent is model-wide "fold every mask", so none -> 0,
                                                    nothing changed, not an error; a non-module is a TypeError)
test_global_pruning                              -> test_global_pruning_by_hand_and_as_torch,
                                                    test_global_pruning_matches_global_unstructured,
                                                    test_global_pruning_again_reaches_the_total_target_ranking_
                                                    live_weights_as_torch (documented difference: the target is
                                                    the total sparsity; torch's amount compounds)
test_global_pruning_importance_scores            -> test_global_importance_scores_by_hand_and_as_torch
test_custom_from_mask_pruning                    -> test_a_given_mask_combines_with_the_previous_one
                                                    (the CustomFromMask class itself: not applicable)
test_pruning_rollback                            -> test_a_failed_prune_leaves_nothing_half_pruned
test_pruning_serialization_model                 -> test_torch_save_of_a_masked_model_is_refused_and_works_after_
                                                    make_permanent (documented difference, as for pickle)
test_pruning_serialization_state_dict            -> test_state_dict_holds_original_and_mask_and_loads_into_a_masked_
                                                    model, test_state_dict_after_make_permanent_loads_into_a_
                                                    plain_model,
                                                    test_plain_state_dict_and_counts_read_torch_prune_and_ours_alike
test_prune                                       -> test_l1_on_top_of_a_prior_mask_by_hand_and_as_torch
test_prune_importance_scores                     -> test_importance_scores_on_top_of_a_prior_mask
test_prune_importance_scores_mimic_default       -> test_weights_as_importance_scores_mimic_the_default
test_rnn_pruning                                 -> test_a_module_without_weight_is_refused_clearly (an LSTM's
                                                    weight_ih_l0 is not prunable here; the _flat_weights
                                                    bookkeeping: not applicable)

Also from issue 14's list (no torch test of their own): test_deepcopy_of_a_masked_model_works,
test_a_plain_state_dict_loads_into_a_masked_model_keeping_its_masks,
test_pruning_a_weight_that_requires_no_grad, test_pruning_in_train_and_eval_mode,
test_simple_pruner_matches_l1_unstructured_on_small_cnn, test_threshold_pruner_matches_global_unstructured_on_small_cnn.
"""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils import prune as tprune

from pruning_utils import unstructured
from pruning_utils.masks import (
    MaskSerializationError,
    apply_mask,
    get_mask,
    is_masked,
    load_weights_keep_masks,
    magnitude_prune,
    make_permanent,
    prunable_layers,
    smallest_k,
)
from pruning_utils.models import SmallCNN
from pruning_utils.params import count_parameters, plain_state_dict
from pruning_utils.structured import StructuredPruner, l1_importance, l2_importance
from pruning_utils.unstructured import SimplePruner, ThresholdPruner, magnitude_mask

MODULES = [lambda: nn.Linear(5, 7), lambda: nn.Conv1d(2, 3, 2), lambda: nn.Conv2d(2, 2, 2), lambda: nn.Conv3d(2, 2, 2)]


def _seeded(make, seed=0):
    torch.manual_seed(seed)
    return make()


def _mask_5x2(zeros=((1, 0), (0, 3))):
    """A Linear(5, 2) mask of ones with ``zeros`` (the two entries torch's tests mask by hand)."""
    mask = torch.ones(2, 5)
    for i, j in zeros:
        mask[i, j] = 0
    return mask


def _with_weight(module, values):
    with torch.no_grad():
        module.weight.copy_(torch.as_tensor(values, dtype=module.weight.dtype))
    return module


def _original(module):
    return module.parametrizations.weight.original


def _torch_mask(module):
    return module.weight_mask


# ---------------------------------------------------------------------------------------------
# The amount: a fraction, counted as round(amount * n)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, error", [("I'm a string", TypeError), (None, TypeError), (True, TypeError),
                                        (1.1, ValueError), (20.0, ValueError), (-0.1, ValueError),
                                        (float("nan"), ValueError), (1.0, ValueError)])
def test_amount_is_a_fraction_and_bad_amounts_are_refused(bad, error):
    layer = _seeded(lambda: nn.Linear(4, 3))
    for call, name in ((lambda: magnitude_mask(layer, bad), "amount"),
                       (lambda: magnitude_prune([("l", layer)], bad), "target_sparsity"),
                       (lambda: SimplePruner(nn.Sequential(layer), pruning_rate=bad, verbose=False), "pruning_rate")):
        with pytest.raises(error, match=name):
            call()
    assert not is_masked(layer)  # nothing half-done
    for good in (0.34, 0, 0.0, 0.999):  # torch's valid fractions (1.0 is refused on purpose, see check_fraction)
        magnitude_prune([("l", copy.deepcopy(layer))], good)


@pytest.mark.parametrize("count", [1, 2, 10, 1500])
def test_an_int_count_is_refused_naming_the_argument(count):
    """torch reads an int amount as a count of weights; here amounts are fractions, so a count is refused."""
    layer = _seeded(lambda: nn.Linear(4, 3))
    with pytest.raises(ValueError, match=r"amount must be in \[0, 1\)"):
        magnitude_mask(layer, count)
    with pytest.raises(ValueError, match=r"target_sparsity must be in \[0, 1\)"):
        magnitude_prune([("l", layer)], count)
    assert not is_masked(layer)
    # torch itself takes it as a count
    tprune.l1_unstructured(layer, "weight", amount=min(count, 12))
    assert int((_torch_mask(layer) == 0).sum()) == min(count, 12)


def test_a_count_larger_than_the_tensor_is_refused():
    scores = torch.randn(19)
    with pytest.raises(ValueError, match=r"k must be in \[0, 19\]"):
        smallest_k(scores, 20)
    with pytest.raises(ValueError):  # torch agrees
        tprune._validate_pruning_amount(amount=20, tensor_size=19)
    assert int(smallest_k(torch.randn(20), 19).sum()) == 19
    assert int(smallest_k(torch.randn(1), 1).sum()) == 1
    assert smallest_k(torch.randn(0), 0).numel() == 0


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_a_fraction_of_an_empty_weight_is_fine():
    layer = nn.Linear(0, 3)
    assert magnitude_prune([("l", layer)], 0.3) == 0.0
    assert get_mask(layer).shape == (3, 0)


@pytest.mark.parametrize("amount, shape", [(0.4, (1, 17)), (0.5, (1, 5)), (0.3, (1, 5)), (0.1, (1, 25)),
                                           (0.25, (2, 4)), (0.0, (3, 5)), (0.999, (3, 5)), (0.37, (7, 11))])
def test_count_pruned_is_round_amount_times_n_as_in_torch(amount, shape):
    torch.manual_seed(1)
    values = torch.randn(shape)
    ours, theirs = nn.Linear(values.shape[1], values.shape[0]), nn.Linear(values.shape[1], values.shape[0])
    _with_weight(ours, values), _with_weight(theirs, values)
    magnitude_prune([("l", ours)], amount, scope="layer")
    tprune.l1_unstructured(theirs, "weight", amount=amount)
    n_torch = int((_torch_mask(theirs) == 0).sum())
    assert n_torch == round(amount * values.numel())
    assert int((get_mask(ours) == 0).sum()) == n_torch
    assert torch.equal(get_mask(ours), _torch_mask(theirs))


# ---------------------------------------------------------------------------------------------
# The mechanism: weight = original * mask
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", MODULES)
def test_mask_and_original_have_the_weights_shape(make):
    layer = _seeded(make)
    shape = layer.weight.shape
    magnitude_prune([("l", layer)], 0.1)
    mask = get_mask(layer)
    assert mask.shape == _original(layer).shape == layer.weight.shape == shape
    assert set(mask.unique().tolist()) <= {0.0, 1.0} and mask.dtype == layer.weight.dtype


@pytest.mark.parametrize("make", MODULES)
def test_only_weight_is_pruned_bias_stays_plain(make):
    """torch prunes any named parameter (``name="bias"``); the course masks ``weight`` only."""
    layer = _seeded(make)
    bias = layer.bias
    before = bias.detach().clone()
    magnitude_prune([("l", layer)], 0.5)
    assert not parametrize.is_parametrized(layer, "bias")
    assert layer.bias is bias and "bias" in dict(layer.named_parameters())
    assert torch.equal(layer.bias, before)


@pytest.mark.parametrize("make", MODULES)
def test_original_keeps_the_unpruned_values(make):
    layer = _seeded(make)
    before = layer.weight.detach().clone()
    magnitude_prune([("l", layer)], 0.5)
    assert torch.equal(_original(layer), before)


@pytest.mark.parametrize("make", MODULES)
def test_weight_is_original_times_mask(make):
    layer = _seeded(make)
    magnitude_prune([("l", layer)], 0.5)
    assert torch.equal(layer.weight, _original(layer) * get_mask(layer))
    assert int((layer.weight == 0).sum()) == round(0.5 * layer.weight.numel())


def test_mask_of_ones_changes_neither_forward_nor_backward():
    layer = _seeded(lambda: nn.Linear(5, 2))
    x = torch.ones(1, 5)
    before = layer(x)
    before.sum().backward()
    grad_w, grad_b = layer.weight.grad.clone(), layer.bias.grad.clone()
    assert torch.equal(grad_w, torch.ones_like(layer.weight)) and torch.equal(grad_b, torch.ones_like(layer.bias))
    layer.zero_grad()
    apply_mask(layer, torch.ones(2, 5))
    after = layer(x)
    assert torch.equal(after, before)
    after.sum().backward()
    assert torch.equal(_original(layer).grad, grad_w) and torch.equal(layer.bias.grad, grad_b)
    assert torch.equal(layer(x), layer(x))


@pytest.mark.parametrize("prune_it", [
    lambda m: magnitude_prune([("l", m)], 0.0),
    lambda m: magnitude_prune([("l", m)], 0.0, scope="layer"),
    lambda m: SimplePruner(nn.Sequential(m), pruning_rate=0.0, verbose=False).apply_magnitude_pruning(),
    lambda m: ThresholdPruner(nn.Sequential(m)).apply_global_pruning(0.0),
], ids=["global", "layer", "SimplePruner", "ThresholdPruner"])
def test_pruning_zero_percent_changes_nothing(prune_it):
    layer = _seeded(lambda: nn.Linear(5, 2))
    x = torch.ones(1, 5)
    before = layer(x)
    before.sum().backward()
    grad_w = layer.weight.grad.clone()
    layer.zero_grad()
    prune_it(layer)
    assert torch.equal(get_mask(layer), torch.ones(2, 5))
    after = layer(x)
    assert torch.equal(after, before)
    after.sum().backward()
    assert torch.equal(_original(layer).grad, grad_w)


def test_pruned_entries_get_zero_gradient_and_do_not_move():
    layer = _seeded(lambda: nn.Linear(5, 2))
    mask = _mask_5x2()
    apply_mask(layer, mask)
    layer(torch.ones(1, 5)).sum().backward()
    assert torch.equal(_original(layer).grad, mask)  # ones, except the masked units
    assert torch.equal(layer.bias.grad, torch.ones(2))
    old = _original(layer).detach().clone()
    with torch.no_grad():
        for p in layer.parameters():
            p.sub_(p.grad * 1.0)
    assert old[1, 0] == _original(layer)[1, 0] and old[0, 3] == _original(layer)[0, 3]
    assert layer.weight[1, 0] == 0 and layer.weight[0, 3] == 0
    # the same gradient as torch.nn.utils.prune on the same layer
    theirs = _seeded(lambda: nn.Linear(5, 2))
    tprune.custom_from_mask(theirs, "weight", mask)
    theirs(torch.ones(1, 5)).sum().backward()
    assert torch.equal(theirs.weight_orig.grad, mask)


def test_forward_by_hand_with_a_mask():
    layer = _seeded(lambda: nn.Linear(5, 2))
    mask = torch.zeros(2, 5)
    mask[1, 0] = mask[0, 3] = 1
    apply_mask(layer, mask)
    y = layer(torch.ones(1, 5))
    w = _original(layer)
    assert y[0, 0] == w[0, 3] + layer.bias[0]
    assert y[0, 1] == w[1, 0] + layer.bias[1]


def test_make_permanent_keeps_the_forward():
    layer = _seeded(lambda: nn.Linear(5, 2))
    apply_mask(layer, _mask_5x2())
    x = torch.randn(3, 5)
    before = layer(x)
    assert make_permanent(layer) == 1
    assert torch.equal(layer(x), before)


def test_parameter_identity_survives_pruning_and_make_permanent():
    layer = _seeded(lambda: nn.Linear(5, 2, bias=False))
    weight = next(iter(layer.parameters()))
    # what an optimizer built now keeps (torch.optim.SGD(...) itself would first import torch._dynamo: seconds)
    held = list(layer.parameters())
    magnitude_prune([("l", layer)], 0.5)
    assert next(iter(layer.parameters())) is weight and _original(layer) is weight
    make_permanent(layer)
    assert next(iter(layer.parameters())) is weight and layer.weight is weight
    # so a plain SGD update of the tensors held before pruning updates the layer's weight
    before = layer.weight.detach().clone()
    layer(torch.ones(1, 5)).sum().backward()
    with torch.no_grad():
        for p in held:
            p.sub_(0.5 * p.grad)
    assert torch.equal(layer.weight, before - 0.5)


def test_pickling_is_refused_until_made_permanent():
    for make in MODULES:
        layer = _seeded(make)
        magnitude_prune([("l", layer)], 0.1)
        with pytest.raises(MaskSerializationError, match="state_dict.*make_permanent"):
            pickle.dumps(layer)
        pruned = layer.weight.detach().clone()
        make_permanent(layer)
        new = pickle.loads(pickle.dumps(layer))
        assert isinstance(new, type(layer)) and torch.equal(new.weight, pruned)


# ---------------------------------------------------------------------------------------------
# Pruning again: masks multiply, amounts compound on the remaining weights
# ---------------------------------------------------------------------------------------------


def test_pruning_twice_multiplies_masks_as_torch_does():
    ours = _seeded(lambda: nn.Conv2d(2, 4, 2))
    theirs = copy.deepcopy(ours)
    magnitude_prune([("l", ours)], 0.1, scope="layer")
    first = get_mask(ours)
    tprune.l1_unstructured(theirs, "weight", amount=0.1)
    assert torch.equal(first, _torch_mask(theirs))
    rows = torch.ones_like(first)
    rows[[0, 2]] = 0  # a filter mask, as ln_structured(dim=0) would give
    apply_mask(ours, rows)
    tprune.custom_from_mask(theirs, "weight", rows)
    second = get_mask(ours)
    assert torch.equal(second, first * rows)
    assert torch.all(second[first == 0] == 0)  # zeros of the first mask stay zeros
    assert torch.equal(second, _torch_mask(theirs))
    assert torch.equal(ours.weight, theirs.weight)


@pytest.mark.parametrize("rates", [(0.5, 0.5), (0.3, 0.3, 0.3), (0.1, 0.6)])
def test_simple_pruner_compounds_like_torchs_pruning_container(rates):
    ours = _seeded(lambda: nn.Sequential(nn.Linear(9, 7)))
    theirs = copy.deepcopy(ours)
    pruner = SimplePruner(ours, pruning_rate=rates[0], verbose=False)
    for rate in rates:
        pruner.apply_magnitude_pruning(rate)
        tprune.l1_unstructured(theirs[0], "weight", amount=rate)
        assert torch.equal(get_mask(ours[0]), _torch_mask(theirs[0]))
    assert isinstance(next(iter(theirs[0]._forward_pre_hooks.values())), tprune.PruningContainer)


def test_l1_on_top_of_a_prior_mask_by_hand_and_as_torch():
    t = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]], dtype=torch.float32)
    prior = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 1]])
    expected = torch.tensor([[0, 0, 1, 0], [1, 1, 0, 1]], dtype=torch.float32)
    ours = _with_weight(nn.Linear(4, 2), t)
    apply_mask(ours, prior)
    apply_mask(ours, magnitude_mask(ours, 2 / 6))  # 2 of the 6 weights still alive
    assert torch.equal(get_mask(ours), expected)
    assert torch.equal(ours.weight, t * expected)  # torch's test_prune: the pruned tensor
    theirs = _with_weight(nn.Linear(4, 2), t)
    tprune.custom_from_mask(theirs, "weight", prior)
    tprune.l1_unstructured(theirs, "weight", amount=2)
    assert torch.equal(_torch_mask(theirs), expected)


def test_pruning_again_ranks_only_live_weights_live_zeros_first_as_torch():
    """PruningContainer prunes among the weights still alive; a masked entry is not pruned a second time."""
    t = torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    prior = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 1, 0, 0]])
    ours, theirs = _with_weight(nn.Linear(10, 1), t), _with_weight(nn.Linear(10, 1), t)
    apply_mask(ours, prior)
    apply_mask(ours, magnitude_mask(ours, 0.25))  # 2 of the 8 alive: two of the live zeros
    tprune.custom_from_mask(theirs, "weight", prior)
    tprune.l1_unstructured(theirs, "weight", amount=0.25)
    assert int((get_mask(ours) == 0).sum()) == 4 == int((_torch_mask(theirs) == 0).sum())
    assert torch.equal(get_mask(ours)[0, 4:], torch.tensor([1.0, 1, 1, 1, 0, 0]))
    assert torch.equal(_torch_mask(theirs)[0, 4:], torch.tensor([1.0, 1, 1, 1, 0, 0]))


def test_l1_unstructured_by_hand_twice_and_as_torch():
    w = [[1, 2, 3, 4], [-4, -3, -2, -1]]
    ours, theirs = _with_weight(nn.Linear(4, 2), w), _with_weight(nn.Linear(4, 2), w)
    pruner = SimplePruner(nn.Sequential(ours), pruning_rate=0.25, verbose=False)
    pruner.apply_magnitude_pruning()  # 2 of 8
    tprune.l1_unstructured(theirs, "weight", amount=2)
    assert torch.equal(ours.weight, torch.tensor([[0, 2, 3, 4], [-4, -3, -2, 0]], dtype=torch.float32))
    assert torch.equal(ours.weight, theirs.weight)
    pruner.apply_magnitude_pruning(2 / 6)  # 2 more of the 6 left
    tprune.l1_unstructured(theirs, "weight", amount=2)
    assert torch.equal(ours.weight, torch.tensor([[0, 0, 3, 4], [-4, -3, 0, 0]], dtype=torch.float32))
    assert torch.equal(ours.weight, theirs.weight)


def _prune_by_scores(module, scores, k_more):
    """Prune ``k_more`` live weights of ``module`` with the smallest |scores| (masked ones rank first)."""
    mask = get_mask(module)
    scores = scores.abs()
    already = 0
    if mask is not None:
        scores = torch.where(mask.bool(), scores, torch.full_like(scores, -1.0))
        already = int((mask == 0).sum())
    apply_mask(module, ~smallest_k(scores, already + k_more))


def test_importance_scores_by_hand_twice_and_as_torch():
    w = [[1, 2, 3, 4], [-4, -3, -2, -1]]
    scores = torch.tensor([[4, 2, 1, 3], [-3, -1, -2, -4]], dtype=torch.float32)
    ours, theirs = _with_weight(nn.Linear(4, 2), w), _with_weight(nn.Linear(4, 2), w)
    _prune_by_scores(ours, scores, 2)
    tprune.l1_unstructured(theirs, "weight", amount=2, importance_scores=scores)
    assert torch.equal(ours.weight, torch.tensor([[1, 2, 0, 4], [-4, 0, -2, -1]], dtype=torch.float32))
    assert torch.equal(ours.weight, theirs.weight)
    _prune_by_scores(ours, scores, 2)
    tprune.l1_unstructured(theirs, "weight", amount=2, importance_scores=scores)
    assert torch.equal(ours.weight, torch.tensor([[1, 0, 0, 4], [-4, 0, 0, -1]], dtype=torch.float32))
    assert torch.equal(ours.weight, theirs.weight)


def test_importance_scores_on_top_of_a_prior_mask():
    t = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]], dtype=torch.float32)
    scores = torch.tensor([[1, 2, 3, 4], [1.5, 1.6, 1.7, 1.8]])
    prior = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 1]])
    expected = torch.tensor([[0, 1, 1, 0], [0, 1, 0, 1]], dtype=torch.float32)
    ours = _with_weight(nn.Linear(4, 2), t)
    apply_mask(ours, prior)
    _prune_by_scores(ours, scores, 2)
    assert torch.equal(ours.weight, t * expected)
    assert torch.equal(tprune.L1Unstructured(amount=2).prune(t, prior, importance_scores=scores), t * expected)


def test_weights_as_importance_scores_mimic_the_default():
    t = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]], dtype=torch.float32)
    prior = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 1]])
    by_magnitude, by_scores = _with_weight(nn.Linear(4, 2), t), _with_weight(nn.Linear(4, 2), t)
    for m in (by_magnitude, by_scores):
        apply_mask(m, prior)
    apply_mask(by_magnitude, magnitude_mask(by_magnitude, 2 / 6))
    _prune_by_scores(by_scores, t, 2)
    assert torch.equal(by_magnitude.weight, by_scores.weight)
    assert torch.equal(by_magnitude.weight, t * torch.tensor([[0, 0, 1, 0], [1, 1, 0, 1]]))


@pytest.mark.parametrize("seed", range(5))
def test_ties_prune_exactly_the_count_not_everything_at_the_cut(seed):
    g = torch.Generator().manual_seed(seed)
    t = 2.0 * torch.randint(-1, 2, (10, 7), generator=g)  # entries in {-2, 0, 2}
    k = round(0.2 * t.numel())
    assert int(smallest_k(t.abs(), k).sum()) == k
    layer = _with_weight(nn.Linear(7, 10), t)
    magnitude_prune([("l", layer)], 0.2)
    assert int((get_mask(layer) == 0).sum()) == k
    # again, on top of that mask: 0.5 of the 56 still alive, live zeros first (the masked ones do not count)
    first = get_mask(layer)
    apply_mask(layer, magnitude_mask(layer, 0.5))
    assert int((get_mask(layer) == 0).sum()) == k + round(0.5 * (t.numel() - k))
    assert torch.all(get_mask(layer)[first == 0] == 0)
    theirs = _with_weight(nn.Linear(7, 10), t)
    tprune.custom_from_mask(theirs, "weight", first)
    tprune.l1_unstructured(theirs, "weight", amount=0.5)
    assert int((_torch_mask(theirs) == 0).sum()) == int((get_mask(layer) == 0).sum())
    pruners = _with_weight(nn.Linear(7, 10), t), _with_weight(nn.Linear(7, 10), t)
    SimplePruner(nn.Sequential(pruners[0]), pruning_rate=0.2, verbose=False).apply_magnitude_pruning()
    ThresholdPruner(nn.Sequential(pruners[1])).apply_global_pruning(0.2)
    assert [int((get_mask(m) == 0).sum()) for m in pruners] == [k, k]
    # the tutorial's threshold helpers are the rule torch's test warns about: every tie at the cut goes
    threshold = ThresholdPruner.compute_threshold(t, 20)
    assert int((ThresholdPruner.create_mask(t, threshold) == 0).sum()) == int((t.abs() <= threshold).sum()) >= k
    # torch agrees on the count (its choice among tied entries may differ)
    assert int((tprune.L1Unstructured(amount=0.2).compute_mask(t, torch.ones_like(t)) == 0).sum()) == k


def test_a_given_mask_combines_with_the_previous_one():
    layer = _seeded(lambda: nn.Linear(4, 2))
    apply_mask(layer, torch.tensor([[0, 0, 0, 0], [1, 1, 1, 1]]))  # old mask
    combined = apply_mask(layer, torch.tensor([[0, 1, 1, 0], [0, 0, 1, 1]]))  # new mask
    expected = torch.tensor([[0, 0, 0, 0], [0, 0, 1, 1]], dtype=torch.float32)
    assert torch.equal(combined, expected) and torch.equal(get_mask(layer), expected)
    assert torch.equal(tprune.CustomFromMask(mask=torch.tensor([[0, 1, 1, 0], [0, 0, 1, 1]])).compute_mask(
        torch.rand(2, 4), torch.tensor([[0, 0, 0, 0], [1, 1, 1, 1]])).float(), expected)


# ---------------------------------------------------------------------------------------------
# Structured: the structured pruner removes the channels ln_structured(dim=0) would mask
# ---------------------------------------------------------------------------------------------


def _two_convs(c_in=3, c_mid=8, c_out=4, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(c_in, c_mid, 3), nn.ReLU(), nn.Conv2d(c_mid, c_out, 3))


def _kept_by_torch(conv):
    return torch.nonzero(_torch_mask(conv).flatten(1).any(1)).view(-1)


@pytest.mark.parametrize("amount", [0.6, 0.2, 0.5])
def test_structured_pruning_removes_whole_channels_exact_count(amount):
    model = _two_convs(c_mid=5)
    pruned = StructuredPruner(model).prune(amount)
    n_pruned = round(amount * 5)
    theirs = copy.deepcopy(model[0])
    tprune.random_structured(theirs, "weight", amount=amount, dim=0)
    assert 5 - len(_kept_by_torch(theirs)) == n_pruned
    assert pruned[0].out_channels == 5 - n_pruned == pruned[2].in_channels
    # the kept channels are untouched copies
    _, _, keep = StructuredPruner(model).prune_conv_layer(model[0], None, amount)
    assert torch.equal(pruned[0].weight, model[0].weight[keep])
    assert torch.equal(pruned[0].bias, model[0].bias[keep])
    assert torch.equal(pruned[2].weight, model[2].weight[:, keep])


def test_structured_after_unstructured_keeps_the_first_zeros_as_torch_does():
    """torch: l1_unstructured then ln_structured(dim=0) keeps every zero of the first mask (the masks stack)."""
    model = _two_convs(seed=2)
    theirs = copy.deepcopy(model[0])
    magnitude_prune(prunable_layers(model), 0.5, scope="layer")
    first = get_mask(model[0])
    tprune.l1_unstructured(theirs, "weight", amount=0.5)
    assert torch.equal(_torch_mask(theirs), first)
    tprune.ln_structured(theirs, "weight", amount=0.5, n=1, dim=0)
    assert torch.all(_torch_mask(theirs)[first == 0] == 0)
    pruned = StructuredPruner(model).prune(0.5)
    keep = StructuredPruner(model).select_channels(model[0], None, 0.5)
    assert torch.all(pruned[0].weight[first[keep] == 0] == 0)  # at once, the zeros are there


def test_structured_after_unstructured_zeros_stay_zero_through_training():
    model = _two_convs(seed=2)
    magnitude_prune(prunable_layers(model), 0.5, scope="layer")
    first = get_mask(model[0])
    keep = StructuredPruner(model).select_channels(model[0], None, 0.5)
    pruned = StructuredPruner(model).prune(0.5)
    pruned(torch.randn(2, 3, 9, 9)).sum().backward()
    with torch.no_grad():  # one SGD step
        for p in pruned.parameters():
            p.sub_(0.1 * p.grad)
    # torch's stacked mask keeps them zero through any training (and so should the course: DESIGN.md)
    assert torch.all(pruned[0].weight[first[keep] == 0] == 0)


def test_structured_channel_choice_by_hand():
    filters = torch.tensor([[[[1.0, 2.0], [1.0, 2.5]]], [[[0.5, 1.0], [0.1, 0.1]]], [[[-3.0, -5.0], [0.1, -1.0]]]])
    conv = nn.Conv2d(1, 3, 2)
    _with_weight(conv, filters)
    model = nn.Sequential(conv, nn.ReLU(), nn.Conv2d(3, 2, 1))
    for importance in ("l1", "l2"):
        _, _, keep = StructuredPruner(model, importance=importance).prune_conv_layer(conv, None, 1 / 3)
        assert keep.tolist() == [0, 2]
    # torch's test: the same filters along dim 1 of a Conv2d(3, 1, 2), pruned by L2 norm
    theirs = _with_weight(nn.Conv2d(3, 1, 2), filters.transpose(0, 1))
    tprune.ln_structured(theirs, "weight", amount=1, n=2, dim=1)
    assert torch.nonzero(_torch_mask(theirs).transpose(0, 1).flatten(1).any(1)).view(-1).tolist() == [0, 2]


@pytest.mark.parametrize("importance, n", [("l1", 1), ("l2", 2), (l1_importance, 1), (l2_importance, 2)])
@pytest.mark.parametrize("amount", [0.25, 0.5, 0.75])
def test_structured_channel_choice_matches_ln_structured(importance, n, amount):
    model = _two_convs(seed=3)
    _, _, keep = StructuredPruner(model, importance=importance).prune_conv_layer(model[0], None, amount)
    theirs = copy.deepcopy(model[0])
    tprune.ln_structured(theirs, "weight", amount=amount, n=n, dim=0)
    assert keep.tolist() == _kept_by_torch(theirs).tolist()


def test_structured_default_importance_is_l1_like_ln_structured_n1():
    model = _two_convs(seed=5)
    pruner = StructuredPruner(model)
    assert torch.allclose(pruner.compute_filter_importance(model[0]),
                          torch.norm(model[0].weight.detach(), p=1, dim=(1, 2, 3)))


@pytest.mark.parametrize("importance, n", [("l1", 1), ("l2", 2)])
def test_structured_pruning_computes_what_ln_structured_masking_does(importance, n):
    model = _two_convs(seed=1).eval()
    pruned = StructuredPruner(model, importance=importance).prune(0.5)
    masked = copy.deepcopy(model)
    tprune.ln_structured(masked[0], "weight", amount=0.5, n=n, dim=0)
    tprune.custom_from_mask(masked[0], "bias", _torch_mask(masked[0]).flatten(1).any(1).float())
    x = torch.randn(2, 3, 9, 9)
    assert torch.allclose(pruned(x), masked(x), atol=1e-6)


def test_structured_custom_importance_matches_ln_structured_scores():
    filters = torch.tensor([[[[1.0, 2.0], [1.0, 2.5]]], [[[0.5, 1.0], [0.1, 0.1]]], [[[-3.0, -5.0], [0.1, -1.0]]]])
    scores = torch.tensor([[[[10.0, 1.0], [10.0, 1.0]]], [[[30.0, 3.0], [30.0, 3.0]]],
                           [[[-20.0, -2.0], [-20.0, -2.0]]]])
    conv = _with_weight(nn.Conv2d(1, 3, 2), filters)
    model = nn.Sequential(conv, nn.ReLU(), nn.Conv2d(3, 2, 1))
    pruner = StructuredPruner(model, importance=lambda layer, bn: scores.flatten(1).norm(dim=1))
    _, _, keep = pruner.prune_conv_layer(conv, None, 1 / 3)
    assert keep.tolist() == [1, 2]  # the scores, not the weights (by weight, filter 1 would go)
    theirs = copy.deepcopy(conv)
    tprune.ln_structured(theirs, "weight", amount=1, n=2, dim=0, importance_scores=scores)
    assert _kept_by_torch(theirs).tolist() == [1, 2]


# ---------------------------------------------------------------------------------------------
# make_permanent (prune.remove)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", MODULES)
def test_make_permanent_leaves_a_plain_parameter(make):
    layer = _seeded(make)
    magnitude_prune([("l", layer)], 0.5)
    params, buffers = dict(layer.named_parameters()), dict(layer.named_buffers())
    assert "parametrizations.weight.original" in params and "weight" not in params
    assert "parametrizations.weight.0.mask" in buffers
    pruned = layer.weight.detach().clone()
    assert make_permanent(layer) == 1
    params, buffers = dict(layer.named_parameters()), dict(layer.named_buffers())
    assert "weight" in params and isinstance(layer.weight, nn.Parameter) and layer.weight.requires_grad
    assert not any("parametrizations" in k for k in [*params, *buffers, *layer.state_dict()])
    assert not is_masked(layer) and get_mask(layer) is None
    assert torch.equal(layer.weight, pruned)
    # as torch's prune.remove does with the same mask
    theirs = _seeded(make)
    tprune.custom_from_mask(theirs, "weight", (pruned != 0).float())
    tprune.remove(theirs, "weight")
    assert torch.equal(theirs.weight, layer.weight)


@pytest.mark.parametrize("make", MODULES)
def test_make_permanent_on_an_unmasked_model_is_a_no_op(make):
    layer = _seeded(make)
    weight = layer.weight
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    with pytest.raises(ValueError):  # torch: nothing to remove is an error for the (module, name) it names
        tprune.remove(copy.deepcopy(layer), "weight")
    assert make_permanent(layer) == 0  # ours folds every mask of a model: none is nothing to do
    assert layer.weight is weight and type(layer) is type(_seeded(make))
    assert state.keys() == layer.state_dict().keys()
    assert all(torch.equal(v, layer.state_dict()[k]) for k, v in state.items())
    magnitude_prune([("l", layer)], 0.5)
    assert make_permanent(layer) == 1 and make_permanent(layer) == 0  # twice is fine
    with pytest.raises(TypeError, match="model"):
        make_permanent("not a model")


# ---------------------------------------------------------------------------------------------
# Global pruning (global_unstructured)
# ---------------------------------------------------------------------------------------------


def _m_and_n():
    m = _with_weight(nn.Linear(4, 2), [[1, 2, 3, 4], [-4, -3, -2, -1]])
    n = _with_weight(nn.Linear(3, 1), [[0, 0.1, -2]])
    return m, n


def test_global_pruning_by_hand_and_as_torch():
    m, n = _m_and_n()
    threshold = ThresholdPruner(nn.ModuleList([m, n])).apply_global_pruning(4 / 11)
    assert torch.equal(m.weight, torch.tensor([[0, 2, 3, 4], [-4, -3, -2, 0]], dtype=torch.float32))
    assert torch.equal(n.weight, torch.tensor([[0, 0, -2]], dtype=torch.float32))
    assert threshold == 1.0  # the largest magnitude pruned
    tm, tn = _m_and_n()
    tprune.global_unstructured([(tm, "weight"), (tn, "weight")], pruning_method=tprune.L1Unstructured, amount=4)
    assert torch.equal(m.weight, tm.weight) and torch.equal(n.weight, tn.weight)


@pytest.mark.parametrize("target", [0.1, 0.5, 0.9, 0.37])
def test_global_pruning_matches_global_unstructured(target):
    torch.manual_seed(7)
    ours = nn.ModuleList([nn.Linear(20, 10), nn.Conv2d(3, 8, 3), nn.Linear(7, 3), nn.Conv1d(2, 2, 1)])
    theirs = copy.deepcopy(ours)
    magnitude_prune(prunable_layers(ours), target, scope="global")
    tprune.global_unstructured([(m, "weight") for m in theirs], pruning_method=tprune.L1Unstructured, amount=target)
    for a, b in zip(ours, theirs):
        assert torch.equal(get_mask(a), _torch_mask(b))
    sizes = [m.weight.numel() for m in ours]
    assert sum(int((get_mask(m) == 0).sum()) for m in ours) == round(target * sum(sizes))
    assert len({round(float((get_mask(m) == 0).float().mean()), 3) for m in ours}) > 1  # not a uniform rate


@pytest.mark.parametrize("targets", [(0.5, 0.7), (0.3, 0.6, 0.9), (0.6, 0.4)])
def test_global_pruning_again_reaches_the_total_target_ranking_live_weights_as_torch(targets):
    """Pruning a pruned model again: ours takes the *total* target, torch's global_unstructured an amount of
    the weights still alive (it compounds); given the matching count, both rank the live weights alike."""
    torch.manual_seed(11)
    ours = nn.ModuleList([nn.Linear(12, 6), nn.Conv2d(2, 5, 3), nn.Linear(4, 3)])
    theirs = copy.deepcopy(ours)
    pruner = ThresholdPruner(ours)
    total = sum(m.weight.numel() for m in ours)
    for target in targets:
        already = sum(int((get_mask(m) == 0).sum()) for m in ours) if pruner.masks else 0
        pruner.apply_global_pruning(target)
        tprune.global_unstructured([(m, "weight") for m in theirs], pruning_method=tprune.L1Unstructured,
                                   amount=max(round(target * total) - already, 0))
        for a, b in zip(ours, theirs):
            assert torch.equal(get_mask(a), _torch_mask(b))
        # masks only add zeros: a lower target changes nothing
        assert sum(int((get_mask(m) == 0).sum()) for m in ours) == max(round(target * total), already)


def test_global_importance_scores_by_hand_and_as_torch():
    m, n = _m_and_n()
    sm = torch.tensor([[4, 2, 1, 3], [-3, -1, -2, -4]], dtype=torch.float32)
    sn = torch.tensor([[0, 10.0, -0.2]])
    chosen = smallest_k(torch.cat([sm.abs().flatten(), sn.abs().flatten()]), 4)
    apply_mask(m, ~chosen[:8].view(2, 4))
    apply_mask(n, ~chosen[8:].view(1, 3))
    assert torch.equal(m.weight, torch.tensor([[1, 2, 0, 4], [-4, 0, -2, -1]], dtype=torch.float32))
    assert torch.equal(n.weight, torch.tensor([[0, 0.1, 0]]))
    tm, tn = _m_and_n()
    tprune.global_unstructured([(tm, "weight"), (tn, "weight")], pruning_method=tprune.L1Unstructured, amount=4,
                               importance_scores={(tm, "weight"): sm, (tn, "weight"): sn})
    assert torch.equal(get_mask(m), _torch_mask(tm)) and torch.equal(get_mask(n), _torch_mask(tn))


# ---------------------------------------------------------------------------------------------
# Failure leaves nothing half-pruned (pruning_rollback)
# ---------------------------------------------------------------------------------------------


def _nan_layer():
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight[0, 0] = float("nan")
    return layer


def test_a_failed_prune_leaves_nothing_half_pruned(monkeypatch):
    good = _seeded(lambda: nn.Linear(5, 7))
    before = good.weight.detach().clone()
    with pytest.raises(ValueError, match="NaN"):
        magnitude_prune([("good", good), ("bad", _nan_layer())], 0.5)
    assert not is_masked(good) and torch.equal(good.weight, before)
    with pytest.raises(ValueError, match="shape"):
        apply_mask(good, torch.ones(5, 7))
    assert not is_masked(good) and "weight" in dict(good.named_parameters())
    # a mask computation that fails on the second layer (torch's test mocks compute_mask the same way)
    model = _seeded(lambda: nn.Sequential(nn.Linear(5, 7), nn.Linear(7, 3)))
    calls = []
    real = unstructured.magnitude_mask

    def failing(module, amount):
        calls.append(module)
        if len(calls) == 2:
            raise RuntimeError("HA!")
        return real(module, amount)

    monkeypatch.setattr(unstructured, "magnitude_mask", failing)
    with pytest.raises(RuntimeError, match="HA!"):
        SimplePruner(model, pruning_rate=0.9, verbose=False).apply_magnitude_pruning()
    assert len(calls) == 2
    assert not any(is_masked(m) for m in model)
    assert all("weight" in dict(m.named_parameters()) for m in model)


# ---------------------------------------------------------------------------------------------
# Serialization
# ---------------------------------------------------------------------------------------------


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 1))


def test_torch_save_of_a_masked_model_is_refused_and_works_after_make_permanent():
    model = _mlp()
    magnitude_prune([("0", model[0])], 0.9)
    with pytest.raises(MaskSerializationError):
        torch.save(model, io.BytesIO())
    pruned = model[0].weight.detach().clone()
    make_permanent(model)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    new = torch.load(buffer, weights_only=False)
    assert "0.weight" in new.state_dict() and torch.equal(new[0].weight, pruned)


def test_state_dict_holds_original_and_mask_and_loads_into_a_masked_model():
    model = _mlp()
    assert "0.weight" in model.state_dict()
    magnitude_prune([("0", model[0])], 0.9)
    state = model.state_dict()
    assert {"0.parametrizations.weight.original", "0.parametrizations.weight.0.mask"} <= state.keys()
    assert "0.weight" not in state and hasattr(model[0], "weight")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    new = _mlp(seed=1)
    apply_mask(new[0], torch.ones_like(new[0].weight))  # masked the same way (which mask does not matter)
    new.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(get_mask(new[0]), get_mask(model[0]))
    assert torch.equal(new[0].weight, model[0].weight)
    x = torch.randn(4, 10)
    assert torch.equal(new(x), model(x))
    with pytest.raises(RuntimeError):  # a plain model has no place for the mask
        _mlp().load_state_dict(state)


def test_state_dict_after_make_permanent_loads_into_a_plain_model():
    model = _mlp()
    magnitude_prune([("0", model[0])], 0.9)
    pruned = model[0].weight.detach().clone()
    make_permanent(model)
    state = model.state_dict()
    assert "0.weight" in state and not any("parametrizations" in k for k in state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    new = _mlp(seed=1)
    new.load_state_dict(torch.load(buffer, weights_only=True))
    assert set(new.state_dict()) == set(state) and torch.equal(new[0].weight, pruned)


def test_plain_state_dict_and_counts_read_torch_prune_and_ours_alike():
    ours = _mlp()
    theirs = copy.deepcopy(ours)
    magnitude_prune([("0", ours[0]), ("2", ours[2])], 0.6, scope="layer")
    tprune.l1_unstructured(theirs[0], "weight", amount=0.6)
    tprune.l1_unstructured(theirs[2], "weight", amount=0.6)
    a, b = plain_state_dict(ours), plain_state_dict(theirs)
    assert a.keys() == b.keys() == _mlp().state_dict().keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert count_parameters(ours) == count_parameters(theirs)
    expected_zeros = round(0.6 * 100) + round(0.6 * 10)
    assert count_parameters(ours)["non_zero_prunable_params"] == 110 - expected_zeros
    make_permanent(ours)
    assert all(torch.equal(v, ours.state_dict()[k]) for k, v in a.items())


def test_a_plain_state_dict_loads_into_a_masked_model_keeping_its_masks():
    source = _mlp(seed=2)
    model = _mlp()
    magnitude_prune(prunable_layers(model), 0.5)
    masks = [get_mask(model[0]), get_mask(model[2])]
    load_weights_keep_masks(model, plain_state_dict(source))
    assert all(torch.equal(get_mask(model[i]), mask) for i, mask in zip((0, 2), masks))
    for i, mask in zip((0, 2), masks):
        assert torch.equal(model[i].weight, source[i].weight * mask)
        assert torch.equal(model[i].bias, source[i].bias)


def test_a_module_without_weight_is_refused_clearly():
    lstm = nn.LSTM(8, 8)
    with pytest.raises(TypeError, match="LSTM.*no weight"):
        apply_mask(lstm, torch.ones(32, 8))
    with pytest.raises(TypeError, match="no weight"):
        magnitude_prune([("lstm", lstm)], 0.5)
    with pytest.raises(TypeError, match="ReLU.*no weight"):
        apply_mask(nn.ReLU(), torch.ones(1))
    # in a model, only the Linear/Conv layers are selected; the LSTM stays dense
    model = nn.ModuleDict({"rnn": nn.LSTM(8, 8), "head": nn.Linear(8, 2)})
    assert [n for n, _ in prunable_layers(model)] == ["head"]
    assert all(isinstance(p, nn.Parameter) for p in model["rnn"]._flat_weights)


# ---------------------------------------------------------------------------------------------
# Also asked by issue 14
# ---------------------------------------------------------------------------------------------


def test_deepcopy_of_a_masked_model_works():
    model = _mlp()
    magnitude_prune(prunable_layers(model), 0.5)
    clone = copy.deepcopy(model)
    x = torch.randn(3, 10)
    assert torch.equal(clone(x), model(x))
    assert torch.equal(get_mask(clone[0]), get_mask(model[0]))
    assert get_mask(clone[0]).data_ptr() != get_mask(model[0]).data_ptr()
    assert _original(clone[0]) is not _original(model[0])
    make_permanent(clone)
    assert is_masked(model[0]) and not is_masked(clone[0])
    assert torch.equal(clone(x), model(x))
    other = copy.deepcopy(model)
    make_permanent(model)  # the other way round: the copy keeps its masks
    assert is_masked(other[0]) and torch.equal(other(x), model(x))
    with pytest.raises(Exception):
        copy.deepcopy(_pruned_by_torch())  # torch.nn.utils.prune cannot (the reason the course uses parametrize)


def _pruned_by_torch():
    model = _mlp()
    tprune.l1_unstructured(model[0], "weight", amount=0.5)
    return model


def test_pruning_a_weight_that_requires_no_grad():
    ours = _seeded(lambda: nn.Linear(6, 4))
    ours.weight.requires_grad_(False)
    theirs = copy.deepcopy(ours)
    magnitude_prune([("l", ours)], 0.5)
    tprune.l1_unstructured(theirs, "weight", amount=0.5)
    assert torch.equal(get_mask(ours), _torch_mask(theirs))
    assert not _original(ours).requires_grad and not ours.weight.requires_grad
    ours(torch.randn(2, 6)).sum().backward()  # the bias still trains
    assert _original(ours).grad is None and ours.bias.grad is not None
    make_permanent(ours)
    assert isinstance(ours.weight, nn.Parameter) and not ours.weight.requires_grad
    assert torch.equal(ours.weight, theirs.weight)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_pruning_in_train_and_eval_mode(mode):
    torch.manual_seed(0)
    model = SmallCNN(widths=(4, 8), input_size=8)
    model.train(mode == "train")
    theirs = copy.deepcopy(model)
    their_layers = prunable_layers(theirs)  # before torch prunes them (the course then refuses them)
    SimplePruner(model, pruning_rate=0.5, verbose=False).apply_magnitude_pruning()
    for _, m in their_layers:
        tprune.l1_unstructured(m, "weight", amount=0.5)
    assert model.training == (mode == "train")  # pruning does not change the mode
    for switch in (model.train, model.eval):
        switch()
        theirs.train(model.training)
        x = torch.randn(3, 1, 8, 8)
        assert torch.allclose(model(x), theirs(x), atol=1e-6)
        for (_, a), (_, b) in zip(prunable_layers(model), their_layers):
            assert torch.equal(a.weight, b.weight)
    small = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 3))
    small.train(mode == "train")
    structured = StructuredPruner(small).prune(0.5)
    assert all(m.training == (mode == "train") for m in [structured, *structured.modules()])


def test_simple_pruner_matches_l1_unstructured_on_small_cnn():
    torch.manual_seed(0)
    ours = SmallCNN(widths=(4, 8), input_size=8)
    their_layers = prunable_layers(copy.deepcopy(ours))
    pruner = SimplePruner(ours, pruning_rate=0.3, verbose=False)
    for _ in range(2):
        table = pruner.apply_magnitude_pruning()
        for _, m in their_layers:
            tprune.l1_unstructured(m, "weight", amount=0.3)
    for (name, a), (_, b) in zip(prunable_layers(ours), their_layers):
        assert torch.equal(get_mask(a), _torch_mask(b)), name
        n = a.weight.numel()
        assert table[name] == (round(0.3 * n) + round(0.3 * (n - round(0.3 * n)))) / n


def test_threshold_pruner_matches_global_unstructured_on_small_cnn():
    torch.manual_seed(0)
    ours = SmallCNN(widths=(4, 8), input_size=8)
    their_layers = prunable_layers(copy.deepcopy(ours))
    pruner = ThresholdPruner(ours)
    pruner.apply_global_pruning(0.7)
    tprune.global_unstructured([(m, "weight") for _, m in their_layers],
                               pruning_method=tprune.L1Unstructured, amount=0.7)
    for (name, a), (_, b) in zip(prunable_layers(ours), their_layers):
        assert torch.equal(pruner.masks[name], _torch_mask(b)), name
        assert torch.equal(a.weight, b.weight), name
