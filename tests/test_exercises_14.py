"""The checkers of notebook 14's exercises: right answers pass, wrong ones fail with the hint, bad input is refused.

Independent computations: the coupled layers and the parameters they lose are listed and counted by hand
from the layer shapes of small hand-built models (a stem conv + one residual block + head, an inverted-
residual block), of a TinyViT, of torchvision's MobileNetV2 and of ResNet-8; the FLOPs-matched ratio from
FLOPs counted by hand from the channel counts, and for ResNet-8 by pruning at every grid point.
"""

import pytest
import torch
from torch import nn

from pruning_utils import StructuredPruner, TinyViT, cifar_resnet, count_flops
from pruning_utils.exercises import check_coupled_layers, check_coupled_params_removed, check_flops_matched_ratio
from pruning_utils.structured import channels_to_keep


class Block(nn.Module):
    """A residual block's two convs: 4 -> 6 -> 4 channels, with biases."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.c2, self.b2 = nn.Conv2d(6, 4, 3, padding=1), nn.BatchNorm2d(4)

    def forward(self, x):
        return self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))


class ResBlockNet(nn.Module):
    """Stem conv (4 channels, with bias) + one residual block (4 -> 6 -> 4) + a Linear head."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.stem, self.bn = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.block = Block()
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(4, 3)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        return self.fc(torch.flatten(self.pool(torch.relu(x + self.block(x))), 1))


