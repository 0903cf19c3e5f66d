"""The course's models: a small CNN, a LeNet-300-100 style MLP and CIFAR ResNets.

Layers carry readable names (``conv1``, ``bn1``, ``fc``) so pruning tables are easy to read.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from .checks import check_choice, check_int, check_numbers

__all__ = ["SmallCNN", "MLP", "cifar_resnet", "BasicBlock", "CifarResNet", "build_model", "MODELS"]


def _tracing(x) -> bool:
    """True while ``torch.fx`` traces the model (``x`` is a Proxy): the input checks are skipped then, so
    the model stays traceable; in eager mode they run as before."""
    return isinstance(x, torch.fx.Proxy)


def _check_input(x: torch.Tensor, expected: tuple[int, ...], model: str) -> None:
    """Raise a clear error when ``x`` is not a batch of ``expected``-shaped samples."""
    if _tracing(x):
        return
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{model} expects a torch.Tensor input; got {type(x).__name__}")
    if x.dim() != len(expected) + 1 or tuple(x.shape[1:]) != expected:
        raise ValueError(
            f"{model} expects input of shape (batch, {', '.join(map(str, expected))}); got {tuple(x.shape)}"
        )


class SmallCNN(nn.Sequential):
    """Conv-BN-ReLU blocks with max-pooling, then Flatten and a Linear head.

    A flat ``nn.Sequential`` with named layers: block ``i`` is ``conv{i}``, ``bn{i}``, ``relu{i}``
    (and ``pool{i}`` after every block but the first), then ``flatten`` and ``fc``.

    >>> SmallCNN(in_channels=1, num_classes=10, widths=(8, 16), input_size=8)(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, widths=(32, 64, 128), input_size: int = 8):
        check_int(in_channels, "in_channels", 1)
        check_int(num_classes, "num_classes", 1)
        check_int(input_size, "input_size", 1)
        widths = tuple(check_numbers(widths, "widths", lambda v, n: check_int(v, n, 1)))
        size = input_size
        layers: list[tuple[str, nn.Module]] = []
        prev = in_channels
        for i, width in enumerate(widths, start=1):
            layers += [
                (f"conv{i}", nn.Conv2d(prev, width, kernel_size=3, padding=1, bias=False)),
                (f"bn{i}", nn.BatchNorm2d(width)),
                (f"relu{i}", nn.ReLU(inplace=True)),
            ]
            if i > 1:
                if size < 2:
                    raise ValueError(
                        f"input_size={input_size} is too small for {len(widths)} blocks "
                        f"(each block after the first halves it)"
                    )
                layers.append((f"pool{i}", nn.MaxPool2d(2)))
                size //= 2
            prev = width
        layers += [("flatten", nn.Flatten()), ("fc", nn.Linear(prev * size * size, num_classes))]
        super().__init__(OrderedDict(layers))
        self.input_shape = (in_channels, input_size, input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.input_shape, type(self).__name__)
        return super().forward(x)


class MLP(nn.Sequential):
    """LeNet-300-100 style fully connected net: Flatten, then hidden Linear+ReLU layers, then a head.

    >>> MLP(in_features=64)(torch.zeros(3, 1, 8, 8)).shape
    torch.Size([3, 10])
    """

    def __init__(self, in_features: int = 784, num_classes: int = 10, hidden=(300, 100)):
        check_int(in_features, "in_features", 1)
        check_int(num_classes, "num_classes", 1)
        hidden = tuple(check_numbers(hidden, "hidden", lambda v, n: check_int(v, n, 1), allow_empty=True))
        layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
        prev = in_features
        for i, width in enumerate(hidden, start=1):
            layers += [(f"fc{i}", nn.Linear(prev, width)), (f"relu{i}", nn.ReLU(inplace=True))]
            prev = width
        layers.append((f"fc{len(hidden) + 1}", nn.Linear(prev, num_classes)))
        super().__init__(OrderedDict(layers))
        self.in_features = in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _tracing(x):
            return super().forward(x)
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"MLP expects a torch.Tensor input; got {type(x).__name__}")
        if x.dim() < 2 or x[0].numel() != self.in_features:
            raise ValueError(
                f"MLP expects a batch of samples with {self.in_features} features each; got shape {tuple(x.shape)}"
            )
        return super().forward(x)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus an identity shortcut (He et al. 2016, CIFAR option A).

    When the block downsamples, the shortcut subsamples by 2 and pads the new channels with zeros,
    so it has no parameters (ResNet-20 then has the paper's 0.27M parameters).
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride = stride
        self.pad = planes - in_planes

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs: a 3x3 stem, three stages of BasicBlocks, global pooling, Linear."""

    def __init__(self, depth: int = 20, num_classes: int = 10, width: int = 16, in_channels: int = 3):
        super().__init__()
        if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110); got {depth!r}")
        check_int(num_classes, "num_classes", 1)
        check_int(width, "width", 1)
        check_int(in_channels, "in_channels", 1)
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        planes = [width, 2 * width, 4 * width]
        stages, prev = [], width
        for i, p in enumerate(planes):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(prev, p, stride=2 if (i > 0 and j == 0) else 1))
                prev = p
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(prev, num_classes)
        self.in_channels = in_channels
        # The CIFAR input size, which FLOP counts and latency default to (any H x W runs: the pooling is
        # adaptive). Without it they would assume ImageNet's 224 x 224, 49 times the work.
        self.input_shape = (in_channels, 32, 32)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _tracing(x) and (not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.in_channels):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"CifarResNet expects input of shape (batch, {self.in_channels}, H, W); got {shape}")
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.fc(self.flatten(self.pool(out)))


def cifar_resnet(depth: int = 20, num_classes: int = 10, **kwargs) -> CifarResNet:
    """ResNet-``depth`` for CIFAR (depth 6n+2: 20, 32, 44, 56, 110).

    >>> sum(p.numel() for p in cifar_resnet(20).parameters())
    269722
    """
    return CifarResNet(depth=depth, num_classes=num_classes, **kwargs)


def tiny_vit(**kwargs) -> nn.Module:
    """The course's small vision transformer, :class:`pruning_utils.transformer.TinyViT` (defined there,
    beside its head and neuron pruning; imported on first use, since that module builds on this one)."""
    from .transformer import TinyViT

    return TinyViT(**kwargs)


MODELS = {"small_cnn": SmallCNN, "mlp": MLP, "cifar_resnet": cifar_resnet, "tiny_vit": tiny_vit}


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a model by name (``small_cnn``, ``mlp``, ``cifar_resnet``, ``tiny_vit``)."""
    check_choice(name, "name (the model)", sorted(MODELS))
    return MODELS[name](**kwargs)
