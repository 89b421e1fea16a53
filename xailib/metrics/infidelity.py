"""Infidelity (Def. 2.1, optimal scaling) and robust infidelity (Def. C.1); see :mod:`xailib.metrics`."""
from __future__ import annotations

import warnings
from typing import Callable, Optional

import torch
from torch import Tensor

from .. import _utils as U
from .._utils import DEFAULT_BATCH_SIZE, SeedLike, TargetLike
from ..perturbations import Perturbation
from ._common import (  # noqa: F401
    _check_batch_size,
    _check_scaling,
    _check_law,
    _check_explainer,
    _n_draws,
    _gen,
    _check_target_with_model,
    _explain,
    _resolve_explanation,
    _global_continuous_error,
    _term,
    _project,
    _function_differences,
    _infd_stats,
    _draws_or_support,
)
from .sensitivity import (  # noqa: F401
    _uniform_ball,
)


@U.in_eval_mode("model", "explanation")
def infidelity(
    model: Callable[[Tensor], Tensor],
    explanation,
    x: Tensor,
    target: TargetLike = None,
    perturbation: Optional[Perturbation] = None,
    n_samples: int = 1000,
    scaling: Optional[str] = "optimal",
    kind: Optional[str] = None,
    generator: SeedLike = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    return_details: bool = False,
    exact="auto",
    relative: bool = False,
):
    """Infidelity of an explanation, one value per instance (the book's *The paper in brief*, § Metrics, Def. 2.1).

    ``INFD(Φ, f, x) = E_I[(IᵀΦ − (f(x) − f(x − I)))²]``, estimated with ``n_samples`` draws of
    ``perturbation`` (default :class:`~xailib.perturbations.NoisyBaseline`), the same draws for
    every instance. ``scaling="optimal"`` (the paper's reported value) uses
    ``β* = E[(IᵀΦ)Δf] / E[(IᵀΦ)²]`` (``β* = 0`` when ``E[(IᵀΦ)²] = 0``), i.e.
    ``E[(β* IᵀΦ − Δf)²]``, invariant to ``Φ → cΦ``; ``scaling=None`` the raw value.

    ``explanation``: a tensor shaped like ``x`` (its kind from ``kind``, default ``"local"``) or an
    explainer (called as ``explainer(x, target)``, kind from its ``.kind``). Binary laws use the
    Appendix B.2 form ``IᵀΦ = zᵀ group_sum(A)`` with ``A = (x − baseline) ⊙ Φ`` (local) or
    ``A = Φ`` (global): ``I`` is never divided by ``x`` (zero pixels with baseline 0 are fine).
    A global explanation under a continuous law is a ``ValueError`` (convert it with
    ``xailib.explainers.to_local``). A :class:`~xailib.perturbations.Fixed` law replays its first
    ``min(n_samples, n_fixed)`` draws.

    ``exact``: laws with a finite support (SquareRemoval, SingleFeature, ShapleyKernel) are summed
    exactly over their atoms, ``E[h(I)] = Σ_k p_k h(I_k)``, when ``exact="auto"`` and the support
    has at most ``xailib.perturbations.EXACT_MAX_ATOMS`` atoms (``True`` forces it, ``False``
    samples): the result is then seed-independent and its Monte-Carlo errors are 0
    (see :func:`xailib.perturbations.exact_support`).

    ``relative=True``: return rINFD = INFD / E[Δf²] instead, the fraction of the response to the
    perturbations left unexplained. INFD is in the units of f² (multiplying the logits by c
    multiplies it by c²), so only rINFD compares *across models*; within one model (one table)
    both rank explainers alike.

    Cost: ``N · n_samples`` forward passes (``N · K`` for an exact sum over ``K`` atoms) in chunks
    of at most ``batch_size``.
    Returns ``(N,)``, or an :class:`InfidelityDetails` (value, raw, β, MC standard errors, the
    energy E[Δf²] and rINFD with its MC error) when ``return_details=True``. Chapters: ``notebooks/toy.ipynb``, ``notebooks/mnist.ipynb``.
    """
    U.check_model(model)
    x = U.check_input(x, "x")
    U.check_model_input(model, x)
    t = U.check_target(target, x.shape[0], x.device)
    law = _check_law(perturbation)
    n_samples = U.check_positive(n_samples, "n_samples", integer=True)
    batch_size = _check_batch_size(batch_size)
    scaling = _check_scaling(scaling)
    if not isinstance(relative, bool):
        raise TypeError(f"`relative` must be True or False, got {relative!r}")
    fx = U.forward_batched(model, x, t, batch_size).to(x.dtype)  # also validates `target`
    phi, kind = _resolve_explanation(explanation, x, t, kind, model)
    term = _term(law, x, phi, kind)
    draws, probs = _draws_or_support(law, tuple(x.shape[1:]), n_samples, exact, generator, x.device, x.dtype)
    a = _project(law, x, draws, term)
    b = _function_differences(model, x, t, law, draws, batch_size, fx, desc="infidelity")
    det = _infd_stats(a, b, scaling, probs)
    if return_details:
        return det
    return det.relative if relative else det.infidelity


