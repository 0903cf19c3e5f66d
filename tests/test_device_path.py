"""The GPU profile's code path, run on the CPU: the device loader, mixed precision, channels_last."""

import numpy as np
import pytest
import torch
from torchvision import transforms as T

from pruning_utils import SmallCNN, get_profile, magnitude_prune, prunable_layers, seed_everything, sparsity
from pruning_utils.config import PROFILES
from pruning_utils.data import DeviceLoader, get_loaders
from pruning_utils.training import autocast_dtype, evaluate, train
from test_data import make_cifar10_archive

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def images(n=37, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g),
            torch.randint(0, 10, (n,), generator=g))


def torchvision_view(img):
    """What ToTensor + Normalize make of one uint8 CHW image (torchvision, independent of the loader)."""
    return T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])(img.permute(1, 2, 0).numpy())


def test_plain_batches_are_torchvisions_to_tensor_and_normalize():
    x, y = images()
    loader = DeviceLoader(x, y, batch_size=10, mean=MEAN, std=STD)
    assert len(loader) == 4 and len(loader.dataset) == 37
    got = list(loader)
    assert [len(b[1]) for b in got] == [10, 10, 10, 7]
    torch.testing.assert_close(torch.cat([b[0] for b in got]), torch.stack([torchvision_view(i) for i in x]))
    assert torch.equal(torch.cat([b[1] for b in got]), y)


def test_every_augmented_image_is_a_padded_crop_of_its_source_maybe_flipped():
    x, y = images(n=24)
    loader = DeviceLoader(x, y, batch_size=8, mean=MEAN, std=STD, shuffle=True, pad=2, flip=True,
                          generator=torch.Generator().manual_seed(3))
    seen, offsets, flips = [], set(), set()
    for batch, labels in loader:
        for out, label in zip(batch, labels):
            matches = []
            for j in (y == label).nonzero().flatten().tolist():  # brute force over sources, offsets, flips
                padded = torch.nn.functional.pad(x[j], (2, 2, 2, 2))
                for dy in range(5):
                    for dx in range(5):
                        for flip in (False, True):
                            crop = padded[:, dy:dy + 8, dx:dx + 8]
                            crop = crop.flip(-1) if flip else crop
                            if torch.allclose(torchvision_view(crop), out, atol=1e-6):
                                matches.append((j, dy, dx, flip))
            assert matches, "an output that no crop of any source image explains"
            seen.append(matches[0][0])
            offsets.add(matches[0][1:3])
            flips.add(matches[0][3])
    assert sorted(seen) == list(range(24))  # each image exactly once per epoch
    assert len(offsets) > 5 and flips == {False, True}  # the draws vary


def test_shuffle_covers_each_image_once_and_the_seed_fixes_the_order():
    x, y = images(n=50)
    ids = torch.arange(50, dtype=torch.uint8).reshape(50, 1, 1, 1).expand(50, 3, 2, 2).contiguous()
    loader = DeviceLoader(ids, y, batch_size=16, mean=(0, 0, 0), std=(1, 1, 1), shuffle=True,
                          generator=torch.Generator())

    def order():
        return torch.cat([(b[:, 0, 0, 0] * 255).round().long() for b, _ in loader]).tolist()

    seed_everything(4, loaders=[loader])  # reseeds the loader's own generator, as for a DataLoader
    first = order()
    assert sorted(first) == list(range(50)) and first != list(range(50))
    assert order() != first  # a new epoch, a new order
    seed_everything(4, loaders=[loader])
    assert order() == first


def test_channels_last_batches_and_dataset():
    x, y = images()
    batch, _ = next(iter(DeviceLoader(x, y, batch_size=5, mean=MEAN, std=STD, channels_last=True)))
    assert batch.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(images=torch.zeros(3, 3, 4, 4)), TypeError, "images must be a uint8 tensor"),
    (dict(images=torch.zeros(3, 4, 4, dtype=torch.uint8)), TypeError, "images must be a uint8 tensor"),
    (dict(labels=torch.zeros(2, dtype=torch.long)), ValueError, "same number"),
    (dict(labels=torch.zeros(3)), TypeError, "labels must be a 1-d integer tensor"),
    (dict(mean=(0.5,)), ValueError, "one value per channel"),
    (dict(std=(0.5, 0.0, 0.5)), ValueError, "std must be"),
    (dict(batch_size=0), ValueError, "batch_size must be"),
    (dict(pad=-1), ValueError, "pad must be"),
    (dict(flip="yes"), TypeError, "flip must be True or False"),
    (dict(generator=3), TypeError, "generator must be a torch.Generator"),
])
def test_device_loader_refuses_bad_input(kwargs, error, message):
    args = dict(images=torch.zeros(3, 3, 4, 4, dtype=torch.uint8), labels=torch.zeros(3, dtype=torch.long),
                batch_size=2, mean=(0.5,) * 3, std=(0.5,) * 3)
    with pytest.raises(error, match=message):
        DeviceLoader(**{**args, **kwargs})


# ---- get_loaders on a CIFAR-10-format archive -------------------------------------------------


@pytest.fixture
def cifar_root(tmp_path):
    import tarfile

    with tarfile.open(make_cifar10_archive(tmp_path, per_batch=40, n_test=30)) as tar:
        tar.extractall(tmp_path / "data")
    return tmp_path / "data"


