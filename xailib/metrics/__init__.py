"""Infidelity, max-sensitivity, robust infidelity and the paired evaluation table.

Definitions (the book's *The paper in brief*, § Metrics; chapters ``notebooks/toy.ipynb``, ``notebooks/theory.ipynb``,
``notebooks/mnist.ipynb``, ``notebooks/mnist_robust.ipynb``):

* ``INFD(Φ, f, x) = E_I[(IᵀΦ − Δf)²]``, ``Δf = f(x) − f(x − I)``; optimal scaling replaces Φ by
  ``β*Φ``, ``β* = E[(IᵀΦ)Δf] / E[(IᵀΦ)²]``; then ``INFD = E[Δf²](1 − ρ²)``, in the units of f²;
* ``rINFD = INFD / E[Δf²]`` (``relative=True``): the fraction of the response left unexplained,
  scale-free (a temperature ``c·f`` multiplies INFD by c² and leaves rINFD unchanged), so the
  one to compare across models;
* ``SENS_max(Φ, f, x, r) = max_{‖y − x‖∞ ≤ r} ‖Φ(y) − Φ(x)‖₂`` (Monte Carlo over y);
* ``RINFD(Φ, f, x, r) = max_{‖u‖∞ ≤ r} INFD(Φ, f, x + u)`` (Def. C.1).

Every metric draws its randomness from ``generator`` (None → seed 0, an int, or a
``torch.Generator``), in the input's dtype and on its device, once for all instances, so the
results do not depend on ``batch_size``.
"""
from __future__ import annotations

from ._common import (  # noqa: F401  (re-exported)
    InfidelityDetails,
    SENS_FORMS,
    SENS_NORMALIZATIONS,
)
from .sensitivity import (  # noqa: F401  (re-exported)
    _uniform_ball,
    sensitivity_max,
    sensitivity_noise_floor,
    sensitivity_growth,
    sensitivity_conventions,
)
from .infidelity import (  # noqa: F401  (re-exported)
    infidelity,
    _infd_value_and_grad,
    robust_infidelity,
)
from .evaluation import (  # noqa: F401  (re-exported)
    Evaluation,
    per_instance,
    evaluate,
)

__all__ = [
    "infidelity",
    "InfidelityDetails",
    "sensitivity_max",
    "sensitivity_noise_floor",
    "sensitivity_growth",
    "sensitivity_conventions",
    "robust_infidelity",
    "evaluate",
    "Evaluation",
    "per_instance",
]
