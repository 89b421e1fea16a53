"""Optimality of explanations: Prop. 2.1 (the closed-form optimal explanation minimises INFD),
Prop. 2.2 (the gradient is optimal for infinitesimal perturbations), Prop. 2.3 (occlusion-1 for
single-feature perturbations) and Prop. 2.4 (Shapley values for the Shapley kernel); and the exact
Shapley values by enumeration (:func:`exact_shapley`).

Background: the book's *The paper in brief*, § Perturbation laws and optimal explanations;
chapter ``notebooks/theory``.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from .._utils import function_differences, make_generator
from ._core import DTYPE, _f, _gaussian_draws, _raw_infidelity, _single_threaded, _sub
from .bounds import _hessian_sup_estimate, hessian_norm_bound
from .networks import Population, _population, SoftplusNet, _meta_info
from .result import CheckResult, _result


__all__ = ["exact_shapley", "check_optimal_explanation", "check_gradient_optimality", "check_occlusion_optimality", "check_shap_optimality"]


def _alternatives(phi: Tensor, n_alt: int, rel: float, g: torch.Generator) -> Tensor:
    """``n_alt`` random perturbations ``phi + δ`` of relative sizes ``rel · 10^{-U(0, 3)}`` (K, N, d)."""
    K = n_alt
    noise = torch.randn((K, *phi.shape), generator=g, dtype=DTYPE)
    noise = noise / noise.flatten(2).norm(dim=2).clamp_min(1e-300).view(K, -1, *([1] * (phi.dim() - 1)))
    mags = rel * 10 ** (-3 * torch.rand(K, generator=g, dtype=DTYPE))
    scale = phi.flatten(1).norm(dim=1).clamp_min(1e-12)
    return phi.unsqueeze(0) + noise * (mags.view(K, 1, *([1] * (phi.dim() - 1))) *
                                       scale.view(1, -1, *([1] * (phi.dim() - 1))))


@_single_threaded
def check_optimal_explanation(nets=None, x=None, *, sigma: float = 0.5, n_samples: int = 2000, ridge: float = 1e-8,
                              n_alternatives: int = 16, alt_scale: float = 0.1, seed=0, **population) -> CheckResult:
    """Prop. 2.1 for ``I ~ N(0, σ² Id)``: the closed form ``Φ* = (E[IIᵀ])⁻¹ E[I Δf]``
    (``xailib.explainers.Optimal`` on replayed draws, ``ridge``) minimises INFD.

    lhs: ``INFD(Φ*)``; rhs: the smallest INFD among the Monte-Carlo minimiser (least squares of
    ``IᵀΦ ≈ Δf`` over the same draws, ``torch.linalg.lstsq``) and ``n_alternatives`` random
    perturbations of Φ* (relative sizes ``alt_scale · 10^{−U(0,3)}``); all on the same draws, so
    the comparison is exact (no Monte-Carlo error between the sides). ``info``: the relative
    distance between Φ* and the least-squares minimiser, and the held-out INFD of both on
    independent draws. A large ``ridge`` shrinks Φ* and the check fails (a check that can fail).

    Population (:class:`Population`): ``nets`` may be one; otherwise
    ``nets``/``x`` and the keywords ``**population`` describe it; defaults:
    ``n_nets=8, n_inputs=4, d=8, depths=(1, 2, 3, 4), widths=(8, 16, 32), scales=(0.5, 1.0, 2.0)``, ``activation="softplus"``.
    """
    from ..explainers import Optimal
    from ..perturbations import Fixed, Gaussian

    pop = _population(nets, x, population, n_nets=8, n_inputs=4, d=8, depths=(1, 2, 3, 4), widths=(8, 16, 32), scales=(0.5, 1.0, 2.0))
    inst = pop.instances(seed)
    nets, activation = pop.nets, pop.activation
    g = make_generator(seed)
    lhs, rhs, dist, ho_opt, ho_ls, counts, metas = [], [], [], [], [], [], []
    for k, (net, xx, meta) in enumerate(inst):
        N, dd = xx.shape
        sk = _sub(seed, k)
        I = _gaussian_draws(sigma, dd, n_samples, sk)
        pert = Fixed(I)
        phi = Optimal(net, pert, n_samples=n_samples, ridge=ridge, seed=sk)(xx).to(DTYPE)
        dF = function_differences(net, xx, None, I.unsqueeze(0).expand(N, -1, -1))  # (N, n)
        phi_ls = torch.linalg.lstsq(I.unsqueeze(0).expand(N, -1, -1), dF.unsqueeze(2)).solution.squeeze(2)
        alts = torch.cat([phi_ls.unsqueeze(0), _alternatives(phi, n_alternatives, alt_scale, g)])
        K = alts.shape[0]
        xs = xx.repeat(K, 1)
        inf_alts = _raw_infidelity(net, alts.reshape(K * N, dd), xs, pert).view(K, N)
        lhs.append(_raw_infidelity(net, phi, xx, pert))
        rhs.append(inf_alts.min(0).values)
        dist.append((phi - phi_ls).norm(dim=1) / phi_ls.norm(dim=1).clamp_min(1e-300))
        J = Fixed(_gaussian_draws(sigma, dd, n_samples, sk + 1))
        ho_opt.append(_raw_infidelity(net, phi, xx, J))
        ho_ls.append(_raw_infidelity(net, phi_ls, xx, J))
        counts.append(N)
        metas.append(meta)
    info = _meta_info(metas, counts)
    info.update(rel_dist_lstsq=torch.cat(dist), heldout_infd_optimal=torch.cat(ho_opt),
                heldout_infd_lstsq=torch.cat(ho_ls))
    rhs_t = torch.cat(rhs)
    return _result("Prop. 2.1", "INFD(Φ*) ≤ INFD(Φ) for Φ = lstsq, Φ* + δ", torch.cat(lhs), rhs_t,
                   dict(sigma=sigma, n_samples=n_samples, ridge=ridge, n_alternatives=n_alternatives,
                        alt_scale=alt_scale, seed=seed), info,
                   ["same draws on both sides: exact comparison"], rtol=1e-6, atol=1e-12 * rhs_t.abs().max())


@_single_threaded
def check_gradient_optimality(nets=None, x=None, *, eps=(0.3, 0.1, 0.03, 0.01, 0.001), seed=0, **population) -> CheckResult:
    """Prop. 2.2, quantitatively: for ``I = ε e_i`` the optimal explanation
    (``Optimal(Infinitesimal(ε))``) is the finite difference ``Φ*_i = (f(x) − f(x − εe_i))/ε`` and
    ``‖Φ*_ε − ∇f(x)‖_∞ ≤ (ε/2) sup_{‖δ‖≤ε} ‖∇²f(x+δ)‖`` → 0 (Taylor), one row per (input, ε).

    rhs: :func:`hessian_norm_bound` (certified, errs high; for other models the power-iteration
    estimate at sampled points, which errs low) plus a float64 round-off allowance
    ``4·10⁻¹⁶ (|f(x)| + 1)/ε``. A ReLU network breaks the hypothesis (its a.e. Hessian is 0,
    the bound 0, but a kink within ε makes the finite difference differ from the gradient).

    Population (:class:`Population`): ``nets`` may be one; otherwise
    ``nets``/``x`` and the keywords ``**population`` describe it; defaults:
    ``n_nets=8, n_inputs=4, d=8, depths=(1, 2, 3, 4), widths=(8, 16, 32), scales=(0.5, 1.0, 2.0)``, ``activation="softplus"``.
    """
    from ..explainers import Gradient, Optimal
    from ..perturbations import Infinitesimal

    pop = _population(nets, x, population, n_nets=8, n_inputs=4, d=8, depths=(1, 2, 3, 4), widths=(8, 16, 32), scales=(0.5, 1.0, 2.0))
    inst = pop.instances(seed)
    nets, activation = pop.nets, pop.activation
    eps = [float(e) for e in (eps if isinstance(eps, (list, tuple)) else [eps])]
    lhs, rhs, atol, epss, counts, metas = [], [], [], [], [], []
    for k, (net, xx, meta) in enumerate(inst):
        N, dd = xx.shape
        grad = Gradient(net)(xx).to(DTYPE)
        f0 = _f(net, xx).detach()
        for e in eps:
            phi = Optimal(net, Infinitesimal(e), n_samples=4 * dd, ridge=1e-12, seed=_sub(seed, k, 6))(xx)
            lhs.append((phi.to(DTYPE) - grad).abs().max(1).values)
            rhs.append(e / 2 * (hessian_norm_bound(net, xx, e) if isinstance(net, SoftplusNet)
                                else _hessian_sup_estimate(net, xx, e, seed=_sub(seed, k, 8))))
            atol.append(4e-16 * (f0.abs() + 1) / e + 1e-10 * grad.abs().max(1).values)
            epss += [e] * N
        counts.append(N * len(eps))
        metas.append(meta)
    info = _meta_info(metas, counts)
    info["eps"] = epss
    return _result("Prop. 2.2", "‖Φ*_ε − ∇f‖_∞ ≤ ε/2 sup‖∇²f‖", torch.cat(lhs), torch.cat(rhs),
                   dict(eps=eps, seed=seed, activation=activation), info,
                   ["rhs: certified Hessian bound (errs high) + round-off allowance"], rtol=1e-6,
                   atol=torch.cat(atol))


@_single_threaded
def check_occlusion_optimality(nets=None, x=None, *, baseline: float = 0.0, explainer_baseline: Optional[float] = None,
                               n_alternatives: int = 16, alt_scale: float = 0.1, seed=0, **population) -> CheckResult:
    """Prop. 2.3: for ``I = e_i ⊙ (x − b)`` (``SingleFeature(baseline=b)``) occlusion-1
    (``Occlusion(baseline=b)``) has zero infidelity, hence is optimal.

    lhs: ``INFD(occlusion)``; rhs: the smallest INFD among ``Optimal(SingleFeature)`` and
    ``n_alternatives`` random perturbations of occlusion — exact expectations: the draws are each
    feature once (stratified), so INFD is the exact mean over the ``d`` perturbations.
    ``explainer_baseline`` ≠ ``baseline`` (occlusion for another law) makes the check fail.

    **A consistency check, not a test of the statement**: occlusion's infidelity under its own law
    is zero by definition (each term ``(x_i − b_i)Φ_i − Δf_i`` vanishes), so the left side is 0
    whatever the model. What can fail is the implementation: ``Occlusion`` and the generic
    ``Optimal(SingleFeature)`` (``info["max_abs_diff"]``) must agree, and an occlusion for the wrong
    law (the planted ``explainer_baseline``) is caught.
    ``info["max_abs_diff"]``: ``max |x⊙Φ_occ − A_opt|`` in the global form.

    Population (:class:`Population`): ``nets`` may be one; otherwise
    ``nets``/``x`` and the keywords ``**population`` describe it; defaults:
    ``n_nets=8, n_inputs=4, d=8, depths=(1, 2, 3, 4), widths=(8, 16, 32), scales=(0.5, 1.0, 2.0)``, ``activation="softplus"``.
    """
    from ..explainers import Occlusion, Optimal, to_global
    from ..metrics import infidelity
    from ..perturbations import Fixed, SingleFeature

    eb = baseline if explainer_baseline is None else explainer_baseline
    pop = _population(nets, x, population, n_nets=8, n_inputs=4, d=8, depths=(1, 2, 3, 4), widths=(8, 16, 32), scales=(0.5, 1.0, 2.0))
    inst = pop.instances(seed)
    nets, activation = pop.nets, pop.activation
    g = make_generator(seed)
    lhs, rhs, mad, counts, metas = [], [], [], [], []
    for k, (net, xx, meta) in enumerate(inst):
        N, dd = xx.shape
        law = SingleFeature(baseline=baseline)
        z = torch.eye(dd, dtype=DTYPE)
        pert = Fixed(masks=z, baseline=baseline)

        def infd(phi, xs):
            return infidelity(net, phi, xs, perturbation=pert, n_samples=dd, scaling=None, kind="local").to(DTYPE)

        occ = Occlusion(net, baseline=eb)(xx).to(DTYPE)
        A_opt = Optimal(net, law, n_samples=20 * dd, ridge=1e-10, seed=_sub(seed, k, 6))(xx).to(DTYPE)
        phi_opt_local = _to_local_safe(A_opt, xx, baseline)
        alts = _alternatives(occ, n_alternatives, alt_scale, g)
        K = alts.shape[0]
        inf_alts = infd(alts.reshape(K * N, dd), xx.repeat(K, 1)).view(K, N)
        rhs.append(torch.minimum(inf_alts.min(0).values, infd(phi_opt_local, xx)))
        lhs.append(infd(occ, xx))
        mad.append((to_global(occ, xx, baseline) - A_opt).abs().max(1).values)
        counts.append(N)
        metas.append(meta)
    info = _meta_info(metas, counts)
    info["max_abs_diff"] = torch.cat(mad)
    rhs_t = torch.cat(rhs)
    return _result("Prop. 2.3", "INFD(occlusion) ≤ INFD(Φ) for Φ = Optimal, occlusion + δ", torch.cat(lhs), rhs_t,
                   dict(baseline=baseline, explainer_baseline=eb, n_alternatives=n_alternatives, alt_scale=alt_scale,
                        seed=seed), info, ["exact expectations (each feature once)"], rtol=1e-6,
                   atol=1e-20 + 1e-12 * rhs_t.abs().max())


def _to_local_safe(A, x, baseline):
    from ..explainers import to_local

    return to_local(A, x, baseline).to(DTYPE)


@_single_threaded
def exact_shapley(model, x: Tensor, baseline: float = 0.0) -> Tensor:
    """Exact Shapley values of ``v(S) = f(x_S, baseline_{−S}) − f(baseline)`` by enumerating the
    ``2^d`` coalitions (``d ≤ 16``), per row; shape ``(N, d)`` (the global form ``(x−b) ⊙ Φ``)."""
    N, d = x.shape
    if d > 16:
        raise ValueError(f"exact_shapley enumerates 2^d coalitions: d = {d} is too large (≤ 16)")
    Z = _all_masks(d)  # (2^d, d)
    vals = _coalition_values(model, x, Z, baseline)  # (N, 2^d)
    sizes = Z.sum(1)
    w = torch.tensor([math.factorial(int(s)) * math.factorial(d - int(s) - 1) / math.factorial(d) if s < d else 0.0
                      for s in sizes], dtype=DTYPE)
    phi = torch.zeros(N, d, dtype=DTYPE)
    idx = torch.arange(2**d)
    for i in range(d):
        without = Z[:, i] == 0
        with_i = idx[without] | (1 << i)
        phi[:, i] = ((vals[:, with_i] - vals[:, idx[without]]) * w[without]).sum(1)
    return phi


def _all_masks(d):
    idx = torch.arange(2**d)
    return ((idx.unsqueeze(1) >> torch.arange(d)) & 1).to(DTYPE)


def _coalition_values(model, x, Z, baseline):
    """``f(x_S, b_{−S})`` for every coalition (rows of Z), per instance, minus ``f(b)``: (N, 2^d)."""
    N, d = x.shape
    pts = Z.unsqueeze(0) * x.unsqueeze(1) + (1 - Z.unsqueeze(0)) * baseline
    with torch.no_grad():
        v = _f(model, pts.reshape(-1, d)).view(N, -1)
    return v - v[:, :1]


@_single_threaded
def check_shap_optimality(nets=None, x=None, *, baseline: float = 0.0, efficiency: bool = True,
                          n_alternatives: int = 16, alt_scale: float = 0.1, n_samples: int = 4000, exact=False,
                          seed=0, **population) -> CheckResult:
    """Prop. 2.4: for ``I = (x − b) ⊙ z``, z drawn with the Shapley kernel, the global optimal
    explanation is the Shapley value — as the minimiser of the *exact* kernel-weighted INFD over
    the ``2^d − 2`` proper coalitions **subject to efficiency** ``Σ A = f(x) − f(b)`` (the empty
    and full coalitions carry infinite kernel weight; Lundberg & Lee's Theorem 2).

    Prop. 2.4 is right as stated once the infinite weights are read as constraints (as the proof's
    reference does); a law that drops the full coalition and solves the unconstrained regression is
    a misreading, not an error of the paper.

    lhs: exact INFD of the exact Shapley value (:func:`exact_shapley`, computed by enumeration,
    independently of the regression machinery); rhs: the smallest exact INFD among
    ``n_alternatives`` random perturbations of it, projected onto the efficiency constraint, and
    the estimates of ``xailib``'s own machinery, **not projected**: ``Optimal(ShapleyKernel)``
    (``n_samples`` draws, ``exact=False``; ``exact="auto"`` sums the 2^d − 2 atoms exactly) and
    ``KernelSHAP``. Both impose efficiency themselves; an estimator that did not (or solved another
    regression) would beat the Shapley value off the constraint and the check would fail.
    ``efficiency=False`` drops the projection and adds the unconstrained minimiser (the planted
    error: it beats the Shapley value unless f is additive). ``info``: relative and max-abs errors
    of ``Optimal`` and ``KernelSHAP`` against the exact values.

    Population (:class:`Population`): ``nets`` may be one; otherwise
    ``nets``/``x`` and the keywords ``**population`` describe it; defaults:
    ``n_nets=8, n_inputs=4, d=6, depths=(1, 2, 3, 4), widths=(8, 16, 32), scales=(0.5, 1.0, 2.0)``, ``activation="softplus"``.
    """
    from ..explainers import KernelSHAP, Optimal
    from ..perturbations import ShapleyKernel

    pop = _population(nets, x, population, n_nets=8, n_inputs=4, d=6, depths=(1, 2, 3, 4), widths=(8, 16, 32), scales=(0.5, 1.0, 2.0))
    inst = pop.instances(seed)
    nets, activation = pop.nets, pop.activation
    g = make_generator(seed)
    lhs, rhs, err_opt, abs_opt, err_ks, counts, metas = [], [], [], [], [], [], []
    for k, (net, xx, meta) in enumerate(inst):
        N, dd = xx.shape
        Z = _all_masks(dd)
        sizes = Z.sum(1)
        proper = (sizes > 0) & (sizes < dd)
        Zp = Z[proper]
        sp = sizes[proper]
        w = torch.tensor([(dd - 1) / (math.comb(dd, int(s)) * int(s) * (dd - int(s))) for s in sp], dtype=DTYPE)
        w = w / w.sum()
        vals = _coalition_values(net, xx, Z, baseline)  # v(S) = f(x_S) − f(b)
        full = vals[:, -1]
        # Δf for I = (x − b) ⊙ z: f(x) − f(x − I) = f(x) − f(x_{−S} ...): x − I keeps x where z = 0
        # the coalition kept is the complement of z
        comp = (2**dd - 1) - torch.arange(2**dd)[proper]
        dF = full.unsqueeze(1) - vals[:, comp]  # (N, P)

        def infd(A):  # A (..., N, d)
            return (((A @ Zp.T) - dF) ** 2 * w).sum(-1)

        phi = exact_shapley(net, xx, baseline)

        def project(A):
            if not efficiency:
                return A
            return A - ((A.sum(-1) - full) / dd).unsqueeze(-1)

        alts = project(_alternatives(phi, n_alternatives, alt_scale, g))
        A_opt = Optimal(net, ShapleyKernel(baseline=baseline), n_samples=n_samples, exact=exact,
                        seed=_sub(seed, k, 6))(xx).to(DTYPE)
        A_ks = KernelSHAP(net, n_samples=n_samples, baseline=baseline, seed=_sub(seed, k, 6))(xx).to(DTYPE)
        cands = torch.cat([alts, A_opt.unsqueeze(0), A_ks.unsqueeze(0)])
        if not efficiency:  # the unconstrained least-squares minimiser
            sw = w.sqrt()
            A_ls = torch.linalg.lstsq((Zp * sw.unsqueeze(1)).unsqueeze(0).expand(N, -1, -1),
                                      (dF * sw).unsqueeze(2)).solution.squeeze(2)
            cands = torch.cat([cands, A_ls.unsqueeze(0)])
        lhs.append(infd(phi))
        rhs.append(infd(cands).min(0).values)
        nrm = phi.norm(dim=1).clamp_min(1e-300)
        err_opt.append((A_opt - phi).norm(dim=1) / nrm)
        abs_opt.append((A_opt - phi).abs().max(1).values)
        err_ks.append((A_ks - phi).norm(dim=1) / nrm)
        counts.append(N)
        metas.append(meta)
    info = _meta_info(metas, counts)
    info.update(rel_err_optimal=torch.cat(err_opt), max_abs_err_optimal=torch.cat(abs_opt),
                rel_err_kernelshap=torch.cat(err_ks))
    rhs_t = torch.cat(rhs)
    return _result("Prop. 2.4", "INFD_π(Shapley) ≤ INFD_π(A), Σ A = f(x) − f(b)", torch.cat(lhs), rhs_t,
                   dict(baseline=baseline, efficiency=efficiency, n_alternatives=n_alternatives, alt_scale=alt_scale,
                        n_samples=n_samples, exact=exact, seed=seed), info, ["exact expectations over all coalitions"],
                   rtol=1e-9, atol=1e-14 * (1 + rhs_t.abs().max()))


