"""Robust infidelity: Theorem C.1's lower bound on the robust infidelity of ∇f
(:func:`check_robust_infidelity_lower_bound`).

Background: the book's *The paper in brief*, § Metrics (robust infidelity) and § Theory;
chapter ``notebooks/theory``.
"""
from __future__ import annotations

import math

import torch

from ._core import DTYPE, _ascend, _f, _raw_infidelity, _single_threaded, _sub, max_gradient_change, model_gradient
from .networks import Population, _population, SoftplusNet, _meta_info
from .result import CheckResult, _result


__all__ = ["check_robust_infidelity_lower_bound"]


@_single_threaded
def check_robust_infidelity_lower_bound(nets=None, x=None, *, radius: float = 0.3, sigma: float = 0.3,
                                        n_perturbations: int = 32, positive_part: bool = True, restarts: int = 2,
                                        steps: int = 20, seed=0, **population) -> CheckResult:
    """Theorem C.1 for Φ = ∇f and ``I ~ N(0, σ² Id)`` (ℓ₂ ball of radius r for u). Two parts
    (``info["part"]``), each as lhs ≤ rhs:

    * ``"rinfd"``: ``(A − B − B')₊² / 4 ≤ RINFD(x)`` with ``A = max_u E|IᵀΦ(x+u) − IᵀΦ(x)|``,
      ``B = max_u |f(x+u) − f(x)|``, ``B' = E_I max_u |f(x−I+u) − f(x−I)|`` (the proof needs
      ``B(x − I)`` inside the expectation). The paper squares ``A − B − B'`` without the positive
      part, which is false when ``A < B + B'`` (``positive_part=False`` reproduces the literal
      statement: a linear model violates it).
    * ``"sens"``: ``A ≤ E‖I‖ · SENS_max(Φ, x, r)``.

    Estimates (all maxima from below, over a *shared* set of feasible candidates): ``û``
    maximises A by gradient ascent; ``B̂``, ``B̂'``, the SENS estimate and the RINFD estimate
    are maxima over candidate sets that contain ``û`` (plus their own ascents, and ``u = 0``
    for RINFD). Then ``B̂ ≥ B(û)`` etc., and the proof's chain at ``û`` makes the checked
    inequality exact for the estimates: an error can hide a violation, never invent one.
    All expectations over ``I`` use the same ``n_perturbations`` draws. For softplus networks
    ``xailib.metrics.robust_infidelity`` (ℓ∞ ball of radius ``r/√d``, inscribed in the ℓ₂ ball; same
    draws) adds one more lower estimate of RINFD (``info["rinfd_metrics"]``).

    Population (:class:`Population`): ``nets`` may be one; otherwise
    ``nets``/``x`` and the keywords ``**population`` describe it; defaults:
    ``n_nets=4, n_inputs=4, d=8, depths=(1, 2, 3), widths=(8, 16, 32), scales=(0.5, 1.0, 2.0)``, ``activation="softplus"``.
    """
    from ..perturbations import Fixed, Gaussian

    pop = _population(nets, x, population, n_nets=4, n_inputs=4, d=8, depths=(1, 2, 3), widths=(8, 16, 32), scales=(0.5, 1.0, 2.0))
    inst = pop.instances(seed)
    nets, activation = pop.nets, pop.activation
    lhs, rhs, parts, counts, metas = [], [], [], [], []
    from ..explainers import Gradient
    from ..metrics import robust_infidelity

    use_metrics = isinstance(nets, (type(None), SoftplusNet)) or (
        isinstance(nets, (list, tuple)) and all(isinstance(n, SoftplusNet) for n in nets))
    infos = {"A": [], "B": [], "B_prime": [], "rinfd_at_0": [], "rinfd_metrics": []}
    for k, (net, xx, meta) in enumerate(inst):
        N, dd = xx.shape
        sk = _sub(seed, k)
        I = Gaussian(sigma).draw((dd,), n_perturbations, generator=sk, dtype=DTYPE)  # (n, d)
        n = I.shape[0]
        phi0 = model_gradient(net, xx).detach()
        f0 = _f(net, xx).detach()

        def A_obj(y, idx):
            gy = model_gradient(net, y, create_graph=True)
            return ((gy - phi0[idx]) @ I.T).abs().mean(1)

        A_hat, u_A = _ascend(A_obj, xx, radius, restarts, steps, sk)

        def B_obj(y, idx):
            return (_f(net, y) - f0[idx]).abs()

        B_asc, _ = _ascend(B_obj, xx, radius, restarts, steps, sk + 1, extra=u_A)
        B_hat = B_asc  # includes the candidate û
        # B' = E_I max_u |f(x − I + u) − f(x − I)|: one ascent per (instance, draw)
        xI = (xx.unsqueeze(1) - I.unsqueeze(0)).reshape(N * n, dd)
        fI = _f(net, xI).detach()

        def Bp_obj(y, idx):
            return (_f(net, y) - fI[idx]).abs()

        Bp_asc, _ = _ascend(Bp_obj, xI, radius, max(1, restarts - 1), max(5, steps // 2), sk + 2,
                            extra=u_A.repeat_interleave(n, 0))
        Bp_hat = Bp_asc.view(N, n).mean(1)

        def infd_at(u):
            y = xx + u
            return _raw_infidelity(net, model_gradient(net, y), y, Fixed(I))

        def infd_obj(y, idx):
            gy = model_gradient(net, y, create_graph=True)
            fy = _f(net, y)
            fyI = _f(net, (y.unsqueeze(1) - I.unsqueeze(0)).reshape(-1, dd)).view(y.shape[0], n)
            return ((gy @ I.T - (fy.unsqueeze(1) - fyI)) ** 2).mean(1)

        _, u_R = _ascend(infd_obj, xx, radius, restarts, steps, sk + 3)
        r0 = infd_at(torch.zeros_like(xx))
        rinfd = torch.maximum(torch.maximum(r0, infd_at(u_A)), infd_at(u_R))
        if use_metrics:  # xailib.metrics.robust_infidelity on the inscribed ℓ∞ ball, same draws
            r_m = robust_infidelity(net, Gradient(net), xx, perturbation=Fixed(I), radius=radius / math.sqrt(dd),
                                    n_samples=n, scaling=None, generator=sk).to(DTYPE)
            rinfd = torch.maximum(rinfd, r_m)
            infos["rinfd_metrics"].append(r_m.repeat(2))
        diff = A_hat - B_hat - Bp_hat
        lb = (diff.clamp_min(0) if positive_part else diff) ** 2 / 4
        sens, _ = max_gradient_change(net, xx, radius, restarts, steps, seed=sk + 4, extra=u_A)
        EI = I.norm(dim=1).mean()
        lhs += [lb, A_hat]
        rhs += [rinfd, EI * sens]
        parts += ["rinfd"] * N + ["sens"] * N
        for key, v in (("A", A_hat), ("B", B_hat), ("B_prime", Bp_hat), ("rinfd_at_0", r0)):
            infos[key].append(v.repeat(2))
        counts.append(2 * N)
        metas.append(meta)
    info = _meta_info(metas, counts)
    info["part"] = parts
    info.update({k: torch.cat(v) for k, v in infos.items() if v})
    notes = ["A, B, B', SENS, RINFD: maxima over shared feasible candidates (err low; the inequality is exact "
             "for the estimates)", "positive part: " + str(positive_part)]
    lhs_t, rhs_t = torch.cat(lhs), torch.cat(rhs)
    return _result("Thm. C.1", "(A − B − B')₊²/4 ≤ RINFD;  A ≤ E‖I‖ SENS_max", lhs_t, rhs_t,
                   dict(radius=radius, sigma=sigma, n_perturbations=n_perturbations, positive_part=positive_part,
                        restarts=restarts, steps=steps, seed=seed, activation=activation), info, notes, rtol=1e-7,
                   atol=1e-12 * (1 + rhs_t.abs().max()))


