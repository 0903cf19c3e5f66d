"""TinyViT and its structured pruning (attention heads, MLP neurons), checked against independent computations.

The main reference: pruning a unit must compute exactly what the *original* model computes when that
unit's weights are zeroed in place (q/k/v rows and biases plus out-projection columns for a head; fc1
row and bias plus fc2 column for a neuron), a computation that never slices a layer.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pruning_utils.masks import apply_mask, get_mask
from pruning_utils.models import SmallCNN
from pruning_utils.training import train
from pruning_utils.transformer import (
    MultiHeadSelfAttention,
    TinyViT,
    TransformerBlock,
    UnitGroup,
    activation_importance,
    attention_head_groups,
    mlp_neuron_groups,
    prune_heads,
    prune_mlp_neurons,
    prune_units,
    units_to_keep,
    weight_norm_importance,
)

DIM, HEADS, HEAD_DIM, HIDDEN, DEPTH, PATCHES = 32, 4, 8, 64, 2, 16  # TinyViT(dim=32, heads=4, mlp_ratio=2)


def _model(seed: int = 0, **kwargs) -> TinyViT:
    torch.manual_seed(seed)
    options = dict(dim=DIM, depth=DEPTH, heads=HEADS, mlp_ratio=2)
    options.update(kwargs)
    model = TinyViT(**options).eval()
    with torch.no_grad():  # spread the scores: heads and neurons of clearly different size
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.mul_(1 + torch.rand(p.shape[0], 1))
    return model


def _images(n: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _zeroed(model: TinyViT, kind: str, keep: dict) -> TinyViT:
    """The independent reference: a copy of the original whose removed units' weights are zeroed."""
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for block, kept in keep.items():
            module = ref.get_submodule(block)
            if kind == "heads":
                size, producers, consumers = module.head_dim, [module.q, module.k, module.v], [module.out]
                units = module.heads
            else:
                size, producers, consumers = 1, [module.fc1], [module.fc2]
                units = module.fc1.out_features
            for u in sorted(set(range(units)) - set(kept.tolist())):
                rows = slice(u * size, (u + 1) * size)
                for layer in producers:
                    layer.weight[rows] = 0
                    layer.bias[rows] = 0
                for layer in consumers:
                    layer.weight[:, rows] = 0
    return ref


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


def test_tinyvit_shapes_names_and_parameter_count_by_hand():
    model = _model()
    assert model.input_shape == (1, 8, 8)
    assert model(_images(3)).shape == (3, 10)
    names = dict(model.named_modules())
    for i in range(DEPTH):
        for layer in ("attn.q", "attn.k", "attn.v", "attn.out", "mlp.fc1", "mlp.fc2"):
            assert isinstance(names[f"blocks.{i}.{layer}"], nn.Linear)
    patch = 1 * 2 * 2
    per_block = (2 * DIM  # norm1
                 + 3 * (DIM * DIM + DIM) + (DIM * DIM + DIM)  # q, k, v, out
                 + 2 * DIM  # norm2
                 + (DIM * HIDDEN + HIDDEN) + (HIDDEN * DIM + DIM))  # fc1, fc2
    expected = (patch * DIM + DIM  # patch_embed
                + DIM  # class token
                + (PATCHES + 1) * DIM  # position embeddings
                + DEPTH * per_block
                + 2 * DIM  # final norm
                + DIM * 10 + 10)  # head
    assert _n_params(model) == expected


def test_tinyvit_attention_equals_torch_multihead_attention():
    """Our q/k/v/out attention computes what torch's nn.MultiheadAttention computes with the same weights."""
    attn = _model().blocks[0].attn
    mha = nn.MultiheadAttention(DIM, HEADS, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([attn.q.weight, attn.k.weight, attn.v.weight]))
        mha.in_proj_bias.copy_(torch.cat([attn.q.bias, attn.k.bias, attn.v.bias]))
        mha.out_proj.weight.copy_(attn.out.weight)
        mha.out_proj.bias.copy_(attn.out.bias)
    x = torch.randn(3, PATCHES + 1, DIM)
    expected, _ = mha(x, x, x, need_weights=False)
    torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-5)


