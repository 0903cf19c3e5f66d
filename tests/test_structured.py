import copy
import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pruning_utils.masks import apply_mask, get_mask, is_masked
from pruning_utils.latency import compare_latency
from pruning_utils.models import MLP, SmallCNN, cifar_resnet
from pruning_utils.structured import (
    ChannelGroup,
    StructuredPruner,
    bn_scale_importance,
    channels_to_keep,
    find_channel_groups,
    fold_batchnorm,
    l1_importance,
    l2_importance,
    prune_resnet,
    prune_simple_cnn,
    structure_report,
)
from _hand_listed import _listed_groups, listed_prune
from pruning_utils.training import fine_tune


@pytest.fixture(autouse=True)
def _one_thread():
    """The tensors here are tiny: one thread avoids waiting on a second, busy core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomise_bn(model, seed=0):
    """Give every BatchNorm non-trivial statistics and affine parameters, so slicing mistakes show."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                if m.running_mean is not None:
                    m.running_mean.copy_(torch.randn(n, generator=gen))
                    m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.randn(n, generator=gen))
                    if m.bias is not None:
                        m.bias.copy_(torch.randn(n, generator=gen))
    return model


def cnn(head="flatten", seed=0, **conv):
    torch.manual_seed(seed)
    conv = {"padding": 1, **conv}
    layers = [nn.Conv2d(3, 8, 3, **conv), nn.BatchNorm2d(8), nn.ReLU(),
              nn.Conv2d(8, 16, 3, **conv), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2)]
    if head == "flatten":
        layers += [nn.Flatten(), nn.Linear(16 * 4 * 4, 10)]
    else:
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)]
    return randomise_bn(nn.Sequential(*layers)).eval()


@torch.no_grad()
def zero_removed_inputs(model, pruner, pruned):
    """Independent computation: the original model with each consumer's removed input columns zeroed.

    A removed channel then contributes nothing downstream, whatever its producer and BatchNorm output,
    so this model must compute what the pruned one does (up to float summation order).
    """
    ref = copy.deepcopy(model)
    for g in pruner.groups:
        kept = pruned.get_submodule(g.producer).weight.shape[0]
        orig = model.get_submodule(g.producer)
        removed = set(range(g.channels)) - set(pruner.select_channels(orig, model.get_submodule(g.norms[0])
                                                                       if g.norms else None, RATIO).tolist())
        assert len(removed) == g.channels - kept
        for name, per in g.consumers:
            w = ref.get_submodule(name).weight
            for c in removed:
                w[:, c * per:(c + 1) * per] = 0
    return ref


RATIO = 0.5


def check_equivalent(model, x, **options):
    pruner = StructuredPruner(model, **options)
    pruned = pruner.prune(RATIO)
    ref = zero_removed_inputs(model, pruner, pruned)
    with torch.no_grad():
        out, expected = pruned(x), ref(x)
    assert out.shape == model(x).shape
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    return pruner, pruned


# ---- Sequential CNNs with a head, MLPs -----------------------------------------------------------


@pytest.mark.parametrize("head", ["flatten", "adaptive_pool"])
def test_cnn_with_linear_head_matches_zeroed_inputs(head):
    model = cnn(head)
    pruner, pruned = check_equivalent(model, torch.randn(5, 3, 8, 8))
    assert [pruned[i].out_channels for i in (0, 3)] == [4, 8]
    assert pruned[-1].in_features == (8 * 16 if head == "flatten" else 8)


def test_bn_in_training_mode_is_equivalent_too():
    model = cnn().train()  # batch statistics are per channel, so removing a channel changes no other
    check_equivalent(model, torch.randn(6, 3, 8, 8))


def test_kept_weights_are_copied_exactly():
    model = cnn()
    pruner = StructuredPruner(model)
    pruned = pruner.prune(RATIO)
    k0 = pruner.select_channels(model[0], model[1], RATIO)
    k1 = pruner.select_channels(model[3], model[4], RATIO)
    assert torch.equal(pruned[0].weight, model[0].weight[k0])
    assert torch.equal(pruned[0].bias, model[0].bias[k0])
    assert torch.equal(pruned[3].weight, model[3].weight[k1][:, k0])
    for name in ("weight", "bias", "running_mean", "running_var"):
        assert torch.equal(getattr(pruned[4], name), getattr(model[4], name)[k1])
    cols = (k1[:, None] * 16 + torch.arange(16)).reshape(-1)
    assert torch.equal(pruned[-1].weight, model[-1].weight[:, cols])
    assert torch.equal(pruned[-1].bias, model[-1].bias)