def test_device_loaders_hold_the_same_split_and_pixels_as_the_dataloaders(cifar_root):
    torch_path = PROFILES["paper"].replace(num_workers=0)
    device_path = PROFILES["smoke"]
    a = get_loaders(torch_path, root=cifar_root, batch_size=16, download=False)
    b = get_loaders(device_path, dataset="cifar10", root=cifar_root, batch_size=16, download=False)
    assert [len(l.dataset) for l in a] == [len(l.dataset) for l in b] == [180, 20, 30]
    for split in ("val", "test"):  # not augmented: identical batches
        xa, ya = map(torch.cat, zip(*getattr(a, split)))
        xb, yb = map(torch.cat, zip(*getattr(b, split)))
        torch.testing.assert_close(xb, xa)
        assert torch.equal(ya, yb)
    train_a = sorted(int(t) for _, t in a.train.dataset)  # same training images (labels as a fingerprint)
    train_b = sorted(b.train.labels.tolist())
    assert train_a == train_b


def test_get_loaders_says_which_loader_serves_what(cifar_root):
    with pytest.raises(ValueError, match="loader='device', which serves image datasets"):
        get_loaders(PROFILES["smoke"], dataset="digits")
    with pytest.raises(ValueError, match="device is for loader='device' profiles"):
        get_loaders("quick", device="cpu")


# ---- mixed precision and channels_last in the one training loop -----------------------------------


def learnable(n=256, seed=0):
    """Images whose class is written in their brightness: a task a tiny CNN learns in two epochs."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = (y.reshape(n, 1, 1, 1) * 60 + torch.randint(0, 30, (n, 3, 8, 8), generator=g)).to(torch.uint8)
    return DeviceLoader(x, y, batch_size=32, mean=(0.5,) * 3, std=(0.25,) * 3, shuffle=True, pad=1,
                        generator=torch.Generator().manual_seed(seed), channels_last=True)


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", None)])
def test_training_learns_in_every_precision_and_masks_hold(precision, dtype):
    prof = get_profile("smoke").replace(precision=precision, lr=0.05, lr_milestones=())
    assert autocast_dtype(prof, "cpu") == dtype
    loader = learnable()
    torch.manual_seed(0)
    model = SmallCNN(in_channels=3, num_classes=4, widths=(8, 16), input_size=8)
    magnitude_prune(prunable_layers(model), 0.5)
    before = evaluate(model, loader)["accuracy"]
    seen = []
    train(model, loader, epochs=3, profile=prof, progress=False,
          callbacks=[lambda s: seen.append(next(s.model.parameters()).grad is not None)])
    assert evaluate(model, loader)["accuracy"] > max(0.9, before)
    assert sparsity(model) == pytest.approx(0.5, abs=1e-3)  # the zeros stayed zeros under autocast / the scaler
    assert model.conv1.parametrizations.weight.original.is_contiguous(memory_format=torch.channels_last)


def test_auto_precision_is_fp32_off_the_gpu_and_the_choices_are_checked():
    assert autocast_dtype(get_profile("gpu"), "cpu") is None
    with pytest.raises(ValueError, match="precision must be one of"):
        get_profile("quick").replace(precision="int8")
    with pytest.raises(ValueError, match="loader must be"):
        get_profile("quick").replace(loader="gpu")
    with pytest.raises(TypeError, match="channels_last must be True or False"):
        get_profile("quick").replace(channels_last=1)


# ---- the smoke profile's generated CIFAR-10-format data ---------------------------------------------


def test_smoke_data_is_written_on_first_use_in_cifar10s_format_and_its_own_folder(tmp_path):
    import pickle

    from pruning_utils.data import write_smoke_cifar10

    loaders = get_loaders("smoke", root=tmp_path, download=False)  # nothing there: generated, not downloaded
    folder = tmp_path / "cifar-10-smoke-batches-py"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"])
    assert not (tmp_path / "cifar-10-batches-py").exists()  # never where real CIFAR-10 lives
    assert [p.name for p in tmp_path.iterdir()] == ["cifar-10-smoke-batches-py"]  # no temp folder left
    with open(folder / "data_batch_1", "rb") as fh:  # the real format: pickled dicts of uint8 rows
        batch = pickle.load(fh, encoding="latin1")
    assert batch["data"].dtype == np.uint8 and batch["data"].shape == (100, 3072) and len(batch["labels"]) == 100
    assert [len(l.dataset) for l in loaders] == [450, 50, 200]
    x, y = next(iter(loaders.train))
    assert x.shape == (64, 3, 32, 32) and x.is_contiguous(memory_format=torch.channels_last)
    # the classes are learnable from colour: the per-class mean images differ
    means = torch.stack([loaders.test.images[loaders.test.labels == c].float().mean(0) for c in range(10)])
    assert torch.cdist(means.flatten(1), means.flatten(1)).fill_diagonal_(1e9).min() > 20
    again = write_smoke_cifar10(tmp_path / "again")
    assert all((again / f).read_bytes() == (folder / f).read_bytes() for f in ("data_batch_3", "test_batch"))


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_train=5), "n_train must be"), (dict(n_test=2.5), "n_test must be"), (dict(seed=-1), "seed must be"),
])
def test_smoke_data_refuses_bad_sizes(tmp_path, kwargs, message):
    from pruning_utils.data import write_smoke_cifar10

    with pytest.raises((TypeError, ValueError), match=message):
        write_smoke_cifar10(tmp_path / "x", **kwargs)
    assert not list(tmp_path.iterdir())