def test_tinyvit_refuses_bad_input_and_bad_settings():
    model = _model()
    with pytest.raises(ValueError, match=r"TinyViT expects input of shape \(batch, 1, 8, 8\)"):
        model(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="TinyViT expects input of shape"):
        model(torch.zeros(1, 8, 8))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model([[0.0]])
    with pytest.raises(ValueError, match="dim must be divisible by heads"):
        TinyViT(dim=30, heads=4)
    with pytest.raises(ValueError, match="patch_size must divide image_size"):
        TinyViT(image_size=8, patch_size=3)
    with pytest.raises(TypeError, match="depth"):
        TinyViT(depth=True)
    with pytest.raises(ValueError, match="mlp_ratio"):
        TinyViT(mlp_ratio=0)
    with pytest.raises(TypeError, match="dim must be an int"):
        TransformerBlock(1.5, 2, 4)
    with pytest.raises(ValueError, match="dim must be divisible by heads"):
        MultiHeadSelfAttention(10, 4)


def test_tinyvit_trains_with_the_course_loop():
    """15 epochs of pruning_utils.training.train on the digits beat chance (10%) by far (val 0.79-0.84 over seeds 0-2)."""
    torch.manual_seed(0)
    from pruning_utils.data import get_loaders

    loaders = get_loaders("quick")
    batches = list(loaders.train)
    model = TinyViT(dim=32, depth=1, heads=2)
    history = train(model, batches, epochs=15, profile="quick", val_loader=list(loaders.val), progress=False)
    assert history["val_acc"][-1] > 0.6
    assert history["train_loss"][-1] < history["train_loss"][0]


# ---------------------------------------------------------------------------------------------
# Groups
# ---------------------------------------------------------------------------------------------


def test_groups_name_the_coupled_layers_and_print_one_line_each():
    model = _model()
    heads, neurons = attention_head_groups(model), mlp_neuron_groups(model)
    assert [g.block for g in heads] == ["blocks.0.attn", "blocks.1.attn"]
    assert [g.block for g in neurons] == ["blocks.0.mlp", "blocks.1.mlp"]
    g = heads[1]
    assert (g.units, g.size) == (HEADS, HEAD_DIM)
    assert g.producers == ["blocks.1.attn.q", "blocks.1.attn.k", "blocks.1.attn.v"]
    assert g.consumers == ["blocks.1.attn.out"]
    assert g.indices([2]).tolist() == list(range(2 * HEAD_DIM, 3 * HEAD_DIM))
    lines = str(g).splitlines()
    assert lines[0] == f"group 'blocks.1.attn': {HEADS} heads of {HEAD_DIM} features (attention)"
    assert len(lines) == 1 + 4  # a header, then q, k, v, out
    assert "blocks.1.attn.out" in lines[-1] and "weight dim 1" in lines[-1]
    lines = str(neurons[0]).splitlines()
    assert lines[0] == f"group 'blocks.0.mlp': {HIDDEN} neurons (MLP)"
    assert "blocks.0.mlp.fc1" in lines[1] and "weight dim 0" in lines[1] and "bias" in lines[1]
    assert "blocks.0.mlp.fc2" in lines[2] and "weight dim 1" in lines[2]


# ---------------------------------------------------------------------------------------------
# Pruning: outputs against the original
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prune", [prune_heads, prune_mlp_neurons])
def test_ratio_zero_computes_exactly_what_the_original_does(prune):
    model = _model()
    pruned = prune(model, 0.0)
    assert pruned is not model
    x = _images()
    with torch.no_grad():
        assert torch.equal(pruned(x), model(x))
    assert _n_params(pruned) == _n_params(model)


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_pruned_heads_equal_the_original_with_those_heads_zeroed(ratio):
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    groups = attention_head_groups(model)
    keep = units_to_keep(model, groups, ratio)
    pruned = prune_units(model, groups, keep)
    kept = HEADS - round(ratio * HEADS)
    for i in range(DEPTH):
        attn = pruned.blocks[i].attn
        assert attn.heads == kept == len(keep[f"blocks.{i}.attn"])
        assert attn.q.weight.shape == (kept * HEAD_DIM, DIM) and attn.out.weight.shape == (DIM, kept * HEAD_DIM)
    x = _images()
    with torch.no_grad():
        reference = _zeroed(model, "heads", keep)(x)
        torch.testing.assert_close(pruned(x), reference, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(reference, model(x), atol=1e-3)  # the removed heads did matter
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())  # original untouched
    # Parameters by hand: each block loses (HEADS - kept) heads of q/k/v rows + biases and out columns.
    lost = (HEADS - kept) * HEAD_DIM * (3 * (DIM + 1) + DIM)
    assert _n_params(pruned) == _n_params(model) - DEPTH * lost
    # prune_heads is these steps in one call
    torch.testing.assert_close(prune_heads(model, ratio)(x), pruned(x), rtol=0, atol=0)


