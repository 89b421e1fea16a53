"""SmoothGrad theorems: Theorem 4.1 (smoothing lowers the sensitivity) and Theorem 4.2 (and, under a
condition, the infidelity) for Grad-SG.

Background: the book's *The paper in brief*, § Theory; chapter ``notebooks/theory``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .._utils import function_differences
from ._core import DTYPE, _ascend, _raw_infidelity, _single_threaded, _sub, max_gradient_change, model_gradient
from .networks import Population, _population, _meta_info
from .result import CheckResult, _result


__all__ = ["check_smoothgrad_sensitivity", "check_smoothgrad_infidelity"]


def _smoothgrad(net, radius, n_samples, noise, seed):
    from ..explainers import Gradient, SmoothGrad

    return SmoothGrad(Gradient(net), radius=radius, n_samples=n_samples, noise=noise, seed=seed)


def _sg_noise(sg, d) -> Tensor:
    return sg.draw_noise((d,), sg._make_generator(None, torch.device("cpu")), torch.device("cpu"), DTYPE)


@_single_threaded
def check_smoothgrad_sensitivity(nets=None, x=None, *, radius: float = 0.3, sg_radius: float = 0.3,
                                 sg_samples: int = 32, noise: str = "uniform_linf", common_noise: bool = True,
                                 restarts: int = 3, steps: int = 25, seed=0, **population) -> CheckResult:
    """Theorem 4.1 for Grad-SG (``xailib.explainers.SmoothGrad`` of ``Gradient``):
    ``SENS_max(Φ_k, x, r) ≤ ∫ SENS_max(Φ, z, r) k(x, z) dz`` (raw SENS, ℓ₂ ball and distance).

    The kernel is the empirical measure of SmoothGrad's own noise draws ``δ_j`` (common random
    numbers: the same ``δ_j`` at x and at every y), for which the theorem holds exactly.

    * lhs: ``max_u ‖Φ_k(x+u) − Φ_k(x)‖`` by gradient ascent (errs low); ``û`` its argmax.
    * rhs: ``(1/n) Σ_j Ŝ_j``, ``Ŝ_j`` the max of ``‖∇f(z_j+u) − ∇f(z_j)‖`` over an ascent started
      at ``û`` and random points (errs low, but ``≥`` the value at ``û``; by the triangle inequality
      at ``û`` the checked inequality is then exact for the estimates).

    ``common_noise=False`` draws the noise at ``x + u`` independently of that at ``x`` (what a
    naive implementation does): the lhs then measures Monte-Carlo noise and the check can fail.
    Φ_k(x) is cross-checked against ``SmoothGrad(...)(x)`` (``info["sg_mismatch"]``).

    Population (:class:`Population`): ``nets`` may be one; otherwise
    ``nets``/``x`` and the keywords ``**population`` describe it; defaults:
    ``n_nets=6, n_inputs=4, d=8, depths=(1, 2, 3), widths=(8, 16, 32), scales=(0.5, 1.0, 2.0)``, ``activation="softplus"``.
    """
    pop = _population(nets, x, population, n_nets=6, n_inputs=4, d=8, depths=(1, 2, 3), widths=(8, 16, 32), scales=(0.5, 1.0, 2.0))
    inst = pop.instances(seed)
    nets, activation = pop.nets, pop.activation
    lhs, rhs, base_sens, mism, counts, metas = [], [], [], [], [], []
    for k, (net, xx, meta) in enumerate(inst):
        N, dd = xx.shape
        sk = _sub(seed, k)
        sg = _smoothgrad(net, sg_radius, sg_samples, noise, sk)
        delta = _sg_noise(sg, dd)  # (n, d)
        delta_y = delta if common_noise else _sg_noise(_smoothgrad(net, sg_radius, sg_samples, noise, sk + 7), dd)
        n = delta.shape[0]
        z = (xx.unsqueeze(1) + delta.unsqueeze(0)).reshape(N * n, dd)
        gz = model_gradient(net, z).detach().view(N, n, dd)
        phik = gz.mean(1)
        mism.append((phik - sg(xx).to(DTYPE)).abs().max(1).values)

        def obj(y, idx):
            yy = (y.unsqueeze(1) + delta_y.unsqueeze(0)).reshape(-1, dd)
            g = model_gradient(net, yy, create_graph=True).view(y.shape[0], n, dd).mean(1)
            return (g - phik[idx]).norm(dim=1)

        s_k, u_hat = _ascend(obj, xx, radius, restarts, steps, sk)
        s_base, _ = max_gradient_change(net, z, radius, max(1, restarts - 1), max(5, steps // 2), seed=sk + 1,
                                        extra=u_hat.repeat_interleave(n, 0))
        lhs.append(s_k)
        rhs.append(s_base.view(N, n).mean(1))
        base_sens.append(max_gradient_change(net, xx, radius, restarts, steps, seed=sk + 2)[0])
        counts.append(N)
        metas.append(meta)
    info = _meta_info(metas, counts)
    info["sens_base_at_x"] = torch.cat(base_sens)
    info["sg_mismatch"] = torch.cat(mism)
    notes = ["lhs: ascent (errs low); rhs: per-draw ascents sharing the lhs argmax (exact for the estimates)",
             f"common noise: {common_noise}"]
    return _result("Thm. 4.1", "SENS_max(Φ_k, x, r) ≤ ∫ SENS_max(Φ, z, r) k(x, z) dz", torch.cat(lhs),
                   torch.cat(rhs), dict(radius=radius, sg_radius=sg_radius, sg_samples=sg_samples, noise=noise,
                                        common_noise=common_noise, restarts=restarts, steps=steps, seed=seed,
                                        activation=activation), info, notes, rtol=1e-7, atol=1e-12)


@_single_threaded
def check_smoothgrad_infidelity(nets=None, x=None, *, sg_radius: float = 0.05, sg_samples: int = 32,
                                noise: str = "uniform_linf", sigma: float = 0.5, n_perturbations: int = 128,
                                seed=0, **population) -> CheckResult:
    """Theorem 4.2 for Grad-SG with ``I ~ N(0, σ² Id)``:
    ``INFD(Φ_k, x) ≤ C₂ / (1 − 2√C₁) ∫ INFD(Φ, z) k(x, z) dz`` when ``C₁ < 1/4``.

    With ``T(z) = f(z) − f(z − I)`` (appendix D.7, at ``u = 0``), the smallest constants for which
    the proof's conditions hold are
    ``C₁ = ∫∫ |T(z) − T(x)|² k dμ / ∫∫ |IᵀΦ(z) − T(x)|² k dμ`` and
    ``C₂ = ∫ |∫ IᵀΦ(z) k dz − T(x)|² dμ / ∫∫ |IᵀΦ(z) − T(x)|² k dμ`` (``C₂ ≤ 1`` by Jensen).
    Both are computed on the empirical measures (SmoothGrad's noise draws as ``k``, the same
    ``I`` draws everywhere), for which the theorem then holds exactly; no sup is estimated.
    An instance with ``C₁ ≥ 1/4`` violates the hypothesis: ``rhs = inf``, and it is reported as
    not holding (``hypothesis`` False). A large kernel (``sg_radius``) against small
    perturbations (``sigma``) produces such instances.
    INFD values by ``xailib.metrics.infidelity`` (raw) on replayed draws.

    Population (:class:`Population`): ``nets`` may be one; otherwise
    ``nets``/``x`` and the keywords ``**population`` describe it; defaults:
    ``n_nets=8, n_inputs=4, d=8, depths=(1, 2, 3, 4), widths=(8, 16, 32), scales=(0.5, 1.0, 2.0)``, ``activation="softplus"``.
    """
    from ..perturbations import Fixed, Gaussian

    pop = _population(nets, x, population, n_nets=8, n_inputs=4, d=8, depths=(1, 2, 3, 4), widths=(8, 16, 32), scales=(0.5, 1.0, 2.0))
    inst = pop.instances(seed)
    nets, activation = pop.nets, pop.activation
    lhs, rhs, C1s, C2s, infd_x, hyp, counts, metas = [], [], [], [], [], [], [], []
    for k, (net, xx, meta) in enumerate(inst):
        N, dd = xx.shape
        sk = _sub(seed, k)
        sg = _smoothgrad(net, sg_radius, sg_samples, noise, sk)
        delta = _sg_noise(sg, dd)
        n = delta.shape[0]
        I = Gaussian(sigma).draw((dd,), n_perturbations, generator=sk, dtype=DTYPE)
        pert = Fixed(I)
        z = (xx.unsqueeze(1) + delta.unsqueeze(0)).reshape(N * n, dd)
        gz = model_gradient(net, z).detach()  # (N n, d)
        Tz = function_differences(net, z, None, I.unsqueeze(0).expand(N * n, -1, -1)).view(N, n, -1)
        Tx = function_differences(net, xx, None, I.unsqueeze(0).expand(N, -1, -1))  # (N, m)
        IPz = (gz @ I.T).view(N, n, -1)
        den = ((IPz - Tx.unsqueeze(1)) ** 2).mean((1, 2))
        C1 = ((Tz - Tx.unsqueeze(1)) ** 2).mean((1, 2)) / den
        C2 = ((IPz.mean(1) - Tx) ** 2).mean(1) / den
        phik = gz.view(N, n, dd).mean(1)
        l = _raw_infidelity(net, phik, xx, pert)
        infd_z = _raw_infidelity(net, gz, z, pert).view(N, n).mean(1)
        ok = C1 < 0.25
        factor = torch.where(ok, C2 / (1 - 2 * C1.clamp(max=0.25).sqrt()).clamp_min(1e-300),
                             torch.full_like(C2, math.inf))
        lhs.append(l)
        rhs.append(factor * infd_z)
        C1s.append(C1)
        C2s.append(C2)
        hyp.append(ok)
        infd_x.append(_raw_infidelity(net, model_gradient(net, xx), xx, pert))
        counts.append(N)
        metas.append(meta)
    info = _meta_info(metas, counts)
    info.update(C1=torch.cat(C1s), C2=torch.cat(C2s), infd_grad_at_x=torch.cat(infd_x))
    notes = ["C1, C2: exact on the empirical measures (common draws); no sup estimated",
             "instances with C1 >= 1/4 violate the hypothesis and are reported as not holding"]
    lhs_t, rhs_t = torch.cat(lhs), torch.cat(rhs)
    return _result("Thm. 4.2", "INFD(Φ_k) ≤ C₂/(1 − 2√C₁) ∫ INFD(Φ, z) k dz", lhs_t, rhs_t,
                   dict(sg_radius=sg_radius, sg_samples=sg_samples, noise=noise, sigma=sigma,
                        n_perturbations=n_perturbations, seed=seed, activation=activation), info, notes,
                   rtol=1e-7, atol=1e-14, hypothesis=torch.cat(hyp))


