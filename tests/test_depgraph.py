"""The dependency graph: one small hand-made model per coupling kind, checked against independent computations.

For each model: at ratio 0 the pruned copy computes exactly what the original does; at ratio r (where no
norm reads across the pruned channels) it computes what the ORIGINAL computes with the removed channels'
consumer input columns zeroed (computed here, not by the pruner); kept weights are the original's,
index-selected; every group keeps exactly ``channels_to_keep(units, r, round_to)`` units.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pruning_utils.depgraph import CoupledGroup, DependencyGraph, prune_graph
from pruning_utils.masks import apply_mask, get_mask
from pruning_utils.models import MLP, SmallCNN, cifar_resnet
from pruning_utils.structured import channels_to_keep

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, biases, so slicing mistakes show; eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            if isinstance(m, nn.LayerNorm) and m.weight is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return model.eval()


def zeroed_reference(model: nn.Module, graph: DependencyGraph) -> nn.Module:
    """The original with every removed channel's consumer input columns set to zero (the oracle)."""
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for (name, kind), kept in graph.kept.items():
            if kind != "in":
                continue
            m = ref.get_submodule(name)
            if isinstance(m, _CONVS) and m.groups > 1 and m.in_channels // m.groups == 1:
                continue  # depthwise: its outputs are the same channels, zeroed further on
            width = m.weight.shape[1]
            total = m.in_channels if isinstance(m, _CONVS) else m.in_features
            if isinstance(m, _CONVS) and m.groups > 1:
                kept = kept[kept < width]  # lockstep positions inside each group
            removed = sorted(set(range(min(width, total))) - set(kept.tolist()))
            m.weight[:, removed] = 0
    return ref


def check_pruning(model: nn.Module, x: torch.Tensor, ratio: float = 0.5, *, exact: bool = True, round_to: int = 1,
                  importance="l1") -> tuple[DependencyGraph, nn.Module]:
    """The shared checks: ratio 0 equal, counts, kept weights copied, oracle, forward + backward."""
    model = randomise(model)
    before = copy.deepcopy(model.state_dict())
    graph0 = DependencyGraph(model, x)
    same = graph0.prune(0.0)
    with torch.no_grad():
        assert torch.equal(same(x), model(x))
    graph = DependencyGraph(model, x)
    pruned = graph.prune(ratio, round_to=round_to, importance=importance)
    for key, value in model.state_dict().items():  # the original is untouched
        assert torch.equal(value, before[key]), key
    assert any(g.prunable for g in graph.groups)
    for g in graph.groups:  # exact kept counts per group
        removed = len(graph.removed.get(g.index, []))
        if g.prunable:
            assert g.units - removed == max(channels_to_keep(g.units, ratio, round_to), g.frozen_units), g.details()
        else:
            assert removed == 0
    modules = dict(model.named_modules())
    for (name, kind), kept in graph.kept.items():  # kept weights copied exactly
        if kind == "out":
            layer = modules[name]
            old, new = layer.weight, pruned.get_submodule(name).weight
            expected = old.index_select(0, kept)
            kept_in = graph.kept.get((name, "in"))
            if kept_in is not None and getattr(layer, "groups", 1) == 1:
                expected = expected.index_select(1, kept_in)
            elif kept_in is not None and layer.in_channels // layer.groups > 1:
                expected = expected.index_select(1, kept_in[kept_in < old.shape[1]])
            assert torch.equal(new, expected), name
        elif kind == "norm":
            old, new = modules[name], pruned.get_submodule(name)
            if getattr(old, "weight", None) is not None:
                assert torch.equal(new.weight, old.weight.index_select(0, kept)), name
            if getattr(old, "running_mean", None) is not None:
                assert torch.equal(new.running_mean, old.running_mean.index_select(0, kept)), name
                assert (new.eps, new.momentum, new.affine, new.track_running_stats) == \
                    (old.eps, old.momentum, old.affine, old.track_running_stats)
    if exact:
        ref = zeroed_reference(model, graph)
        with torch.no_grad():
            expected, got = ref(x), pruned(x)
        assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5), (got - expected).abs().max()
    pruned.train()
    out = pruned(torch.cat([x, x]))
    out.sum().backward()
    assert all(p.grad is not None for p in pruned.parameters() if p.requires_grad)
    return graph, pruned


