"""Infidelity-optimal explanations (NOTES.md, Prop. 2.1 and "Appendix B.2 trick";
``notebooks/theory.ipynb``, ``notebooks/mnist.ipynb``): NB = ``Optimal(NoisyBaseline())``,
Square = ``Optimal(SquareRemoval())``."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .._utils import DEFAULT_BATCH_SIZE, check_positive, forward_batched
from ._base import Explainer, check_seed
from ._regression import (
    add_ridge_,
    binary_moments,
    cholesky_factor,
    continuous_optimal,
    n_draws,
)

__all__ = ["Optimal"]

#: continuous laws need a d×d system per instance: refused above this many features
MAX_CONTINUOUS_FEATURES = 16384

_NAMES = {"NoisyBaseline": "NB", "SquareRemoval": "Square"}


class _GramCache:
    """Single-entry cache of the Cholesky factor of ``E[zzᵀ] + ridge`` (binary laws): it does not
    depend on ``x``, only on the law, the feature shape, ``n`` and the seed (NOTES.md, "Monte-Carlo
    hygiene"), so repeated calls with the same seed (sensitivity at many ``y``) reuse it."""

    def _make_generator(self, generator, device):
        if isinstance(generator, torch.Generator):
            self._seed_key = None  # draws not reproducible from a key: no caching
        else:
            self._seed_key = self.seed if generator is None else generator
        return super()._make_generator(generator, device)

    def _cached_factor(self, key):
        if self.cache and self._seed_key is not None and getattr(self, "_factor_key", None) == key:
            return self._factor
        return None

    def _store_factor(self, key, L) -> None:
        if self.cache and self._seed_key is not None:
            self._factor_key, self._factor = key, L

    def clear_cache(self) -> None:
        """Drop the cached factor (it can be large: G×G float64)."""
        self._factor_key, self._factor = None, None


class Optimal(_GramCache, Explainer):
    """The explanation with the lowest infidelity under ``perturbation`` (Prop. 2.1, function-
    difference form), estimated by Monte Carlo with ``n_samples`` draws:

    * **continuous laws** (NoisyBaseline, Gaussian, Infinitesimal, Fixed(I)), ``kind="local"``:
      ``Φ* = (E[IIᵀ] + λ Id)⁻¹ E[I Δf]``, ``Δf = f(x) − f(x − I)``, ``λ = ridge · tr E[IIᵀ] / d``,
      one ``d × d`` Cholesky solve per instance (a single one when ``I`` does not depend on
      ``x``); under NoisyBaseline the model runs once per draw for all instances (``x − I = x₀``
      is shared). Refused for ``d > 16384``.
    * **binary laws** (SquareRemoval, SingleFeature, ShapleyKernel, Fixed(masks)),
      ``kind="global"`` (B.2 trick): ``g = (E[zzᵀ] + λ Id)⁻¹ E[z Δf]`` over the ``G`` groups;
      ``E[zzᵀ]`` does not depend on ``x``: it is accumulated once (sparse products for sparse
      masks), factored **once** (Cholesky) for all instances and cached across calls with the
      same seed; ``A = perturbation.spread(g)`` (``A = (x − b) ⊙ Φ*`` at pixel resolution).

    NB = ``Optimal(NoisyBaseline())``, Square = ``Optimal(SquareRemoval())`` (``name`` "NB",
    "Square"); ``Optimal(SingleFeature())`` is global occlusion-1 (Prop. 2.3),
    ``Optimal(Infinitesimal())`` tends to the gradient (Prop. 2.2). Draws are shared by all
    instances and made in fixed-size blocks: results do not depend on ``batch_size`` or on the
    batch composition. Memory: ``G²`` float64 twice at the peak (ImageNet, 2×2 superpixels:
    G = 12544, 2.5 GB) plus ``batch_size`` perturbed inputs.
    """

    stochastic = True

    def __init__(self, model, perturbation, n_samples: int = 20000, ridge: float = 1e-6, seed: int = 0,
                 batch_size: int = DEFAULT_BATCH_SIZE, cache: bool = True, name: Optional[str] = None):
        from ..perturbations import Perturbation

        if not isinstance(perturbation, Perturbation):
            raise TypeError(
                f"`perturbation` must be an xailib.perturbations law (e.g. NoisyBaseline()), got {type(perturbation).__name__}"
            )
        super().__init__(model, batch_size, name)
        self.perturbation = perturbation
        self.n_samples = check_positive(n_samples, "n_samples", integer=True)
        if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or not ridge >= 0:
            raise ValueError(f"`ridge` must be a number >= 0, got {ridge!r}")
        self.ridge = float(ridge)
        self.seed = check_seed(seed)
        self.cache = bool(cache)
        self.kind = "global" if perturbation.binary else "local"
        #: baseline of the global form ``A = (x − baseline) ⊙ Φ``
        self.baseline = perturbation.baseline if perturbation.binary else 0.0
        self._mode = None  # testing hook: force the continuous algebra ("general")
        if name is None:
            cls = type(perturbation).__name__
            self.name = _NAMES.get(cls, f"Opt-{cls}")

    def _params(self) -> str:
        return f"{self.perturbation!r}, n_samples={self.n_samples}, ridge={self.ridge}, seed={self.seed}"

    def _check(self, x, target) -> None:
        if not self.perturbation.binary and x[0].numel() > MAX_CONTINUOUS_FEATURES:
            raise ValueError(
                f"Optimal under a continuous law needs a d×d system per instance; d = {x[0].numel()} > "
                f"{MAX_CONTINUOUS_FEATURES}: use a binary law with superpixels (e.g. SquareRemoval(groups=2))"
            )

    def _attribute(self, x: Tensor, target, generator, inst) -> Tensor:
        law = self.perturbation
        n = n_draws(law, self.n_samples)
        F = tuple(x.shape[1:])
        if not law.binary:
            phi = continuous_optimal(self.model, law, x, target, n, generator, self.batch_size, self.ridge, self._mode)
            return phi.to(x.dtype).view_as(x)
        fx = forward_batched(self.model, x, target, self.batch_size)
        key = (id(law), F, n, str(x.device), self._seed_key, self.ridge)
        L = self._cached_factor(key)
        M, c = binary_moments(self.model, law, x, target, n, generator, self.batch_size, fx,
                              need_gram=L is None, desc=self.name)
        if L is None:
            add_ridge_(M, self.ridge)
            L = cholesky_factor(M, "E[zzᵀ]")
            del M
            self._store_factor(key, L)
        g = torch.cholesky_solve(c.t(), L).t()
        return law.spread(g.to(x.dtype), F)
