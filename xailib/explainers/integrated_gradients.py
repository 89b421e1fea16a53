"""Integrated Gradients (Sundararajan et al. 2017) as a local explanation (the book's
*The paper in brief*, § Theory, Prop. 2.1; ``notebooks/theory.ipynb``)."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor

from .._utils import DEFAULT_BATCH_SIZE, check_positive, chunks
from ._base import (
    BaselineLike,
    Explainer,
    add_rows,
    batched_gradients,
    check_baseline,
    check_choice,
    resolve_baseline,
)

__all__ = ["IntegratedGradients", "integration_nodes"]

METHODS = ("riemann_trapezoid", "gausslegendre", "riemann_left", "riemann_right", "riemann_middle")


def integration_nodes(steps: int, method: str = "riemann_trapezoid"):
    """Nodes ``α_k ∈ [0, 1]`` and weights ``w_k`` (``Σ w_k = 1``) for ``∫₀¹ g(α) dα ≈ Σ w_k g(α_k)``.

    ``riemann_trapezoid``: ``α = linspace(0, 1, steps)``, half weights at both ends
    (``steps ≥ 2``); ``gausslegendre``: Gauss–Legendre nodes mapped to [0, 1] (exact for
    polynomials of degree ``2·steps − 1``); ``riemann_left|right|middle``: ``α_k = (k + c)/steps``.
    Returned as float64 numpy arrays.
    """
    check_positive(steps, "steps", integer=True)
    check_choice(method, "method", METHODS)
    if method == "riemann_trapezoid":
        if steps < 2:
            raise ValueError(f"`steps` must be >= 2 for method='riemann_trapezoid', got {steps}")
        a = np.linspace(0.0, 1.0, steps)
        w = np.full(steps, 1.0 / (steps - 1))
        w[0] = w[-1] = 0.5 / (steps - 1)
    elif method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        a, w = (nodes + 1.0) / 2.0, weights / 2.0
    else:
        c = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[method]
        a = (np.arange(steps) + c) / steps
        w = np.full(steps, 1.0 / steps)
    return a, w


class IntegratedGradients(Explainer):
    """Integrated Gradients. Local form (default): the **average path gradient**

    ``Φ(f, x) = ∫₀¹ ∇f(b + α (x − b)) dα``  (b = ``baseline``),

    so that ``(x − b) ⊙ Φ`` is the usual IG attribution, which ``multiply_by_inputs=True``
    returns (``kind="global"``). Completeness: ``Σᵢ (xᵢ − bᵢ) Φᵢ = f(x) − f(b)`` up to the
    quadrature error. Φ is the quantity ``IG(f, x, I)`` of Prop. 2.1 for ``I = x − b``: it is
    the optimal explanation for the one-point law ``I = x − b`` (the book's *The paper in brief*,
    § Theory, Prop. 2.1; ``notebooks/theory.ipynb``).

    Parameters: ``baseline`` (number, tensor broadcastable to ``F``, or ``(N, *F)``), ``steps``
    quadrature nodes, ``method`` one of ``riemann_trapezoid`` (default), ``gausslegendre``,
    ``riemann_left|right|middle`` (see ``integration_nodes`` in this module). ``N·steps`` gradients are
    computed in chunks of ``batch_size`` rows, built lazily (memory ``O(batch_size·d)``).

    IG is a *path method* (``is_path_method = True``; :meth:`path_integrand` gives the integrand):
    ``SmoothGrad(IntegratedGradients(model))`` then samples (noise, path position) jointly, one
    gradient per pair, unbiased for the exact integral; ``steps``/``method`` are used only by
    IG itself and by ``SmoothGrad(..., sampling="nested")``.
    """

    stochastic = False
    needs_gradients = True

    def __init__(self, model, baseline: BaselineLike = 0.0, steps: int = 50, multiply_by_inputs: bool = False,
                 method: str = "riemann_trapezoid", batch_size: int = DEFAULT_BATCH_SIZE,
                 name: Optional[str] = None):
        super().__init__(model, batch_size, name)
        self.baseline = check_baseline(baseline)
        self.steps = check_positive(steps, "steps", integer=True)
        self.method = check_choice(method, "method", METHODS)
        if not isinstance(multiply_by_inputs, bool):
            raise TypeError(f"`multiply_by_inputs` must be a bool, got {multiply_by_inputs!r}")
        self.multiply_by_inputs = multiply_by_inputs
        self._alphas, self._weights = integration_nodes(steps, method)
        self.kind = "global" if multiply_by_inputs else "local"
        if name is None:
            self.name = "IG"

    def _check(self, x, target) -> None:
        resolve_baseline(self.baseline, x)
        super()._check(x, target)

    def _params(self) -> str:
        b = self.baseline if isinstance(self.baseline, float) else f"tensor{tuple(self.baseline.shape)}"
        return f"baseline={b}, steps={self.steps}, method={self.method!r}, multiply_by_inputs={self.multiply_by_inputs}"

    # -- path-method protocol (used by SmoothGrad's joint sampling) -------------------------
    #: ``Φ(x) = ∫₀¹ g(x, α) dα`` with ``g`` given by :meth:`path_integrand`
    is_path_method = True

    def path_integrand(self, x: Tensor, alpha: Tensor, target: Optional[Tensor] = None,
                       inst: Optional[Tensor] = None) -> Tensor:
        """The integrand ``g(x, α)`` of ``Φ(x) = ∫₀¹ g(x, α) dα``, one position ``α`` per row.

        ``g(x, α) = ∇f(b + α (x − b))``, times ``(x − b)`` when ``multiply_by_inputs``. ``x`` is a
        validated stack of rows ``(B, *F)``, ``alpha`` a tensor ``(B,)`` in [0, 1], ``target``
        ``None`` or ``(B,)``, ``inst`` the instance index of each row (per-instance baselines).
        One gradient per row, in chunks of ``batch_size``. :class:`SmoothGrad` uses it to sample
        the pair (noise, path position) jointly (see its docstring).
        """
        bx = resolve_baseline(self.baseline, x, inst)
        shape1 = (-1,) + (1,) * (x.dim() - 1)
        diff = x - bx
        g = batched_gradients(self.model, bx + alpha.to(x.dtype).view(shape1) * diff, target, self.batch_size)
        return diff * g if self.multiply_by_inputs else g

    def _attribute(self, x: Tensor, target, generator, inst) -> Tensor:
        n, s = x.shape[0], self.steps
        bx = resolve_baseline(self.baseline, x, inst)
        alphas = torch.as_tensor(self._alphas, dtype=x.dtype, device=x.device)
        weights = torch.as_tensor(self._weights, dtype=x.dtype, device=x.device)
        shape1 = (-1,) + (1,) * (x.dim() - 1)
        diff = x - bx
        out = torch.zeros_like(x)
        for sl in chunks(n * s, self.batch_size):
            r = torch.arange(sl.start, sl.stop, device=x.device)
            i, k = r // s, r % s
            b_i = bx[i] if bx.dim() == x.dim() else bx
            pts = b_i + alphas[k].view(shape1) * diff[i]
            t = None if target is None else target[i]
            g = batched_gradients(self.model, pts, t, self.batch_size)
            add_rows(out, sl.start, g * weights[k].view(shape1), s)
        if self.multiply_by_inputs:
            out = diff * out
        return out
