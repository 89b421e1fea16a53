"""The two-dimensional toy function of the paper's appendix A.5 (Figure 5).

With ``k = ⌊|a − b|⌋`` (the floor of the distance between the two coordinates)::

    f(a, b) = max(a, b) − k / 2          if k is even,
    f(a, b) = min(a, b) + (k + 1) / 2    if k is odd.

Equivalently ``f(a, b) = (a + b)/2 + ½·dist(|a − b|, 2ℤ)``: a linear trend plus a zig-zag of
height ½ and period 2 across the diagonal. So ``f`` is continuous (the jumps of the floor
cancel: on ``|a − b| = m`` the two neighbouring branches agree because ``max − min = m``) and
piecewise linear. Almost everywhere its gradient is a unit basis vector:

* ``k`` even: ``∇f = e_argmax``, i.e. ``(1, 0)`` when ``a > b`` and ``(0, 1)`` when ``b > a``;
* ``k`` odd:  ``∇f = e_argmin``, i.e. ``(0, 1)`` when ``a > b`` and ``(1, 0)`` when ``b > a``.

The paper states "(1, 0) if k even, (0, 1) if k odd": that is the half-plane ``a > b``, where its
points lie. Values there: ``f(20, 11.9) = 16`` with gradient ``(1, 0)``, ``f(20, 12.1) = 16.1``
with gradient ``(0, 1)``, and ``f(20, 15.9) = 18``.

Autograd gives exactly this a.e. gradient: ``torch.floor`` has zero derivative, so the floor
term is a constant inside each strip, and ``torch.maximum``/``torch.minimum`` route the gradient
to the larger/smaller coordinate. (On the measure-zero sets ``a = b`` and ``|a − b| ∈ ℕ`` it
returns one one-sided value, or ``(0.5, 0.5)`` on the diagonal where max/min tie.)

Averaged over a large region the gradient is ``(0.5, 0.5)``: SmoothGrad with a big kernel
recovers it. :func:`smoothed_gradient` gives that average in closed form (no sampling) as a
reference for the Monte-Carlo SmoothGrad of :mod:`xailib.explainers`, and
:class:`ExactSmoothGrad` wraps it as an explainer, so that the metrics can separate
SmoothGrad's own sensitivity from its Monte-Carlo noise. The chapter is ``notebooks/toy.ipynb``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ._utils import check_input, check_positive
from .explainers import Explainer

__all__ = [
    "toy_function",
    "toy_gradient",
    "smoothed_gradient",
    "ToyModel",
    "ExactSmoothGrad",
    "PAPER_POINTS",
    "PAPER_VALUES",
]

#: the points the paper discusses (appendix A.5), and the function values it quotes
PAPER_POINTS = ((20.0, 11.9), (20.0, 12.1), (20.0, 15.9))
PAPER_VALUES = (16.0, 16.1, 18.0)


def _check_toy_input(x, name: str = "x") -> Tensor:
    x = check_input(x, name)
    if x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"`{name}` must have shape (N, 2) (the points (a, b)), got shape {tuple(x.shape)}")
    return x


def toy_function(x: Tensor) -> Tensor:
    """The appendix A.5 toy function ``f(a, b)`` for ``x`` of shape ``(N, 2)``; returns ``(N,)``.

    ``k = ⌊|a − b|⌋``; ``f = max(a, b) − k/2`` for even ``k``, ``min(a, b) + (k + 1)/2`` for odd
    ``k``. Differentiable with autograd; the gradient is the a.e. gradient (see the module
    docstring). Keeps ``x``'s dtype and device.
    """
    x = _check_toy_input(x)
    a, b = x[:, 0], x[:, 1]
    k = torch.floor(torch.abs(a - b))
    even = torch.remainder(k, 2) == 0
    return torch.where(even, torch.maximum(a, b) - k / 2, torch.minimum(a, b) + (k + 1) / 2)


def toy_gradient(x: Tensor) -> Tensor:
    """The closed-form a.e. gradient of :func:`toy_function`, shape ``(N, 2)``.

    ``e_argmax`` where ``⌊|a − b|⌋`` is even, ``e_argmin`` where it is odd (ties ``a = b`` count
    as ``a ≥ b``). Used to draw Figure 5 and to check the autograd gradient.
    """
    x = _check_toy_input(x)
    a, b = x[:, 0], x[:, 1]
    k = torch.floor(torch.abs(a - b))
    even = torch.remainder(k, 2) == 0
    a_larger = a >= b
    grad_on_a = even == a_larger  # even & a is the max, or odd & a is the min
    out = torch.zeros_like(x)
    out[:, 0] = grad_on_a.to(x.dtype)
    out[:, 1] = (~grad_on_a).to(x.dtype)
    return out


def _zigzag_integral(s: Tensor) -> Tensor:
    """``Z(s) = ∫₀ˢ dist(u, 2ℤ) du``: ``⌊s/2⌋`` whole periods (area 1 each) plus the partial one."""
    q = torch.floor(s / 2)
    u = s - 2 * q  # in [0, 2)
    part = torch.where(u <= 1, u * u / 2, 1 - (2 - u) ** 2 / 2)
    return q + part


def smoothed_gradient(x: Tensor, radius: float) -> Tensor:
    """The exact SmoothGrad of ``f`` under a uniform kernel on the L∞ ball of ``radius``.

    ``E_u[∇f(x + u)]``, ``u ~ U([−r, r]²)``, is the gradient of the box-smoothed ``f``. With
    ``f = (a + b)/2 + z(a − b)/2``, ``z(s) = dist(s, 2ℤ)`` (even, period 2) and
    ``Z(s) = ∫₀ˢ z``, the divergence theorem gives the closed form (``d = a − b``)::

        SG_a = ½ + [Z(d + 2r) − 2 Z(d) + Z(d − 2r)] / (8 r²),   SG_b = 1 − SG_a.

    Hence ``SG → (½, ½)`` like ``O(1/r²)``, and ``SG = (½, ½)`` exactly for every whole-number
    radius (``Z(s + 2) = Z(s) + 1``: the box spans whole zig-zag periods). The reference for
    the Monte-Carlo ``SmoothGrad(Gradient(ToyModel()), radius, noise="uniform_linf")``; returns
    ``(N, 2)`` in ``x``'s dtype (computed in float64).
    """
    x = _check_toy_input(x)
    r = float(check_positive(radius, "radius"))
    xd = x.to(torch.float64)
    d = xd[:, 0] - xd[:, 1]
    second = _zigzag_integral(d + 2 * r) - 2 * _zigzag_integral(d) + _zigzag_integral(d - 2 * r)
    ga = 0.5 + second / (8 * r * r)
    return torch.stack([ga, 1 - ga], dim=1).to(dtype=x.dtype)


class ToyModel(nn.Module):
    """``nn.Module`` wrapping :func:`toy_function`: ``(N, 2) → (N, 1)``.

    One output, so every explainer and metric works on it with ``target=None`` (or ``0``).
    No parameters; dtype and device follow the input.
    """

    def forward(self, x: Tensor) -> Tensor:
        return toy_function(x).unsqueeze(1)

    def extra_repr(self) -> str:
        return "f(a, b) of Yeh et al. 2019, appendix A.5"


class ExactSmoothGrad(Explainer):
    """SmoothGrad of the gradient of the toy function without Monte-Carlo noise.

    ``ExactSmoothGrad(model, radius)``: the limit ``n_samples → ∞`` of
    ``SmoothGrad(Gradient(model), radius, noise="uniform_linf")``, in closed form
    (:func:`smoothed_gradient`); an :class:`~xailib.explainers.Explainer` (``kind="local"``, not
    stochastic), so ``infidelity``/``sensitivity_max``/``evaluate`` accept it. ``model`` must be
    a :class:`ToyModel` (the formula is specific to it). Name ``"Grad-SG exact"``.
    """

    stochastic = False

    def __init__(self, model, radius: float = 0.2, name=None):
        if not isinstance(model, ToyModel):
            raise TypeError(f"`model` must be a xailib.toy.ToyModel, got {type(model).__name__}")
        super().__init__(model, name=name)
        self.radius = float(check_positive(radius, "radius"))
        if name is None:
            self.name = "Grad-SG exact"

    def _check(self, x, target) -> None:
        _check_toy_input(x)

    def _attribute(self, x: Tensor, target, generator, inst) -> Tensor:
        return smoothed_gradient(x, self.radius)

    def _params(self) -> str:
        return f"radius={self.radius}"
