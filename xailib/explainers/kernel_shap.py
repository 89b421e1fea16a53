"""KernelSHAP (Lundberg & Lee 2017) as the optimal explanation for the Shapley-kernel law
(the book's *The paper in brief*, § Theory, Prop. 2.4; ``notebooks/theory.ipynb``)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .._utils import DEFAULT_BATCH_SIZE, check_positive, forward_batched
from ._base import Explainer, check_choice, check_seed
from .._utils import function_differences
from ._regression import add_ridge_, binary_moments, cholesky_factor, constrained_solve
from .optimal import _GramCache

__all__ = ["KernelSHAP"]

EFFICIENCY = ("shift", "constrained", "none")

#: KernelSHAP keeps its masks across calls up to this many mask entries (bytes, as bool)
MAX_KEPT_MASKS = 2 ** 28


class KernelSHAP(_GramCache, Explainer):
    """KernelSHAP: Shapley values ``φ_g`` of the game ``v(S) = f(x_S, baseline elsewhere)``
    over the feature groups (global explanation, ``kind="global"``).

    Masks ``z`` (1 = group set to the baseline) are drawn from
    ``perturbations.ShapleyKernel(baseline, groups)`` (``P(|z| = k) ∝ (G−1)/(k(G−k))``, uniform
    subsets), with paired (antithetic) sampling ``z, 1 − z`` by default; the weights are
    absorbed by the sampling, so the Shapley values solve the **efficiency-constrained** least squares

    ``min_φ E[(zᵀφ − Δf)²]  s.t.  Σ_g φ_g = f(x) − f(b)``,  ``Δf = f(x) − f(x with z at b)``:

    ``φ = M⁻¹c − M⁻¹1 (1ᵀM⁻¹c − (f(x) − f(b))) / (1ᵀM⁻¹1)``, ``M = E[zzᵀ] + λ Id``,
    ``c = E[z Δf]``. The masks are shared across instances, so ``M`` is factored once; the factor
    and the masks themselves (as bool, up to ``MAX_KEPT_MASKS`` entries) are kept across calls
    with the same seed, so an explanation at a sensitivity neighbour costs its forward passes
    only. As ``n_samples → ∞`` this is the exact Shapley value (Prop. 2.4; regressing on removed
    rather than kept groups gives the dual game, which has the same Shapley values). For a linear
    model ``φ = w ⊙ (x − b)`` (summed over each group).
    ``A = ShapleyKernel.spread(φ)`` spreads each group's value evenly over its features.
    ``efficiency`` chooses how ``Σ_g φ_g = f(x) − f(b)`` is imposed. ``"constrained"``: the
    constrained solve above with the *sampled* ``M``. ``"shift"`` (default): the plain least
    squares ``φ̂ = M⁻¹c`` shifted uniformly, ``φ = φ̂ − 1 (1ᵀφ̂ − (f(x) − f(b)))/G``. Under the
    Shapley-kernel law the population ``M = E[zzᵀ]`` is ``a Id + b(11ᵀ − Id)``, so ``M⁻¹1 ∝ 1`` and
    both forms have the same limit (the Shapley values); the shift avoids the noisy sampled
    direction ``M⁻¹1`` and, on the MNIST CNN at 20,000 samples, cuts the error by about a quarter
    (the constrained form needs ~1.5× the samples for the same error). ``"none"``: ``φ̂`` itself
    (not efficient, biased by a uniform shift). ``paired=False`` draws independent masks (error
    ≈ 2.3× at equal cost). Measurements: ``benchmarks/README.md``, section *Estimators at equal error*.
    """

    kind = "global"
    stochastic = True
    name = "SHAP"

    def __init__(self, model, n_samples: int = 4096, baseline: float = 0.0, seed: int = 0, groups=None,
                 ridge: float = 1e-8, paired: bool = True, batch_size: int = DEFAULT_BATCH_SIZE,
                 cache: bool = True, name: Optional[str] = None, efficiency: str = "shift"):
        from ..perturbations import ShapleyKernel

        super().__init__(model, batch_size, name)
        self.n_samples = check_positive(n_samples, "n_samples", integer=True)
        self.perturbation = ShapleyKernel(baseline=baseline, groups=groups)
        self.baseline = self.perturbation.baseline
        self.groups = groups
        if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or not ridge >= 0:
            raise ValueError(f"`ridge` must be a number >= 0, got {ridge!r}")
        self.ridge = float(ridge)
        self.paired = bool(paired)
        self.efficiency = check_choice(efficiency, "efficiency", EFFICIENCY)
        self.seed = check_seed(seed)
        self.cache = bool(cache)

    def _params(self) -> str:
        return f"n_samples={self.n_samples}, baseline={self.baseline}, groups={self.groups!r}, seed={self.seed}"

    def _attribute(self, x: Tensor, target, generator, inst) -> Tensor:
        law = self.perturbation
        F = tuple(x.shape[1:])
        G = law.n_groups(F)
        fx = forward_batched(self.model, x, target, self.batch_size)
        ones = torch.ones(1, G, dtype=x.dtype, device=x.device)
        total = function_differences(self.model, x, target, None, self.batch_size, fx, law=law, draws=ones).squeeze(1)
        total = total.to(torch.float64)
        if G == 1:
            return law.spread(total.view(-1, 1).to(x.dtype), F)
        key = (F, self.n_samples, str(x.device), self._seed_key, self.ridge, self.paired)
        L = self._cached_factor(key)
        # the masks too are the same at every call with this seed: kept (as bool) unless too large
        n_base = -(-self.n_samples // 2) if self.paired else self.n_samples
        mkey = (F, self.n_samples, str(x.device), self._seed_key, self.paired) if n_base * G <= MAX_KEPT_MASKS else None
        masks = self._cache_get("masks", mkey)
        record = masks is None and mkey is not None and self.cache and self._seed_key is not None
        draws = masks if masks is not None else ([] if record else None)
        M, c = binary_moments(self.model, law, x, target, self.n_samples, generator, self.batch_size, fx,
                              need_gram=L is None, paired=self.paired, desc=self.name, draws=draws)
        if record:
            self._cache_put("masks", mkey, draws)
        if L is None:
            add_ridge_(M, self.ridge)
            L = cholesky_factor(M, "E[zzᵀ]")
            del M
            self._store_factor(key, L)
        if self.efficiency == "constrained":
            phi = constrained_solve(L, c, total)
        else:
            phi = torch.cholesky_solve(c.t(), L).t()  # plain least squares φ = M⁻¹c
            if self.efficiency == "shift":  # Σφ = f(x) − f(b) by a uniform shift (population M⁻¹1 ∝ 1)
                phi = phi - ((phi.sum(1) - total) / G).view(-1, 1)
        return law.spread(phi.to(x.dtype), F)