def test_l1_keeps_the_filters_with_largest_norms():
    model = cnn()
    keep = StructuredPruner(model).select_channels(model[3], None, 0.25)
    norms = model[3].weight.abs().sum((1, 2, 3))
    assert set(keep.tolist()) == set(norms.topk(12).indices.tolist())


def test_mlp_hidden_neurons():
    torch.manual_seed(0)
    model = MLP(in_features=64, hidden=(32, 16))
    pruner, pruned = check_equivalent(model, torch.randn(4, 1, 8, 8))
    widths = (pruned.fc1.out_features, pruned.fc2.in_features, pruned.fc2.out_features, pruned.fc3.in_features)
    assert widths == (16, 16, 8, 8)
    assert pruned.fc3.out_features == 10


def test_linear_with_batchnorm1d_and_dropout():
    torch.manual_seed(0)
    model = randomise_bn(nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Dropout(0.2),
                                       nn.Linear(12, 3))).eval()
    pruner, pruned = check_equivalent(model, torch.randn(4, 6))
    assert pruned[1].num_features == 6


def test_small_cnn_keeps_its_class_and_input_check():
    torch.manual_seed(0)
    model = randomise_bn(SmallCNN(widths=(8, 16, 32))).eval()
    pruner, pruned = check_equivalent(model, torch.randn(3, 1, 8, 8))
    assert type(pruned) is SmallCNN and pruned.fc.in_features == 16 * 4
    with pytest.raises(ValueError, match="expects input of shape"):
        pruned(torch.randn(1, 3, 8, 8))


def test_prune_simple_cnn_is_the_tutorial_entry_point():
    model = cnn()
    pruned = prune_simple_cnn(model, prune_ratio=0.25)
    assert [pruned[i].out_channels for i in (0, 3)] == [6, 12]
    with pytest.raises(TypeError, match="prune_resnet"):
        prune_simple_cnn(cifar_resnet(20))


# ---- settings copied -------------------------------------------------------------------------------


def test_conv_settings_are_kept_dilated_reflect_padded_with_bias():
    model = cnn(dilation=2, padding=2, padding_mode="reflect", bias=True)
    pruner, pruned = check_equivalent(model, torch.randn(2, 3, 8, 8))
    for i in (0, 3):
        new, old = pruned[i], model[i]
        for attr in ("kernel_size", "stride", "padding", "dilation", "groups", "padding_mode"):
            assert getattr(new, attr) == getattr(old, attr), attr
        assert new.bias is not None


def test_bn_settings_are_kept():
    model = cnn()
    bn = nn.BatchNorm2d(8, eps=1e-3, momentum=None)
    bn.num_batches_tracked.fill_(7)
    model[1] = randomise_bn(bn)
    model[4] = nn.BatchNorm2d(16, affine=False, track_running_stats=False, momentum=0.3)
    model[1].weight.requires_grad_(False)
    pruned = StructuredPruner(model).prune(RATIO)
    bn = pruned[1]
    assert (bn.eps, bn.momentum, bn.affine, bn.track_running_stats) == (1e-3, None, True, True)
    assert int(pruned[1].num_batches_tracked) == 7 and not pruned[1].weight.requires_grad
    assert (pruned[4].affine, pruned[4].track_running_stats, pruned[4].momentum) == (False, False, 0.3)
    assert pruned[4].running_mean is None and pruned[4].weight is None
    assert pruned[1].training == model[1].training


def test_conv1d_chain():
    torch.manual_seed(0)
    model = randomise_bn(nn.Sequential(nn.Conv1d(2, 8, 3, padding=1), nn.BatchNorm1d(8), nn.ReLU(),
                                       nn.Conv1d(8, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                                       nn.Linear(8 * 5, 2))).eval()
    check_equivalent(model, torch.randn(3, 2, 5))


def test_masked_layers_keep_the_kept_part_of_their_masks():
    model = cnn()
    mask = (torch.rand_like(model[3].weight) > 0.5).float()
    apply_mask(model[3], mask)
    pruned = StructuredPruner(model).prune(0.0)
    assert isinstance(pruned[3], nn.Conv2d) and is_masked(pruned[3])
    assert torch.equal(pruned[3].weight, model[3].weight)
    assert torch.equal(get_mask(pruned[3]), mask)
    half = StructuredPruner(model).prune(0.5)
    pruner = StructuredPruner(model)
    keep_out, keep_in = (pruner.select_channels(model[i], None, 0.5) for i in (3, 0))
    assert torch.equal(get_mask(half[3]), mask[keep_out][:, keep_in])  # the kept filters and inputs keep their masks


# ---- ratios -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda: (cnn(), torch.randn(2, 3, 8, 8)),
    lambda: (randomise_bn(SmallCNN()).eval(), torch.randn(2, 1, 8, 8)),
    lambda: (MLP(64), torch.randn(2, 64)),
    lambda: (randomise_bn(cifar_resnet(20)).eval(), torch.randn(2, 3, 16, 16)),
], ids=["cnn", "small_cnn", "mlp", "resnet20"])
def test_ratio_zero_gives_identical_outputs(make):
    model, x = make()
    pruned = StructuredPruner(model, round_to=8).prune(0.0)
    with torch.no_grad():
        assert torch.equal(pruned(x), model(x))


