"""Data loaders for every profile: offline digits, and CIFAR-10 / FashionMNIST on demand.

``get_loaders(profile)`` returns train/val/test loaders with a fixed, seeded split.

* ``digits`` (quick profile): scikit-learn's bundled 8x8 handwritten digits, real data that needs no
  download, as 1x8x8 tensors normalised with the training split's mean and std.
* ``cifar10`` and ``fashion_mnist`` (the gpu, paper and smoke profiles): read through torchvision from
  the data directory.
  When files are missing they are downloaded (archive checksum verified, written atomically); when that
  is impossible (offline) a :class:`DatasetNotAvailableError` says which files are missing, where to
  put them and how to download them.

A profile with ``loader="device"`` (gpu, smoke) gets :class:`DeviceLoader` s instead of DataLoaders:
each split held as one uint8 tensor on the training device, cropped, flipped and normalised there in
batch, with the same split and the same augmentation as the DataLoader path.

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

from .checks import check_flag, check_int, check_numbers, check_positive, check_real, check_tensor
from .config import Profile, data_dir, get_device, get_profile

__all__ = [
    "DATASETS",
    "DatasetNotAvailableError",
    "DeviceLoader",
    "Loaders",
    "download_dataset",
    "get_loaders",
    "write_smoke_cifar10",
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
    generated: bool = False  # written on first use by write_smoke_cifar10 instead of downloaded
    family: str = ""  # "cifar10" for the CIFAR-10 format (same reader, same augmentation)


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
        family="cifar10",
    ),
    # The smoke profile's data: CIFAR-10's on-disk format with a few hundred generated images
    # (write_smoke_cifar10), in its own folder so that it can never be mistaken for the real files.
    "cifar10_smoke": DatasetSpec(
        name="cifar10_smoke",
        subdir="cifar-10-smoke-batches-py",
        files=tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta"),
        downloads=(),
        input_shape=(3, 32, 32),
        num_classes=10,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        generated=True,
        family="cifar10",
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
    if spec.generated:
        write_smoke_cifar10(root / spec.subdir)
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


def write_smoke_cifar10(folder: str | Path, n_train: int = 500, n_test: int = 200, seed: int = 0) -> Path:
    """Write a small CIFAR-10-format dataset into ``folder`` (torchvision's ``cifar-10-batches-py`` files).

    The smoke profile's data: the real on-disk format (five pickled training batches, a test batch and
    ``batches.meta``), read by torchvision's CIFAR-10 reader like the real files, but with ``n_train``
    and ``n_test`` generated 32x32 images. Each class has its own colour, blurred by noise, so a small
    network learns something in an epoch and the notebooks' numbers are not all at chance. Written
    into a temporary folder that is renamed at the end: a reader never sees half a dataset.
    """
    import pickle

    n_train = check_int(n_train, "n_train", 10)
    n_test = check_int(n_test, "n_test", 10)
    seed = check_int(seed, "seed", 0)
    if not isinstance(folder, (str, Path)) or not str(folder).strip():
        raise TypeError(f"folder must be a path (str or pathlib.Path); got {folder!r}")
    folder = Path(folder).expanduser()
    rng = np.random.default_rng(seed)
    palette = rng.integers(40, 216, (10, 3))  # one colour per class

    def batch(n: int, offset: int) -> dict:
        labels = (np.arange(n) + offset) % 10
        rng.shuffle(labels)
        pixels = palette[labels][:, :, None] + rng.normal(0, 40, (n, 3, 1024))
        return {"data": np.clip(pixels, 0, 255).astype(np.uint8).reshape(n, 3072),
                "labels": labels.tolist(), "batch_label": "smoke"}

    sizes = [n_train // 5 + (i < n_train % 5) for i in range(5)]
    members = {f"data_batch_{i + 1}": batch(size, i) for i, size in enumerate(sizes)}
    members["test_batch"] = batch(n_test, 0)
    members["batches.meta"] = {"label_names": [f"colour {i}" for i in range(10)], "num_vis": 3072}
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        for name, obj in members.items():
            (tmp / name).write_bytes(pickle.dumps(obj))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


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
    from torchvision import transforms as T

    spec = _spec(name)
    download_dataset(name, root, download=download)
    normalize = [T.ToTensor(), T.Normalize(spec.mean, spec.std)]
    pad, flip = _augmentation(spec)
    crop = [T.RandomCrop(spec.input_shape[-1], padding=pad)] + ([T.RandomHorizontalFlip()] if flip else [])
    train_tf = T.Compose(crop + normalize if augment else normalize)
    eval_tf = T.Compose(normalize)

    cls = _reader(spec)
    train_aug = cls(str(root), train=True, transform=train_tf, download=False)
    train_plain = cls(str(root), train=True, transform=eval_tf, download=False)
    test = cls(str(root), train=False, transform=eval_tf, download=False)
    train_idx, val_idx = _train_val_indices(np.asarray(train_plain.targets), val_fraction, seed)
    return Subset(train_aug, train_idx.tolist()), Subset(train_plain, val_idx.tolist()), test


def _augmentation(spec: DatasetSpec) -> tuple[int, bool]:
    """The training augmentation of a dataset, for both loaders: crop padding, and whether to flip."""
    return (4, True) if spec.family == "cifar10" else (2, False)


def _reader(spec: DatasetSpec):
    """torchvision's dataset class that reads ``spec``'s files."""
    import torchvision

    return _checked_cifar10_class(spec.subdir) if spec.family == "cifar10" else torchvision.datasets.FashionMNIST


def _train_val_indices(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The seeded, stratified train/validation split of the training set (sorted indices), for both loaders."""
    from sklearn.model_selection import train_test_split

    train, val = train_test_split(np.arange(len(labels)), test_size=val_fraction, random_state=seed, stratify=labels)
    return np.sort(train), np.sort(val)


