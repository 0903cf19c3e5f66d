import pytest
import torch
from torch import nn

from pruning_utils.models import MLP, SmallCNN, build_model, cifar_resnet


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_small_cnn_shapes_and_layout():
    model = SmallCNN(in_channels=1, num_classes=10, widths=(16, 32, 64), input_size=8)
    assert model(torch.randn(5, 1, 8, 8)).shape == (5, 10)
    names = [n for n, _ in model.named_children()]
    assert names[:3] == ["conv1", "bn1", "relu1"] and names[-2:] == ["flatten", "fc"]
    # two pooling steps: 8 -> 4 -> 2, so the head sees 64 channels x 2 x 2
    assert model.fc.in_features == 64 * 2 * 2


def test_small_cnn_is_configurable_for_cifar_sizes():
    model = SmallCNN(in_channels=3, num_classes=7, widths=(8, 16, 32, 32), input_size=32)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_small_cnn_rejects_wrong_input_shape():
    model = SmallCNN()
    with pytest.raises(ValueError, match=r"expects input of shape \(batch, 1, 8, 8\); got \(2, 3, 8, 8\)"):
        model(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="input_size=2 is too small"):
        SmallCNN(widths=(4, 4, 4), input_size=2)
    with pytest.raises(ValueError, match="widths"):
        SmallCNN(widths=(4, 0))


def test_mlp_is_lenet_300_100():
    model = MLP(in_features=784)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(784, 300), (300, 100), (100, 10)]
    assert n_params(model) == 266_610  # LeNet-300-100's published size
    assert model(torch.randn(4, 1, 28, 28)).shape == (4, 10)
    with pytest.raises(ValueError, match="784 features"):
        model(torch.randn(4, 1, 8, 8))


@pytest.mark.parametrize("depth, expected", [(20, 269_722), (56, 853_018)])
def test_cifar_resnet_matches_paper_sizes(depth, expected):
    # He et al. 2016, Table 6: ResNet-20 0.27M, ResNet-56 0.85M parameters.
    model = cifar_resnet(depth)
    assert n_params(model) == expected
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_cifar_resnet_depth_and_input_checks():
    with pytest.raises(ValueError, match="6n\\+2"):
        cifar_resnet(18)
    with pytest.raises(ValueError, match="expects input of shape"):
        cifar_resnet(20)(torch.randn(1, 1, 32, 32))


def test_build_model_by_name():
    from pruning_utils import TinyViT, get_profile
    from pruning_utils.training import build_model_for

    assert isinstance(build_model("mlp", in_features=64), MLP)
    vit = build_model("tiny_vit", dim=16, depth=1, heads=2)
    assert isinstance(vit, TinyViT) and vit(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    # a profile can name the transformer: the baseline, its cache and the training loop follow
    profile = get_profile("quick").replace(model="tiny_vit", model_kwargs={"dim": 16, "depth": 1, "heads": 2})
    assert isinstance(build_model_for(profile), TinyViT)
    with pytest.raises(ValueError, match=r"name \(the model\) must be one of 'cifar_resnet', 'mlp', 'small_cnn', "
                                         r"'tiny_vit'; got 'vgg'"):
        build_model("vgg")


def test_cifar_resnet_declares_the_cifar_input_size_that_flops_and_latency_default_to():
    from torch.utils.flop_counter import FlopCounterMode

    from pruning_utils import analyze_pruned_model

    model = cifar_resnet(20).eval()
    assert model.input_shape == (3, 32, 32)
    with FlopCounterMode(display=False) as counter, torch.no_grad():  # torch's own count at 32 x 32
        model(torch.zeros(1, 3, 32, 32))
    report = analyze_pruned_model(model, latency=False)  # no input size given
    assert report["dense_flops"] == counter.get_total_flops()  # ~81 MFLOPs, not the 224 x 224 figure