def test_ratio_close_to_one_keeps_one_filter_per_layer():
    model = cnn()
    pruner = StructuredPruner(model)
    pruned = pruner.prune(0.999)
    assert [pruned[i].out_channels for i in (0, 3)] == [1, 1]
    assert pruned(torch.randn(2, 3, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("bad, error", [(1.0, ValueError), (-0.1, ValueError), (float("nan"), ValueError),
                                        ("0.5", TypeError), (True, TypeError)])
def test_bad_ratios_raise(bad, error):
    with pytest.raises(error, match="prune_ratio"):
        StructuredPruner(cnn()).prune(bad)


def test_channels_to_keep_and_round_to():
    assert channels_to_keep(32, 0.3) == 22
    assert channels_to_keep(32, 0.3, round_to=8) == 24
    assert channels_to_keep(32, 0.0, round_to=24) == 32  # a layer that loses nothing stays whole
    assert channels_to_keep(10, 0.1, round_to=8) == 8
    assert channels_to_keep(4, 0.5, round_to=8) == 4  # never above the layer's width
    assert channels_to_keep(16, 0.99, round_to=8) == 8  # never below round_to
    assert channels_to_keep(1, 0.9) == 1
    with pytest.raises(ValueError, match="round_to"):
        channels_to_keep(8, 0.5, round_to=0)


def test_round_to_gives_multiples_of_eight():
    torch.manual_seed(0)
    model = SmallCNN(widths=(32, 64, 64))
    pruned = StructuredPruner(model, round_to=8).prune(0.3)
    assert [pruned.get_submodule(n).out_channels for n in ("conv1", "conv2", "conv3")] == [24, 48, 48]


# ---- importance criteria -------------------------------------------------------------------------------


def test_importance_criteria():
    conv = nn.Conv2d(1, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([3.0, -4.0]).view(2, 1, 1, 1))
    lin = nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, -4.0], [1.0, 1.0]]))
    assert torch.equal(l1_importance(conv), torch.tensor([3.0, 4.0]))
    assert torch.allclose(l2_importance(lin), torch.tensor([5.0, math.sqrt(2)]))
    assert torch.equal(l1_importance(lin), torch.tensor([7.0, 2.0]))
    bn = nn.BatchNorm2d(2)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([-0.5, 0.25]))
    assert torch.equal(bn_scale_importance(conv, bn), torch.tensor([0.5, 0.25]))
    with pytest.raises(ValueError, match="BatchNorm"):
        bn_scale_importance(conv, None)


def test_bn_scale_criterion_keeps_largest_gammas():
    model = cnn()
    pruner = StructuredPruner(model, importance="bn_scale")
    pruned = pruner.prune(0.5)
    keep = model[4].weight.abs().topk(8).indices.sort().values
    assert torch.equal(pruned[4].weight, model[4].weight[keep])
    assert torch.equal(pruner.compute_filter_importance(model[3]), model[4].weight.detach().abs())


def test_bad_importance_raises():
    with pytest.raises(ValueError, match="importance must be one of"):
        StructuredPruner(cnn(), importance="l3")
    with pytest.raises(ValueError, match="one score per output channel"):
        StructuredPruner(cnn(), importance=lambda layer, bn: torch.ones(3)).prune(0.5)


# ---- residual networks --------------------------------------------------------------------------------


def test_cifar_resnet20_prunes_inner_channels_only_and_trains():
    model = randomise_bn(cifar_resnet(20)).eval()
    x = torch.randn(2, 3, 16, 16)
    pruner, pruned = check_equivalent(model, x)
    assert len(pruner.groups) == 9 and all(g.producer.endswith(".conv1") for g in pruner.groups)
    for (name, old), new in zip(model.named_modules(), pruned.modules()):
        if name.endswith("conv1") and "." in name:
            assert new.out_channels == old.out_channels // 2, name
        elif isinstance(old, nn.Conv2d):  # block outputs, the stem and the head are untouched
            assert new.out_channels == old.out_channels, name
    pruned.train()
    pruned(x).sum().backward()
    assert all(p.grad is not None for p in pruned.parameters())


