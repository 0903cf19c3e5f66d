"""Small pruned models shared by the test modules (import as ``from _pruned_models import ...``)."""

import torch
from torch import nn

from pruning_utils.masks import magnitude_prune, prunable_layers
from pruning_utils.models import MLP, SmallCNN


def pruned_cnn(target=0.9, seed=0):
    torch.manual_seed(seed)
    model = SmallCNN(widths=(8, 16, 16))
    with torch.no_grad():  # non-trivial BatchNorm statistics, so they must survive a round trip
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.num_batches_tracked.fill_(7)
    magnitude_prune(prunable_layers(model), target)
    return model


def pruned_mlp(target=0.9, seed=0, **kwargs):
    torch.manual_seed(seed)
    model = MLP(**kwargs)
    magnitude_prune(prunable_layers(model), target)
    return model
