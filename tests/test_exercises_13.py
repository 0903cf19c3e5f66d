"""The checkers of notebook 13's exercises: right answers pass, wrong ones fail with the hint, bad input is refused.

Independent computations: the package's ``collect_input_stats`` + ``wanda_scores`` for the scores, ``prune_heads``
on a whole TinyViT (counted with ``count_parameters``) for the parameters a head owns, and the mask
``wanda_prune(n=2, m=4)`` really builds for the kept weights.
"""

import pytest
import torch
from torch import nn

from pruning_utils import LayerStats, TinyViT, collect_input_stats, count_parameters, get_mask, prune_heads, wanda_prune, wanda_scores
from pruning_utils.exercises import check_heads_params_removed, check_wanda_nm_keep, check_wanda_scores


class OneLayer(nn.Module):
    def __init__(self, n_in, n_out, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.lin = nn.Linear(n_in, n_out)

    def forward(self, x):
        return self.lin(x)


def package_scores(weight, inputs):
    model = OneLayer(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        model.lin.weight.copy_(weight)
    stats = collect_input_stats(model, [inputs])
    return wanda_scores(model.lin, stats["lin"])


# --- check_wanda_scores -------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("input_shape", [(5, 4), (3, 7, 4)])   # rows, or images x tokens
def test_scores_right_answer_is_the_packages(seed, input_shape, capsys):
    g = torch.Generator().manual_seed(seed)
    weight, inputs = torch.randn(3, 4, generator=g), torch.randn(*input_shape, generator=g)
    right = package_scores(weight, inputs)
    assert check_wanda_scores(right, weight, inputs) is True
    assert capsys.readouterr().out.startswith("right:")
    assert check_wanda_scores(right.tolist(), weight.tolist(), inputs) is True   # nested lists are fine
    wrong = right.clone()
    wrong[1, 2] += 0.01
    assert check_wanda_scores(wrong, weight, inputs) is False


@pytest.mark.parametrize("make_wrong, words", [
    (lambda w, x: w.abs() * x.reshape(-1, x.shape[-1]).pow(2).sum(0), "squared norm"),
    (lambda w, x: w * x.reshape(-1, x.shape[-1]).norm(dim=0), "absolute value"),
    (lambda w, x: w.abs() * x.reshape(-1, x.shape[-1]).abs().mean(0), "mean |x_j|"),
    (lambda w, x: w.abs(), "magnitude alone"),
    (lambda w, x: w.abs() * x.reshape(-1, x.shape[-1]).norm(dim=1)[: w.shape[0], None], "column"),
])
def test_scores_wrong_answers_get_their_hint(make_wrong, words, capsys):
    g = torch.Generator().manual_seed(3)
    weight, inputs = torch.randn(3, 4, generator=g), torch.randn(6, 4, generator=g)
    assert check_wanda_scores(make_wrong(weight, inputs), weight, inputs) is False
    assert words in capsys.readouterr().out


@pytest.mark.parametrize("args, error, words", [
    ((torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(5, 4)), ValueError, "3 features"),
    ((torch.zeros(3, 3), torch.zeros(2, 3), torch.zeros(5, 3)), ValueError, "answer must have weight's shape"),
    ((torch.zeros(3), torch.zeros(3), torch.zeros(5, 3)), ValueError, "2-D"),
    (("abc", torch.zeros(2, 3), torch.zeros(5, 3)), TypeError, "answer"),
    ((torch.zeros(2, 3), torch.full((2, 3), float("nan")), torch.zeros(5, 3)), ValueError, "NaN"),
    ((torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(0, 3)), ValueError, "empty"),
])
def test_scores_bad_input_is_refused(args, error, words):
    with pytest.raises(error, match=words):
        check_wanda_scores(*args)


# --- check_heads_params_removed -----------------------------------------------------------------------

@pytest.mark.parametrize("dim, heads, k", [(64, 4, 1), (64, 4, 2), (32, 8, 3), (12, 3, 1)])
def test_heads_right_answer_is_a_pruned_tinyvit(dim, heads, k, capsys):
    model = TinyViT(dim=dim, depth=1, heads=heads)
    small = prune_heads(model, k / heads)
    assert small.blocks[0].attn.heads == heads - k
    right = count_parameters(model)["total_params"] - count_parameters(small)["total_params"]
    assert check_heads_params_removed(right, dim, heads, k) is True
    assert capsys.readouterr().out.startswith("right:")
    assert check_heads_params_removed(right + 1, dim, heads, k) is False
    assert check_heads_params_removed(right - 1, dim, heads, k) is False


@pytest.mark.parametrize("wrong, words", [
    (4 * 16 * 64, "weights only"),
    (16 * (3 * 64 + 3), "columns too"),
    (16 * (4 * 64 + 4), "out's bias"),
    (12345, "rows of q, k and v"),
])
def test_heads_wrong_answers_get_their_hint(wrong, words, capsys):
    assert check_heads_params_removed(wrong, 64, 4, 1) is False
    assert words in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(answer=-1), ValueError, "answer"),
    (dict(answer=1.5), TypeError, "answer"),
    (dict(answer=1, dim=10, heads=4), ValueError, "divisible"),
    (dict(answer=1, heads=4, k=4), ValueError, "k must be smaller"),
    (dict(answer=1, k=-1), ValueError, "k"),
    (dict(answer=1, dim=0), ValueError, "dim"),
])
def test_heads_bad_input_is_refused(kwargs, error, words):
    with pytest.raises(error, match=words):
        check_heads_params_removed(**kwargs)