def group_with(graph: DependencyGraph, name: str, kind: str = "weight dim 0") -> CoupledGroup:
    return next(g for g in graph.groups if any(n == name and w.startswith(kind) for n, w, _ in g.members))


# ---------------------------------------------------------------------------------------------
# One model per coupling kind
# ---------------------------------------------------------------------------------------------


def conv_bn(cin, cout, k=3, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout))


class Head(nn.Module):
    def __init__(self, c, n=5):
        super().__init__()
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(c, n)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(x), 1))


class Residual(nn.Module):
    """A stage of two residual blocks: the stem and both block outputs share one channel space."""

    def __init__(self):
        super().__init__()
        self.stem = conv_bn(3, 8)
        self.a1, self.a2 = conv_bn(8, 6), conv_bn(6, 8)
        self.b1, self.b2 = conv_bn(8, 6), conv_bn(6, 8)
        self.head = Head(8)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.relu(x + self.a2(F.relu(self.a1(x))))
        x = F.relu(self.b2(F.relu(self.b1(x))) + x)
        return self.head(x)


def test_residual_add_couples_the_stage():
    graph, pruned = check_pruning(Residual(), torch.randn(2, 3, 8, 8))
    stream = group_with(graph, "stem.0")
    names = {n for n, _, _ in stream.members}
    assert {"stem.0", "stem.1", "a2.0", "a2.1", "b2.0", "b2.1", "a1.0", "b1.0", "head.fc"} <= names
    assert stream.units == 8 and stream.prunable
    assert pruned.stem[0].out_channels == pruned.a2[0].out_channels == pruned.b2[0].out_channels == 4
    assert pruned.a1[0].out_channels == 3 and pruned.head.fc.in_features == 4
    assert "stem.0" in graph.describe() and "weight dim 1" in stream.details()


class Dense(nn.Module):
    """DenseNet-like: every layer reads the concatenation of all earlier outputs."""

    def __init__(self):
        super().__init__()
        self.c0, self.c1, self.c2 = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 4, 3, padding=1), \
            nn.Conv2d(10, 4, 3, padding=1)
        self.c3 = nn.Conv2d(14, 8, 1)
        self.head = Head(8)

    def forward(self, x):
        x0 = self.c0(x)
        x1 = torch.cat([x0, F.relu(self.c1(x0))], 1)
        x2 = torch.cat([x1, F.relu(self.c2(x1))], dim=1)
        return self.head(self.c3(x2))


def test_concat_offsets():
    graph, pruned = check_pruning(Dense(), torch.randn(2, 3, 8, 8))
    kept0, kept1, kept2 = (graph.kept[(n, "out")] for n in ("c0", "c1", "c2"))
    assert torch.equal(graph.kept[("c2", "in")], torch.cat([kept0, 6 + kept1]))
    assert torch.equal(graph.kept[("c3", "in")], torch.cat([kept0, 6 + kept1, 10 + kept2]))
    assert pruned.c3.in_channels == 3 + 2 + 2


class Depthwise(nn.Module):
    def __init__(self, multiplier=1):
        super().__init__()
        self.pw1 = conv_bn(3, 8, 1)
        self.dw = conv_bn(8, 8 * multiplier, 3, groups=8)
        self.pw2 = conv_bn(8 * multiplier, 8, 1)
        self.head = Head(8)

    def forward(self, x):
        return self.head(F.relu(self.pw2(F.relu6(self.dw(F.relu6(self.pw1(x)))))))


@pytest.mark.parametrize("multiplier", [1, 2])
def test_depthwise_conv_ties_its_channels_to_its_input(multiplier):
    graph, pruned = check_pruning(Depthwise(multiplier), torch.randn(2, 3, 8, 8))
    g = group_with(graph, "pw1.0")
    assert {"dw.0", "dw.1", "pw2.0"} <= {n for n, _, _ in g.members}
    dw = pruned.dw[0]
    assert dw.in_channels == dw.groups == 4 and dw.out_channels == 4 * multiplier
    assert torch.equal(graph.kept[("dw.0", "in")], graph.kept[("pw1.0", "out")])


class Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = conv_bn(3, 8, 1)
        self.g = conv_bn(8, 12, 3, groups=2)
        self.c2 = conv_bn(12, 8, 1)
        self.head = Head(8)

    def forward(self, x):
        return self.head(self.c2(F.relu(self.g(F.relu(self.c1(x))))))


def test_grouped_conv_prunes_the_same_positions_in_every_group():
    graph, pruned = check_pruning(Grouped(), torch.randn(2, 3, 8, 8))
    g = pruned.g[0]
    assert g.groups == 2 and g.in_channels == 4 and g.out_channels == 6
    kept_in = graph.kept[("c1.0", "out")]
    assert torch.equal(kept_in[kept_in >= 4] - 4, kept_in[kept_in < 4])  # lockstep across the 2 groups
    kept_out = graph.kept[("g.0", "out")]
    assert torch.equal(kept_out[kept_out >= 6] - 6, kept_out[kept_out < 6])


def channel_shuffle(x, groups: int):
    n, c, h, w = x.size()
    x = x.view(n, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(n, -1, h, w)


class Shuffle(nn.Module):
    """ShuffleNet v2 units: chunk, a branch, concat, channel shuffle with a literal groups=2."""

    def __init__(self):
        super().__init__()
        self.stem = conv_bn(3, 8, 1)
        self.branch = nn.Sequential(conv_bn(4, 6, 1), nn.ReLU(), conv_bn(6, 4, 1))
        self.branch2 = nn.Sequential(conv_bn(4, 6, 1), nn.ReLU(), conv_bn(6, 4, 1))
        self.head = Head(8)

    def forward(self, x):
        x = F.relu(self.stem(x))
        a, b = x.chunk(2, dim=1)
        x = channel_shuffle(torch.cat((a, self.branch(b)), 1), 2)
        a, b = x.chunk(2, dim=1)
        x = channel_shuffle(torch.cat((a, self.branch2(b)), 1), 2)
        return self.head(x)


def test_channel_shuffle_and_chunk_keep_lockstep():
    graph, pruned = check_pruning(Shuffle(), torch.randn(2, 3, 8, 8))
    inner = group_with(graph, "branch.0.0")
    assert inner.prunable and pruned.branch[0][0].out_channels == 3
    for m in (pruned.branch[2][0], pruned.branch2[2][0]):
        assert m.out_channels * 2 == pruned.stem[0].out_channels  # both chunks keep the same count


class ChannelsLast(nn.Module):
    """ConvNeXt-style: permute to channels-last, LayerNorm, an MLP, a layer-scale parameter, residual."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 2, stride=2)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.norm = nn.LayerNorm(8)
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 8)
        self.gamma = nn.Parameter(torch.rand(8, 1, 1) + 0.5)
        self.head = Head(8)

    def forward(self, x):
        x = self.stem(x)
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc2(F.gelu(self.fc1(self.norm(y)))).permute(0, 3, 1, 2)
        return self.head(x + self.gamma * y)


def test_layer_norm_channels_last_and_layer_scale():
    model = ChannelsLast()
    graph, pruned = check_pruning(model, torch.randn(2, 3, 8, 8), exact=False)
    stream = group_with(graph, "stem")
    assert not stream.exact and stream.prunable
    assert ("gamma", "dim 0", 8) in stream.members
    assert pruned.norm.normalized_shape == (4,) and pruned.gamma.shape == (4, 1, 1)
    kept = graph.kept[("stem", "out")]
    assert torch.equal(graph.kept[("gamma", "param0")], kept)
    assert torch.equal(pruned.gamma, model.gamma.index_select(0, kept))
    mlp = group_with(graph, "fc1")
    assert mlp.exact and pruned.fc1.out_features == 8


def test_mlp_of_the_channels_last_block_alone_is_exact():
    """Only the MLP neurons pruned (the residual stream excluded): the zeroing oracle holds."""
    model = randomise(ChannelsLast())
    x = torch.randn(2, 3, 8, 8)
    graph = DependencyGraph(model, x, exclude=["stem"])
    pruned = graph.prune(0.5)
    assert pruned.stem.out_channels == 8 and pruned.fc1.out_features == 8
    with torch.no_grad():
        assert torch.allclose(pruned(x), zeroed_reference(model, graph)(x), rtol=1e-4, atol=1e-5)


class Grouping(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.gn, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.Conv2d(8, 4, 1)
        self.head = Head(4)

    def forward(self, x):
        return self.head(self.c2(F.relu(self.gn(self.c1(x)))))


def test_group_norm_keeps_the_same_count_in_every_group():
    graph, pruned = check_pruning(Grouping(), torch.randn(2, 3, 8, 8), exact=False)
    g = group_with(graph, "c1")
    assert g.units == 4 and not g.exact  # position j of both groups goes together
    assert pruned.gn.num_groups == 2 and pruned.gn.num_channels == pruned.c1.out_channels == 4
    kept = graph.kept[("c1", "out")]
    assert torch.equal(kept[kept >= 4] - 4, kept[kept < 4])


class SE(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = conv_bn(3, 8)
        self.fc1, self.fc2 = nn.Conv2d(8, 4, 1), nn.Conv2d(4, 8, 1)
        self.c2 = conv_bn(8, 8)
        self.head = Head(8)

    def forward(self, x):
        x = F.relu(self.c1(x))
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        return self.head(F.relu(self.c2(x * s)))


class Instance(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.norm, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.InstanceNorm2d(8, affine=True,
                                                                                   track_running_stats=True), \
            nn.Conv2d(8, 4, 1)
        self.head = Head(4)

    def forward(self, x):
        return self.head(self.c2(F.relu(self.norm(self.c1(x)))))


def test_instance_norm_is_per_channel_and_exact():
    model = Instance().double()
    graph, pruned = check_pruning(model, torch.randn(2, 3, 8, 8, dtype=torch.double))
    norm = pruned.norm
    assert norm.num_features == 4 and norm.affine and norm.track_running_stats
    assert norm.weight.dtype == norm.running_mean.dtype == torch.double


def test_squeeze_excitation_scale_joins_the_channels_it_scales():
    graph, pruned = check_pruning(SE(), torch.randn(2, 3, 8, 8))
    g = group_with(graph, "c1.0")
    assert {"fc1", "fc2", "c2.0"} <= {n for n, _, _ in g.members}
    assert torch.equal(graph.kept[("fc2", "out")], graph.kept[("c1.0", "out")])
    assert pruned.fc2.out_channels == pruned.c1[0].out_channels == 4 and pruned.fc1.out_channels == 2


class FlatHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.flat, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 16, 5)

    def forward(self, x):
        return self.fc(self.flat(F.relu(self.conv(x))))


def test_flatten_linear_columns():
    graph, pruned = check_pruning(FlatHead(), torch.randn(2, 3, 4, 4))
    kept = graph.kept[("conv", "out")]
    assert torch.equal(graph.kept[("fc", "in")], (kept[:, None] * 16 + torch.arange(16)).reshape(-1))
    assert pruned.fc.in_features == 2 * 16


class Tokens(nn.Module):
    """ViT-like: patch embedding, class token (a parameter), position embedding, token MLP, class-token head."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.pos = nn.Parameter(torch.randn(1, 5, 8))
        self.fc1, self.fc2 = nn.Linear(8, 12), nn.Linear(12, 8)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        x = x + self.fc2(F.relu(self.fc1(x)))
        return self.head(x[:, 0])


def test_class_token_and_position_embedding_are_pruned_with_their_dim():
    model = Tokens()
    graph, pruned = check_pruning(model, torch.randn(2, 3, 8, 8))
    stream = group_with(graph, "embed")
    assert ("cls", "dim 2", 8) in stream.members and ("pos", "dim 2", 8) in stream.members
    kept = graph.kept[("embed", "out")]
    assert torch.equal(pruned.cls, randomise(model).cls.index_select(2, kept))
    assert pruned.pos.shape == (1, 5, 4)


def test_round_to_applies_per_group():
    graph, pruned = check_pruning(Residual(), torch.randn(2, 3, 8, 8), ratio=0.3, round_to=4)
    assert pruned.stem[0].out_channels == channels_to_keep(8, 0.3, 4) == 8  # 6 rounds to 8
    assert pruned.a1[0].out_channels == channels_to_keep(6, 0.3, 4) == 4
    graph, pruned = check_pruning(Residual(), torch.randn(2, 3, 8, 8), ratio=0.5, round_to=4)
    assert pruned.stem[0].out_channels == 4


def test_importance_function_decides_what_goes():
    model = randomise(Residual())
    x = torch.randn(2, 3, 8, 8)

    def last_channels_matter(layer, bn):
        return torch.arange(layer.weight.shape[0], dtype=torch.float)

    graph = DependencyGraph(model, x)
    graph.prune(0.5, importance=last_channels_matter)
    # the class score sums its producers' scores: the highest channel indices stay
    assert torch.equal(graph.kept[("stem.0", "out")], torch.arange(4, 8))
    assert torch.equal(graph.kept[("a1.0", "out")], torch.arange(3, 6))


# ---------------------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------------------


class Unknown(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.c3 = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 1)
        self.head = Head(8)

    def forward(self, x):
        x = self.c1(x)
        y = self.c2(x).cumsum(1)  # mixes channels in a way the graph does not know
        return self.head(self.c3(y))


def test_unknown_op_freezes_what_it_touches_with_a_reason():
    graph, pruned = check_pruning(Unknown(), torch.randn(2, 3, 4, 4))
    g = group_with(graph, "c2")
    assert not g.prunable and "cumsum" in g.frozen
    assert pruned.c2.out_channels == 8 and pruned.c1.out_channels == 4


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.mlp1, self.mlp2 = nn.Linear(8, 16), nn.Linear(16, 8)

    def forward(self, x):
        x = self.fc(x)
        x = x + self.attn(x, x, x, need_weights=False)[0]
        return x + self.mlp2(F.gelu(self.mlp1(x)))


def test_multihead_attention_is_frozen_with_its_reason():
    graph, pruned = check_pruning(Attention(), torch.randn(2, 4, 8))
    g = group_with(graph, "fc")
    assert not g.prunable and "MultiheadAttention" in g.frozen
    assert pruned.mlp1.out_features == 8


class LiteralWidth(nn.Module):
    """ViT-like: a reshape names the channel count as a literal, so those channels cannot shrink."""

    def __init__(self):
        super().__init__()
        self.conv, self.inner, self.outer = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 6, 1), nn.Conv2d(6, 8, 1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        n = x.shape[0]
        x = self.conv(x)
        x = x + self.outer(F.relu(self.inner(x)))
        return self.fc(x.reshape(n, 8, -1).mean(-1))


def test_literal_sized_dim_is_tied_and_not_pruned():
    graph, pruned = check_pruning(LiteralWidth(), torch.randn(2, 3, 4, 4))
    g = group_with(graph, "conv")
    assert not g.prunable and pruned.conv.out_channels == 8
    assert pruned.inner.out_channels == 3


class SizeFromPrunedDim(nn.Module):
    """MaxViT-like: the output of an unknown op is reshaped by the size of a prunable dim."""

    def __init__(self):
        super().__init__()
        self.a, self.qkv, self.merge = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x):
        x = self.a(x)
        b, s, d = x.shape
        y = self.qkv(x).cumsum(-1)  # unknown: its output keeps 8 features whatever happens to x
        return self.merge(y.reshape(b, s, d))


