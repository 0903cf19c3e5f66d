"""Data loaders for every profile: offline digits, and CIFAR-10 / FashionMNIST on demand.

``get_loaders(profile)`` returns train/val/test loaders with a fixed, seeded split.

* ``digits`` (quick profile): scikit-learn's bundled 8x8 handwritten digits, real data that needs no
  download, as 1x8x8 tensors normalised with the training split's mean and std.
* ``cifar10`` and ``fashion_mnist`` (full profile): read through torchvision from the data directory.
  When files are missing they are downloaded (archive checksum verified, written atomically); when that
  is impossible (offline) a :class:`DatasetNotAvailableError` says which files are missing, where to
  put them and how to download them.

Run ``python -m pruning_utils.data cifar10`` on a machine with internet to fetch a dataset ahead of time.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from .checks import check_int
from .config import Profile, data_dir, get_profile

__all__ = [
    "DATASETS",
    "DatasetNotAvailableError",
    "Loaders",
    "download_dataset",
    "get_loaders",
]


class DatasetNotAvailableError(FileNotFoundError):
    """A dataset's files are missing and could not be downloaded."""


@dataclass(frozen=True)
class Download:
    url: str
    filename: str
    md5: str


@dataclass(frozen=True)
class DatasetSpec:
    """What a torchvision dataset needs on disk and where its archives come from."""

    name: str
    subdir: str  # folder under the data directory that torchvision reads
    files: tuple[str, ...]  # files (relative to subdir) that must exist after extraction
    downloads: tuple[Download, ...]
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


_FMNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