def test_torchvision_resnet18_forward_backward():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    pruned = prune_resnet(model, 0.5, round_to=8)
    assert pruned.layer1[0].conv1.out_channels == 32 and pruned.layer1[0].conv2.out_channels == 64
    assert pruned.layer4[1].conv2.in_channels == 256
    out = pruned(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 1000)
    out.sum().backward()
    assert pruned.layer2[0].conv1.weight.grad is not None


def test_torchvision_bottleneck_prunes_conv1_and_conv2():
    pytest.importorskip("torchvision")
    from torchvision.models.resnet import Bottleneck, ResNet

    torch.manual_seed(0)
    model = randomise_bn(ResNet(Bottleneck, [1, 1, 1, 1], num_classes=5)).eval()
    x = torch.randn(2, 3, 32, 32)
    pruner, pruned = check_equivalent(model, x)
    block = pruned.layer2[0]
    widths = (block.conv1.out_channels, block.conv2.in_channels, block.conv2.out_channels, block.conv3.in_channels)
    assert widths == (64, 64, 64, 64)
    assert block.conv3.out_channels == 512
    assert len(pruner.groups) == 9  # 2 inner groups per block, and the stem (read by a conv and a projection)
    assert pruned.conv1.out_channels == 32 and pruned.layer1[0].downsample[0].in_channels == 32


def test_prune_resnet_refuses_a_model_without_known_blocks():
    with pytest.raises(ValueError, match="no residual block"):
        prune_resnet(cnn())


# ---- clear errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("model, size", [
    (nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=2), nn.ReLU(), nn.Conv2d(8, 4, 1)), 32),
    (nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 4, 1)), 32),
    (nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 5 * 5, 4)), 7),  # only 7x7 fits
    (nn.Sequential(nn.Conv1d(2, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 5, 2)), 5),
], ids=["grouped", "depthwise", "flatten-head", "conv1d-flatten-head"])
def test_without_an_input_size_one_is_inferred_from_the_first_layer(model, size):
    """A model that declares no size is traced at the first size that runs through it: the same groups
    and the same pruned model as with that size given."""
    inferred = StructuredPruner(model)
    spatial = (size,) * (model[0].weight.dim() - 2)
    assert inferred.graph.input_inferred and inferred.graph.input_size == (1, model[0].in_channels, *spatial)
    given = StructuredPruner(model, input_size=inferred.graph.input_size)
    assert not given.graph.input_inferred and inferred.describe() == given.describe() != ""
    same_pruning(inferred.prune(0.5), given.prune(0.5))
    assert inferred.report.flops_before is None and given.report.flops_before is not None  # FLOPs only for a given size


def test_no_input_that_runs_is_a_clear_error():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 70 * 70, 2))  # needs 72x72: not tried
    with pytest.raises(ValueError, match=r"example_input \(or input_size\) is needed to trace Sequential"):
        StructuredPruner(model)
    assert StructuredPruner(model, input_size=(1, 3, 72, 72)).prune(0.5)[0].out_channels == 4


def test_grouped_bottleneck_prunes_without_an_input_size():
    pytest.importorskip("torchvision")
    from torchvision.models.resnet import Bottleneck

    torch.manual_seed(0)
    model = randomise_bn(nn.Sequential(Bottleneck(64, 16, groups=4))).eval()
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(prune_resnet(model, 0.0)(x), model(x), rtol=0, atol=0)
    pruned = prune_resnet(model, 0.5)
    assert (pruned[0].conv1.out_channels, pruned[0].conv2.groups, pruned[0].conv3.in_channels) == (32, 4, 32)
    assert pruned[0].conv3.out_channels == 64  # the addition's channels stay whole


class Scale(nn.Module):
    def forward(self, x):
        return x * 2


class Cumsum(nn.Module):
    def forward(self, x):
        return torch.cumsum(x, dim=1)  # mixes the channels in order: no channel can go alone


@pytest.mark.parametrize("middle, pruned_width", [(Scale(), 4), (nn.GroupNorm(2, 8), 4), (Cumsum(), None)],
                         ids=["scale", "groupnorm", "cumsum"])
def test_what_the_graph_knows_prunes_and_what_it_does_not_is_refused(middle, pruned_width):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), middle, nn.Conv2d(8, 4, 3))
    if pruned_width is not None:
        assert StructuredPruner(model).prune(0.5)[0].out_channels == pruned_width
        return
    with pytest.raises(ValueError, match=r"no channel group.*cumsum"):
        StructuredPruner(model).prune(0.5)


