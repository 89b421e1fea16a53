"""Infidelity-optimal explanations (Prop. 2.1 and the Appendix B.2 form; the book's *The paper
in brief*, § Perturbation laws and optimal explanations; chapters ``notebooks/theory``,
``notebooks/mnist``): NB = ``Optimal(NoisyBaseline())``, Square = ``Optimal(SquareRemoval())``."""
from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import Tensor

from .._utils import DEFAULT_BATCH_SIZE, check_positive, forward_batched, function_differences, model_state_key
from ..perturbations import ShapleyKernel, exact_support
from ._base import Explainer, check_seed
from ._regression import (
    CV_BUDGET,
    add_ridge_,
    binary_moments,
    check_grid,
    cholesky_factor,
    constrained_solve,
    continuous_optimal,
    continuous_mode,
    continuous_optimal_cv,
    draw_blocks,
    n_draws,
    ridge_cv,
    shared_point_moments,
)

#: the fixed relative ridge (``ridge=`` a number; also the fallback of ``ridge="cv"``)
DEFAULT_RIDGE = 1e-6
#: relative ridge of exact sums under ``ridge="cv"`` (numerical only: the exact M has no sampling noise)
EXACT_RIDGE = 1e-12
#: ``ridge="cv"`` cross-validates only while ``n_samples < CV_MAX_N_OVER_D · d`` (unknowns ``d``)
CV_MAX_N_OVER_D = 5

__all__ = ["Optimal"]

#: continuous laws need a d×d system per instance: refused above this many features
MAX_CONTINUOUS_FEATURES = 16384

_NAMES = {"NoisyBaseline": "NB", "SquareRemoval": "Square"}


class _GramCache:
    """Single-entry caches, one per slot, of what a fit computes from its draws alone, not from
    ``x``: the Cholesky factor of ``E[zzᵀ] + ridge`` (binary laws, slot ``"factor"``), the model's
    outputs and moments at draws that do not depend on ``x`` (``"moments"``), KernelSHAP's masks
    (``"masks"``). Each entry is kept with a key (law, feature shape, count, device, seed, ...) and
    reused only when the key matches, so repeated calls with the same seed (sensitivity at many
    ``y``) reuse it; draws from an explicit ``torch.Generator`` are never cached."""

    def _make_generator(self, generator, device):
        if isinstance(generator, torch.Generator):
            self._seed_key = None  # draws not reproducible from a key: no caching
        else:
            self._seed_key = self.seed if generator is None else generator
        return super()._make_generator(generator, device)

    def _cache_get(self, slot: str, key):
        if key is None or not self.cache or self._seed_key is None:
            return None
        entry = self.__dict__.get("_store", {}).get(slot)
        return entry[1] if entry is not None and entry[0] == key else None

    def _cache_put(self, slot: str, key, value) -> None:
        if key is not None and self.cache and self._seed_key is not None:
            self.__dict__.setdefault("_store", {})[slot] = (key, value)

    def _cached_factor(self, key):
        return self._cache_get("factor", key)

    def _store_factor(self, key, L) -> None:
        self._cache_put("factor", key, L)

    def clear_cache(self) -> None:
        """Drop every cached entry (the factor can be large: G×G float64)."""
        self.__dict__["_store"] = {}


