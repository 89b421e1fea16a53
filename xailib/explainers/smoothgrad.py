"""SmoothGrad (Smilkov et al. 2017) of any explainer (the book's *The paper in brief*, § Explainers
and § Theory, Theorems 4.1/4.2; ``notebooks/mnist.ipynb``, ``notebooks/toy.ipynb``)."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from .._utils import DEFAULT_BATCH_SIZE, check_positive, chunks, make_generator, rand_like_draw
from ._base import Explainer, add_rows, check_choice, check_seed

__all__ = ["SmoothGrad"]

NOISES = ("uniform_linf", "gaussian")


SAMPLINGS = ("joint", "nested")


def _depth(explainer) -> int:
    """How many SmoothGrad levels lie *below* ``explainer`` (0 for a SmoothGrad of a plain explainer)."""
    d, b = 0, getattr(explainer, "base", None)
    while isinstance(b, SmoothGrad):
        d, b = d + 1, b.base
    return d


class SmoothGrad(Explainer):
    """SmoothGrad of a base explainer: ``Φ_SG(x) = E_δ[Φ_base(x + δ)] ≈ (1/n) Σ_k Φ_base(x + δ_k)``.

    ``noise="uniform_linf"`` (the paper's choice): δ uniform in the L∞ ball of radius
    ``radius`` (0.2 in the paper, 200 samples); ``noise="gaussian"``: δ ~ N(0, radius²·Id).
    ``radius`` must be a finite number > 0.
    The noise ``(n_samples, *F)`` is drawn **once per call** (fresh generator seeded with
    ``seed`` unless the call passes ``generator``: common random numbers across calls) in ``x``'s
    dtype, and shared by all instances, so results do not depend on the batch composition
    or on ``batch_size`` (the number of noisy inputs handed to the base explainer at once).
    ``kind``/``name`` follow the base (``"Grad-SG"``). Works for any base explainer (Gradient,
    IntegratedGradients, GuidedBackprop, Occlusion, …); a stochastic base is called with its own
    seed for every noisy input. Theorem 4.1: SmoothGrad is never more sensitive than the average
    sensitivity of its base (the book's *The paper in brief*, § Explainers and § Theory).

    **Path methods (joint sampling).** When the base is an integral along a path,
    ``Φ_base(x) = ∫₀¹ g(x, t) dt`` (it has ``is_path_method = True`` and a
    ``path_integrand(x, t, target, inst)`` method, as :class:`IntegratedGradients`), the estimand
    is one integral over the pair (noise, path position),

    ``Φ_SG(x) = E_δ ∫₀¹ g(x + δ, t) dt ≈ (1/n) Σ_k g(x + δ_k, t_k)``,
    ``t_k = (k + u_k)/n``, ``u_k ~ U[0, 1)``,

    with ``sampling="joint"`` (the default): one gradient per pair, the positions stratified
    (one in each of ``n`` equal strata of [0, 1]; the δ_k are i.i.d., so pairing stratum k with δ_k
    needs no shuffle).
    It is **unbiased for the exact path integral** (no quadrature error: the base's ``steps`` and
    ``method`` are not used) and costs ``n_samples`` gradients per explanation, against
    ``n_samples × steps`` for ``sampling="nested"`` (each noisy input gets the base's full
    quadrature, the form of the paper). The δ_k and u_k are drawn once per call from the same
    seeded generator and shared by all instances, so the common random numbers at ``x`` and at
    every sensitivity neighbour are kept. Choosing ``n_samples``: the joint estimator's error
    falls as ``1/√n`` and, on the MNIST CNN with the paper's radius 0.2, reaches the error of
    the paper's nested 200 × 50 with about 200–400 joint samples (``benchmarks/README.md``,
    section *Estimators at equal error*); use the nested form's ``n_samples × steps`` only to
    reproduce the paper's exact procedure. For a base that is not a path method both
    samplings are the same estimator.

    **Nested SmoothGrad.** With default seeds, each level draws from its own random stream
    (named after its depth), so ``SmoothGrad(SmoothGrad(g))`` uses independent noise at the two
    levels.
    """

    stochastic = True

    def __init__(self, base: Explainer, radius: float = 0.2, n_samples: int = 200, noise: str = "uniform_linf",
                 seed: int = 0, batch_size: int = DEFAULT_BATCH_SIZE, name: Optional[str] = None,
                 sampling: str = "joint"):
        if not isinstance(base, Explainer):
            raise TypeError(f"`base` must be an xailib Explainer (e.g. Gradient(model)), got {type(base).__name__}")
        super().__init__(base.model, batch_size, name)
        self.base = base
        self.radius = float(check_positive(radius, "radius"))
        if not math.isfinite(self.radius):
            raise ValueError(f"`radius` must be a finite number > 0, got {radius!r}")
        self.n_samples = check_positive(n_samples, "n_samples", integer=True)
        self.noise = check_choice(noise, "noise", NOISES)
        self.seed = check_seed(seed)
        self.sampling = check_choice(sampling, "sampling", SAMPLINGS)
        self.kind = base.kind
        self.needs_gradients = base.needs_gradients
        self._depth = _depth(self)
        if name is None:
            self.name = f"{base.name}-SG"

    @property
    def joint(self) -> bool:
        """Whether the call samples (noise, path position) jointly (a path-method base and ``sampling="joint"``)."""
        return self.sampling == "joint" and bool(getattr(self.base, "is_path_method", False))

    @property
    def gradients_per_explanation(self) -> Optional[int]:
        """Base evaluations per explained instance, ``n_samples`` (joint) or ``n_samples × steps`` (nested IG)."""
        if self.joint:
            return self.n_samples
        steps = getattr(self.base, "steps", None)
        return self.n_samples * steps if steps is not None else None

    def _params(self) -> str:
        return (f"{self.base!r}, radius={self.radius}, n_samples={self.n_samples}, noise={self.noise!r}, "
                f"seed={self.seed}, sampling={self.sampling!r}")

    def _check(self, x, target) -> None:
        self.base._check(x, target)

    def _make_generator(self, generator, device):
        if self._depth and not isinstance(generator, torch.Generator):
            # independent noise at each level of a nested SmoothGrad (issue 12): one stream per depth
            seed = self.seed if generator is None else generator
            return make_generator(seed, device, f"{type(self).__name__}/{self._depth}")
        return super()._make_generator(generator, device)

    def draw_noise(self, feature_shape, generator: torch.Generator, device, dtype) -> Tensor:
        """The noise ``δ`` of shape ``(n_samples, *F)``, in ``dtype`` on ``device``."""
        shape = (self.n_samples, *feature_shape)
        if self.noise == "gaussian":
            return self.radius * rand_like_draw(shape, generator, device, dtype, "randn")
        return self.radius * (2.0 * rand_like_draw(shape, generator, device, dtype, "rand") - 1.0)

    def draw_positions(self, generator: torch.Generator, device, dtype) -> Tensor:
        """Stratified path positions ``t_k = (k + u_k)/n`` (shape ``(n_samples,)``), drawn after the noise."""
        s = self.n_samples
        u = rand_like_draw((s,), generator, device, dtype, "rand")
        return (torch.arange(s, device=device, dtype=dtype) + u) / s

    def _attribute(self, x: Tensor, target, generator, inst) -> Tensor:
        n, s = x.shape[0], self.n_samples
        delta = self.draw_noise(x.shape[1:], generator, x.device, x.dtype)
        joint = self.joint
        if joint:
            tpos = self.draw_positions(generator, x.device, x.dtype)
        out = torch.zeros_like(x)
        base_inst = torch.arange(n, device=x.device) if inst is None else inst
        for sl in chunks(n * s, self.batch_size):
            r = torch.arange(sl.start, sl.stop, device=x.device)
            i, k = r // s, r % s
            t = None if target is None else target[i]
            if joint:
                phi = self.base.path_integrand(x[i] + delta[k], tpos[k], t, base_inst[i])
            else:
                gen = self.base._make_generator(None, x.device)
                phi = self.base._attribute(x[i] + delta[k], t, gen, base_inst[i])
            add_rows(out, sl.start, phi, s)
        return out / s
