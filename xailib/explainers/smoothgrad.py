"""SmoothGrad (Smilkov et al. 2017) of any explainer (NOTES.md, "Explainers in the experiments",
Theorems 4.1/4.2; ``notebooks/mnist.ipynb``, ``notebooks/toy.ipynb``)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .._utils import DEFAULT_BATCH_SIZE, check_positive, chunks, rand_like_draw
from ._base import Explainer, add_rows, check_choice, check_seed

__all__ = ["SmoothGrad"]

NOISES = ("uniform_linf", "gaussian")


class SmoothGrad(Explainer):
    """SmoothGrad of a base explainer: ``Φ_SG(x) = E_δ[Φ_base(x + δ)] ≈ (1/n) Σ_k Φ_base(x + δ_k)``.

    ``noise="uniform_linf"`` (the paper's choice): δ uniform in the L∞ ball of radius
    ``radius`` (0.2 in the paper, 200 samples); ``noise="gaussian"``: δ ~ N(0, radius²·Id).
    The noise ``(n_samples, *F)`` is drawn **once per call** (fresh generator seeded with
    ``seed`` unless the call passes ``generator``: common random numbers across calls) in ``x``'s
    dtype, and shared by all instances, so results do not depend on the batch composition
    or on ``batch_size`` (the number of noisy inputs handed to the base explainer at once).
    ``kind``/``name`` follow the base (``"Grad-SG"``). Works for any base explainer (Gradient,
    IntegratedGradients, GuidedBackprop, Occlusion, …); a stochastic base is called with its own
    seed for every noisy input. Theorem 4.1: SmoothGrad is never more sensitive than the average
    sensitivity of its base.
    """

    stochastic = True

    def __init__(self, base: Explainer, radius: float = 0.2, n_samples: int = 200, noise: str = "uniform_linf",
                 seed: int = 0, batch_size: int = DEFAULT_BATCH_SIZE, name: Optional[str] = None):
        if not isinstance(base, Explainer):
            raise TypeError(f"`base` must be an xailib Explainer (e.g. Gradient(model)), got {type(base).__name__}")
        super().__init__(base.model, batch_size, name)
        self.base = base
        self.radius = float(check_positive(radius, "radius"))
        self.n_samples = check_positive(n_samples, "n_samples", integer=True)
        self.noise = check_choice(noise, "noise", NOISES)
        self.seed = check_seed(seed)
        self.kind = base.kind
        self.needs_gradients = base.needs_gradients
        if name is None:
            self.name = f"{base.name}-SG"

    def _params(self) -> str:
        return f"{self.base!r}, radius={self.radius}, n_samples={self.n_samples}, noise={self.noise!r}, seed={self.seed}"

    def _check(self, x, target) -> None:
        self.base._check(x, target)

    def draw_noise(self, feature_shape, generator: torch.Generator, device, dtype) -> Tensor:
        """The noise ``δ`` of shape ``(n_samples, *F)``, in ``dtype`` on ``device``."""
        shape = (self.n_samples, *feature_shape)
        if self.noise == "gaussian":
            return self.radius * rand_like_draw(shape, generator, device, dtype, "randn")
        return self.radius * (2.0 * rand_like_draw(shape, generator, device, dtype, "rand") - 1.0)

    def _attribute(self, x: Tensor, target, generator, inst) -> Tensor:
        n, s = x.shape[0], self.n_samples
        delta = self.draw_noise(x.shape[1:], generator, x.device, x.dtype)
        out = torch.zeros_like(x)
        base_inst = torch.arange(n, device=x.device) if inst is None else inst
        for sl in chunks(n * s, self.batch_size):
            r = torch.arange(sl.start, sl.stop, device=x.device)
            i, k = r // s, r % s
            t = None if target is None else target[i]
            gen = self.base._make_generator(None, x.device)
            phi = self.base._attribute(x[i] + delta[k], t, gen, base_inst[i])
            add_rows(out, sl.start, phi, s)
        return out / s