def test_unknown_layers_after_the_last_weights_are_fine():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3), nn.LogSoftmax(dim=1))
    pruned = StructuredPruner(model).prune(0.5)
    assert (pruned[0].out_features, pruned[2].out_features) == (4, 3)


def test_linear_on_unflattened_conv_output_raises():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Linear(6, 4))  # mixes the width, on each channel
    with pytest.raises(ValueError, match="no channel group.*tied together"):
        StructuredPruner(model).prune(0.5)


def test_model_with_nothing_to_prune_raises_and_a_plain_chain_prunes():
    with pytest.raises(ValueError, match="no channel group"):
        StructuredPruner(nn.Sequential(nn.Flatten(), nn.Linear(4, 2))).prune(0.5)

    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 2, 1)

        def forward(self, x):
            return self.b(self.a(x))

    pruned = StructuredPruner(Plain()).prune(0.5)  # a chain in a plain module: traced, so pruned
    assert (pruned.a.out_channels, pruned.b.in_channels, pruned.b.out_channels) == (2, 2, 2)


def test_shared_layers_raise():
    conv = nn.Conv2d(4, 4, 1)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), conv, nn.ReLU(), conv, nn.Conv2d(4, 2, 1))
    with pytest.raises(ValueError, match="no channel group.*tied weights"):
        StructuredPruner(model).prune(0.5)


def test_exclude_keeps_a_layer_whole_and_checks_names():
    pruned = StructuredPruner(cnn(), exclude=["0"]).prune(0.5)
    assert (pruned[0].out_channels, pruned[3].in_channels, pruned[3].out_channels) == (8, 8, 8)
    with pytest.raises(ValueError, match="exclude names no layer"):
        StructuredPruner(cnn(), exclude=["conv9"])


def test_rejects_non_modules():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        StructuredPruner("model")


# ---- the input model, the tutorial API, groups, report -----------------------------------------------


def test_input_model_is_not_modified():
    model = cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    StructuredPruner(model).prune(0.5)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_tutorial_api_prune_conv_layer_and_adjust_next_layer():
    model = cnn()
    pruner = StructuredPruner(model)
    conv, bn, keep = pruner.prune_conv_layer(model[3], model[4], 0.5)
    assert conv.out_channels == bn.num_features == len(keep) == 8
    head = pruner.adjust_next_layer(model[-1], keep, in_channels=16)
    assert head.in_features == 8 * 16
    nxt = pruner.adjust_next_layer(nn.Conv2d(16, 3, 1), keep)
    assert nxt.in_channels == 8
    with pytest.raises(ValueError, match="does not divide"):
        pruner.adjust_next_layer(model[-1], keep, in_channels=7)
    with pytest.raises(TypeError, match="conv must be"):
        pruner.prune_conv_layer(nn.ReLU(), None, 0.5)
    with pytest.raises(ValueError, match="prune_ratio"):
        pruner.prune_conv_layer(model[3], model[4], 1.5)


def test_groups_are_printable():
    groups = find_channel_groups(cnn())
    assert [g.producer for g in groups] == ["0", "3"]
    text = str(groups[1])
    assert "group '3': 16 channels" in text and "  4 " in text and "16 per channel" in text
    assert isinstance(groups[0], ChannelGroup) and groups[0].consumers == [("3", 1)]


def test_report_counts_params_and_flops():
    model = SmallCNN(widths=(16, 32, 64))
    pruner = StructuredPruner(model)
    pruned = pruner.prune(0.5)
    report = pruner.report
    assert report.params_before == sum(p.numel() for p in model.parameters())
    assert report.params_after == sum(p.numel() for p in pruned.parameters())
    with FlopCounterMode(display=False) as counter:
        pruned.eval()(torch.zeros(1, 1, 8, 8))
    assert report.flops_after == counter.get_total_flops()
    row = {r.name: r for r in report.rows}["conv2"]
    assert (row.in_before, row.in_after, row.out_before, row.out_after) == (16, 8, 32, 16)
    assert row.flops_after * 4 == row.flops_before
    assert report.flops_ratio > 3.5 and "conv2" in str(report) and "→" in report.summary()
    assert "| fc |" in report.to_markdown(changed_only=True)
    same = StructuredPruner(model, exclude=["conv1", "conv2"])
    same.prune(0.5)
    assert "| conv1 |" not in same.report.to_markdown(changed_only=True)
    undeclared = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())  # a model that declares no input size
    no_flops = structure_report(undeclared, copy.deepcopy(undeclared))
    assert no_flops.flops_before is None and no_flops.flops_ratio is None and "-" in str(no_flops)


