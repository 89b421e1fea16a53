"""Robust infidelity: Theorem C.1's lower bound on the robust infidelity of ∇f
(:func:`check_robust_infidelity_lower_bound`).

Background: the book's *The paper in brief*, § Metrics (robust infidelity) and § Theory;
chapter ``notebooks/theory``.
"""
from __future__ import annotations

import math

import torch

from ._core import DTYPE, _ascend, _f, _gaussian_draws, _raw_infidelity, _single_threaded, _sub, max_gradient_change, model_gradient
from .networks import Population, _population, SoftplusNet, _meta_info
from .result import CheckResult, _result


__all__ = ["check_robust_infidelity_lower_bound"]


PLANTS = (None, "rinfd_at_x", "no_quarter", "no_B_prime")


def _expected_gaussian_norm(sigma: float, d: int) -> float:
    """``E‖I‖`` for ``I ~ N(0, σ² Id)`` in ``d`` dimensions: ``σ √2 Γ((d+1)/2) / Γ(d/2)``."""
    return sigma * math.sqrt(2.0) * math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2))


@_single_threaded
def check_robust_infidelity_lower_bound(nets=None, x=None, *, radius: float = 0.3, sigma: float = 0.3,
                                        n_perturbations: int = 64, positive_part: bool = True, restarts: int = 3,
                                        steps: int = 20, plant=None, use_metrics: bool = True, seed=0,
                                        **population) -> CheckResult:
    """Theorem C.1 for Φ = ∇f and ``I ~ N(0, σ² Id)`` (ℓ₂ ball of radius r for u). Two parts
    (``info["part"]``), each as lhs ≤ rhs:

    * ``"rinfd"``: ``(A − B(x) − B(x − I))₊² / 4 ≤ RINFD(x)`` with the paper's
      ``A = max_u E_I|IᵀΦ(x+u) − IᵀΦ(x)|``, ``B(x) = max_u E_I|f(x+u) − f(x)|`` (= ``max_u |f(x+u) − f(x)|``)
      and ``B(x − I) = max_u E_I|f(x − I + u) − f(x − I)|``: the expectation is **inside** the max,
      one ``u`` for all draws, as the proof uses it (an ``E_I max_u`` would be valid but looser). The
      paper squares ``A − B − B'`` without the positive part, which is false when ``A < B + B'``
      (``positive_part=False`` reproduces the literal statement: a linear model violates it).
    * ``"sens"``: ``A ≤ E‖I‖ · SENS_max(Φ, x, r)``, ``E‖I‖`` in closed form.

    **The two sides are estimated independently**: ``A``, ``B``, ``B(x − I)``, ``SENS_max`` and
    ``RINFD`` each by their own projected-gradient ascent (own random restarts, no shared
    maximiser), the left side on one set of ``n_perturbations`` draws of ``I`` and ``RINFD`` on an
    independent set; ``RINFD`` also includes ``u = 0`` and (``use_metrics``, softplus networks)
    ``xailib.metrics.robust_infidelity`` on the inscribed ℓ∞ ball of radius ``r/√d``
    (``info["rinfd_metrics"]``). So a false statement or a wrong implementation can show as a
    violation. Which way each estimate errs: every max is an attained value (**errs low**); ``A``
    low and ``RINFD`` low are the safe and unsafe side respectively, ``B``, ``B'`` low inflate the
    left side (unsafe); the Monte-Carlo error of the expectations goes either way. On small
    networks the ascents are accurate, and the bound, when not vacuous, is far from tight.

    ``plant`` (a planted error the check must report): ``"rinfd_at_x"`` (a robust infidelity that
    forgets the max: INFD at ``x`` only), ``"no_quarter"`` (the false statement without the
    ``1/4``), ``"no_B_prime"`` (the false statement without ``B(x − I)``).

    Population (:class:`Population`): ``nets`` may be one; otherwise
    ``nets``/``x`` and the keywords ``**population`` describe it; defaults:
    ``n_nets=4, n_inputs=4, d=8, depths=(1, 2, 3), widths=(8, 16, 32), scales=(0.5, 1.0, 2.0)``, ``activation="softplus"``.
    """
    from ..explainers import Gradient
    from ..metrics import robust_infidelity
    from ..perturbations import Fixed, Gaussian

    if plant not in PLANTS:
        raise ValueError(f"`plant` must be one of {PLANTS}, got {plant!r}")
    pop = _population(nets, x, population, n_nets=4, n_inputs=4, d=8, depths=(1, 2, 3), widths=(8, 16, 32), scales=(0.5, 1.0, 2.0))
    inst = pop.instances(seed)
    nets, activation = pop.nets, pop.activation
    lhs, rhs, parts, counts, metas = [], [], [], [], []
    infos = {"A": [], "B": [], "B_prime": [], "rinfd_at_0": [], "rinfd_metrics": [], "sens": []}
    for k, (net, xx, meta) in enumerate(inst):
        N, dd = xx.shape
        sk = _sub(seed, k)
        I = _gaussian_draws(sigma, dd, n_perturbations, sk)  # (n, d): left side
        J = _gaussian_draws(sigma, dd, n_perturbations, sk + 11)  # independent: RINFD
        n = I.shape[0]
        phi0 = model_gradient(net, xx).detach()
        f0 = _f(net, xx).detach()

        def A_obj(y, idx):
            gy = model_gradient(net, y, create_graph=True)
            return ((gy - phi0[idx]) @ I.T).abs().mean(1)

        A_hat, _ = _ascend(A_obj, xx, radius, restarts, steps, sk)

        def B_obj(y, idx):
            return (_f(net, y) - f0[idx]).abs()

        B_hat, _ = _ascend(B_obj, xx, radius, restarts, steps, sk + 1)
        fI = _f(net, (xx.unsqueeze(1) - I.unsqueeze(0)).reshape(N * n, dd)).detach().view(N, n)

        def Bp_obj(y, idx):  # E_I |f(y − I) − f(x − I)|, one u for all draws
            fyI = _f(net, (y.unsqueeze(1) - I.unsqueeze(0)).reshape(-1, dd)).view(y.shape[0], n)
            return (fyI - fI[idx]).abs().mean(1)

        Bp_hat, _ = _ascend(Bp_obj, xx, radius, restarts, steps, sk + 2)

        def infd_obj(y, idx):
            gy = model_gradient(net, y, create_graph=True)
            fy = _f(net, y)
            fyJ = _f(net, (y.unsqueeze(1) - J.unsqueeze(0)).reshape(-1, dd)).view(y.shape[0], n)
            return ((gy @ J.T - (fy.unsqueeze(1) - fyJ)) ** 2).mean(1)

        r0 = _raw_infidelity(net, phi0, xx, Fixed(J))
        if plant == "rinfd_at_x":
            rinfd = r0
        else:
            rinfd, _ = _ascend(infd_obj, xx, radius, restarts, steps, sk + 3, extra=torch.zeros_like(xx))
            rinfd = torch.maximum(rinfd, r0)
        if use_metrics and isinstance(net, SoftplusNet) and plant != "rinfd_at_x":
            r_m = robust_infidelity(net, Gradient(net), xx, perturbation=Fixed(J), radius=radius / math.sqrt(dd),
                                    n_samples=n, scaling=None, generator=sk).to(DTYPE)
            rinfd = torch.maximum(rinfd, r_m)
        else:
            r_m = torch.full((N,), math.nan, dtype=DTYPE)
        diff = A_hat - B_hat - (0.0 if plant == "no_B_prime" else Bp_hat)
        lb = (diff.clamp_min(0) if positive_part else diff) ** 2 / (1.0 if plant == "no_quarter" else 4.0)
        sens, _ = max_gradient_change(net, xx, radius, restarts, steps, seed=sk + 4)
        EI = _expected_gaussian_norm(sigma, dd)
        lhs += [lb, A_hat]
        rhs += [rinfd, EI * sens]
        parts += ["rinfd"] * N + ["sens"] * N
        for key, v in (("A", A_hat), ("B", B_hat), ("B_prime", Bp_hat), ("rinfd_at_0", r0), ("rinfd_metrics", r_m),
                       ("sens", sens)):
            infos[key].append(v.repeat(2))
        counts.append(2 * N)
        metas.append(meta)
    info = _meta_info(metas, counts)
    info["part"] = parts
    info.update({k: torch.cat(v) for k, v in infos.items() if v})
    notes = ["A, B, B', SENS, RINFD: independent ascents (attained values, err low); RINFD on independent draws",
             "B(x − I) = max_u E_I |f(x − I + u) − f(x − I)| (expectation inside the max)",
             "positive part: " + str(positive_part)] + ([f"PLANTED ERROR: {plant}"] if plant else [])
    lhs_t, rhs_t = torch.cat(lhs), torch.cat(rhs)
    return _result("Thm. C.1", "(A − B(x) − B(x−I))₊²/4 ≤ RINFD;  A ≤ E‖I‖ SENS_max", lhs_t, rhs_t,
                   dict(radius=radius, sigma=sigma, n_perturbations=n_perturbations, positive_part=positive_part,
                        restarts=restarts, steps=steps, plant=plant, seed=seed, activation=activation), info, notes,
                   rtol=1e-7, atol=1e-12 * (1 + rhs_t.abs().max()))