def _is_plain_gradient(explainer) -> bool:
    return type(explainer).__name__ == "Gradient" and getattr(explainer, "kind", "local") == "local"


def _infd_value_and_grad(model, explainer, xu, t, law, draws, kind, scaling, batch_size, need_grad, double):
    N = xu.shape[0]
    n = draws.shape[0]
    if not need_grad:
        phi = _explain(explainer, xu, t)
        term = _term(law, xu, phi, kind)
        fx = U.forward_batched(model, xu, t, batch_size).to(xu.dtype)
        a = _project(law, xu, draws, term)
        b = _function_differences(model, xu, t, law, draws, batch_size, fx)
        return _infd_stats(a, b, scaling).infidelity, None
    leaf = xu.detach().requires_grad_(True)
    with torch.enable_grad():
        fx = U.forward_target(model, leaf, t)
        if double:
            (phi,) = torch.autograd.grad(fx.sum(), leaf, create_graph=True)
        else:
            phi = _explain(explainer, xu.detach(), t)
        term = _term(law, leaf, phi, kind)
    # pass 1: value and β at this point
    with torch.no_grad():
        a = _project(law, xu, draws, term.detach())
        b = _function_differences(model, xu, t, law, draws, batch_size, fx.detach().to(xu.dtype))
    det = _infd_stats(a, b, scaling)
    beta = det.beta.detach().view(-1, 1)
    # pass 2: gradient of mean((β a − b)²) with β held fixed (∂INFD/∂β = 0 at β*), chunked
    term_l = term.detach().requires_grad_(True)
    fx_l = fx.detach().requires_grad_(True)
    gx = torch.zeros_like(xu)
    g_term = torch.zeros_like(term_l)
    g_fx = torch.zeros_like(fx_l)
    m = max(1, batch_size // N)
    for sl in U.chunks(n, m):
        xc = xu.detach().requires_grad_(True)
        with torch.enable_grad():
            ac = law.dot(xc, draws[sl], term_l) if not law.binary else term_l @ draws[sl].T
            pert = law.perturbed(xc, draws[sl])
            k = pert.shape[1]
            tt = None if t is None else t.repeat_interleave(k)
            fp = U.forward_target(model, pert.reshape(N * k, *xu.shape[1:]), tt).view(N, k)
            bc = fx_l.view(-1, 1) - fp
            loss = ((beta * ac - bc) ** 2).sum() / n
            gs = torch.autograd.grad(loss, [xc, term_l, fx_l], allow_unused=True)
        for acc, gi in zip((gx, g_term, g_fx), gs):
            if gi is not None:
                acc += gi
    with torch.enable_grad():
        outs, grads = [fx], [g_fx]
        if term.requires_grad:
            outs.append(term)
            grads.append(g_term)
        (g_shared,) = torch.autograd.grad(outs, leaf, grad_outputs=grads, allow_unused=True)
    if g_shared is not None:
        gx = gx + g_shared
    return det.infidelity, gx


@U.in_eval_mode("model", "explainer")
def robust_infidelity(
    model: Callable[[Tensor], Tensor],
    explainer,
    x: Tensor,
    target: TargetLike = None,
    perturbation: Optional[Perturbation] = None,
    radius: float = 0.1,
    n_samples: int = 200,
    n_restarts: int = 4,
    steps: int = 10,
    step_size: Optional[float] = None,
    scaling: Optional[str] = "optimal",
    generator: SeedLike = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    explainer_grad: str = "auto",
    return_details: bool = False,
):
    """Robust infidelity (Def. C.1): ``RINFD = max_{‖u‖∞ ≤ r} INFD(Φ, f, x + u)``; the book's
    *The paper in brief*, § Metrics.

    Estimated by search over ``u``: the start ``u = 0`` plus ``n_restarts`` starts uniform in the
    L∞ ball (the same starts for every instance), each followed by ``steps`` steps of projected
    sign-gradient ascent ``u ← clip(u + α sign(∇_u INFD), −r, r)`` (:func:`xailib._ascent.projected_ascent`),
    ``α = step_size`` (default
    ``2.5 r / steps``). INFD at every point uses the **same** ``n_samples`` perturbation draws
    (common random numbers) and ``scaling`` as :func:`infidelity`; the best value seen is kept.

    Gradients: through ``f(x + u)``, ``f(x + u − I)`` and (binary laws) the factor ``x + u − b``
    by autograd; through ``Φ(x + u)`` by double back-propagation (``create_graph``) when the
    explainer is plain ``Gradient`` (``explainer_grad="auto"``; checked numerically against the
    explainer at the first point); for any other explainer ``Φ(x + u)`` is recomputed at every
    step but treated as a constant in the gradient (a heuristic ascent direction; every value
    is still an exact INFD evaluation). ``explainer_grad="none"`` forces that mode, ``steps=0``
    gives pure random search.

    The result is a **lower bound** of RINFD up to Monte-Carlo error: the search may miss the
    maximiser, so the estimate errs low (it is always ≥ INFD at ``u = 0`` with the same draws).
    ``x + u`` is not clipped to the data range (Def. C.1 constrains only ``‖u‖``).
    Cost: ``(1 + n_restarts) · N · n_samples`` forward passes per step, plus backward passes.
    Returns ``(N,)``, or ``(value, u_best, infd_at_x)`` when ``return_details``.
    Chapter: ``notebooks/mnist_robust.ipynb``.
    """
    from .._ascent import projected_ascent

    U.check_model(model)
    explainer = _check_explainer(explainer)
    x = U.check_input(x, "x")
    U.check_model_input(model, x)
    N, F = x.shape[0], tuple(x.shape[1:])
    t = U.check_target(target, N, x.device)
    law = _check_law(perturbation)
    radius = U.check_positive(radius, "radius")
    n_samples = U.check_positive(n_samples, "n_samples", integer=True)
    for name, v in (("n_restarts", n_restarts), ("steps", steps)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"`{name}` must be an int >= 0, got {v!r}")
    if step_size is not None:
        step_size = U.check_positive(step_size, "step_size")
    scaling = _check_scaling(scaling)
    batch_size = _check_batch_size(batch_size)
    if explainer_grad not in ("auto", "none"):
        raise ValueError(f"`explainer_grad` must be 'auto' or 'none', got {explainer_grad!r}")
    _check_target_with_model(model, x, t)
    kind = explainer.kind
    if kind == "global" and not law.binary:
        raise _global_continuous_error(law)
    g = _gen(generator, x.device, "infidelity")
    n = _n_draws(law, n_samples)
    draws = law.draw(F, n, g, x.device, x.dtype)
    starts = _uniform_ball(F, n_restarts, radius, g, x.device, x.dtype) if n_restarts else x.new_zeros((0, *F))
    Ustart = torch.cat([x.new_zeros((1, *F)), starts])  # (R, *F)
    R = Ustart.shape[0]
    x_rep = x.repeat_interleave(R, 0)
    t_rep = None if t is None else t.repeat_interleave(R)
    u = Ustart.repeat(N, *([1] * len(F)))
    double = False
    if explainer_grad == "auto" and _is_plain_gradient(explainer) and steps > 0:
        leaf = x[:2].detach().requires_grad_(True)
        with torch.enable_grad():
            (gr,) = torch.autograd.grad(U.forward_target(model, leaf, None if t is None else t[:2]).sum(), leaf)
        ref = _explain(explainer, x[:2], None if t is None else t[:2])
        tol = 1e-4 if x.dtype == torch.float32 else 1e-8
        double = torch.allclose(gr, ref, rtol=tol, atol=tol * float(ref.abs().max().clamp_min(1e-30)))
        if not double:
            warnings.warn("Gradient explainer differs from ∇f; Φ(x+u) treated as constant in the ascent")
    alpha = step_size if step_size is not None else 2.5 * radius / max(steps, 1)
    first = []
    bar = U.progress(total=steps + 1, desc="robust infidelity")

    def value_and_grad(uu, need):
        val, gx = _infd_value_and_grad(model, explainer, x_rep + uu, t_rep, law, draws, kind, scaling,
                                       batch_size, need, double)
        if not first:
            first.append(val.view(N, R)[:, 0].clone())
        bar.update(1)
        return val, gx

    best, best_u, _ = projected_ascent(value_and_grad, u, steps, alpha, lambda v: v.clamp(-radius, radius), "linf")
    bar.close()
    infd0 = first[0]
    bv = best.view(N, R)
    value, arg = bv.max(1)
    if return_details:
        ub = best_u.view(N, R, *F)[torch.arange(N, device=x.device), arg]
        return value, ub, infd0
    return value