def test_bad_input_size_raises():
    with pytest.raises(ValueError, match="input_size must be"):
        StructuredPruner(cnn(), input_size="3x8x8")
    with pytest.raises(ValueError, match=r"input_size=\(1, 3, 6, 6\) does not fit"):
        StructuredPruner(cnn(), input_size=(1, 3, 6, 6)).prune(0.5)


def test_verbose_prints_the_table(capsys):
    prune_simple_cnn(cnn(), 0.5, verbose=True)
    assert "| layer | type | in | out | params | FLOPs |" in capsys.readouterr().out


def test_pruned_model_fine_tunes_with_the_course_loop():
    torch.manual_seed(0)
    pruned = prune_simple_cnn(SmallCNN(widths=(8, 16)), 0.5)
    data = [(torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))) for _ in range(3)]
    history = fine_tune(pruned, data, epochs=1, lr=0.01, device="cpu", progress=False)
    assert math.isfinite(history["train_loss"][0])


def test_compare_latency_reports_medians_and_speedups():
    models = {"dense": cnn(), "pruned": StructuredPruner(cnn()).prune(0.5)}
    models["dense"].train()
    result = compare_latency(models, torch.randn(2, 3, 8, 8), rounds=2, min_run_time=0.01)
    assert set(result) == {"dense", "pruned"} and result["dense"]["speedup"] == 1.0
    assert all(r["seconds"] > 0 and len(r["times"]) == 2 for r in result.values())
    assert models["dense"].training  # mode restored
    with pytest.raises(ValueError, match="rounds"):
        compare_latency(models, torch.randn(1, 3, 8, 8), rounds=0)


def _random_bn_statistics(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model


@pytest.mark.parametrize("build, x", [
    (lambda: SmallCNN(widths=(8, 16, 16)), None),
    (lambda: cifar_resnet(20), torch.randn(2, 3, 32, 32)),
    (lambda: prune_resnet(cifar_resnet(20), 0.5), torch.randn(2, 3, 32, 32)),
], ids=["smallcnn", "cifar_resnet20", "pruned_resnet20"])
def test_fold_batchnorm_removes_every_bn_and_keeps_the_outputs(build, x):
    torch.manual_seed(0)
    model = _random_bn_statistics(build())
    model.train()
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    folded = fold_batchnorm(model, x)
    assert n_bn > 0 and not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert model.training and sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == n_bn  # untouched
    x = torch.randn(2, 1, 8, 8) if x is None else x
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model.eval()(x), rtol=1e-4, atol=1e-5)


def test_fold_batchnorm_on_torchvision_resnet_folds_the_downsample_path_too():
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = _random_bn_statistics(tv.models.resnet18(num_classes=10))
    folded = fold_batchnorm(model, torch.randn(1, 3, 32, 32))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert isinstance(folded.layer2[0].downsample[1], nn.Identity)


def test_fold_batchnorm_leaves_a_bn_that_does_not_read_a_conv_and_refuses_masks():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.BatchNorm2d(4))  # BN after ReLU: not foldable
    folded = fold_batchnorm(model, torch.randn(1, 1, 6, 6))
    assert isinstance(folded[2], nn.BatchNorm2d)
    masked = SmallCNN(widths=(4, 4, 4))
    apply_mask(masked.conv1, torch.ones_like(masked.conv1.weight))
    with pytest.raises(ValueError, match="make_permanent"):
        fold_batchnorm(masked)
    with pytest.raises(ValueError, match="example_input is needed"):
        fold_batchnorm(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))  # declares no input size
    fold_batchnorm(cifar_resnet(20).eval())  # the CIFAR ResNet declares its 32 x 32 input


