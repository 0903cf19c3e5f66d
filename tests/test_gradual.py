import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pruning_utils.config import seed_everything
from pruning_utils.gradual import GradualPruner, cubic_sparsity, pruning_steps
from pruning_utils.masks import get_mask, prunable_layers
from pruning_utils.models import SmallCNN
from pruning_utils.training import build_optimizer, train


def tiny_cnn(seed=0):
    seed_everything(seed)
    return SmallCNN(widths=(4, 8), input_size=8)


def zeros_and_total(model):
    """Brute force: exact zeros among the conv/linear weights, and how many weights there are."""
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return sum(int((w == 0).sum()) for w in weights), sum(w.numel() for w in weights)


def random_loader(n=48, batch_size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    data = TensorDataset(torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g))
    return DataLoader(data, batch_size=batch_size)


# -- the pure schedule ---------------------------------------------------------------------------


def test_cubic_schedule_at_begin_middle_and_end():
    # s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (end - t0))³, here s_i=0.1, s_f=0.9, t0=100, end=300
    kw = dict(initial_sparsity=0.1, final_sparsity=0.9, begin_step=100, end_step=300)
    assert cubic_sparsity(100, **kw) == pytest.approx(0.1)
    assert cubic_sparsity(150, **kw) == pytest.approx(0.9 - 0.8 * 0.75**3)  # 0.5625
    assert cubic_sparsity(200, **kw) == pytest.approx(0.9 - 0.8 * 0.5**3)  # 0.8
    assert cubic_sparsity(299, **kw) == pytest.approx(0.9 - 0.8 * (1 / 200) ** 3)
    assert cubic_sparsity(300, **kw) == 0.9
    assert cubic_sparsity(0, **kw) == 0.1 and cubic_sparsity(10**6, **kw) == 0.9  # clamped outside


def test_schedule_is_monotone_and_method_agrees_with_function():
    pruner = GradualPruner(tiny_cnn(), 0.2, 0.95, begin_step=7, end_step=107, frequency=10)
    values = [pruner.compute_sparsity(t) for t in range(0, 130)]
    assert values == [cubic_sparsity(t, 0.2, 0.95, 7, 107) for t in range(0, 130)]
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert values[0] == 0.2 and values[-1] == 0.95


def test_pruning_steps_include_end_step_when_not_aligned():
    assert pruning_steps(0, 10, 4) == [0, 4, 8, 10]
    assert pruning_steps(0, 12, 4) == [0, 4, 8, 12]
    assert pruning_steps(5, 6, 100) == [5, 6]
    pruner = GradualPruner(tiny_cnn(), 0.0, 0.5, begin_step=3, end_step=20, frequency=5)
    assert pruner.pruning_steps() == [3, 8, 13, 18, 20]
    assert [pruner.is_pruning_step(t) for t in range(25)] == [t in (3, 8, 13, 18, 20) for t in range(25)]
    assert pruner.schedule()[-1] == (20, 0.5)


# -- pruning with the one masking mechanism -------------------------------------------------------


def test_final_sparsity_is_exact_at_end_step_with_a_non_aligned_frequency():
    model = tiny_cnn()
    pruner = GradualPruner(model, 0.0, 0.8, begin_step=0, end_step=10, frequency=3)
    applied = {}
    for t in range(0, 13):
        target = pruner.step(t)
        if target is not None:
            applied[t] = target
        zeros, total = zeros_and_total(model)
        if t == 9:  # the tutorial's version would stop here: 9 is the last multiple of 3 before 10
            assert zeros < round(0.8 * total)
    assert sorted(applied) == [0, 3, 6, 9, 10]
    assert applied[10] == 0.8 and pruner.done
    zeros, total = zeros_and_total(model)
    assert zeros == round(0.8 * total)
    # every update reached its own target exactly (brute-force zero counts in the history)
    assert [r["sparsity"] for r in pruner.history] == [round(r["target"] * total) / total for r in pruner.history]