def _uint8_split(name: str, root: Path, download: bool):
    """The raw uint8 images (N, C, H, W) and labels of the train and test sets, read by torchvision."""
    spec = _spec(name)
    download_dataset(name, root, download=download)
    cls = _reader(spec)
    out = []
    for train in (True, False):
        ds = cls(str(root), train=train, download=False)
        images = torch.as_tensor(np.asarray(ds.data))
        images = images.permute(0, 3, 1, 2) if images.dim() == 4 else images.unsqueeze(1)  # NHWC / NHW -> NCHW
        out.append((images.contiguous(), torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)))
    return out


def _device_loaders(name, root, download, seed, val_fraction, augment, batch_size, prof, device) -> Loaders:
    """:class:`DeviceLoader` s over the same split as the DataLoaders (same indices, same augmentation)."""
    spec = _spec(name)
    (train_x, train_y), (test_x, test_y) = _uint8_split(name, root, download)
    train_idx, val_idx = map(torch.from_numpy, _train_val_indices(train_y.numpy(), val_fraction, seed))
    device = get_device(device)
    pad, flip = _augmentation(spec) if augment else (0, False)
    common = dict(batch_size=batch_size, mean=spec.mean, std=spec.std, device=device,
                  channels_last=prof.channels_last)
    return Loaders(
        DeviceLoader(train_x[train_idx], train_y[train_idx], shuffle=True, pad=pad,
                     flip=flip, generator=torch.Generator().manual_seed(seed), **common),
        DeviceLoader(train_x[val_idx], train_y[val_idx], **common),
        DeviceLoader(test_x, test_y, **common),
    )