@pytest.mark.parametrize("groups", [4, 8])
def test_rebuilding_a_grouped_or_depthwise_conv_keeps_what_the_kept_channels_compute(groups):
    # groups=8 on 8 inputs is depthwise (whole groups go); groups=4 keeps the same in-group positions
    from pruning_utils.structured import _rebuild

    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, padding=1, groups=groups)
    x = torch.randn(2, 8, 5, 5)
    same = _rebuild(conv)
    assert (same.in_channels, same.out_channels, same.groups) == (8, 16, groups)
    assert torch.equal(same(x), conv(x))
    if groups == 8:   # depthwise: drop input channels 1 and 6, hence their output pairs 2, 3 and 12, 13
        keep_in = torch.tensor([0, 2, 3, 4, 5, 7])
        keep_out = torch.tensor([c for c in range(16) if c // 2 in keep_in.tolist()])
        small = _rebuild(conv, keep_out, keep_in)
        assert (small.in_channels, small.out_channels, small.groups) == (6, 12, 6)
        assert torch.allclose(small(x[:, keep_in]), conv(x)[:, keep_out], atol=1e-6)
    else:             # grouped: position 1 of every group of 2 inputs goes; with it, the columns reading it
        keep_in = torch.tensor([0, 2, 4, 6])
        small = _rebuild(conv, None, keep_in)
        assert (small.in_channels, small.out_channels, small.groups) == (4, 16, 4)
        zeroed = x.clone()
        zeroed[:, [1, 3, 5, 7]] = 0
        assert torch.allclose(small(x[:, keep_in]), conv(zeroed), atol=1e-6)


# ---- built on the dependency graph ------------------------------------------------------------------------


def same_pruning(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("build, size, options", [
    (lambda: SmallCNN(widths=(8, 16, 32)), None, {}),
    (lambda: SmallCNN(widths=(8, 16, 32)), None, {"importance": "bn_scale", "round_to": 4}),
    (lambda: MLP(in_features=64, hidden=(32, 16)), None, {"exclude": True}),
    (lambda: cifar_resnet(20), None, {}),
    (lambda: cifar_resnet(20), None, {"importance": "l2", "exclude": True}),
    (lambda: cnn(), (1, 3, 8, 8), {"importance": "bn_scale"}),
    (lambda: cnn(head="pool"), (1, 3, 8, 8), {"round_to": 4}),
], ids=["smallcnn", "smallcnn-bn_scale-round4", "mlp-exclude", "resnet20", "resnet20-l2-exclude",
        "sequential-bn_scale", "pooled-head-round4"])
def test_the_graph_finds_the_hand_listed_groups_and_prunes_the_same(build, size, options):
    torch.manual_seed(0)
    model = randomise_bn(build()).eval()
    if "exclude" in options:
        options = {**options, "exclude": [find_channel_groups(model, input_size=size)[0].producer]}
    graph = StructuredPruner(model, input_size=size, **options)
    listed = _listed_groups(model, options.get("exclude", ()))
    assert graph.describe() == "\n".join(g.details() for g in listed)
    for ratio in (0.3, 0.5):
        same_pruning(graph.prune(ratio), listed_prune(graph, listed, ratio))


def test_torchvision_resnet_on_the_graph_prunes_as_the_hand_listed_blocks():
    tv = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    model = randomise_bn(tv.resnet18(num_classes=5)).eval()
    graph = StructuredPruner(model)  # no input size: one is inferred from conv1
    assert graph.graph.input_size == (1, 3, 32, 32) and graph.graph.input_inferred
    listed = _listed_groups(model)
    assert graph.describe() == "\n".join(g.details() for g in listed)
    same_pruning(graph.prune(0.5), listed_prune(graph, listed, 0.5))


class BasicConv(nn.Module):  # GoogLeNet's / Inception's wrapper
    def __init__(self, cin, cout, **kw):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, **kw)

    def forward(self, x):
        return torch.relu(self.conv(x))


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = BasicConv(8, 6), BasicConv(8, 4)
        self.c = nn.Conv2d(10, 5, 1)

    def forward(self, x):
        return self.c(torch.cat([self.a(x), self.b(x)], 1))


def distinct_biases(model, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.bias.copy_(torch.randperm(m.bias.numel(), generator=gen).float() + 1)
    return model


def zero_removed_filters(model, pruned):
    """Independent check (no BN, ReLU or nothing after each layer): a removed filter, weight row and
    bias zeroed, outputs zero; its consumers then read zeros. Kept filters are found by their bias."""
    ref = copy.deepcopy(model)
    after = dict(pruned.named_modules())
    with torch.no_grad():
        for name, m in ref.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                kept = [int((m.bias == b).nonzero()) for b in after[name].bias]
                assert len(set(kept)) == len(kept)
                gone = sorted(set(range(m.bias.numel())) - set(kept))
                m.weight[gone] = 0
                m.bias[gone] = 0
    return ref


@pytest.mark.parametrize("build, removed", [
    (lambda: nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=8), nn.ReLU(), nn.Conv2d(8, 4, 1)),
     {"0": 4, "2": 4}),
    (lambda: nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=2), nn.ReLU(), nn.Conv2d(8, 4, 1)),
     {"0": 4, "2": 4}),
    (lambda: nn.Sequential(BasicConv(3, 8), BasicConv(8, 6), nn.Conv2d(6, 4, 1)), {"0.conv": 4, "1.conv": 3}),
    (lambda: nn.Sequential(BasicConv(3, 8), Concat()), {"0.conv": 4, "1.a.conv": 3, "1.b.conv": 2}),
], ids=["depthwise", "grouped", "wrapper", "concat"])
def test_what_the_hand_listed_patterns_refused_now_prunes(build, removed):
    torch.manual_seed(0)
    model = distinct_biases(build()).eval()
    x = torch.randn(2, 3, 8, 8)
    pruner = StructuredPruner(model, input_size=(1, 3, 8, 8))
    with torch.no_grad():
        torch.testing.assert_close(pruner.prune(0.0)(x), model(x), rtol=0, atol=0)
        pruned = pruner.prune(0.5)
        torch.testing.assert_close(pruned(x), zero_removed_filters(model, pruned)(x), rtol=1e-5, atol=1e-5)
    widths = {n: m.weight.shape[0] for n, m in pruned.named_modules() if n in removed}
    assert widths == {n: model.get_submodule(n).weight.shape[0] - k for n, k in removed.items()}
    assert str(pruner.groups[0]).startswith("group ")