def test_masks_hold_between_pruning_steps_and_only_add_zeros():
    model = tiny_cnn()
    pruner = GradualPruner(model, 0.0, 0.9, begin_step=0, end_step=12, frequency=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    pruner.step(0)
    previous = None
    for t in range(1, 16):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        zeros_before = {n: (m.weight == 0).clone() for n, m in pruner.layers}
        pruned = pruner.step(t) is not None
        zeros_now = {n: (m.weight == 0) for n, m in pruner.layers}
        if previous is not None:
            for n in zeros_now:
                # pruned weights stayed exactly zero through momentum and weight decay
                assert zeros_before[n][previous[n]].all()
                assert zeros_now[n][previous[n]].all()
                if not pruned:
                    assert torch.equal(zeros_now[n], previous[n])
        previous = {n: z.clone() for n, z in zeros_now.items()}
    zeros, total = zeros_and_total(model)
    assert zeros == round(0.9 * total)


def test_global_and_per_layer_scope():
    model_g, model_l = tiny_cnn(), tiny_cnn()
    GradualPruner(model_g, 0.0, 0.7, 0, 5, 5).step(5)
    GradualPruner(model_l, 0.0, 0.7, 0, 5, 5, scope="layer").step(5)
    for _, module in prunable_layers(model_l):
        n = module.weight.numel()
        assert int((module.weight == 0).sum()) == round(0.7 * n)
    zeros, total = zeros_and_total(model_g)
    assert zeros == round(0.7 * total)
    per_layer = [float((m.weight == 0).float().mean()) for _, m in prunable_layers(model_g)]
    assert max(per_layer) - min(per_layer) > 0.05  # one global ranking: layers end up different
    # global selection = the smallest |w| over all layers (ties aside)
    dense = tiny_cnn()
    all_w = torch.cat([m.weight.detach().abs().flatten() for _, m in prunable_layers(dense)])
    cut = all_w.sort().values[round(0.7 * all_w.numel()) - 1]
    for (_, pruned), (_, orig) in zip(prunable_layers(model_g), prunable_layers(dense)):
        assert torch.equal(get_mask(pruned) == 0, orig.weight.detach().abs() <= cut)


def test_layer_selection_arguments():
    model = tiny_cnn()
    pruner = GradualPruner(model, 0.0, 0.5, 0, 2, 1, skip_last=True)
    pruner.step(2)
    assert model.fc.weight.ne(0).all() and get_mask(model.fc) is None
    assert [n for n, _ in pruner.layers] == ["conv1", "conv2"]


def test_steps_skipped_by_the_caller_are_caught_up():
    model = tiny_cnn()
    pruner = GradualPruner(model, 0.0, 0.6, begin_step=0, end_step=60, frequency=25)
    assert pruner.step(0) == 0.0
    assert pruner.step(20) is None  # nothing due since step 0
    assert pruner.step(30) == pytest.approx(cubic_sparsity(25, 0.0, 0.6, 0, 60))
    assert pruner.step(40) is None
    assert pruner.step(100) == 0.6  # end_step was never shown: the final target still lands
    assert pruner.step(101) is None and pruner.done


def test_as_a_callback_of_the_training_loop():
    model = tiny_cnn()
    loader = random_loader(n=48, batch_size=8)  # 6 steps per epoch
    pruner = GradualPruner(model, 0.0, 0.75, begin_step=2, end_step=13, frequency=4)
    opt = build_optimizer(model, "quick", lr=0.05)
    train(model, loader, epochs=1, optimizer=opt, callbacks=[pruner], progress=False, device="cpu")
    assert pruner.current_step == 6 and [r["step"] for r in pruner.history] == [2, 6]
    # a second train call continues the global step count (the loop restarts its own at 0)
    train(model, loader, epochs=2, optimizer=opt, callbacks=[pruner], progress=False, device="cpu")
    assert pruner.current_step == 18
    assert [r["step"] for r in pruner.history] == [2, 6, 10, 13] == [s for s in pruner.pruning_steps()]
    zeros, total = zeros_and_total(model)
    assert zeros == round(0.75 * total) and pruner.done


def test_initial_sparsity_is_applied_when_training_starts():
    model = tiny_cnn()
    pruner = GradualPruner(model, 0.3, 0.6, begin_step=0, end_step=100, frequency=50)
    pruner.on_train_begin(None)
    zeros, total = zeros_and_total(model)
    assert zeros == round(0.3 * total)


def test_plain_step_calls_match_the_tutorial_loop():
    # tutorial style: pruner.step(global_step) after every optimizer step; same masks as the callback
    a, b = tiny_cnn(), tiny_cnn()
    pa = GradualPruner(a, 0.0, 0.8, 0, 5, 2)
    pb = GradualPruner(b, 0.0, 0.8, 0, 5, 2)
    for t in range(8):
        pa.step(t)
    pb.on_train_begin(None)
    for _ in range(7):
        pb.on_step_end(None)
    for (_, ma), (_, mb) in zip(pa.layers, pb.layers):
        assert torch.equal(get_mask(ma), get_mask(mb))


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(initial_sparsity=0.5, final_sparsity=0.3), ValueError, "final_sparsity must be >= initial_sparsity"),
    (dict(final_sparsity=1.0), ValueError, r"final_sparsity must be in \[0, 1\)"),
    (dict(initial_sparsity=-0.1), ValueError, r"initial_sparsity must be in \[0, 1\)"),
    (dict(final_sparsity="0.9"), TypeError, r"final_sparsity must be a number in \[0, 1\)"),
    (dict(begin_step=10, end_step=10), ValueError, "end_step must be an int >= 11"),
    (dict(begin_step=10, end_step=5), ValueError, "end_step must be an int >= 11"),
    (dict(begin_step=-1), ValueError, "begin_step must be an int >= 0"),
    (dict(frequency=0), ValueError, "frequency must be an int >= 1"),
    (dict(frequency=2.5), TypeError, "frequency must be an int >= 1"),
    (dict(end_step=100.0), TypeError, "end_step must be an int"),
    (dict(scope="local"), ValueError, "scope must be 'global' or 'layer'"),
])
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        GradualPruner(tiny_cnn(), **kwargs)


