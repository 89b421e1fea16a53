"""Continuous perturbation laws: noisy baseline, Gaussian, infinitesimal (see :mod:`xailib.perturbations`)."""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from .._utils import check_positive, rand_like_draw
from ._base import (
    _one_hot_draws,
    _feature_shape,
    _check_n,
    _check_dtype,
    _gen,
    Perturbation,
)


class NoisyBaseline(Perturbation):
    """Noisy baseline (the book's *The paper in brief*, § Perturbation laws and optimal explanations): ``I = x − clip(baseline + σ ε)``, ``ε ~ N(0, Id)``.

    The authors' setting is ``baseline = 0``, ``σ = 0.2``, clip to ``[0, 1]`` (``clip=None``: no
    clipping). ``draw`` returns the Gaussian ``ε`` ``(n, *F)``, shared by all instances (every
    instance is compared with the same noisy baselines ``x₀``, so ``f(x₀)`` is evaluated once per
    draw for all instances: ``shared_points``).
    """

    binary = False
    shared_points = True

    def __init__(self, sigma: float = 0.2, baseline: float = 0.0, clip: Optional[Tuple[float, float]] = (0.0, 1.0)):
        self.sigma = float(check_positive(sigma, "sigma"))
        if isinstance(baseline, bool) or not isinstance(baseline, (int, float)):
            raise TypeError(f"`baseline` must be a float, got {baseline!r}")
        self.baseline = float(baseline)
        if clip is not None:
            if not (isinstance(clip, (tuple, list)) and len(clip) == 2 and clip[0] < clip[1]):
                raise ValueError(f"`clip` must be None or a pair (low, high) with low < high, got {clip!r}")
            clip = (float(clip[0]), float(clip[1]))
        self.clip = clip

    def draw(self, feature_shape, n, generator=None, device=None, dtype=None) -> Tensor:
        F, n, dtype = _feature_shape(feature_shape), _check_n(n), _check_dtype(dtype)
        device = torch.device(device) if device is not None else torch.device("cpu")
        return rand_like_draw((n, *F), _gen(generator, device), device, dtype, kind="randn")

    def baselines(self, draws: Tensor) -> Tensor:
        """The noisy baselines ``x₀ = clip(baseline + σ ε)``, shape ``(n, *F)``."""
        x0 = self.baseline + self.sigma * draws
        if self.clip is not None:
            x0 = x0.clamp(self.clip[0], self.clip[1])
        return x0

    def apply(self, x, draws):
        self._check_apply(x, draws, x.shape[1:])
        return x.unsqueeze(1) - self.baselines(draws.to(device=x.device, dtype=x.dtype)).unsqueeze(0)

    def perturbed(self, x, draws):
        self._check_apply(x, draws, x.shape[1:])
        x0 = self.baselines(draws.to(device=x.device, dtype=x.dtype))
        return x0.unsqueeze(0).expand(x.shape[0], *x0.shape)

    def dot(self, x, draws, phi):
        """``IᵀΦ = xᵀΦ − x₀ᵀΦ`` without building ``I``."""
        self._check_apply(x, draws, x.shape[1:])
        N = x.shape[0]
        x0 = self.baselines(draws.to(device=x.device, dtype=x.dtype)).reshape(draws.shape[0], -1)
        pf = phi.reshape(N, -1)
        return (x.reshape(N, -1) * pf).sum(1, keepdim=True) - pf @ x0.T

    def _repr_fields(self):
        return [("sigma", self.sigma), ("baseline", self.baseline), ("clip", self.clip)]


class Gaussian(Perturbation):
    """Gaussian perturbation ``I = σ ε``, ``ε ~ N(0, Id)``, the same draws for every instance.

    Its optimal explanation tends to the gradient as ``σ → 0`` (Prop. 2.1/2.2;
    ``notebooks/toy.ipynb``, ``notebooks/theory.ipynb``).
    """

    binary = False

    def __init__(self, sigma: float):
        self.sigma = float(check_positive(sigma, "sigma"))

    def draw(self, feature_shape, n, generator=None, device=None, dtype=None) -> Tensor:
        F, n, dtype = _feature_shape(feature_shape), _check_n(n), _check_dtype(dtype)
        device = torch.device(device) if device is not None else torch.device("cpu")
        return rand_like_draw((n, *F), _gen(generator, device), device, dtype, kind="randn")

    def apply(self, x, draws):
        self._check_apply(x, draws, x.shape[1:])
        I = self.sigma * draws.to(device=x.device, dtype=x.dtype)
        return I.unsqueeze(0).expand(x.shape[0], *I.shape)

    def dot(self, x, draws, phi):
        """``IᵀΦ`` with ``I`` shared by all instances: ``Φ @ Iᵀ``."""
        self._check_apply(x, draws, x.shape[1:])
        I = self.sigma * draws.to(device=x.device, dtype=x.dtype).reshape(draws.shape[0], -1)
        return phi.reshape(phi.shape[0], -1) @ I.T

    def _repr_fields(self):
        return [("sigma", self.sigma)]


class Infinitesimal(Perturbation):
    """``I = ε e_i``, ``i`` uniform over the ``d`` features (Prop. 2.2: its optimal explanation → ∇f).

    A continuous law (``IᵀΦ = ε Φ_i``). ``draw`` returns the perturbations ``ε e_i`` ``(n, *F)``.
    ``stratified=True`` (default) draws the indices in blocks that are random permutations of
    ``0 … d−1`` (each draw is still marginally uniform; with ``n`` a multiple of ``d`` every
    feature appears equally often, which removes the sampling noise of the index).
    Use float64 inputs: ``f(x) − f(x − ε e_i)`` with ``ε = 1e−4`` loses ~4 digits.
    """

    binary = False

    def __init__(self, eps: float = 1e-4, stratified: bool = True):
        self.eps = float(check_positive(eps, "eps"))
        self.stratified = bool(stratified)

    def draw(self, feature_shape, n, generator=None, device=None, dtype=None) -> Tensor:
        F, n, dtype = _feature_shape(feature_shape), _check_n(n), _check_dtype(dtype)
        device = torch.device(device) if device is not None else torch.device("cpu")
        return self.eps * _one_hot_draws(math.prod(F), n, generator, device, dtype, self.stratified).view(n, *F)

    def apply(self, x, draws):
        self._check_apply(x, draws, x.shape[1:])
        I = draws.to(device=x.device, dtype=x.dtype)
        return I.unsqueeze(0).expand(x.shape[0], *I.shape)

    def dot(self, x, draws, phi):
        """``IᵀΦ`` with ``I`` shared by all instances: ``Φ @ Iᵀ``."""
        self._check_apply(x, draws, x.shape[1:])
        I = draws.to(device=x.device, dtype=x.dtype).reshape(draws.shape[0], -1)
        return phi.reshape(phi.shape[0], -1) @ I.T

    def _repr_fields(self):
        return [("eps", self.eps), ("stratified", self.stratified)]
