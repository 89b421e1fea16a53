"""Shared machinery of the theory checks: float64, single-threaded runs, derived seeds, autograd
gradients and Hessian-vector products, and the ascent that estimates a sup from below.

Background: the book's *The paper in brief*, § Theory and § Monte-Carlo hygiene.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Optional

import torch
from torch import Tensor

from .._ascent import project_ball, projected_ascent
from .._utils import forward_target, make_generator

DTYPE = torch.float64


def _single_threaded(fn):
    """Run a check with one intra-op thread (restored afterwards): the networks are tiny, and
    on a busy 2-core machine thread hand-offs cost more than the matrix products (50× slower
    forward passes were measured with 2 threads under load)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        n = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(n)

    return wrapper



# =========================================================================== autograd helpers
def _sub(seed, k: int, j: int = 0) -> int:
    """A derived integer seed for network ``k`` (sub-stream ``j``) of a check."""
    if seed is None:
        seed = 0
    if isinstance(seed, torch.Generator):
        seed = int(seed.initial_seed())
    return int(seed) * 7919 + 1000 * k + j


def _f(model, x: Tensor) -> Tensor:
    return forward_target(model, x, None)


def model_gradient(model, x: Tensor, create_graph: bool = False) -> Tensor:
    """``∇f(x)`` for every row of ``x`` (N, d); keeps the graph when ``create_graph``."""
    with torch.enable_grad():
        if not x.requires_grad:
            x = x.detach().requires_grad_(True)
        out = _f(model, x).sum()
        (g,) = torch.autograd.grad(out, x, create_graph=create_graph)
    return g


@_single_threaded
def hessian_vector_product(model, x: Tensor, v: Tensor) -> Tensor:
    """``∇²f(x) v`` for every row (double backward)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        g = model_gradient(model, x, create_graph=True)
        (hv,) = torch.autograd.grad((g * v).sum(), x)
    return hv


@_single_threaded
def hessian_spectral_norm(model, x: Tensor, iters: int = 30, seed=0) -> Tensor:
    """Power iteration on Hessian-vector products: ``‖∇²f(x) v‖`` with ``v`` the final unit
    iterate, per row. **Errs low**: ``‖Hv‖ ≤ ‖H‖₂`` for any unit ``v`` (a lower estimate of the
    spectral norm, equal to it once the iteration has converged to the top ``|eigenvalue|``)."""
    g_ = make_generator(seed)
    v = torch.randn(x.shape, generator=g_, dtype=x.dtype).to(x.device)
    v = v / v.norm(dim=1, keepdim=True)
    with torch.enable_grad():
        xx = x.detach().requires_grad_(True)
        g = model_gradient(model, xx, create_graph=True)
        if not g.requires_grad:  # piecewise-linear model: Hessian 0 almost everywhere
            return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        est = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for _ in range(iters):
            (hv,) = torch.autograd.grad(g, xx, grad_outputs=v, retain_graph=True)
            nrm = hv.norm(dim=1)
            est = torch.maximum(est, nrm)
            v = hv / nrm.clamp_min(1e-300).unsqueeze(1)
            v = torch.where(nrm.unsqueeze(1) > 0, v, torch.zeros_like(v))
    return est.detach()


def _sphere(n: int, d: int, radius: float, g: torch.Generator, norm: str = "l2") -> Tensor:
    if norm == "linf":
        return radius * torch.sign(torch.rand(n, d, generator=g, dtype=DTYPE) - 0.5)
    v = torch.randn(n, d, generator=g, dtype=DTYPE)
    return radius * v / v.norm(dim=1, keepdim=True)


def _ascend(objective: Callable, x: Tensor, radius: float, restarts: int, steps: int, seed, norm: str = "l2",
            extra: Optional[Tensor] = None, lr: float = 0.3):
    """Projected (normalised-)gradient ascent of ``objective(y, idx)`` over ``‖y − x_n‖ ≤ radius``.

    ``objective`` maps rows ``y`` (B, d) and their instance indices ``idx`` (B,) to values (B,).
    ``restarts`` random starts on the sphere per instance (plus ``extra`` starting offsets
    (N, d) when given), then :func:`xailib._ascent.projected_ascent` with a cosine step schedule
    ``η_t = lr · r · (0.05 + 0.95 (1 + cos(πt/T))/2)``; every iterate is a feasible point, and the
    best value met is returned: a **lower estimate** of the max. Returns ``(best (N,), best_u (N, d))``.
    """
    N, d = x.shape
    g = make_generator(seed)
    u0 = [_sphere(N * restarts, d, radius, g, norm)]
    if extra is not None:
        u0.append(project_ball(extra.to(DTYPE), radius, norm))
    u = torch.cat(u0)
    K = u.shape[0] // N
    idx = torch.arange(N).repeat(K)
    xr = x[idx]

    def value_and_grad(uu, need):
        with torch.enable_grad():
            uu = uu.detach().requires_grad_(True)
            val = objective(xr + uu, idx)
            grad = None
            if need and val.requires_grad:
                grad = torch.autograd.grad(val.sum(), uu, allow_unused=True)[0]
        return val, grad

    def eta(t):
        return lr * radius * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t / max(steps, 1))))

    best, best_u, _ = projected_ascent(value_and_grad, u, steps, eta, lambda v: project_ball(v, radius, norm), norm)
    best = best.view(K, N)
    k = best.argmax(0)
    return best.max(0).values, best_u.view(K, N, d)[k, torch.arange(N)]


@_single_threaded
def max_gradient_change(model, x: Tensor, radius: float, restarts: int = 4, steps: int = 30, seed=0,
                        norm: str = "l2", extra: Optional[Tensor] = None):
    """Raw ``SENS_max(∇f, x, r) = max_{‖y−x‖≤r} ‖∇f(y) − ∇f(x)‖₂`` by random restarts on the
    sphere + projected gradient ascent (the objective's gradient is a Hessian-vector product).
    **Errs low** (every candidate is feasible). Returns ``(value (N,), argmax offset u (N, d))``."""
    g0 = model_gradient(model, x).detach()

    def obj(y, idx):
        gy = model_gradient(model, y, create_graph=True)
        return (gy - g0[idx]).norm(dim=1)

    return _ascend(obj, x, radius, restarts, steps, seed, norm, extra)


def _raw_infidelity(model, phi: Tensor, x: Tensor, perturbation, n: Optional[int] = None) -> Tensor:
    """Raw INFD (no optimal scaling) of a local explanation ``phi`` on the replayed draws."""
    from ..metrics import infidelity

    n = perturbation.n_fixed if n is None else n
    return infidelity(model, phi.detach(), x, perturbation=perturbation, n_samples=n, scaling=None).to(DTYPE)



def _gaussian_draws(sigma: float, d: int, n: int, seed) -> Tensor:
    """``n`` draws of ``I ~ N(0, σ² Id)`` in float64, ``(n, d)``: ``xailib.perturbations.Gaussian(σ)``'s raw
    standard-normal draws times ``σ`` (its ``apply``), replayable with ``Fixed``."""
    from ..perturbations import Gaussian

    law = Gaussian(sigma)
    return law.sigma * law.draw((d,), n, generator=seed, dtype=DTYPE)