def test_bad_steps_and_models():
    pruner = GradualPruner(tiny_cnn(), 0.0, 0.5, 0, 10, 2)
    with pytest.raises(TypeError, match="current_step must be an int"):
        pruner.step(1.5)
    with pytest.raises(TypeError, match="step must be an int"):
        cubic_sparsity("3")
    with pytest.raises(ValueError, match="final_sparsity must be >= initial_sparsity"):
        cubic_sparsity(3, initial_sparsity=0.5, final_sparsity=0.1)
    with pytest.raises(ValueError, match="no prunable layer"):
        GradualPruner(nn.Sequential(nn.ReLU()))
    assert copy.deepcopy(pruner).compute_sparsity(10) == 0.5


# -- the callback acts on the model train() trains (issue 14) -----------------------------------


def test_a_pruner_refuses_a_train_call_on_another_model_and_accepts_one_that_contains_its_model():
    built_for, trained = tiny_cnn(0), tiny_cnn(1)
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    pruner = GradualPruner(built_for, 0.3, 0.6, begin_step=0, end_step=4, frequency=2)
    with pytest.raises(ValueError, match=r"GradualPruner was built for a different model than the one train\(\) "
                                         r"is training: it acts on a SmallCNN .* train\(\) trains a SmallCNN"):
        train(trained, random_loader(), epochs=1, callbacks=[pruner], progress=False, device="cpu")
    assert zeros_and_total(built_for)[0] == 0, "the model nobody trains was not pruned"
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items()), "nothing was trained"
    assert pruner.history == [] and pruner.current_step == 0

    model = tiny_cnn()
    wrapped = nn.Sequential(model)  # e.g. a wrapper (DDP) that trains the module it holds
    pruner = GradualPruner(model, 0.0, 0.5, begin_step=0, end_step=6, frequency=3)
    train(wrapped, random_loader(), epochs=1, callbacks=[pruner], progress=False, device="cpu")
    zeros, total = zeros_and_total(model)
    assert pruner.done and zeros == round(0.5 * total)


@pytest.mark.parametrize("kwargs", [dict(skip_first="yes"), dict(skip_last=1)])
def test_layer_switches_must_be_booleans(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(TypeError, match=f"{name} must be True or False"):
        GradualPruner(tiny_cnn(), **kwargs)
