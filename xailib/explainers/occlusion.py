"""Occlusion-1: the optimal explanation for "set one feature to the baseline" (the book's
*The paper in brief*, § Perturbation laws, Prop. 2.3; ``notebooks/theory.ipynb``)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .._utils import DEFAULT_BATCH_SIZE, chunks, forward_batched, function_differences
from ._base import BaselineLike, Explainer, check_baseline, resolve_baseline

__all__ = ["Occlusion"]


class Occlusion(Explainer):
    """Occlusion-1 as a local explanation (Prop. 2.3):

    ``Φᵢ = (f(x) − f(x with xᵢ = bᵢ)) / (xᵢ − bᵢ)``  (b = ``baseline``).

    It is the infidelity-optimal explanation for ``I = (xᵢ − bᵢ) eᵢ`` with ``i`` uniform; its
    global form ``(x − b) ⊙ Φ`` is the plain occlusion difference ``f(x) − f(x_{i←b})``.
    **Where** ``xᵢ = bᵢ`` the perturbation is zero, so every ``Φᵢ`` is optimal: 0 is returned
    there (no division by an arbitrary 1, a trap of published code), and no model evaluation is
    spent on features equal to the baseline in every instance.

    Vectorised: the ``N·d`` occluded copies are built and evaluated in chunks of at most
    ``batch_size`` (memory ``O(batch_size·d)``).

    Group (superpixel) occlusion, global form: ``Optimal(model, SingleFeature(baseline, groups=s),
    n_samples=k·G)`` (stratified draws make it exact: ``E[zzᵀ] = Id/G``).
    """

    kind = "local"
    stochastic = False
    name = "Occlusion"

    def __init__(self, model, baseline: BaselineLike = 0.0, batch_size: int = DEFAULT_BATCH_SIZE,
                 name: Optional[str] = None):
        super().__init__(model, batch_size, name)
        self.baseline = check_baseline(baseline)

    def _params(self) -> str:
        b = self.baseline if isinstance(self.baseline, float) else f"tensor{tuple(self.baseline.shape)}"
        return f"baseline={b}"

    def _check(self, x, target) -> None:
        resolve_baseline(self.baseline, x)

    def _attribute(self, x: Tensor, target, generator, inst) -> Tensor:
        n = x.shape[0]
        b = resolve_baseline(self.baseline, x, inst)
        diff = (x - b).reshape(n, -1)
        d = diff.shape[1]
        active = (diff != 0).any(0).nonzero().squeeze(1)
        phi = torch.zeros_like(diff)
        if active.numel() == 0:
            return phi.view_as(x)
        fx = forward_batched(self.model, x, target, self.batch_size)
        k = max(1, self.batch_size // n)
        for sl in chunks(active.numel(), k):
            idx = active[sl]
            m = idx.numel()
            I = diff.new_zeros(n, m, d)
            cols = torch.arange(m, device=x.device)
            I[:, cols, idx] = diff[:, idx]
            df = function_differences(self.model, x, target, I.view(n, m, *x.shape[1:]), self.batch_size, fx)
            dv = diff[:, idx]
            nz = dv != 0
            phi[:, idx] = torch.where(nz, df / torch.where(nz, dv, torch.ones_like(dv)), torch.zeros_like(df))
        return phi.view_as(x)
