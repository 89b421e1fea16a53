"""Bounds on gradients and Hessians: Prop. A.1 (Lipschitz gradient of a softplus network), the
Taylor bounds of appendix A.2, and Theorem A.1 (adversarial risk of the logistic loss).

Certified upper bounds (:func:`lipschitz_bound`, :func:`hessian_norm_bound`) and the checks
:func:`check_lipschitz_bound`, :func:`check_hessian_bounds`, :func:`check_adversarial_risk_bound`.
Background: the book's *The paper in brief*, § Theory; chapter ``notebooks/theory``.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor
from torch.nn import functional as F

from .._utils import check_positive, make_generator
from ._core import (DTYPE, _ascend, _f, _gaussian_draws, _raw_infidelity, _single_threaded, _sphere, _sub, hessian_spectral_norm,
                    max_gradient_change, model_gradient)
from .networks import Population, _population, SoftplusNet, _meta_info
from .result import CheckResult, _result


__all__ = ["PAPER_READINGS", "paper_readings_table", "rescore_lipschitz", "a1_counterexample", "lipschitz_bound", "hessian_norm_bound", "pgd_logistic", "check_lipschitz_bound", "check_hessian_bounds", "check_adversarial_risk_bound"]


#: the readings of Prop. A.1's unreadable denominator: name -> power of 4 as a function of the depth l
PAPER_READINGS = {"paper": lambda l: 0, "paper/4": lambda l: 1, "paper/4^l": lambda l: l}


def lipschitz_bound(net: SoftplusNet, bound: str = "derived") -> float:
    """A Lipschitz constant of ``∇f`` for a softplus network (Prop. A.1), in ℓ₂.

    In the paper's notation ``f(x) = W_l σ(W_{l−1} … σ(W_1 x))``: a :class:`~xailib.models.SoftplusNet`
    with ``k`` softplus layers ``W_1 … W_k`` and output vector ``c`` has ``l = k + 1`` layers, the
    last one linear (``W_l = cᵀ``, so ``‖W_l‖_F = ‖c‖₂``).

    ``bound="derived"`` (valid, the chapter's derivation): writing ``z_i = W_i h_{i−1}``,
    ``h_i = σ(z_i)``, ``g_i = ∂f/∂h_i``, the Hessian is
    ``∇²f = Σ_i M_iᵀ diag(σ''(z_i) ⊙ g_i) M_i`` with ``M_i = ∂z_i/∂x = W_i D_{i−1} W_{i−1} … D_1 W_1``,
    ``D_j = diag(σ'(z_j))``. With ``σ' ≤ 1``, ``σ'' ≤ 1/4``: ``‖M_i‖ ≤ P_i = ∏_{j≤i} ‖W_j‖₂`` and
    ``‖g_i‖_∞ ≤ ‖g_i‖₂ ≤ ‖c‖₂ ∏_{j>i} ‖W_j‖₂``, so
    ``L = (‖c‖₂/4) · ∏_{j=1}^{k} ‖W_j‖₂ · Σ_{i=1}^{k} P_i`` — of degree 1 in ``c``, as ``∇f`` is.

    The printed product, as printed: ``∏_{i=1}^{l} ‖W_i‖_F² / q`` over **all** ``l`` layers, the
    linear output layer included (``‖c‖₂² ∏_{j≤k} ‖W_j‖_F²``), for each reading of the unreadable
    denominator ``q``: ``bound="paper"`` (none, ``q = 1``), ``"paper/4"`` (one 4) and
    ``"paper/4^l"`` (a 4 per factor, ``q = 4^l``). None is a valid bound: the product is of degree
    2 in the output layer while ``∇f`` is of degree 1, so shrinking ``c`` breaks every reading
    (``f(x) = 0.1·softplus(x)`` at ``x = 0``, ``r = 0.1``: SENS = 2.5e-3 against 1.0e-3 for the
    loosest reading; chapter ``notebooks/theory``).
    """
    if not isinstance(net, SoftplusNet):
        raise TypeError("`net` must be a SoftplusNet")
    Ws = net.weights
    cn = float(net.c.norm())
    if bound in PAPER_READINGS:
        l = len(Ws) + 1
        prod = cn**2 * math.prod(float(torch.linalg.matrix_norm(W, "fro")) ** 2 for W in Ws)
        return prod / 4.0 ** PAPER_READINGS[bound](l)
    if bound != "derived":
        raise ValueError(f"`bound` must be 'derived', 'paper', 'paper/4' or 'paper/4^l', got {bound!r}")
    spec = [float(torch.linalg.matrix_norm(W, 2)) for W in Ws]
    P = [math.prod(spec[: i + 1]) for i in range(len(spec))]
    return cn / 4.0 * math.prod(spec) * sum(P)


@_single_threaded
def hessian_norm_bound(net: SoftplusNet, x: Optional[Tensor] = None, radius: float = math.inf,
                       norm: str = "l2") -> Tensor:
    """Certified upper bound on ``sup_{‖δ‖≤r} ‖∇²f(x + δ)‖₂`` for a :class:`~xailib.models.SoftplusNet` (per row).

    Interval bound propagation over the ball (ℓ₂ or ℓ∞) gives boxes for every pre-activation
    ``z_i``; on them ``σ'`` and ``σ''`` are bounded (``σ'' = σ'(1 − σ')`` peaks at 0), a backward
    interval pass bounds ``|g_i|`` (also capped by the global ℓ₂ bound), and
    ``‖∇²f‖ ≤ Σ_i ‖M_i‖² max_k σ''_max(z_ik) |g_ik|_max`` with
    ``‖M_i‖ ≤ ‖W_i‖₂ ∏_{j<i} ‖W_j‖₂ max_k σ'_max(z_jk)``. **Errs high** (an upper bound).
    ``radius=inf`` (or ``x=None``) gives the global bound ``lipschitz_bound(net, "derived")``.

    For ``activation="relu"`` the same computation with ``σ'' = 0`` returns 0 — the almost-
    everywhere Hessian, which bounds nothing because the gradient jumps (used by the checks
    to show what breaking the smoothness hypothesis does).
    """
    if not isinstance(net, SoftplusNet):
        raise TypeError("`net` must be a SoftplusNet")
    Ws = net.weights
    if x is None or not math.isfinite(radius):
        n = 1 if x is None else x.shape[0]
        val = 0.0 if net.activation == "relu" else lipschitz_bound(net, "derived")
        return torch.full((n,), val, dtype=DTYPE)
    x = x.reshape(x.shape[0], -1).to(DTYPE)
    N = x.shape[0]
    if net.activation == "relu":
        return torch.zeros(N, dtype=DTYPE)
    spec = [float(torch.linalg.matrix_norm(W, 2)) for W in Ws]
    zlo, zhi = [], []
    hc = hr = None
    for i, W in enumerate(Ws):
        if i == 0:
            zc = x @ W.T
            rad = W.norm(dim=1) if norm == "l2" else W.abs().sum(1)
            zr = (radius * rad).expand_as(zc)
        else:
            zc = hc @ W.T
            zr = hr @ W.abs().T
        lo, hi = zc - zr, zc + zr
        zlo.append(lo)
        zhi.append(hi)
        hlo, hhi = F.softplus(lo), F.softplus(hi)
        hc, hr = (hlo + hhi) / 2, (hhi - hlo) / 2
    s1max = [torch.sigmoid(h) for h in zhi]  # σ' increasing
    s2max = []
    for lo, hi in zip(zlo, zhi):
        zn = torch.where(lo > 0, lo, torch.where(hi < 0, hi, torch.zeros_like(lo)))
        s = torch.sigmoid(zn)
        s2max.append(s * (1 - s))
    l = len(Ws)
    opn = lambda A: torch.linalg.matrix_norm(A, 2)  # batched spectral norms (N, a, b) -> (N,)
    # ℓ2 bound on ‖g_i‖ (g_i = ∂f/∂h_i): ‖g_{i−1}‖ ≤ ‖W_iᵀ diag(σ'_max(z_i))‖ ‖g_i‖, per row
    gnorm = [None] * l
    acc = torch.full((N,), float(net.c.norm()), dtype=DTYPE)
    for i in range(l - 1, -1, -1):
        gnorm[i] = acc.clone()
        acc = acc * opn(s1max[i].unsqueeze(2) * Ws[i].unsqueeze(0))
    # interval backward pass for g_i
    glo = net.c.expand(N, -1).clone()
    ghi = glo.clone()
    gabs = [None] * l
    for i in range(l - 1, -1, -1):
        gabs[i] = torch.minimum(torch.maximum(glo.abs(), ghi.abs()), gnorm[i].unsqueeze(1))
        if i == 0:
            break
        slo, shi = torch.sigmoid(zlo[i]), torch.sigmoid(zhi[i])
        cands = torch.stack([slo * glo, slo * ghi, shi * glo, shi * ghi])
        alo, ahi = cands.min(0).values, cands.max(0).values
        ac, ar = (alo + ahi) / 2, (ahi - alo) / 2
        W = Ws[i]
        gc, gr = ac @ W, ar @ W.abs()
        glo, ghi = gc - gr, gc + gr
    # ‖M_iᵀ diag(σ''⊙g_i) M_i‖ ≤ ‖diag(√a_i) M_i‖², a_i = max|σ''⊙g_i| on the box (Loewner order), and
    # with D_j = diag(√s_j) E_j diag(√s_j), 0 ≼ E_j ≼ Id, s_j = σ'_max(z_j):
    # ‖diag(√a_i) M_i‖ ≤ ‖diag(√a_i) W_i diag(√s_{i−1})‖ ∏_{j<i} ‖diag(√s_j) W_j diag(√s_{j−1})‖
    sq = [s.sqrt() for s in s1max]
    total = torch.zeros(N, dtype=DTYPE)
    chain = torch.ones(N, dtype=DTYPE)
    for i in range(l):
        W = Ws[i].unsqueeze(0)
        right = sq[i - 1].unsqueeze(1) if i > 0 else 1.0
        a = (s2max[i] * gabs[i]).sqrt().unsqueeze(2)
        total = total + (opn(a * W * right) * chain) ** 2
        chain = chain * opn(sq[i].unsqueeze(2) * W * right)
    return total


@_single_threaded
def _hessian_sup_estimate(model, x: Tensor, radius: float, n_points: int = 16, iters: int = 20, seed=0,
                          norm: str = "l2") -> Tensor:
    """``max`` of the power-iteration Hessian norm over ``x`` and ``n_points`` random points of the
    ball (half on the sphere, half inside). **Errs low** (sampled sup of lower estimates)."""
    N, d = x.shape
    g = make_generator(seed)
    best = hessian_spectral_norm(model, x, iters, seed)
    if n_points > 0:
        u = _sphere(N * n_points, d, radius, g, norm)
        shrink = torch.rand(N * n_points, 1, generator=g, dtype=DTYPE) ** (1.0 / d)
        u[N * n_points // 2:] *= shrink[N * n_points // 2:]
        idx = torch.arange(N).repeat(n_points)
        vals = hessian_spectral_norm(model, x[idx] + u, iters, seed).view(n_points, N)
        best = torch.maximum(best, vals.max(0).values)
    return best


@_single_threaded
def check_lipschitz_bound(nets=None, x=None, *, radius: float = 0.5, bound: str = "derived", restarts: int = 4,
                          steps: int = 30, mc_samples: int = 0, seed=0, **population) -> CheckResult:
    """Prop. A.1: ``SENS_max(∇f, x, r) ≤ L · r`` (raw sensitivity, ℓ₂ ball and ℓ₂ distance).

    * lhs: raw SENS_max by random restarts + projected gradient ascent
      (:func:`max_gradient_change`), optionally also ``xailib.metrics.sensitivity_max``
      (``normalize=False``, ``mc_samples`` Monte-Carlo points of the inscribed ℓ∞ ball of
      radius ``r/√d``): the max of feasible values, an attained value, **errs low**.
    * rhs: ``L · r``, computed from the weights alone (independent of the lhs), with ``L`` from
      :func:`lipschitz_bound`: ``bound="derived"`` (a valid bound), or the printed product over all
      ``l`` layers under one reading of its denominator, ``"paper"`` (none), ``"paper/4"``,
      ``"paper/4^l"`` (not valid bounds: an attained lhs above them is a counterexample); or
      ``bound="local"``: :func:`hessian_norm_bound` over the ball (valid, tighter).
      ``info`` holds ``L·r`` for every reading and the derived bound (``rhs_paper``,
      ``rhs_paper/4``, ``rhs_paper/4^l``, ``rhs_derived``) so one run scores them all.

    ``nets``/``x``: given networks and inputs (one tensor, or one per network); otherwise
    ``n_nets`` random networks (:func:`random_instances`) with ``n_inputs`` inputs each.
    ``activation="relu"`` breaks the hypothesis (the same weight-based bound is then violated).

    Population (:class:`Population`): ``nets`` may be one; otherwise
    ``nets``/``x`` and the keywords ``**population`` describe it; defaults:
    ``n_nets=8, n_inputs=4, d=8, depths=(1, 2, 3, 4), widths=(8, 16, 32), scales=(0.5, 1.0, 2.0)``, ``activation="softplus"``.
    """
    if bound not in ("derived", "local", *PAPER_READINGS):
        raise ValueError(f"`bound` must be 'derived', 'local', 'paper', 'paper/4' or 'paper/4^l', got {bound!r}")
    check_positive(radius, "radius")
    pop = _population(nets, x, population, n_nets=8, n_inputs=4, d=8, depths=(1, 2, 3, 4), widths=(8, 16, 32), scales=(0.5, 1.0, 2.0))
    inst = pop.instances(seed)
    nets, activation = pop.nets, pop.activation
    readings = ("derived", *PAPER_READINGS)
    lhs, rhs, asc, mcs, counts, metas = [], [], [], [], [], []
    others = {b: [] for b in readings}
    for k, (net, xx, meta) in enumerate(inst):
        N = xx.shape[0]
        s_asc, _ = max_gradient_change(net, xx, radius, restarts, steps, seed=_sub(seed, k))
        s = s_asc
        if mc_samples:
            s_mc = _mc_sensitivity(net, xx, radius / math.sqrt(xx.shape[1]), mc_samples, _sub(seed, k, 7))
            s = torch.maximum(s, s_mc)
            mcs.append(s_mc)
        if bound == "local":
            L = hessian_norm_bound(net, xx, radius)
        else:
            L = torch.full((N,), lipschitz_bound(net, bound), dtype=DTYPE)
        for b in readings:
            others[b].append(torch.full((N,), lipschitz_bound(net, b) * radius, dtype=DTYPE))
        lhs.append(s)
        asc.append(s_asc)
        rhs.append(L * radius)
        counts.append(N)
        metas.append(meta)
    info = _meta_info(metas, counts)
    info["sens_ascent"] = torch.cat(asc)
    if mcs:
        info["sens_mc"] = torch.cat(mcs)
    for b in readings:
        info[f"rhs_{b}"] = torch.cat(others[b])
    valid = bound in ("derived", "local")
    notes = ["lhs: raw SENS_max by restarts + projected gradient ascent (an attained value: errs low)",
             f"rhs: L·r with L = {bound} bound" + (" (valid upper bound)" if valid else
                                                    " (the printed product under one reading; not a valid bound)")]
    return _result("Prop. A.1", "SENS_max(∇f, x, r) ≤ L r", torch.cat(lhs), torch.cat(rhs),
                   dict(radius=radius, bound=bound, restarts=restarts, steps=steps, mc_samples=mc_samples, seed=seed,
                        activation=activation), info, notes, rtol=1e-9)


def paper_readings_table(result: CheckResult):
    """Score every reading of Prop. A.1's printed product (and the derived bound) on the instances
    of a :func:`check_lipschitz_bound` result: a DataFrame, one row per bound, with the number of
    violations (attained SENS above ``L·r``), the largest ratio SENS / (L r) and the median one."""
    import pandas as pd

    rows = []
    for b in ("derived", *PAPER_READINGS):
        t = result.lhs / result.info[f"rhs_{b}"]
        rows.append({"bound": b, "instances": result.n, "violations": int((t > 1 + 1e-9).sum()),
                     "max SENS / (L r)": float(t.max()), "median SENS / (L r)": float(t.median())})
    return pd.DataFrame(rows).set_index("bound")


def rescore_lipschitz(result: CheckResult, bound: str) -> CheckResult:
    """The :func:`check_lipschitz_bound` result ``result`` scored against another bound (``"derived"``
    or a reading of the printed product), on the same attained sensitivities (no new ascent)."""
    key = f"rhs_{bound}"
    if key not in result.info:
        raise ValueError(f"`bound` must be one of 'derived', 'paper', 'paper/4', 'paper/4^l', got {bound!r}")
    valid = bound == "derived"
    notes = [result.notes[0], f"rhs: L·r with L = {bound} bound" + (" (valid upper bound)" if valid else
                                                                    " (the printed product under one reading; not a valid bound)")]
    return _result(result.name, result.statement, result.lhs, result.info[key], dict(result.settings, bound=bound),
                   result.info, notes, rtol=result.settings.get("rtol", 1e-9))


def a1_counterexample(c: float = 0.1, radius: float = 0.1):
    """The one-parameter counterexample to every reading of Prop. A.1's printed product:
    ``f(x) = c·softplus(x)`` (``W_1 = [1]``, output layer ``c``, ``l = 2``) at ``x = 0``.
    ``SENS_max = c (sigmoid(r) − 1/2)`` exactly (``∇f = c·sigmoid``, monotone); the printed product
    is ``c² · 1`` (degree 2 in ``c``). Returns a DataFrame: the exact SENS and ``L r`` for each
    reading and the derived bound."""
    import pandas as pd

    net = SoftplusNet([torch.ones(1, 1, dtype=DTYPE)], torch.tensor([c], dtype=DTYPE))
    sens = c * (1 / (1 + math.exp(-radius)) - 0.5)
    rows = [{"bound": b, "L r": lipschitz_bound(net, b) * radius, "SENS_max": sens}
            for b in ("derived", *PAPER_READINGS)]
    df = pd.DataFrame(rows).set_index("bound")
    df["holds"] = df["SENS_max"] <= df["L r"] * (1 + 1e-12)
    return df


def _mc_sensitivity(model, x, radius_linf, n, seed):
    """``xailib.metrics.sensitivity_max`` (raw, ℓ∞ ball of radius ``radius_linf``) of Grad."""
    from ..explainers import Gradient
    from ..metrics import sensitivity_max

    return sensitivity_max(Gradient(model), x, radius=radius_linf, n_samples=n, normalize=False,
                           generator=seed).to(DTYPE)


@_single_threaded
def check_hessian_bounds(nets=None, x=None, *, radius: float = 0.5, sigma: float = 0.1, n_perturbations: int = 256,
                         hessian: str = "certified", restarts: int = 4, steps: int = 30, seed=0, **population) -> CheckResult:
    """Appendix A.2: if ``sup_{‖δ‖≤r} ‖∇²f(x+δ)‖ ≤ L`` then (part ``"sens"``)
    ``SENS_max(∇f, x, r) ≤ L r`` and (part ``"infd"``) ``INFD(∇f, x) ≤ (L²/4) E‖I‖⁴`` for ``I``
    within the ball. Two rows per input, told apart by ``info["part"]``.

    * ``L``: ``hessian="certified"`` (default): :func:`hessian_norm_bound`, an upper bound
      (**errs high**, the safe side for both parts); ``hessian="estimate"``: power iteration at
      the input and random points of the ball (**errs low**: a careful estimate only, a reported
      violation may then be an artefact of the estimate).
    * sens lhs: :func:`max_gradient_change` (errs low).
    * infd: ``I ~ N(0, σ² Id)`` (``xailib.perturbations.Gaussian``), ``n_perturbations`` draws
      replayed with ``Fixed``; raw INFD (``xailib.metrics.infidelity``, ``scaling=None``) and
      ``E‖I‖⁴`` on the same draws, ``L`` over the ball of radius ``max ‖I‖`` (so every draw is
      "within the ball"). Taylor's bound holds draw by draw, hence for the Monte-Carlo averages.

    Population (:class:`Population`): ``nets`` may be one; otherwise
    ``nets``/``x`` and the keywords ``**population`` describe it; defaults:
    ``n_nets=8, n_inputs=4, d=8, depths=(1, 2, 3, 4), widths=(8, 16, 32), scales=(0.5, 1.0, 2.0)``, ``activation="softplus"``.
    """
    from ..perturbations import Fixed, Gaussian

    if hessian not in ("certified", "estimate"):
        raise ValueError(f"`hessian` must be 'certified' or 'estimate', got {hessian!r}")
    pop = _population(nets, x, population, n_nets=8, n_inputs=4, d=8, depths=(1, 2, 3, 4), widths=(8, 16, 32), scales=(0.5, 1.0, 2.0))
    inst = pop.instances(seed)
    nets, activation = pop.nets, pop.activation
    lhs, rhs, parts, Ls, counts, metas = [], [], [], [], [], []
    for k, (net, xx, meta) in enumerate(inst):
        N, dd = xx.shape
        s, _ = max_gradient_change(net, xx, radius, restarts, steps, seed=_sub(seed, k))
        I = _gaussian_draws(sigma, dd, n_perturbations, _sub(seed, k, 5))
        rI = float(I.norm(dim=1).max())
        if hessian == "certified" and isinstance(net, SoftplusNet):
            L_s = hessian_norm_bound(net, xx, radius)
            L_i = hessian_norm_bound(net, xx, rI)
        else:
            L_s = _hessian_sup_estimate(net, xx, radius, seed=_sub(seed, k, 6))
            L_i = _hessian_sup_estimate(net, xx, rI, seed=_sub(seed, k, 6))
        infd = _raw_infidelity(net, model_gradient(net, xx), xx, Fixed(I))
        m4 = (I.norm(dim=1) ** 4).mean()
        lhs += [s, infd]
        rhs += [L_s * radius, L_i**2 / 4 * m4]
        parts += ["sens"] * N + ["infd"] * N
        Ls += [L_s, L_i]
        counts.append(2 * N)
        metas.append(meta)
    info = _meta_info(metas, counts)
    info["part"] = parts
    info["L"] = torch.cat(Ls)
    notes = ["sens lhs: gradient ascent (errs low)",
             "L: " + ("certified interval bound (errs high)" if hessian == "certified"
                      else "power-iteration estimate at sampled points (errs LOW: not a safe side)")]
    return _result("A.2", "SENS_max ≤ L r;  INFD(∇f) ≤ L²/4 E‖I‖⁴", torch.cat(lhs), torch.cat(rhs),
                   dict(radius=radius, sigma=sigma, n_perturbations=n_perturbations, hessian=hessian,
                        restarts=restarts, steps=steps, seed=seed, activation=activation), info, notes, rtol=1e-9,
                   atol=1e-15)



def _logistic(fv: Tensor, y: Tensor) -> Tensor:
    """Logistic loss ``ℓ(f, y) = log(1 + e^f) − y f = log(1 + e^{−(2y−1) f})`` for ``y ∈ {0, 1}``
    (computed in the second, cancellation-free form)."""
    return F.softplus(-(2 * y - 1) * fv)


@_single_threaded
def pgd_logistic(model, x: Tensor, y: Tensor, eps: float, norm: str = "l2", restarts: int = 4, steps: int = 30,
                 seed=0):
    """``sup_{‖δ‖≤ε} ℓ(f(x+δ), y)`` by PGD with random restarts (Madry et al.): **errs low**.
    Returns ``(value (N,), δ (N, d))``."""
    y = y.to(DTYPE)

    def obj(z, idx):
        return _logistic(_f(model, z), y[idx])

    return _ascend(obj, x, eps, restarts, steps, seed, norm, extra=torch.zeros_like(x))


@_single_threaded
def check_adversarial_risk_bound(nets=None, x=None, y=None, *, eps: float = 0.3, norm: str = "l2",
                                 hessian: str = "certified", restarts: int = 4, steps: int = 30, seed=0,
                                 rhs_scale: float = 1.0, **population) -> CheckResult:
    """Theorem A.1 (binary logistic loss): per instance (the proof is pointwise),
    ``sup_{‖δ‖≤ε} ℓ(f(x+δ), y) ≤ ℓ(f(x), y) + ε ‖∇f(x)‖_* + (ε²/2) sup_{‖δ‖≤ε} ‖∇²f(x+δ)‖``;
    averaging over instances gives the theorem's expectations. Scored on the loss **increase**
    (the clean loss ``ℓ(f(x), y)`` subtracted from both sides, exactly): lhs
    ``sup_δ ℓ(f(x+δ), y) − ℓ(f(x), y)``, rhs ``ε ‖∇f(x)‖_* + (ε²/2) sup ‖∇²f‖``, so the tightness
    measures the bound on what the adversary adds, not the clean loss both sides share
    (``info["loss"]`` holds the clean loss).

    * lhs: PGD with restarts (:func:`pgd_logistic`, ``δ = 0`` among the candidates), **errs low**;
      the two sides are computed independently (PGD's maximiser plays no part in the rhs).
    * ``‖∇f‖_*``: exact (ℓ₂ dual of ℓ₂; ℓ₁ dual of ℓ∞).
    * Hessian term: the operator norm ``sup_{‖v‖≤1} |vᵀHv|`` in the ball's norm; ℓ₂: spectral norm;
      ℓ∞: bounded by ``d ‖H‖₂``. ``hessian="certified"``: :func:`hessian_norm_bound` over the ball
      (**errs high**, safe); ``"estimate"``: power iteration on Hessian-vector products at random
      points of the ball (**errs low**, documented, not safe). Both are reported in ``info``.
    * ``y``: labels in {0, 1}; default random (seeded). ``rhs_scale`` < 1 shrinks the bound on
      purpose: a planted error (a false statement) that the check must report.

    Population (:class:`Population`): ``nets`` may be one; otherwise
    ``nets``/``x`` and the keywords ``**population`` describe it; defaults:
    ``n_nets=8, n_inputs=4, d=8, depths=(1, 2, 3, 4), widths=(8, 16, 32), scales=(0.5, 1.0, 2.0)``, ``activation="softplus"``.
    """
    if norm not in ("l2", "linf"):
        raise ValueError(f"`norm` must be 'l2' or 'linf', got {norm!r}")
    pop = _population(nets, x, population, n_nets=8, n_inputs=4, d=8, depths=(1, 2, 3, 4), widths=(8, 16, 32), scales=(0.5, 1.0, 2.0))
    inst = pop.instances(seed)
    nets, activation = pop.nets, pop.activation
    g = make_generator(seed)
    lhs, rhs, h_cert, h_est, gterm, base, counts, metas = [], [], [], [], [], [], [], []
    for k, (net, xx, meta) in enumerate(inst):
        N, dd = xx.shape
        yy = torch.randint(2, (N,), generator=g).to(DTYPE) if y is None else torch.as_tensor(y, dtype=DTYPE)
        adv, _ = pgd_logistic(net, xx, yy, eps, norm, restarts, steps, seed=_sub(seed, k, 6))
        with torch.no_grad():
            l0 = _logistic(_f(net, xx), yy)
        grad = model_gradient(net, xx)
        dual = grad.norm(dim=1) if norm == "l2" else grad.abs().sum(1)
        factor = 1.0 if norm == "l2" else float(dd)
        est = _hessian_sup_estimate(net, xx, eps, seed=_sub(seed, k, 6), norm=norm)
        if isinstance(net, SoftplusNet):
            cert = hessian_norm_bound(net, xx, eps, norm=norm)
        else:
            cert = torch.full((N,), math.nan, dtype=DTYPE)
        H = cert if (hessian == "certified" and isinstance(net, SoftplusNet)) else est
        lhs.append(adv - l0)
        rhs.append(rhs_scale * (eps * dual + eps**2 / 2 * factor * H))
        h_cert.append(cert)
        h_est.append(est)
        gterm.append(eps * dual)
        base.append(l0)
        counts.append(N)
        metas.append(meta)
    info = _meta_info(metas, counts)
    info.update(loss=torch.cat(base), gradient_term=torch.cat(gterm), hessian_certified=torch.cat(h_cert),
                hessian_estimate=torch.cat(h_est))
    info["adversarial_loss"] = info["loss"] + torch.cat(lhs)
    notes = ["lhs: loss increase sup ℓ(f(x+δ)) − ℓ(f(x)) by PGD with restarts (errs low)",
             "Hessian sup: " + ("certified interval bound (errs high)" if hessian == "certified"
                                else "power iteration at sampled points (errs LOW)")]
    return _result("Thm. A.1", "sup ℓ(f(x+δ),y) − ℓ(f(x),y) ≤ ε‖∇f‖_* + ε²/2 sup‖∇²f‖", torch.cat(lhs),
                   torch.cat(rhs), dict(eps=eps, norm=norm, hessian=hessian, restarts=restarts, steps=steps,
                                        seed=seed, activation=activation, rhs_scale=rhs_scale), info, notes,
                   rtol=1e-9)