@pytest.mark.parametrize("ratio", [0.3, 0.5])
def test_pruned_neurons_equal_the_original_with_those_neurons_zeroed(ratio):
    model = _model()
    groups = mlp_neuron_groups(model)
    keep = units_to_keep(model, groups, ratio)
    pruned = prune_units(model, groups, keep)
    kept = HIDDEN - round(ratio * HIDDEN)
    assert pruned.blocks[0].mlp.fc1.out_features == kept == pruned.blocks[1].mlp.fc2.in_features
    x = _images()
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), _zeroed(model, "neurons", keep)(x), rtol=1e-5, atol=1e-6)
    assert _n_params(pruned) == _n_params(model) - DEPTH * (HIDDEN - kept) * (DIM + 1 + DIM)
    torch.testing.assert_close(prune_mlp_neurons(model, ratio)(x), pruned(x), rtol=0, atol=0)


def test_verbose_prints_the_layer_table(capsys):
    prune_heads(_model(), 0.5, verbose=True)
    table = capsys.readouterr().out
    # q of block 0: 32 -> 16 outputs, (32 + 1) * 32 -> (32 + 1) * 16 parameters
    assert "| blocks.0.attn.q | Linear | 32 | 32 → 16 | 1,056 → 528 |" in table
    assert "| blocks.1.attn.out | Linear | 32 → 16 | 32 | 1,056 → 544 |" in table
    with pytest.raises(TypeError, match="verbose"):
        prune_mlp_neurons(_model(), 0.5, verbose="yes")


def test_round_to_rounds_the_kept_width():
    model = _model()
    # 64 - round(0.3 * 64) = 45 neurons, rounded to a multiple of 16: 48
    assert prune_mlp_neurons(model, 0.3, round_to=16).blocks[0].mlp.fc1.out_features == 48
    assert prune_mlp_neurons(model, 0.3).blocks[0].mlp.fc1.out_features == 45


def test_heads_then_neurons_forward_backward_and_training_step():
    pruned = prune_mlp_neurons(prune_heads(_model(), 0.5), 0.5)
    assert [b.attn.heads for b in pruned.blocks] == [2, 2]
    pruned.train()
    x, y = _images(8), torch.arange(8) % 10
    loss = F.cross_entropy(pruned(x), y)
    loss.backward()
    for name, p in pruned.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
        assert torch.isfinite(p.grad).all(), name
    history = train(pruned, [(x, y)], epochs=2, profile="quick", progress=False)
    assert len(history["train_loss"]) == 2


def test_unstructured_masks_survive_on_the_kept_heads():
    model = _model()
    q = model.blocks[0].attn.q
    mask = (torch.rand(q.weight.shape, generator=torch.Generator().manual_seed(3)) > 0.5).float()
    apply_mask(q, mask)
    groups = attention_head_groups(model)
    keep = units_to_keep(model, groups, 0.5)
    pruned = prune_units(model, groups, keep)
    rows = groups[0].indices(keep["blocks.0.attn"])
    assert torch.equal(get_mask(pruned.blocks[0].attn.q), mask[rows])
    x = _images()
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), _zeroed(model, "heads", keep)(x), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Importance and selection
# ---------------------------------------------------------------------------------------------