class Optimal(_GramCache, Explainer):
    """The explanation with the lowest infidelity under ``perturbation`` (Prop. 2.1, function-
    difference form; the book's *The paper in brief*, § Perturbation laws and optimal explanations).

    **Exact sums** (``exact="auto"``, default): a binary law with a small finite support
    (SquareRemoval on 28×28 with sides 1–10: 5,605 squares; SingleFeature: ``G`` atoms;
    ShapleyKernel for ``G ≤ 13``; threshold ``xailib.perturbations.EXACT_MAX_ATOMS``) is
    summed over its atoms: ``M = Σ_k p_k z_k z_kᵀ``, ``c = Σ_k p_k z_k Δf_k``, ``g = M⁻¹ c``,
    one forward pass per atom and instance, no Monte-Carlo error, the same for every seed
    (``n_samples`` and ``seed`` are then unused; the ridge is ``1e-12`` under ``ridge="cv"``,
    numerical only, or the number given). ``exact=True`` forces it (``ValueError`` for a
    law without finite support), ``exact=False`` samples.

    **Sampled fits** (``n_samples`` draws shared by all instances):

    * continuous laws (NoisyBaseline, Gaussian, Infinitesimal, Fixed(I)), ``kind="local"``:
      ``Φ* = (E_n[IIᵀ] + λ Id)⁻¹ E_n[I Δf]``, ``Δf = f(x) − f(x − I)``, ``λ = ρ · tr E_n[IIᵀ] / d``;
      under NoisyBaseline the model runs once per draw for all instances (``x − I`` is shared),
      and, with ``cache=True`` and the same seed, once per draw for all calls: the draws' moments
      are kept (``E[x₀x₀ᵀ]``, ``E[x₀]``, the outputs' means, for every class) until the seed, the law,
      the shape or the model's parameters change, so the explanation at every sensitivity
      neighbour costs one forward pass and a ``d × d`` solve (the cross-validated fit keeps the
      ``n × d`` draws and their outputs instead).
      Refused for ``d > 16384``.
    * binary laws, ``kind="global"`` (B.2 trick): ``g = (E_n[zzᵀ] + λ Id)⁻¹ E_n[z Δf]`` over the
      ``G`` groups, ``A = perturbation.spread(g)`` (``A = (x − b) ⊙ Φ*``).

    ``ridge="cv"`` (default): ``ρ`` is chosen **per instance** from ``ridge_grid`` (default
    ``10⁻⁶ … 10²``, 17 values) by closed-form leave-one-out cross-validation, whose criterion is
    the out-of-sample infidelity itself (``xailib.explainers._regression.ridge_cv``): at small
    ``n/d`` a plain least-squares fit of ``d`` unknowns is mostly estimation noise, and the ridge
    that predicts fresh draws best is the one that minimises what the explanation is judged by.
    Per instance rather than shared because the right amount of shrinkage depends on how far
    from linear ``f`` is around each ``x``, and because a shared ``ρ`` would make an instance's
    explanation depend on which other instances share its batch. The design's eigendecomposition
    is shared by all instances when ``I`` does not depend on ``x`` (binary masks, Gaussian); it is
    per instance under NoisyBaseline (``I = x − x₀``). The chosen values are in ``.cv_ridge_``.
    Assumptions: draws iid (leave-one-out is then an unbiased estimate of the error on a fresh
    draw); the ``n × d`` design is stored (float64) and each design costs ``O(n d²)``. Where
    cross-validation cannot pay (``n ≥ 5 d``: measured, it gains nothing there; a design over
    1 GiB; the ShapleyKernel law, whose constrained fit is not cross-validated), ``ridge="cv"``
    falls back to the fixed ridge ``1e-6``. A number ``ridge=ρ`` gives the fixed-ridge fit (the estimator used before,
    ``ρ = 1e-6``); for binary laws ``E_n[zzᵀ]`` is then factored once and cached across calls
    with the same seed. Sampled binary fits whose draws never excite some group warn (that
    group's value is only the ridge's zero).

    **ShapleyKernel** (Prop. 2.4): the Shapley kernel's weight is infinite on the empty and the
    full coalition; as in Lundberg & Lee's Theorem 2, that is the efficiency constraint
    ``Σ_g g = f(x) − f(b)``, which the fit imposes (``_regression.constrained_solve``):
    ``Optimal(model, ShapleyKernel())`` is the Shapley value (exactly for ``G ≤ 13``).

    NB = ``Optimal(NoisyBaseline())``, Square = ``Optimal(SquareRemoval())`` (``name`` "NB",
    "Square"); ``Optimal(SingleFeature())`` is global occlusion-1 (Prop. 2.3),
    ``Optimal(Infinitesimal())`` tends to the gradient (Prop. 2.2). Draws are made in fixed-size
    blocks: results do not depend on ``batch_size`` or on the batch composition.
    """

    stochastic = True

    def __init__(self, model, perturbation, n_samples: int = 20000, ridge="cv", seed: int = 0,
                 batch_size: int = DEFAULT_BATCH_SIZE, cache: bool = True, name: Optional[str] = None,
                 exact="auto", ridge_grid=None):
        from ..perturbations import Perturbation

        if not isinstance(perturbation, Perturbation):
            raise TypeError(
                f"`perturbation` must be an xailib.perturbations law (e.g. NoisyBaseline()), got {type(perturbation).__name__}"
            )
        super().__init__(model, batch_size, name)
        self.perturbation = perturbation
        self.n_samples = check_positive(n_samples, "n_samples", integer=True)
        if ridge != "cv" and (isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or not ridge >= 0):
            raise ValueError(f"`ridge` must be 'cv' or a number >= 0, got {ridge!r}")
        self.ridge = ridge if ridge == "cv" else float(ridge)
        self.ridge_grid = check_grid(ridge_grid)
        if exact not in ("auto", True, False):
            raise ValueError(f"`exact` must be 'auto', True or False, got {exact!r}")
        self.exact = exact
        self.seed = check_seed(seed)
        self.cache = bool(cache)
        self.kind = "global" if perturbation.binary else "local"
        #: the law imposes efficiency (the Shapley kernel's infinite weights)
        self.efficiency = isinstance(perturbation, ShapleyKernel)
        #: baseline of the global form ``A = (x − baseline) ⊙ Φ``
        self.baseline = perturbation.baseline if perturbation.binary else 0.0
        self.cv_ridge_ = None
        self._mode = None  # testing hook: force the continuous algebra ("general")
        if name is None:
            cls = type(perturbation).__name__
            self.name = _NAMES.get(cls, f"Opt-{cls}")

    def _params(self) -> str:
        return (f"{self.perturbation!r}, n_samples={self.n_samples}, ridge={self.ridge!r}, seed={self.seed}, "
                f"exact={self.exact!r}")

    def _check(self, x, target) -> None:
        d = x[0].numel()
        dual = self._use_cv(n_draws(self.perturbation, self.n_samples), d)
        if not self.perturbation.binary and d > MAX_CONTINUOUS_FEATURES and not dual:
            raise ValueError(
                f"Optimal under a continuous law needs a d×d system per instance; d = {d} > "
                f"{MAX_CONTINUOUS_FEATURES}, and the dual ridge (ridge='cv' with n_samples·d·8 bytes ≤ "
                f"{CV_BUDGET:,}: an n×n system instead) does not apply to n_samples={self.n_samples}: use fewer "
                "samples, or a binary law with superpixels (e.g. SquareRemoval(groups=2))"
            )
        if self.exact is True and self.perturbation.support_size(tuple(x.shape[1:])) is None:
            self.perturbation.support(tuple(x.shape[1:]))  # ValueError: no finite support

    def _use_cv(self, n: int, d: int) -> bool:
        return (self.ridge == "cv" and self.perturbation.n_fixed is None and n < CV_MAX_N_OVER_D * d
                and n * d * 8 <= CV_BUDGET)

    def _fixed_ridge(self) -> float:
        return DEFAULT_RIDGE if self.ridge == "cv" else self.ridge

    def _shared_moments(self, law, x: Tensor, n: int, generator, keep_draws: bool):
        """The law's :class:`~xailib.explainers._regression.SharedPointMoments`, reused across calls
        whose draws are the same (same seed, law, shape, count, device and dtype) and whose model
        has not changed (same parameters and buffers, unmodified in place: their version counters)."""
        key = None
        if self.cache and self._seed_key is not None and isinstance(self.model, torch.nn.Module):
            key = (id(self.model), model_state_key(self.model), id(law), repr(law), tuple(x.shape[1:]), n, str(x.device), x.dtype,
                   self._seed_key, keep_draws)
            mom = self._cache_get("moments", key)
            if mom is not None:
                return mom
        mom = shared_point_moments(self.model, law, x, n, generator, self.batch_size, keep_draws=keep_draws)
        self._cache_put("moments", key, mom)
        return mom

    def _solve(self, L, c, x, target, F):
        if not self.efficiency:
            return torch.cholesky_solve(c.t(), L).t()
        law = self.perturbation
        ones = torch.ones(1, law.n_groups(F), dtype=x.dtype, device=x.device)
        total = function_differences(self.model, x, target, None, self.batch_size, law=law, draws=ones).squeeze(1)
        return constrained_solve(L, c, total)

    def _attribute(self, x: Tensor, target, generator, inst) -> Tensor:
        law = self.perturbation
        F = tuple(x.shape[1:])
        self.cv_ridge_ = None
        if not law.binary:
            n = n_draws(law, self.n_samples)
            use_cv = self._use_cv(n, x[0].numel())
            moments = None
            if (self._mode or continuous_mode(law)) == "shared_point":
                moments = self._shared_moments(law, x, n, generator, keep_draws=use_cv)
            if use_cv:
                phi, self.cv_ridge_ = continuous_optimal_cv(self.model, law, x, target, n, generator,
                                                            self.batch_size, self.ridge_grid, self._mode, moments)
            else:
                phi = continuous_optimal(self.model, law, x, target, n, generator, self.batch_size,
                                         self._fixed_ridge(), self._mode, moments)
            return phi.to(x.dtype).view_as(x)
        fx = forward_batched(self.model, x, target, self.batch_size)
        sup = exact_support(law, F, self.exact, x.device, x.dtype)
        if sup is not None:
            Z, p = sup
            D = function_differences(self.model, x, target, None, self.batch_size, fx, law=law, draws=Z,
                                     desc=self.name).to(torch.float64)
            Z64 = Z.to(torch.float64)
            c = (D * p.view(1, -1)) @ Z64
            key = ("exact", id(law), F, str(x.device), self.ridge)
            L = self._cached_factor(key)
            if L is None:
                M = Z64.t() @ (Z64 * p.view(-1, 1))
                _warn_unexcited(M.diagonal(), Z.shape[0])
                add_ridge_(M, EXACT_RIDGE if self.ridge == "cv" else self.ridge)
                L = cholesky_factor(M, "E[zzᵀ]")
                self._store_factor(key, L)
            g = self._solve(L, c, x, target, F)
            return law.spread(g.to(x.dtype), F)
        n = n_draws(law, self.n_samples)
        G = law.n_groups(F)
        if not self.efficiency and self._use_cv(n, G):
            Zs, Ds = [], []
            for _, z in draw_blocks(law, F, n, generator, x.device, x.dtype):
                Zs.append(z.to(torch.float64))
                Ds.append(function_differences(self.model, x, target, None, self.batch_size, fx, law=law, draws=z))
            Z = torch.cat(Zs)
            _warn_unexcited(Z.sum(0), n)
            g, self.cv_ridge_, _ = ridge_cv(Z, torch.cat(Ds, 1), self.ridge_grid)
            return law.spread(g.to(x.dtype), F)
        ridge = self._fixed_ridge()
        key = (id(law), F, n, str(x.device), self._seed_key, ridge)
        L = self._cached_factor(key)
        M, c = binary_moments(self.model, law, x, target, n, generator, self.batch_size, fx,
                              need_gram=L is None, desc=self.name)
        if L is None:
            _warn_unexcited(M.diagonal(), n)
            add_ridge_(M, ridge)
            L = cholesky_factor(M, "E[zzᵀ]")
            del M
            self._store_factor(key, L)
        g = self._solve(L, c, x, target, F)
        return law.spread(g.to(x.dtype), F)


def _warn_unexcited(diag: Tensor, n: int) -> None:
    k = int((diag == 0).sum())
    if k:
        warnings.warn(
            f"{k} of {diag.numel()} feature groups never appear in the n_samples={n} draws: their "
            "values are the ridge's 0, not estimates (increase `n_samples`, or use exact=True for a "
            "law with finite support)",
            stacklevel=4,
        )