class InvertedResidualNet(nn.Module):
    """Stem conv (4) + an inverted-residual block (1x1 expand to 8, depthwise 3x3, 1x1 project, added) + head."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.stem, self.bn0 = nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.expand, self.bn1 = nn.Conv2d(4, 8, 1, bias=False), nn.BatchNorm2d(8)
        self.dw, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8)
        self.project, self.bn3 = nn.Conv2d(8, 4, 1, bias=False), nn.BatchNorm2d(4)
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(4, 3)

    def forward(self, x):
        x = self.bn0(self.stem(x))
        y = nn.functional.relu6(self.bn1(self.expand(x)))
        y = nn.functional.relu6(self.bn2(self.dw(y)))
        x = x + self.bn3(self.project(y))
        return self.fc(torch.flatten(self.pool(x), 1))


SIZE = (1, 1, 8, 8)
STEM_GROUP = ["stem", "bn", "block.c1", "block.c2", "block.b2", "fc"]          # the residual stream: written by stem and c2
INNER_GROUP = ["block.c1", "block.b1", "block.c2"]
EXPAND_GROUP = ["expand", "bn1", "dw", "bn2", "project"]     # the expansion channels, through the depthwise conv
MOBILENET_BLOCK2 = ["features.2.conv.0.0", "features.2.conv.0.1", "features.2.conv.1.0", "features.2.conv.1.1",
                    "features.2.conv.2"]


# --- check_coupled_layers -----------------------------------------------------------------------------

@pytest.mark.parametrize("make, layer, right", [
    (ResBlockNet, "stem", STEM_GROUP), (ResBlockNet, "block.c2", STEM_GROUP), (ResBlockNet, "block.c1", INNER_GROUP),
    (InvertedResidualNet, "expand", EXPAND_GROUP),
    (InvertedResidualNet, "stem", ["stem", "bn0", "expand", "project", "bn3", "fc"]),
])
def test_coupled_right_answer_is_the_hand_listed_group(make, layer, right, capsys):
    model = make()
    assert check_coupled_layers(right, model, layer, SIZE) is True
    assert capsys.readouterr().out.startswith("right:")
    assert check_coupled_layers(tuple(reversed(right)), model, layer, SIZE) is True   # any order, any iterable
    assert check_coupled_layers(iter(right), model, layer) is True                   # input size found by the graph
    assert check_coupled_layers(right[1:], model, layer, SIZE) is False
    assert check_coupled_layers(right + ["pool"], model, layer, SIZE) is False


def test_coupled_mobilenet_v2_block2_expansion():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.mobilenet_v2(num_classes=10)
    assert check_coupled_layers(MOBILENET_BLOCK2, model, "features.2.conv.0.0", (1, 3, 32, 32)) is True
    assert check_coupled_layers(MOBILENET_BLOCK2[:1] + MOBILENET_BLOCK2[4:], model, "features.2.conv.0.0",
                                (1, 3, 32, 32)) is False


def test_coupled_tinyvit_stream_counts_parameters_by_name(capsys):
    model = TinyViT(dim=16, depth=1, heads=2)
    block = ["blocks.0.norm1", "blocks.0.attn.q", "blocks.0.attn.k", "blocks.0.attn.v", "blocks.0.attn.out",
             "blocks.0.norm2", "blocks.0.mlp.fc1", "blocks.0.mlp.fc2"]
    right = ["patch_embed", "cls_token", "pos_embed", *block, "norm", "head"]
    assert check_coupled_layers(right, model, "patch_embed") is True
    capsys.readouterr()
    assert check_coupled_layers([n for n in right if n != "cls_token"], model, "patch_embed") is False
    assert "parameters count by their name" in capsys.readouterr().out


@pytest.mark.parametrize("make, layer, wrong, words", [
    (InvertedResidualNet, "expand", ["expand", "dw", "bn2", "project"], "holds the same channels"),
    (InvertedResidualNet, "expand", ["expand", "bn1", "project"], "carries each channel through"),
    (InvertedResidualNet, "expand", ["expand", "bn1", "dw", "bn2"], "reads these channels as inputs"),
    (InvertedResidualNet, "expand", EXPAND_GROUP + ["fc"], "'fc' does not touch these channels"),
    (ResBlockNet, "stem", ["stem", "bn", "block.c1", "block.b2", "fc"], "write into the same channels"),
    (ResBlockNet, "stem", ["stem", "bn", "block.c2", "block.b2"], "reads these channels as inputs"),
    (ResBlockNet, "block.c1", ["block.c1", "block.c2"], "holds the same channels"),
    (ResBlockNet, "block.c1", ["block.b1", "block.c2"], "'block.c1' itself"),
])
def test_coupled_wrong_answers_get_their_hint(make, layer, wrong, words, capsys):
    assert check_coupled_layers(wrong, make(), layer, SIZE) is False
    out = capsys.readouterr().out
    assert out.startswith("not yet:") and words in out


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(answer="stem"), TypeError, "answer"),
    (dict(answer=[1, 2]), TypeError, "answer"),
    (dict(answer=3), TypeError, "answer"),
    (dict(layer="block.b1"), ValueError, "layer must name a Conv or Linear"),
    (dict(layer="nope"), ValueError, "layer"),
    (dict(layer=3), TypeError, "layer"),
    (dict(model="model"), TypeError, "model"),
    (dict(input_size=(1, 3, 8, 8)), ValueError, "input_size"),
])
def test_coupled_bad_input_is_refused(kwargs, error, words):
    args = dict(answer=STEM_GROUP, model=ResBlockNet(), layer="stem", input_size=SIZE) | kwargs
    with pytest.raises(error, match=words):
        check_coupled_layers(**args)


# --- check_coupled_params_removed ---------------------------------------------------------------------

def stem_group_params(k):
    """ResBlockNet, k channels of the stem's stream, counted from the layer shapes."""
    return k * ((1 * 9 + 1)      # stem rows (weight + bias)
                + 2              # bn weight and bias
                + 6 * 9          # c1 input columns
                + (6 * 9 + 1)    # c2 rows
                + 2              # b2
                + 3)             # fc columns


