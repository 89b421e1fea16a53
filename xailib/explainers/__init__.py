"""Explainers: one class per concept, one common call (``CONTRIBUTING.md``).

``explainer(x, target=None, *, generator=None) -> Tensor`` shaped like ``x``; attributes
``kind`` ("local" Φ / "global" A = (x − baseline) ⊙ Φ), ``stochastic``, ``name``.

* :class:`Gradient` (Grad), :class:`IntegratedGradients` (IG), :class:`GuidedBackprop` (GBP),
  :class:`SmoothGrad` (X-SG of any of them), :class:`Occlusion` (occlusion-1, Prop. 2.3);
* :class:`KernelSHAP` (Prop. 2.4) and :class:`Optimal` (Prop. 2.1; NB and Square);
* :func:`to_global`, :func:`to_local`.
"""
from ._base import Explainer, to_global, to_local
from .gradient import Gradient
from .guided_backprop import GuidedBackprop
from .integrated_gradients import IntegratedGradients
from .kernel_shap import KernelSHAP
from .occlusion import Occlusion
from .optimal import Optimal
from .smoothgrad import SmoothGrad

__all__ = [
    "Explainer",
    "Gradient",
    "IntegratedGradients",
    "GuidedBackprop",
    "SmoothGrad",
    "Occlusion",
    "KernelSHAP",
    "Optimal",
    "to_global",
    "to_local",
]