DATASETS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec(
        name="cifar10",
        subdir="cifar-10-batches-py",
        files=tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta"),
        downloads=(
            Download(
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "cifar-10-python.tar.gz",
                "c58f30108f718f92721af3b95e74349a",
            ),
        ),
        input_shape=(3, 32, 32),
        num_classes=10,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
    ),
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist",
        subdir="FashionMNIST/raw",
        files=(
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ),
        downloads=(
            Download(_FMNIST_URL + "train-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            Download(_FMNIST_URL + "train-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
            Download(_FMNIST_URL + "t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
            Download(_FMNIST_URL + "t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
        ),
        input_shape=(1, 28, 28),
        num_classes=10,
        mean=(0.2860,),
        std=(0.3530,),
    ),
}

# Everything get_loaders accepts; digits needs no spec because sklearn ships it.
DATASET_NAMES = ("digits", *DATASETS)


class Loaders(NamedTuple):
    train: DataLoader
    val: DataLoader
    test: DataLoader


# ---------------------------------------------------------------------------------------------
# Downloading
# ---------------------------------------------------------------------------------------------


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(item: Download, dest_dir: Path) -> Path:
    """Download ``item`` into ``dest_dir`` atomically and check its md5."""
    target = dest_dir / item.filename
    if target.exists() and _md5(target) == item.md5:
        return target
    fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=f".{item.filename}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(item.url, timeout=60) as response:
            shutil.copyfileobj(response, out)
        got = _md5(Path(tmp))
        if got != item.md5:
            raise OSError(f"checksum mismatch for {item.url}: expected md5 {item.md5}, got {got}")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _extract(archive: Path, spec: DatasetSpec, root: Path) -> None:
    """Unpack a downloaded archive so that the files torchvision reads appear under ``root``."""
    from torchvision.datasets.utils import extract_archive

    if archive.name.endswith(".gz") and not archive.name.endswith(".tar.gz"):
        # FashionMNIST: one gzip per file, unpacked into the raw folder.
        extract_archive(str(archive), str(root / spec.subdir))
    else:
        extract_archive(str(archive), str(root))


def _missing_files(spec: DatasetSpec, root: Path) -> list[Path]:
    return [root / spec.subdir / f for f in spec.files if not (root / spec.subdir / f).exists()]


def _not_available(spec: DatasetSpec, root: Path, missing: list[Path], reason: str) -> DatasetNotAvailableError:
    lines = [
        f"dataset {spec.name!r} is not available in {root} ({reason}).",
        "Missing files:",
        *[f"  {p}" for p in missing],
        "To get them, do one of:",
        f"  * on a machine with internet: python -m pruning_utils.data {spec.name} --root {root}",
        f"  * download {', '.join(d.url for d in spec.downloads)}",
        f"    put the file(s) in {root / spec.subdir if len(spec.downloads) > 1 else root} and run the same command;",
        "  * or set PRUNING_DATA_DIR to a folder that already holds the dataset.",
    ]
    return DatasetNotAvailableError("\n".join(lines))


def download_dataset(name: str, root: str | Path | None = None, download: bool = True) -> Path:
    """Make sure the files of dataset ``name`` are under ``root``; download them if allowed.

    Returns ``root``. Archives already placed in ``root`` (or ``root/<subdir>`` for per-file gzips)
    are verified and extracted without the network.
    """
    spec = _spec(name)
    root = Path(root).expanduser() if root is not None else data_dir()
    missing = _missing_files(spec, root)
    if not missing:
        return root
    root.mkdir(parents=True, exist_ok=True)
    for item in spec.downloads:
        # A per-file gzip lives next to what it unpacks to; a tarball lives in root.
        where = root / spec.subdir if len(spec.downloads) > 1 else root
        where.mkdir(parents=True, exist_ok=True)
        archive = where / item.filename
        have_archive = archive.exists() and _md5(archive) == item.md5
        if not have_archive:
            if not download:
                raise _not_available(spec, root, missing, "download=False")
            try:
                archive = _fetch(item, where)
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                raise _not_available(spec, root, missing, f"download of {item.url} failed: {exc}") from exc
        _extract(archive, spec, root)
    still_missing = _missing_files(spec, root)
    if still_missing:
        raise _not_available(spec, root, still_missing, "the archives did not contain them")
    return root


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {list(DATASET_NAMES)}; got {name!r}")
    return DATASETS[name]


# ---------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------


def _split_indices(labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int):
    """Stratified, seeded train/val/test index split."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    rest, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=labels)
    val_share = val_fraction / (1.0 - test_fraction)
    train, val = train_test_split(rest, test_size=val_share, random_state=seed, stratify=labels[rest])
    return np.sort(train), np.sort(val), np.sort(test)


def digits_datasets(seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2):
    """sklearn's 1,797 8x8 digits as (train, val, test) TensorDatasets of shape 1x8x8."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float32) / 16.0
    y = bunch.target.astype(np.int64)
    train, val, test = _split_indices(y, val_fraction, test_fraction, seed)
    mean, std = x[train].mean(), x[train].std()
    x = (x - mean) / std

    def subset(idx):
        return TensorDataset(torch.from_numpy(x[idx]).unsqueeze(1), torch.from_numpy(y[idx]))

    return subset(train), subset(val), subset(test)


def _torchvision_datasets(name: str, root: Path, download: bool, seed: int, val_fraction: float, augment: bool):
    """Train (augmented), val (held out from train, not augmented) and test datasets."""
    import torchvision
    from torchvision import transforms as T

    spec = _spec(name)
    download_dataset(name, root, download=download)
    normalize = [T.ToTensor(), T.Normalize(spec.mean, spec.std)]
    size = spec.input_shape[-1]
    if augment and name == "cifar10":
        train_tf = T.Compose([T.RandomCrop(size, padding=4), T.RandomHorizontalFlip(), *normalize])
    elif augment:
        train_tf = T.Compose([T.RandomCrop(size, padding=2), *normalize])
    else:
        train_tf = T.Compose(normalize)
    eval_tf = T.Compose(normalize)

    cls = _checked_cifar10_class() if name == "cifar10" else torchvision.datasets.FashionMNIST
    train_aug = cls(str(root), train=True, transform=train_tf, download=False)
    train_plain = cls(str(root), train=True, transform=eval_tf, download=False)
    test = cls(str(root), train=False, transform=eval_tf, download=False)
    labels = np.asarray(train_plain.targets)
    from sklearn.model_selection import train_test_split

    train_idx, val_idx = train_test_split(
        np.arange(len(labels)), test_size=val_fraction, random_state=seed, stratify=labels
    )
    return Subset(train_aug, np.sort(train_idx).tolist()), Subset(train_plain, np.sort(val_idx).tolist()), test


def _checked_cifar10_class():
    import torchvision

    base = torchvision.datasets.CIFAR10

    class CheckedCIFAR10(base):
        """CIFAR-10 whose files were verified once, by the md5 of the archive they came from.

        torchvision re-hashes every batch file on each construction; with ``md5=None`` it only checks
        that they exist (which also lets the tests use small generated batches).
        """

        train_list = [[name, None] for name, _ in base.train_list]
        test_list = [[name, None] for name, _ in base.test_list]
        meta = {**base.meta, "md5": None}

    return CheckedCIFAR10


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def get_loaders(
    profile: str | Profile | None = None,
    *,
    dataset: str | None = None,
    batch_size: int | None = None,
    root: str | Path | None = None,
    download: bool = True,
    augment: bool = True,
    seed: int | None = None,
    val_fraction: float = 0.1,
    num_workers: int | None = None,
) -> Loaders:
    """Train/val/test loaders for the profile's dataset (or ``dataset`` if given).

    The split and the training shuffle order are seeded, so two calls give the same batches.

    >>> loaders = get_loaders("quick")
    >>> next(iter(loaders.train))[0].shape
    torch.Size([64, 1, 8, 8])
    """
    prof = get_profile(profile)
    name = dataset if dataset is not None else prof.dataset
    if name not in DATASET_NAMES:
        raise ValueError(f"dataset must be one of {list(DATASET_NAMES)}; got {name!r}")
    batch_size = prof.batch_size if batch_size is None else batch_size
    batch_size = check_int(batch_size, "batch_size", 1)
    if not 0.0 < val_fraction < 0.5:
        raise ValueError(f"val_fraction must be in (0, 0.5); got {val_fraction!r}")
    seed = prof.seed if seed is None else seed
    workers = prof.num_workers if num_workers is None else num_workers

    if name == "digits":
        train, val, test = digits_datasets(seed=seed, val_fraction=val_fraction)
    else:
        root = Path(root).expanduser() if root is not None else data_dir()
        train, val, test = _torchvision_datasets(name, root, download, seed, val_fraction, augment)

    def loader(ds: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=workers,
            generator=torch.Generator().manual_seed(seed) if shuffle else None,
            worker_init_fn=_seed_worker if workers else None,
            persistent_workers=bool(workers),
            pin_memory=torch.cuda.is_available(),
        )

    return Loaders(loader(train, True), loader(val, False), loader(test, False))


def input_shape(dataset: str) -> tuple[int, int, int]:
    """Shape of one sample of ``dataset`` (channels, height, width)."""
    if dataset == "digits":
        return (1, 8, 8)
    return _spec(dataset).input_shape


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Download a course dataset ahead of time.")
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("--root", default=None, help="data directory (default: $PRUNING_DATA_DIR or the cache)")
    args = parser.parse_args(argv)
    where = download_dataset(args.dataset, args.root, download=True)
    print(f"{args.dataset} is ready in {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