def test_grouped_conv_keeps_the_same_positions_in_every_group():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=2), nn.ReLU(), nn.Conv2d(8, 4, 1))
    pruner = StructuredPruner(model, input_size=(1, 3, 8, 8))
    assert [(g.producer, g.channels, g.units) for g in pruner.groups] == [("0", 8, 4), ("2", 8, 4)]
    assert "4 prunable units" in pruner.describe()
    pruned = pruner.prune(0.5)
    assert (pruned[2].groups, pruned[2].in_channels, pruned[2].out_channels) == (2, 4, 4)


def test_exclude_is_applied_first_and_the_refusal_counts_it():
    pytest.importorskip("torchvision")
    from torchvision.models.resnet import Bottleneck

    depthwise = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 4, 1))
    with pytest.raises(ValueError, match=r"1 group named in exclude"):  # the depthwise conv follows '0'
        StructuredPruner(depthwise, exclude=["0"]).prune(0.5)
    model = nn.Sequential(Bottleneck(64, 16, groups=4))  # ResNeXt: excluding conv1 still prunes conv2
    pruned = prune_resnet(model, 0.5, exclude=["0.conv1"])
    assert (pruned[0].conv1.out_channels, pruned[0].conv2.out_channels, pruned[0].conv3.in_channels) == (64, 32, 32)
    with pytest.raises(ValueError, match=r"fixed size at function 'add'.*2 groups named in exclude"):
        StructuredPruner(model, exclude=["0.conv1", "0.conv2"]).prune(0.5)


def test_residual_option_prunes_what_an_addition_joins():
    torch.manual_seed(0)
    model = randomise_bn(cifar_resnet(20)).eval()
    inner, everything = StructuredPruner(model), StructuredPruner(model, residual=True)
    assert len(inner.groups) == 9 and len(everything.groups) == 10
    assert any(len(g.producers) > 1 and "joined by an addition" in str(g) for g in everything.groups)
    a, b = inner.prune(0.5), everything.prune(0.5)
    assert b.layer1[0].conv2.out_channels == 8 and a.layer1[0].conv2.out_channels == 16
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(everything.prune(0.0)(x), model(x))
    assert sum(p.numel() for p in b.parameters()) < sum(p.numel() for p in a.parameters())
    chain = cnn()  # no addition: the same groups either way
    assert StructuredPruner(chain, residual=True).describe() == StructuredPruner(chain).describe()


@pytest.mark.parametrize("name, layer, whole", [("mobilenet_v2", "features.2.conv.2", True),       # added: stays
                                                ("googlenet", "inception3a.branch1.conv", False)])  # concatenated
def test_torchvision_models_the_old_patterns_refused(name, layer, whole):
    tv = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    kw = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
    model = randomise_bn(getattr(tv, name)(num_classes=5, **kw)).eval()
    x = torch.randn(2, 3, 32, 32)
    pruner = StructuredPruner(model, input_size=(1, 3, 32, 32))
    with torch.no_grad():
        torch.testing.assert_close(pruner.prune(0.0)(x), model(x))
    pruned = pruner.prune(0.5)
    assert pruner.report.params_ratio > 1.3
    before, after = model.get_submodule(layer).out_channels, pruned.get_submodule(layer).out_channels
    assert after == (before if whole else before // 2)  # an addition's channels stay whole, one producer's go
    pruned.train()
    pruned(x).sum().backward()