def test_weight_norm_importance_and_selection_against_a_direct_computation():
    model = _model()
    attn = model.blocks[1].attn
    expected = torch.stack([
        torch.cat([attn.q.weight[h * HEAD_DIM:(h + 1) * HEAD_DIM].flatten(),
                   attn.k.weight[h * HEAD_DIM:(h + 1) * HEAD_DIM].flatten(),
                   attn.v.weight[h * HEAD_DIM:(h + 1) * HEAD_DIM].flatten(),
                   attn.q.bias[h * HEAD_DIM:(h + 1) * HEAD_DIM], attn.k.bias[h * HEAD_DIM:(h + 1) * HEAD_DIM],
                   attn.v.bias[h * HEAD_DIM:(h + 1) * HEAD_DIM],
                   attn.out.weight[:, h * HEAD_DIM:(h + 1) * HEAD_DIM].flatten()]).norm()
        for h in range(HEADS)]).detach()
    group = attention_head_groups(model)[1]
    scores = weight_norm_importance(model, group)
    torch.testing.assert_close(scores.float(), expected, rtol=1e-5, atol=0)
    keep = units_to_keep(model, [group], 0.5)["blocks.1.attn"]
    assert set(keep.tolist()) == set(expected.topk(2).indices.tolist())
    mlp = model.blocks[0].mlp
    neuron_expected = (mlp.fc1.weight.pow(2).sum(1) + mlp.fc1.bias.pow(2) + mlp.fc2.weight.pow(2).sum(0)).sqrt()
    torch.testing.assert_close(weight_norm_importance(model, mlp_neuron_groups(model)[0]).float(),
                               neuron_expected.detach(), rtol=1e-5, atol=0)


def test_activation_importance_is_each_units_contribution_norm():
    """Reference: run a copy whose consumer keeps only one unit's columns (bias zeroed) and read its output."""
    model, x = _model(), _images()
    for groups, consumer in ((attention_head_groups(model), "attn.out"), (mlp_neuron_groups(model), "mlp.fc2")):
        group = groups[0]
        scores = activation_importance(x)(model, group)
        expected = []
        for u in range(group.units):
            ref = copy.deepcopy(model)
            layer = ref.get_submodule(f"blocks.0.{consumer}")
            outputs = []
            with torch.no_grad():
                keep = torch.zeros(layer.in_features, dtype=torch.bool)
                keep[u * group.size:(u + 1) * group.size] = True
                layer.weight[:, ~keep] = 0
                layer.bias.zero_()
                layer.register_forward_hook(lambda m, i, o: outputs.append(o))
                ref(x)
            expected.append(outputs[0].norm(dim=-1).mean())
        torch.testing.assert_close(scores.float(), torch.stack(expected), rtol=1e-4, atol=1e-6)
    double = copy.deepcopy(model).double()  # calibration images are cast to the model's dtype
    torch.testing.assert_close(activation_importance(x)(double, group).float(), scores.float(), rtol=1e-4, atol=1e-6)
    model.train()
    activation_importance((x, torch.zeros(len(x), dtype=torch.long)))(model, mlp_neuron_groups(model)[0])
    assert model.training  # mode restored
    assert not model.blocks[0].mlp.fc2._forward_pre_hooks  # hook removed


def test_activation_importance_prunes_and_matches_zeroed_reference():
    model, x = _model(), _images()
    groups = attention_head_groups(model)
    importance = activation_importance(x)
    keep = units_to_keep(model, groups, 0.5, importance)
    pruned = prune_heads(model, 0.5, importance=importance)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), _zeroed(model, "heads", keep)(x), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio, error", [(-0.1, ValueError), (1.0, ValueError), (1.5, ValueError),
                                          (float("nan"), ValueError), ("0.5", TypeError), (True, TypeError)])
@pytest.mark.parametrize("prune", [prune_heads, prune_mlp_neurons])
def test_bad_ratio_is_refused(prune, ratio, error):
    with pytest.raises(error, match="ratio"):
        prune(_model(), ratio)