def test_size_of_a_pruned_dim_reshaping_a_fixed_tensor_freezes_it():
    model = SizeFromPrunedDim()
    graph = DependencyGraph(model, torch.randn(2, 3, 8))
    g = group_with(graph, "a")
    assert not g.prunable and "does not shrink" in g.frozen
    pruned = graph.prune(0.5)
    assert pruned.a.out_features == 8


class SizeArithmetic(SizeFromPrunedDim):
    def forward(self, x):
        x = self.a(x)
        b, s, d = x.shape
        y = self.qkv(x).cumsum(-1)
        return self.merge(y.reshape(b, s, d // 2, 2).flatten(2))


def test_size_arithmetic_keeps_its_provenance():
    graph = DependencyGraph(SizeArithmetic(), torch.randn(2, 3, 8))
    assert not group_with(graph, "a").prunable
    assert graph.prune(0.5).a.out_features == 8


def test_a_forward_broken_by_pruning_raises_naming_the_group():
    model = randomise(Residual())
    graph = DependencyGraph(model, torch.randn(1, 3, 8, 8))
    del graph._member_roots[("b1.0", "in")]  # simulate a coupling the analysis missed
    with pytest.raises(ValueError, match=r"(?s)pruning group \d+ of Residual breaks its forward .*stem.0"):
        graph.prune(0.5)


def test_train_mode_is_kept_and_the_trace_is_the_inference_graph():
    model = Residual().train()
    pruned = prune_graph(model, 0.5, torch.randn(1, 3, 8, 8))
    assert pruned.training and pruned.stem[1].training and model.training
    assert pruned.stem[1].num_batches_tracked == model.stem[1].num_batches_tracked


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(8, 6), nn.Linear(6, 8), nn.Linear(8, 6)
        self.c.weight = self.a.weight  # tied
        self.d, self.e = nn.Linear(6, 4), nn.Linear(4, 3)

    def forward(self, x):
        return self.e(F.relu(self.d(F.relu(self.c(F.relu(self.b(F.relu(self.a(x)))))))))


def test_tied_weights_are_frozen():
    graph, pruned = check_pruning(Tied(), torch.randn(2, 8))
    assert "tied" in group_with(graph, "a").frozen and "tied" in group_with(graph, "c").frozen
    assert pruned.c.weight is pruned.a.weight and pruned.b.out_features == 8
    assert pruned.d.out_features == 2 and pruned.e.in_features == 2


class Constants(nn.Module):
    """A buffer used in forward is pruned with the channels it shifts; a tensor made in forward is fixed."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.c3 = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 6, 1), nn.Conv2d(6, 4, 1)
        self.register_buffer("shift", torch.randn(8, 1, 1))
        self.head = Head(4)

    def forward(self, x):
        x = F.relu(self.c1(x) - self.shift)
        y = self.c2(x) * torch.ones(6, 1, 1) + 1.0
        return self.head(self.c3(y))


def test_buffers_are_pruned_and_tensors_made_in_forward_freeze():
    model = Constants()
    graph, pruned = check_pruning(model, torch.randn(2, 3, 4, 4))
    assert pruned.shift.shape == (4, 1, 1)
    assert torch.equal(pruned.shift, model.shift.index_select(0, graph.kept[("c1", "out")]))
    g = group_with(graph, "c2")
    assert not g.prunable and "fixed size" in g.frozen and pruned.c2.out_channels == 6


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow
            return self.c(x)
        return x


def test_untraceable_model_gets_a_clear_error():
    with pytest.raises(ValueError, match="Untraceable cannot be traced by torch.fx"):
        DependencyGraph(Untraceable(), torch.randn(1, 3, 4, 4))


def test_fixed_padding_of_channels_freezes_the_padded_positions():
    graph, pruned = check_pruning(cifar_resnet(20), torch.randn(1, 3, 16, 16))
    stream = group_with(graph, "conv1")
    assert stream.units == 16 and stream.prunable
    padded = [g for g in graph.groups if any(n == "layer2.0.conv2" for n, _, _ in g.members) and not g.prunable]
    assert padded and all("padding" in g.frozen for g in padded)  # the 16 channels facing F.pad's zeros
    assert pruned.conv1.out_channels == 8 and pruned.layer1[0].conv1.out_channels == 8


def test_exclude_is_applied_before_anything_else():
    model = Grouped()
    x = torch.randn(1, 3, 8, 8)
    graph = DependencyGraph(model, x, exclude=["g"])
    pruned = graph.prune(0.5)
    assert pruned.g[0].in_channels == 8 and pruned.g[0].out_channels == 12
    assert pruned.c2[0].out_channels == 4  # the rest is still pruned
    assert "exclude" in group_with(graph, "g.0").frozen
    with pytest.raises(ValueError, match="exclude names no layer"):
        DependencyGraph(model, x, exclude=["nope"])


@pytest.mark.parametrize("kwargs, word", [
    (dict(prune_ratio=1.0), "prune_ratio"), (dict(prune_ratio="0.5"), "prune_ratio"),
    (dict(round_to=0), "round_to"), (dict(importance="nonsense"), "importance"),
    (dict(exclude=3), "exclude"), (dict(example_input="x"), "example_input"),
    (dict(example_input=torch.zeros(1, 3, 8, 8, dtype=torch.long)), "example_input"),
    (dict(model=None), "model"), (dict(input_size=(0, 3)), "input_size"),
])
def test_bad_arguments_get_clear_errors(kwargs, word):
    args = dict(model=Residual(), prune_ratio=0.5, example_input=torch.randn(1, 3, 8, 8))
    args.update(kwargs)
    if "input_size" in kwargs:
        args.pop("example_input")
    with pytest.raises((TypeError, ValueError), match=word):
        prune_graph(**args)


def test_example_input_that_does_not_fit_is_a_clear_error():
    with pytest.raises(ValueError):
        DependencyGraph(Residual(), torch.randn(1, 5, 8, 8))


def test_without_an_input_size_the_graph_finds_one_that_runs():
    model = Residual()  # declares no size; its first conv reads 3 channels and any spatial size runs
    inferred, given = DependencyGraph(model), DependencyGraph(model, input_size=(1, 3, 32, 32))
    assert inferred.input_inferred and not given.input_inferred and inferred.input_size == (1, 3, 32, 32)
    assert inferred.describe() == given.describe()
    head = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 9 * 9, 3))  # only 11x11 runs
    assert DependencyGraph(head).input_size == (1, 2, 11, 11)
    assert DependencyGraph(nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2))).input_size == (1, 6)
    with pytest.raises(ValueError, match="example_input \\(or input_size\\) is needed"):
        DependencyGraph(nn.Sequential(nn.ReLU()))  # no Conv/Linear layer to read a size from


def test_unstructured_mask_survives_on_rebuilt_layers():
    model = randomise(Residual())
    mask = (torch.rand_like(model.a1[0].weight) > 0.5).float()
    apply_mask(model.a1[0], mask)
    x = torch.randn(1, 3, 8, 8)
    graph = DependencyGraph(model, x)
    pruned = graph.prune(0.5)
    new = get_mask(pruned.a1[0])
    assert new is not None
    out, inp = graph.kept[("a1.0", "out")], graph.kept[("a1.0", "in")]
    assert torch.equal(new, mask.index_select(0, out).index_select(1, inp))


# ---------------------------------------------------------------------------------------------
# The course's models and two torchvision models at small input
# ---------------------------------------------------------------------------------------------


def test_course_models():
    check_pruning(SmallCNN(widths=(8, 16), input_size=8), torch.randn(2, 1, 8, 8))
    graph, pruned = check_pruning(MLP(in_features=64, hidden=(32, 16)), torch.randn(2, 64))
    assert pruned.fc1.out_features == 16 and pruned.fc3.out_features == 10
    with pytest.raises(ValueError, match="MLP expects"):
        pruned(torch.randn(2, 63))  # the eager input check still runs


def test_traced_course_models_keep_their_input_errors():
    model = SmallCNN(widths=(4, 8), input_size=8)
    torch.fx.symbolic_trace(model)
    torch.fx.symbolic_trace(MLP(in_features=64))
    with pytest.raises(ValueError, match="SmallCNN expects input of shape"):
        model(torch.zeros(1, 1, 7, 7))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model([1.0])


def test_torchvision_resnet18_and_mobilenet_v2():
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    graph, pruned = check_pruning(tv.models.resnet18(num_classes=10), x)
    assert pruned.layer1[0].conv2.out_channels == pruned.conv1.out_channels == 32  # block outputs pruned
    graph, pruned = check_pruning(tv.models.mobilenet_v2(num_classes=10), x)
    dw = pruned.features[2].conv[1][0]
    assert dw.groups == dw.in_channels == dw.out_channels == 48
    assert pruned.classifier[1].out_features == 10
