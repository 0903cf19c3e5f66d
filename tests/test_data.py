import dataclasses
import gzip
import hashlib
import io
import pickle
import struct
import tarfile

import numpy as np
import pytest
import torch

from pruning_utils import data as data_mod
from pruning_utils.data import DatasetNotAvailableError, Download, download_dataset, get_loaders


# ---- tiny archives in torchvision's on-disk formats ------------------------------------------


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def make_cifar10_archive(folder, per_batch=20, n_test=20):
    """A cifar-10-python.tar.gz with the real layout (pickled dicts) but only a few images."""
    rng = np.random.default_rng(0)
    path = folder / "cifar-10-python.tar.gz"

    def batch(n):
        return {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": [i % 10 for i in range(n)]}

    members = {f"data_batch_{i}": batch(per_batch) for i in range(1, 6)}
    members["test_batch"] = batch(n_test)
    members["batches.meta"] = {"label_names": [f"class{i}" for i in range(10)]}
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in members.items():
            blob = pickle.dumps(obj)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


def make_fashion_mnist_gzips(folder, n_train=100, n_test=10):
    """The four idx gzip files of FashionMNIST with a handful of 28x28 images."""
    rng = np.random.default_rng(0)
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for kind, header, payload in (
            ("images-idx3-ubyte", struct.pack(">IIII", 2051, n, 28, 28), images.tobytes()),
            ("labels-idx1-ubyte", struct.pack(">II", 2049, n), labels.tobytes()),
        ):
            path = folder / f"{split}-{kind}.gz"
            path.write_bytes(gzip.compress(header + payload))
            out[path.name] = path
    return out


@pytest.fixture
def served_cifar(tmp_path, monkeypatch):
    """Point the cifar10 spec at a generated archive served through a file:// URL."""
    server = tmp_path / "server"
    server.mkdir()
    archive = make_cifar10_archive(server)
    spec = data_mod.DATASETS["cifar10"]
    fake = dataclasses.replace(
        spec, downloads=(Download(archive.as_uri(), "cifar-10-python.tar.gz", _md5(archive)),)
    )
    monkeypatch.setitem(data_mod.DATASETS, "cifar10", fake)
    return archive


# ---- digits ----------------------------------------------------------------------------------


def test_digits_loaders_shapes_split_and_normalisation():
    loaders = get_loaders("quick")
    sizes = [len(l.dataset) for l in loaders]
    assert sum(sizes) == 1797  # every sample of sklearn's digits, each in exactly one split
    assert sizes == [1257, 180, 360]
    x, y = next(iter(loaders.train))
    assert x.shape == (64, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    train_x = loaders.train.dataset.tensors[0]
    assert abs(float(train_x.mean())) < 1e-5 and abs(float(train_x.std()) - 1) < 1e-2


def test_digits_split_and_order_are_seeded():
    a, b = get_loaders("quick"), get_loaders("quick")
    assert torch.equal(a.test.dataset.tensors[0], b.test.dataset.tensors[0])
    xa, _ = next(iter(a.train))
    xb, _ = next(iter(b.train))
    assert torch.equal(xa, xb)
    c = get_loaders("quick", seed=1)
    assert not torch.equal(a.test.dataset.tensors[1], c.test.dataset.tensors[1])


def test_digits_splits_do_not_overlap():
    loaders = get_loaders("quick")
    rows = [set(map(bytes, l.dataset.tensors[0].numpy().reshape(len(l.dataset), -1))) for l in loaders]
    # a handful of digits images are exact duplicates in sklearn's set, so allow a few shared rows
    assert len(rows[0] & rows[2]) <= 3 and len(rows[0] & rows[1]) <= 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"dataset": "imagenet"}, r"dataset must be one of \['digits', 'cifar10', 'cifar10_smoke', 'fashion_mnist'\]; got 'imagenet'"),
        ({"batch_size": 0}, "batch_size must be an int >= 1"),
        ({"val_fraction": 0.9}, "val_fraction"),
    ],
)
def test_bad_loader_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        get_loaders("quick", **kwargs)


# ---- downloads (no network: generated archives behind file:// URLs) ----------------------------


def test_cifar10_downloads_verifies_and_loads(tmp_path, served_cifar):
    root = tmp_path / "data"
    loaders = get_loaders("full", root=root, batch_size=8, num_workers=0)
    assert len(loaders.train.dataset) + len(loaders.val.dataset) == 100
    assert len(loaders.test.dataset) == 20
    x, y = next(iter(loaders.train))
    assert x.shape == (8, 3, 32, 32) and int(y.max()) < 10
    assert (root / "cifar-10-batches-py" / "test_batch").exists()
    assert not list(root.glob("*.part"))
    # A second call finds the files and does not download again, even with the server gone.
    served_cifar.unlink()
    assert len(get_loaders("full", root=root, batch_size=8, num_workers=0).test.dataset) == 20


def test_cifar10_archive_placed_by_hand_needs_no_network(tmp_path, served_cifar, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    (root / served_cifar.name).write_bytes(served_cifar.read_bytes())
    served_cifar.unlink()  # "offline": the URL no longer answers
    download_dataset("cifar10", root)
    assert (root / "cifar-10-batches-py" / "data_batch_5").exists()


def test_offline_error_lists_missing_files_and_how_to_get_them(tmp_path, served_cifar):
    served_cifar.unlink()
    root = tmp_path / "data"
    with pytest.raises(DatasetNotAvailableError) as err:
        get_loaders("full", root=root)
    text = str(err.value)
    assert "data_batch_1" in text and "test_batch" in text
    assert str(root) in text
    assert "python -m pruning_utils.data cifar10" in text
    assert not (root / "cifar-10-batches-py").exists()
    assert not list(root.glob("*.part")) and not list(root.glob(".*.part"))


def test_download_false_never_touches_the_network(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("network used")

    monkeypatch.setattr(data_mod.urllib.request, "urlopen", no_network)
    with pytest.raises(DatasetNotAvailableError, match="download=False"):
        download_dataset("fashion_mnist", tmp_path, download=False)


def test_checksum_mismatch_is_refused_and_leaves_nothing(tmp_path, served_cifar, monkeypatch):
    spec = data_mod.DATASETS["cifar10"]
    bad = dataclasses.replace(spec, downloads=(dataclasses.replace(spec.downloads[0], md5="0" * 32),))
    monkeypatch.setitem(data_mod.DATASETS, "cifar10", bad)
    root = tmp_path / "data"
    with pytest.raises(DatasetNotAvailableError, match="checksum mismatch"):
        download_dataset("cifar10", root)
    assert [p.name for p in root.iterdir()] == []


def test_fashion_mnist_downloads_and_loads(tmp_path, monkeypatch):
    server = tmp_path / "server"
    server.mkdir()
    files = make_fashion_mnist_gzips(server)
    spec = data_mod.DATASETS["fashion_mnist"]
    fake = dataclasses.replace(
        spec, downloads=tuple(Download(files[d.filename].as_uri(), d.filename, _md5(files[d.filename])) for d in spec.downloads)
    )
    monkeypatch.setitem(data_mod.DATASETS, "fashion_mnist", fake)
    loaders = get_loaders("full", dataset="fashion_mnist", root=tmp_path / "data", batch_size=4, num_workers=0)
    assert len(loaders.train.dataset) + len(loaders.val.dataset) == 100
    x, _ = next(iter(loaders.test))
    assert x.shape == (4, 1, 28, 28)


def test_cli_downloads(tmp_path, served_cifar, capsys):
    assert data_mod.main(["cifar10", "--root", str(tmp_path / "d")]) == 0
    assert "cifar10 is ready" in capsys.readouterr().out
