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

__all__ = ["WeightsUnavailable", "imagenet_model", "imagenet_weights_file", "imagenet_architecture"]


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
