"""xailib: faithfulness (infidelity) and stability (max-sensitivity) of explanations.

A reproduction of Yeh et al., *On the (In)fidelity and Sensitivity of Explanations*
(NeurIPS 2019). Submodules:

* :mod:`xailib.perturbations`: perturbation laws shared by metrics and optimal explanations;
* :mod:`xailib.explainers`: Grad, IG, Guided Backprop, SmoothGrad, Occlusion, KernelSHAP, Optimal;
* :mod:`xailib.metrics`: infidelity, max-sensitivity, robust infidelity, ``evaluate``;
* :mod:`xailib.theory`: the paper's propositions and theorems as numerical checks;
* :mod:`xailib.data`, :mod:`xailib.models`, :mod:`xailib.pretrained`: offline-first datasets, the chapters' models and torchvision's ImageNet classifiers;
* :mod:`xailib.compiled`: :func:`xailib.accelerate <xailib.compiled.accelerate>`, the model's forward
  passes without gradients compiled;
* :mod:`xailib.toy`: the two-dimensional toy function of appendix A.5;
* :mod:`xailib.paper`, :mod:`xailib.claims`, :mod:`xailib.experiments`: the paper's printed tables,
  the paired checks of its claims, the MNIST chapters' settings and explainer factories.
"""
from importlib import import_module

from ._utils import make_generator
from .config import device, pick, profile, setup

__version__ = "0.1.0"


_SUBMODULES = ("perturbations", "explainers", "metrics", "theory", "data", "models", "toy", "attacks", "paper",
               "claims", "experiments", "plots", "captum", "training", "cli", "runfiles", "sanity", "groundtruth", "pretrained",
               "compiled")


def __getattr__(name):
    if name in _SUBMODULES:
        return import_module(f".{name}", __name__)
    if name == "evaluate":
        return import_module(".metrics", __name__).evaluate
    if name == "accelerate":
        return import_module(".compiled", __name__).accelerate
    raise AttributeError(f"module 'xailib' has no attribute {name!r}")


__all__ = ["setup", "profile", "pick", "device", "make_generator", "evaluate", "accelerate", *_SUBMODULES]