def test_models_without_such_blocks_and_bad_arguments_are_refused():
    cnn = SmallCNN(widths=(8, 16))
    with pytest.raises(ValueError, match=r"model \(SmallCNN\) has no attention block"):
        prune_heads(cnn, 0.5)
    with pytest.raises(ValueError, match=r"model \(SmallCNN\) has no MLP block"):
        mlp_neuron_groups(cnn)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        attention_head_groups("vit")
    model = _model()
    with pytest.raises(ValueError, match=r"importance must be one of \['weight'\] or a function"):
        prune_heads(model, 0.5, importance="l1")
    with pytest.raises(ValueError, match=r"one score per unit of group 'blocks.0.attn', shape \(4,\)"):
        prune_heads(model, 0.5, importance=lambda m, g: torch.ones(3))
    with pytest.raises(ValueError, match="not all finite"):
        prune_heads(model, 0.5, importance=lambda m, g: torch.full((g.units,), float("nan")))
    with pytest.raises(TypeError, match="round_to"):
        prune_mlp_neurons(model, 0.5, round_to=1.5)
    groups = attention_head_groups(model)
    with pytest.raises(ValueError, match=r"keep\['blocks.0.attn'\] must hold head indices in \[0, 4\); got 0..4"):
        prune_units(model, groups, {"blocks.0.attn": [0, 4], "blocks.1.attn": [0]})
    with pytest.raises(ValueError, match="keep has no entry for group 'blocks.1.attn'"):
        prune_units(model, groups, {"blocks.0.attn": [0]})
    with pytest.raises(ValueError, match="not among the groups"):
        prune_units(model, groups[:1], {"blocks.0.attn": [0], "blocks.1.attn": [0]})
    with pytest.raises(ValueError, match=r"keep\['blocks.0.attn'\]: keep_indices has repeated"):
        prune_units(model, groups, {"blocks.0.attn": [1, 1], "blocks.1.attn": [0]})
    with pytest.raises(TypeError, match="groups must hold UnitGroup"):
        prune_units(model, ["blocks.0.attn"], {})
    smaller = prune_heads(model, 0.5)
    with pytest.raises(ValueError, match="build the groups from this model"):
        prune_units(smaller, groups, {"blocks.0.attn": [0], "blocks.1.attn": [0]})
    with pytest.raises(ValueError, match="build the groups from this model"):
        weight_norm_importance(SmallCNN(widths=(8, 16)), groups[0])
    with pytest.raises(TypeError, match="inputs must be a floating-point tensor"):
        activation_importance(torch.zeros(2, 1, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="inputs holds NaN"):
        activation_importance(torch.full((2, 1, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="TinyViT expects input"):
        activation_importance(torch.zeros(2, 3, 8, 8))(model, groups[0])
    assert not model.blocks[0].attn.out._forward_pre_hooks  # the hook is gone after the failure
    assert isinstance(groups[0], UnitGroup)


def test_unit_groups_check_their_fields_and_indices():
    group = UnitGroup("blocks.0.attn", "heads", units=4, size=2, producers=["blocks.0.attn.q"])
    assert group.indices([2, 0]).tolist() == [0, 1, 4, 5]
    with pytest.raises(ValueError, match=r"units \(of group 'blocks.0.attn'\) must hold head indices in \[0, 4\)"):
        group.indices([4])
    with pytest.raises(TypeError, match="int channel indices"):
        group.indices([0.5])
    with pytest.raises(ValueError, match="kind must be 'heads' or 'neurons'"):
        UnitGroup("b", "filters", units=4, size=1, producers=["x"])
    with pytest.raises(ValueError, match="units must be an int >= 1"):
        UnitGroup("b", "heads", units=0, size=1, producers=["x"])
    with pytest.raises(TypeError, match="size must be an int"):
        UnitGroup("b", "heads", units=2, size=1.0, producers=["x"])
    with pytest.raises(ValueError, match="names no layer"):
        UnitGroup("b", "neurons", units=2, size=1)
    model = _model()
    with pytest.raises(ValueError, match="of heads must name a MultiHeadSelfAttention module"):
        weight_norm_importance(model, UnitGroup("blocks.0.mlp", "heads", units=64, size=1,
                                                producers=["blocks.0.mlp.fc1"], consumers=["blocks.0.mlp.fc2"]))
    with pytest.raises(ValueError, match="'blocks.7.attn' is not a module of the model"):
        weight_norm_importance(model, UnitGroup("blocks.7.attn", "heads", units=4, size=8, producers=["x"]))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        weight_norm_importance("model", attention_head_groups(model)[0])
    with pytest.raises(TypeError, match="keep_indices"):
        prune_units(_model(), attention_head_groups(_model()), {"blocks.0.attn": [0.5], "blocks.1.attn": [0]})