def resnet8_stem_params(k):
    """cifar_resnet(8, in_channels=1), k channels of conv1's stream (every stage's residual stream)."""
    w = {16: 16, 32: 32, 64: 64}
    return k * (1 * 9 + 2                          # conv1 rows, bn1
                + w[16] * 9 + w[16] * 9 + 2        # layer1.0.conv1 columns, layer1.0.conv2 rows, bn2
                + w[32] * 9 + w[32] * 9 + 2        # layer2.0.conv1 columns, layer2.0.conv2 rows (first 16), bn2
                + w[64] * 9 + w[64] * 9 + 2        # layer3.0.conv1 columns, layer3.0.conv2 rows (first 16), bn2
                + 10)                              # fc columns


def test_params_resnet8_stem_is_8172(capsys):
    assert resnet8_stem_params(4) == 8172
    model = cifar_resnet(8, in_channels=1)
    assert check_coupled_params_removed(8172, model, "conv1", 4, (1, 1, 8, 8)) is True
    assert "8,172" in capsys.readouterr().out
    assert check_coupled_params_removed(8171, model, "conv1", 4, (1, 1, 8, 8)) is False
    assert check_coupled_params_removed(resnet8_stem_params(3), model, "conv1", 3, (1, 1, 8, 8)) is True


@pytest.mark.parametrize("k", [1, 2, 3])
def test_params_right_answer_is_counted_from_the_shapes(k, capsys):
    model = ResBlockNet()
    assert check_coupled_params_removed(stem_group_params(k), model, "stem", k, SIZE) is True
    assert capsys.readouterr().out.startswith("right:")
    assert check_coupled_params_removed(stem_group_params(k), model, "block.c2", k, SIZE) is True   # the same group
    assert check_coupled_params_removed(stem_group_params(k) + 1, model, "stem", k, SIZE) is False
    inner = k * (4 * 9 + 1 + 2 + 4 * 9)                                     # c1 rows + bias, b1, c2 columns
    assert check_coupled_params_removed(inner, model, "block.c1", k, SIZE) is True


def test_params_depthwise_channel_is_counted_once():
    k = 2
    right = k * (4 + 2 + 9 + 2 + 4)   # expand rows, bn1, dw filters (one per channel), bn2, project columns
    assert check_coupled_params_removed(right, InvertedResidualNet(), "expand", k, SIZE) is True


def test_params_tinyvit_stream(capsys):
    model = TinyViT(dim=16, depth=1, heads=2)
    hidden, patch = model.blocks[0].mlp.fc1.out_features, model.patch_embed.in_features
    per_unit = ((patch + 1) + 1 + (model.num_patches + 1)   # patch_embed row, cls_token, pos_embed
                + 2 + 3 * 16 + (16 + 1) + 2                 # norm1, q/k/v columns, out row, norm2
                + hidden + (hidden + 1) + 2 + 10)           # fc1 columns, fc2 row, norm, head columns
    assert check_coupled_params_removed(per_unit, model, "patch_embed", 1) is True


@pytest.mark.parametrize("wrong, words", [
    (stem_group_params(2) - 2 * 4, "norm layers"),
    (stem_group_params(2) - 2 * (6 * 9 + 3), "input columns"),
    (stem_group_params(2) - 2 * 2, "biases"),
    (2 * 10, "own rows only"),
    (12345, "add up"),
])
def test_params_wrong_answers_get_their_hint(wrong, words, capsys):
    assert check_coupled_params_removed(wrong, ResBlockNet(), "stem", 2, SIZE) is False
    out = capsys.readouterr().out
    assert out.startswith("not yet:") and words in out


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(k=0), ValueError, "k"),
    (dict(k=4), ValueError, "k must be smaller than the 4 prunable units"),
    (dict(k=1.5), TypeError, "k"),
    (dict(answer=-1), ValueError, "answer"),
    (dict(answer=1.5), TypeError, "answer"),
    (dict(layer="fc"), ValueError, "frozen.*reach the model's output"),
    (dict(layer="block"), ValueError, "layer"),
    (dict(model=None), TypeError, "model"),
])
def test_params_bad_input_is_refused(kwargs, error, words):
    args = dict(answer=1, model=ResBlockNet(), layer="stem", k=1, input_size=SIZE) | kwargs
    with pytest.raises(error, match=words):
        check_coupled_params_removed(**args)


