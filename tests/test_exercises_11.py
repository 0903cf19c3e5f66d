"""The checkers of notebook 11's exercises: right answers pass, wrong ones fail with the hint, bad input is refused.

Independent computations: the package's ``int8_per_channel`` (itself equal to torchao's codes) for the
codes, and the bytes of a real ``save_sparse(values="codebook")`` file's entries for the codebook form.
"""

import pytest
import torch
from torch import nn

import pruning_utils as pu
from pruning_utils.exercises import check_codebook_bytes, check_int8_codes


@pytest.mark.parametrize("seed", range(5))
def test_int8_codes_of_the_package_pass(seed, capsys):
    torch.manual_seed(seed)
    w = torch.randn(3, 7)
    codes, _ = pu.int8_per_channel(w)
    assert check_int8_codes(codes, w) is True
    assert capsys.readouterr().out.startswith("right:")
    wrong = codes.clone().int()
    wrong[0, wrong[0].abs().argmin()] += 1   # one small code off by one: never a tie
    assert check_int8_codes(wrong, w) is False


def test_int8_codes_accept_either_neighbour_at_a_tie_only():
    w = [0.5, -1.0, 0.25, 0.0]          # -1.0 is the largest magnitude: -127.5, halfway
    assert check_int8_codes([64, -128, 32, 0], w) and check_int8_codes([64, -127, 32, 0], w)
    assert not check_int8_codes([64, -126, 32, 0], w)
    assert not check_int8_codes([63, -128, 32, 0], w)  # 0.5 -> 63.75: no tie, 64 only


@pytest.mark.parametrize("answer, words", [
    ([63, -127, 32, 0], "127.5"),        # scale = max / 127
    ([63.75, -127.5, 31.875, 0], "integers"),
    ([500, -1000, 250, 0], "-128..127"),
])
def test_int8_codes_wrong_answers_get_their_hint(answer, words, capsys):
    assert check_int8_codes(answer, [0.5, -1.0, 0.25, 0.0]) is False
    assert words in capsys.readouterr().out


def test_int8_codes_refuse_bad_input():
    with pytest.raises(ValueError, match="answer"):
        check_int8_codes([1, 2], [0.5, -1.0, 0.25])
    with pytest.raises(TypeError, match="answer"):
        check_int8_codes("codes", [0.5, -1.0])
    with pytest.raises((TypeError, ValueError), match="weight"):
        check_int8_codes([0], [float("nan")])


def _shared_layer(seed=0, bits=3, rate=0.8):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(40, 12))
    pu.magnitude_prune(pu.prunable_layers(model), rate)
    pu.make_permanent(model)
    pu.share_weights(model, bits)
    return model


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_codebook_bytes_equal_the_files_entry(bits, tmp_path, capsys):
    model = _shared_layer(bits=bits)
    entry = torch.load(pu.save_sparse(model, tmp_path / "m.pt", values="codebook"), weights_only=True)["entries"]["0.weight"]
    right = entry["bits"][2] + entry["values"][2] + 4 * entry["codebook"][2]  # uint8 counts; float32 codebook
    assert check_codebook_bytes(right, model[0]) is True
    assert capsys.readouterr().out.startswith("right:")
    assert check_codebook_bytes(right + 1, model[0]) is False


def test_codebook_bytes_wrong_answers_get_their_hint(capsys):
    layer = _shared_layer()[0]
    w = layer.weight.detach()
    nnz, k = int((w != 0).sum()), torch.unique(w[w != 0]).numel()
    bits = max(1, (k - 1).bit_length())
    bitmask, indices, codebook = (w.numel() + 7) // 8, (nnz * bits + 7) // 8, 4 * k
    for answer, words in ((w.numel() * 4, "dense"), (indices + codebook, "bitmask"),
                          (bitmask + nnz + codebook, "not a whole byte"), (bitmask + indices, "codebook itself")):
        assert check_codebook_bytes(answer, layer) is False
        assert words in capsys.readouterr().out


def test_codebook_bytes_refuse_unshared_layers_and_bad_answers():
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="share"):
        check_codebook_bytes(100, nn.Linear(40, 12))
    with pytest.raises(TypeError, match="answer"):
        check_codebook_bytes(1.5, _shared_layer()[0])
    with pytest.raises((TypeError, ValueError), match="layer"):
        check_codebook_bytes(10, nn.ReLU())