def _checked_cifar10_class(folder: str = "cifar-10-batches-py"):
    import torchvision

    base = torchvision.datasets.CIFAR10

    class CheckedCIFAR10(base):
        """CIFAR-10 whose files were verified once, by the md5 of the archive they came from.

        torchvision re-hashes every batch file on each construction; with ``md5=None`` it only checks
        that they exist (which also lets the tests use small generated batches). ``base_folder`` is the
        folder read (the smoke profile's generated files live in their own).
        """

        base_folder = folder
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
    device=None,
) -> Loaders:
    """Train/val/test loaders for the profile's dataset (or ``dataset`` if given).

    The split and the training shuffle order are seeded, so two calls give the same batches. A profile
    with ``loader="device"`` (the GPU profile) gets :class:`DeviceLoader` s holding each split on
    ``device`` (default :func:`~pruning_utils.config.get_device`), augmented there in batch.

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

    if prof.loader == "device":
        if name == "digits":
            raise ValueError(f"profile {prof.name!r} asks for loader='device', which serves image datasets "
                             f"({', '.join(DATASETS)}); the digits use loader='torch'")
        root = Path(root).expanduser() if root is not None else data_dir()
        return _device_loaders(name, root, download, seed, val_fraction, augment, batch_size, prof, device)
    if device is not None:
        raise ValueError("device is for loader='device' profiles (the data then lives on the device); "
                         f"profile {prof.name!r} uses DataLoaders, which the training loop moves batch by batch")
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


# ---------------------------------------------------------------------------------------------
# A loader that keeps the whole dataset on the device (the GPU profile)
# ---------------------------------------------------------------------------------------------


class DeviceLoader:
    """Batches of a uint8 image tensor that lives on the training device; augmentation in batch there.

    A DataLoader decodes, crops and normalises every image on the CPU, one at a time, in worker
    processes: on Colab's two vCPUs that, not the GPU, sets the pace. Here the whole split is one
    ``uint8`` tensor ``images`` (N, C, H, W) on ``device`` (CIFAR-10's 50,000 training images are 150 MB),
    and each batch is cropped, flipped and normalised on the device in a few tensor operations:

    * ``pad`` > 0: torchvision's ``RandomCrop(size, padding=pad)`` for every image at once: zero padding
      on the uint8 image, then an offset in ``[0, 2 * pad]`` per image and axis;
    * ``flip``: ``RandomHorizontalFlip()``, each image with probability 1/2;
    * then ``ToTensor`` + ``Normalize(mean, std)``: ``(x / 255 - mean) / std`` in float32.

    Shuffling, crops and flips draw from ``generator`` (a CPU ``torch.Generator``, like a DataLoader's;
    :func:`pruning_utils.config.seed_everything` reseeds it through ``loaders=``), so a seed gives the
    same batches on any device. ``channels_last`` returns batches in that memory format. ``dataset`` is
    a TensorDataset of the stored images and labels (``len(loader.dataset)`` is the number of images).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int, mean, std,
                 shuffle: bool = False, pad: int = 0, flip: bool = False, device=None,
                 generator: torch.Generator | None = None, channels_last: bool = False):
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
            raise TypeError("images must be a uint8 tensor of shape (N, C, H, W); got "
                            + (f"{images.dtype} of shape {tuple(images.shape)}" if isinstance(images, torch.Tensor)
                               else type(images).__name__))
        check_tensor(labels, "labels")
        if labels.dim() != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise TypeError(f"labels must be a 1-d integer tensor; got {labels.dtype} of shape {tuple(labels.shape)}")
        if len(labels) != len(images) or len(images) == 0:
            raise ValueError(f"images and labels must hold the same number (> 0) of samples; got "
                             f"{len(images)} images and {len(labels)} labels")
        channels = images.shape[1]
        mean = check_numbers(mean, "mean", check_real)
        std = check_numbers(std, "std", check_positive)
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"mean and std must give one value per channel ({channels}); got {len(mean)} and {len(std)}")
        self.batch_size = check_int(batch_size, "batch_size", 1)
        self.pad = check_int(pad, "pad", 0)
        self.shuffle = check_flag(shuffle, "shuffle")
        self.flip = check_flag(flip, "flip")
        self.channels_last = check_flag(channels_last, "channels_last")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator; got {type(generator).__name__}")
        if generator is not None and generator.device.type != "cpu":
            raise ValueError(f"generator must be a CPU generator (the draws are made on the CPU); got {generator.device}")
        self.generator = generator if generator is not None else (torch.Generator() if shuffle or pad or flip else None)
        self.device = get_device(device) if device is not None else images.device
        self.images = images.to(self.device)
        self.labels = labels.to(self.device, torch.long)
        self.dataset = TensorDataset(self.images, self.labels)
        shape = (1, channels, 1, 1)
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).reshape(shape)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).reshape(shape)

    def __len__(self) -> int:
        return (len(self.images) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        n = len(self.images)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        return self._batches(order, self.batch_size)

    def _batches(self, order: torch.Tensor, batch_size: int):
        """``(inputs, labels)`` batches of the images at ``order`` (indices), ``batch_size`` at a time,
        augmented as the loader is (a DistributedSampler's share uses it too)."""
        order = order.to(self.device)  # once per epoch, not once per batch
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            yield self._batch(index), self.labels[index]

    def _batch(self, index: torch.Tensor) -> torch.Tensor:
        x = self.images[index]
        b, _, h, w = x.shape
        if self.pad:
            p = self.pad
            offsets = torch.randint(0, 2 * p + 1, (b, 2), generator=self.generator).to(self.device)
            padded = torch.nn.functional.pad(x, (p, p, p, p))  # zeros, as RandomCrop(padding=p) pads
            rows = (offsets[:, 0:1] + torch.arange(h, device=self.device))[:, None, :, None]  # (b, 1, h, 1)
            cols = (offsets[:, 1:2] + torch.arange(w, device=self.device))[:, None, None, :]  # (b, 1, 1, w)
            batch = torch.arange(b, device=self.device)[:, None, None, None]
            channel = torch.arange(x.shape[1], device=self.device)[None, :, None, None]
            x = padded[batch, channel, rows, cols]
        if self.flip:
            flips = (torch.rand(b, generator=self.generator) < 0.5).to(self.device)
            x = torch.where(flips[:, None, None, None], x.flip(-1), x)
        x = (x.float() / 255 - self._mean) / self._std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


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