# --- check_flops_matched_ratio ------------------------------------------------------------------------

def resblock_flops(c, c1, hw=64):
    """ResBlockNet's FLOPs with c stream channels and c1 inner ones (2 per multiply-accumulate, biases free)."""
    return 2 * hw * 9 * (1 * c + c * c1 + c1 * c) + 2 * c * 3


def hand_matched(inner_ratio):
    target = resblock_flops(4, channels_to_keep(6, inner_ratio))
    gaps = {i: abs(resblock_flops(channels_to_keep(4, i / 100), channels_to_keep(6, i / 100)) - target)
            for i in range(1, 100)}
    return [i / 100 for i, gap in gaps.items() if gap == min(gaps.values())]


def test_flops_hand_count_is_count_flops():
    model = ResBlockNet()
    assert count_flops(model, SIZE)[0] == resblock_flops(4, 6)
    assert count_flops(StructuredPruner(model).prune(0.5), SIZE)[0] == resblock_flops(4, 3)
    assert count_flops(StructuredPruner(model, residual=True).prune(0.5), SIZE)[0] == resblock_flops(2, 3)


@pytest.mark.parametrize("inner_ratio", [0.3, 0.5, 0.7])
def test_flops_right_answer_is_the_hand_count(inner_ratio, capsys):
    model = ResBlockNet()
    right = hand_matched(inner_ratio)
    for r in right:                                  # every tie is accepted
        assert check_flops_matched_ratio(r, model, inner_ratio, SIZE) is True
        assert capsys.readouterr().out.startswith("right:")
    wrong = next(i / 100 for i in range(1, 100) if i / 100 not in right)
    assert check_flops_matched_ratio(wrong, model, inner_ratio, SIZE) is False


def test_flops_resnet8_matches_brute_force(capsys):
    model, size = cifar_resnet(8, in_channels=1), (1, 1, 8, 8)
    target = count_flops(StructuredPruner(model).prune(0.5), size)[0]
    pruner = StructuredPruner(model, residual=True)
    gaps = {i: abs(count_flops(pruner.prune(i / 100), size)[0] - target) for i in range(1, 100)}
    right = [i / 100 for i, g in gaps.items() if g == min(gaps.values())]
    assert right == [0.34]
    assert check_flops_matched_ratio(0.34, model, 0.5, size) is True
    assert "0.34" in capsys.readouterr().out


def test_flops_wrong_answers_get_their_hint(capsys):
    model, right = ResBlockNet(), hand_matched(0.5)
    assert 0.5 not in right
    assert check_flops_matched_ratio(0.5, model, 0.5, SIZE) is False
    out = capsys.readouterr().out
    assert "residual=True removes more FLOPs" in out and "look lower" in out
    assert check_flops_matched_ratio(0.9, model, 0.5, SIZE) is False
    assert "prunes too many" in capsys.readouterr().out
    assert check_flops_matched_ratio(0.01, model, 0.5, SIZE) is False
    assert "prunes too few" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(answer=0.345), ValueError, "answer must be a grid point"),
    (dict(answer=0.0), ValueError, "answer"),
    (dict(answer=1.0), ValueError, "answer"),
    (dict(answer=float("nan")), ValueError, "answer"),
    (dict(answer=True), TypeError, "answer"),
    (dict(answer="0.3"), TypeError, "answer"),
    (dict(inner_ratio=1.0), ValueError, "inner_ratio"),
    (dict(input_size=None), ValueError, "input_size"),
    (dict(model=3), TypeError, "model"),
])
def test_flops_bad_input_is_refused(kwargs, error, words):
    args = dict(answer=0.3, model=ResBlockNet(), inner_ratio=0.5, input_size=SIZE) | kwargs
    with pytest.raises(error, match=words):
        check_flops_matched_ratio(**args)