# --- check_wanda_nm_keep ------------------------------------------------------------------------------

def package_keep(weights, col_norm, n=2, m=4):
    model = OneLayer(len(weights), 1)
    with torch.no_grad():
        model.lin.weight.copy_(torch.tensor([weights]))
    k = len(col_norm)
    stats = {"lin": LayerStats(n=10, col_norm=torch.tensor(col_norm, dtype=torch.float64), hessian=torch.eye(k, dtype=torch.float64))}
    wanda_prune(model, stats, n=n, m=m)
    return get_mask(model.lin)[0].bool()


CASES = [([1.0, -2.0, 0.5, 3.0, 0.1, 2.0, 1.0, -1.0], [1.0, 0.1, 1.0, 1.0, 10.0, 1.0, 1.0, 1.0]),
         ([0.3, -0.2, 0.9, 0.05, -1.0, 0.4, 0.4, 0.2], [4.0, 5.0, 0.5, 30.0, 0.1, 1.0, 1.0, 2.0]),
         ([1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0])]                           # all tied: the lower indices


@pytest.mark.parametrize("weights, norms", CASES)
def test_keep_right_answer_is_wanda_prunes(weights, norms, capsys):
    mask = package_keep(weights, norms)
    kept = [i for i, f in enumerate(mask.tolist()) if f]
    assert check_wanda_nm_keep(kept, weights, norms) is True
    assert capsys.readouterr().out.startswith("right:")
    assert check_wanda_nm_keep(list(reversed(kept)), weights, norms) is True   # any order
    assert check_wanda_nm_keep(mask, weights, norms) is True                   # a bool mask
    assert check_wanda_nm_keep(torch.tensor(kept), torch.tensor(weights), torch.tensor(norms)) is True
    other = sorted(set(range(len(weights))) - set(kept))
    assert check_wanda_nm_keep(kept[:-1] + other[:1], weights, norms) is False


def test_keep_wrong_answers_get_their_hint(capsys):
    weights, norms = CASES[0]
    assert check_wanda_nm_keep([1, 3, 5, 6], weights, norms) is False          # |w| alone: magnitude's choice
    assert "magnitude" in capsys.readouterr().out
    assert check_wanda_nm_keep([0, 3, 4, 5], weights, norms) is True
    capsys.readouterr()
    assert check_wanda_nm_keep([1, 2, 6, 7], weights, norms) is False          # the removed ones
    assert "removes" in capsys.readouterr().out
    w2, n2 = [3.0, 2.0, 1.5, 0.1, 0.1, 0.1, 5.0, 0.2], [1.0] * 8
    assert check_wanda_nm_keep([0, 1, 2, 6], w2, n2) is False                  # best half of the row
    assert "whole row" in capsys.readouterr().out


@pytest.mark.parametrize("args, kwargs, error, words", [
    (([0, 1], [1.0, 2.0, 3.0], [1.0, 1.0, 1.0]), {}, ValueError, "multiple of m=4"),
    (([0, 1], [1.0] * 4, [1.0] * 3), {}, ValueError, "same length"),
    (([0, 9], [1.0] * 4, [1.0] * 4), {}, ValueError, "distinct weight indices"),
    (([0, 0], [1.0] * 4, [1.0] * 4), {}, ValueError, "distinct"),
    (([True, False], [1.0] * 4, [1.0] * 4), {}, ValueError, "one entry per weight"),
    (([0, 1], [1.0] * 4, [-1.0] + [1.0] * 3), {}, ValueError, "negative"),
    (([0, 1], [1.0] * 4, [1.0] * 4), dict(n=3, m=2), ValueError, "n must be <= m"),
    (([0.5, 1], [1.0] * 4, [1.0] * 4), {}, ValueError, "integers"),
    (([0, 1], "abcd", [1.0] * 4), {}, TypeError, "weights"),
])
def test_keep_bad_input_is_refused(args, kwargs, error, words):
    with pytest.raises(error, match=words):
        check_wanda_nm_keep(*args, **kwargs)
