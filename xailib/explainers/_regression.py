"""Moments and solves for the optimal explanation of Prop. 2.1 (function-difference form) and
its binary B.2 form (the book's *The paper in brief*, § Perturbation laws and optimal
explanations and § Monte-Carlo hygiene). Used by :class:`Optimal` and :class:`KernelSHAP`:
Monte-Carlo moments, the leave-one-out cross-validated ridge fit (:func:`ridge_cv`) and the
efficiency-constrained solve of the Shapley kernel (:func:`constrained_solve`).

* binary laws ``I = (x − b) ⊙ expand(z)``: ``M = E[zzᵀ]`` (``G × G``, independent of ``x``:
  accumulated once, sparse when the masks are sparse, factored once) and ``c = E[z Δf]`` (``N × G``);
* continuous laws: ``M_n = E[IIᵀ]`` (``d × d`` per instance, or shared when ``I`` does not
  depend on ``x``) and ``c_n = E[I Δf]``.

Draws are made in blocks of a fixed size (independent of ``batch_size``) from one generator,
so results do not depend on ``batch_size`` nor on which instances share a batch.
"""
from __future__ import annotations

from typing import Iterator, Optional, Tuple

import torch
from torch import Tensor

from .._utils import chunks, forward_batched, function_differences, outputs_batched, progress, select_output

#: samples drawn per call to ``perturbation.draw`` (fixed: results must not depend on batch_size)
DRAW_BLOCK = 2048


def draw_blocks(law, feature_shape, n: int, generator, device, dtype) -> Iterator[Tuple[int, Tensor]]:
    """Yield ``(start, draws)`` blocks covering ``n`` draws of ``law``.

    Replaying laws (``Fixed``) are drawn in one piece (their draws are stored anyway).
    """
    if getattr(law, "n_fixed", None) is not None:
        yield 0, law.draw(feature_shape, n, generator, device, dtype)
        return
    for s in range(0, n, DRAW_BLOCK):
        m = min(DRAW_BLOCK, n - s)
        yield s, law.draw(feature_shape, m, generator, device, dtype)


def n_draws(law, n_samples: int) -> int:
    nf = getattr(law, "n_fixed", None)
    return n_samples if nf is None else min(n_samples, nf)


def add_gram(M: Tensor, z: Tensor) -> None:
    """``M += zᵀz`` in float64; sparse product when the 0/1 masks are large and sparse."""
    z64 = z.to(torch.float64)
    G = z.shape[1]
    if G >= 1024 and z.device.type == "cpu" and float(z64.mean()) < 0.1:
        M.addmm_(z64.t().to_sparse_coo(), z64)
    else:
        M.addmm_(z64.t(), z64)


def binary_moments(model, law, x: Tensor, target: Optional[Tensor], n: int, generator, batch_size: int,
                   fx: Tensor, need_gram: bool = True, paired: bool = False, desc: str = "masks",
                   draws: Optional[list] = None):
    """``(M, c)``: ``M = (1/n) Σ zzᵀ`` (G×G float64, None when ``need_gram`` is False) and
    ``c = (1/n) Σ z Δf`` ((N, G) float64), ``Δf = f(x) − f(x − (x − b) ⊙ expand(z))``.

    ``paired=True``: each block of draws ``z`` is followed by its complements ``1 − z``
    (antithetic sampling, valid for laws symmetric under complement such as the Shapley kernel).
    ``draws``: a list that keeps the draws (as bool blocks): an empty list is filled with this
    call's draws, a filled one is replayed instead of drawing (the same draws, without drawing
    them again: KernelSHAP's masks at every sensitivity neighbour).
    """
    F = tuple(x.shape[1:])
    G = law.n_groups(F)
    M = torch.zeros(G, G, dtype=torch.float64, device=x.device) if need_gram else None
    c = torch.zeros(x.shape[0], G, dtype=torch.float64, device=x.device)
    n_base = -(-n // 2) if paired else n
    total = 0
    blocks = list(range(0, n_base, DRAW_BLOCK)) if getattr(law, "n_fixed", None) is None else [0]
    if draws:
        source = ((None, z.to(x.dtype)) for z in draws)
    else:
        source = draw_blocks(law, F, n_base, generator, x.device, x.dtype)
        if draws is not None:
            source = _recording(source, draws)
    for _, z in progress(source, total=len(blocks), desc=desc):
        zs = [z, 1 - z] if paired else [z]
        for zz in zs:
            if total >= n:
                break
            zz = zz[: n - total]
            total += zz.shape[0]
            if M is not None:
                add_gram(M, zz)
            df = function_differences(model, x, target, None, batch_size, fx, law=law, draws=zz)
            c.addmm_(df.to(torch.float64), zz.to(torch.float64))
    if M is not None:
        M /= total
    c /= total
    return M, c


def _recording(blocks, store: list):
    for s, z in blocks:
        store.append(z.to(torch.bool))
        yield s, z


def add_ridge_(M: Tensor, ridge: float) -> Tensor:
    """``M + ridge · (tr M / d) · Id`` in place (batched over leading dims); returns M."""
    d = M.shape[-1]
    tr = M.diagonal(dim1=-2, dim2=-1).sum(-1)
    lam = ridge * tr / d
    lam = torch.where(lam > 0, lam, torch.full_like(lam, ridge))
    M.diagonal(dim1=-2, dim2=-1).add_(lam.unsqueeze(-1))
    return M


def cholesky_factor(M: Tensor, what: str = "E[IIᵀ]") -> Tensor:
    """Cholesky factor of a (batch of) SPD matrices, computed **in place** (``M`` is overwritten:
    no second G×G buffer); raises a clear error when not SPD."""
    info = torch.empty(0, dtype=torch.int32, device=M.device)
    L, info = torch.linalg.cholesky_ex(M, out=(M, info))
    if bool((info != 0).any()):
        raise ValueError(
            f"{what} + ridge is not positive definite (the perturbation law does not excite every "
            "feature/group with these samples): increase `ridge` or `n_samples`"
        )
    return L


def constrained_solve(L: Tensor, c: Tensor, total: Tensor) -> Tensor:
    """Least squares under the efficiency constraint ``1ᵀg = total`` (Lundberg & Lee's Theorem 2:
    the Shapley kernel's infinite weight at ``|z| = d`` is this constraint).

    Minimises ``gᵀMg − 2cᵀg`` subject to ``1ᵀg_n = total_n`` for every instance, given the Cholesky
    factor ``L`` of ``M`` (G×G) and ``c`` (N, G): ``g = w − u μ`` with ``w = M⁻¹c``, ``u = M⁻¹1``,
    ``μ = (1ᵀw − total) / 1ᵀu``. Returns (N, G) float64.
    """
    G = L.shape[-1]
    w = torch.cholesky_solve(c.t().to(L.dtype), L)  # (G, N)
    u = torch.cholesky_solve(torch.ones(G, 1, dtype=L.dtype, device=L.device), L)  # (G, 1)
    mu = (w.sum(0) - total.to(L.dtype)) / u.sum()
    return (w - u * mu.view(1, -1)).t()


#: default relative ridge grid of the cross-validated fits (``λ = ρ · tr E[IIᵀ] / d``, ρ on the grid)
CV_GRID = tuple(float(v) for v in torch.logspace(-6, 2, 17, dtype=torch.float64))
#: bytes of stored design (n × d float64) above which ``ridge="cv"`` falls back to a fixed ridge
CV_BUDGET = 1 << 30


def check_grid(grid) -> Tensor:
    """The relative ridge grid as a float64 tensor; ``ValueError`` naming ``ridge_grid`` otherwise."""
    try:
        g = torch.as_tensor(grid if grid is not None else CV_GRID, dtype=torch.float64).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"`ridge_grid` must be a sequence of numbers > 0, got {grid!r}") from None
    if g.numel() == 0 or not torch.isfinite(g).all() or not (g > 0).all():
        raise ValueError(f"`ridge_grid` must be a non-empty sequence of finite numbers > 0, got {grid!r}")
    return g


def ridge_cv(X: Tensor, Y: Tensor, grid: Tensor, dual: Optional[bool] = None) -> Tuple[Tensor, Tensor, Tensor]:
    """Ridge regressions ``y ≈ Xφ`` for every row ``y`` of ``Y`` (N', n) on the shared design ``X``
    (n, d), each with its own ridge chosen by closed-form leave-one-out cross-validation.

    For ``ρ`` on ``grid``: ``φ_ρ = (XᵀX/n + λ Id)⁻¹ Xᵀy/n`` with ``λ = ρ · tr(XᵀX/n) / d`` (the
    scale of :func:`add_ridge_`). With ``XᵀX = V diag(s) Vᵀ`` and ``U = XV``, the hat matrix's
    diagonal is ``h_j = Σ_k U_jk² / (s_k + nλ)`` and the leave-one-out residual of draw ``j`` is
    ``e_j / (1 − h_j)``: its mean square is the out-of-sample (unscaled) infidelity of ``φ_ρ`` on
    fresh draws, estimated without refitting. The ``ρ`` minimising it is kept per row.
    Returns ``(φ (N', d), ρ chosen (N',), criterion (N', len(grid)))``, float64.
    Cost: one ``m × m`` eigendecomposition, ``m = min(n, d)``, and ``O(n m (N' + len(grid) N'))``.
    When ``n < d`` (``dual=None``, or ``dual=True``) the same fit is computed from the ``n × n``
    kernel ``XXᵀ = W diag(s) Wᵀ``: the nonzero eigenvalues ``s`` are those of ``XᵀX``, ``U = XV =
    W diag(√s)``, and ``φ = Xᵀ W diag(1/(s + nλ)) Wᵀ y`` (the components of ``XᵀX``'s null space
    carry no signal, ``Uᵀy = 0`` there), so primal and dual agree to rounding.
    """
    X = X.to(torch.float64)
    Y = Y.to(torch.float64)
    n, d = X.shape
    use_dual = (n < d) if dual is None else bool(dual)
    if use_dual:
        s, W = torch.linalg.eigh(X @ X.T)
        s = s.clamp_min(0)
        U = W * s.sqrt().view(1, -1)  # (n, n): XV restricted to the range of X
    else:
        s, V = torch.linalg.eigh(X.T @ X)
        s = s.clamp_min(0)
        U = X @ V  # (n, d)
    U2 = U * U
    q = U.T @ Y.T  # (m, N')
    tr = s.sum()
    crit = torch.empty(Y.shape[0], grid.numel(), dtype=torch.float64, device=X.device)
    for k, rho in enumerate(grid.tolist()):
        mu = rho * tr / d if tr > 0 else torch.tensor(rho * n, dtype=torch.float64)
        f = 1.0 / (s + mu)
        fitted = U @ (q * f.view(-1, 1))  # (n, N')
        h = (U2 @ f).clamp(max=1 - 1e-12)
        crit[:, k] = (((Y.T - fitted) / (1 - h).view(-1, 1)) ** 2).mean(0)
    best = crit.argmin(1)
    rho_best = grid.to(X.device)[best]
    mu = rho_best * tr / d if tr > 0 else rho_best * n
    if use_dual:
        coef = X.T @ (W @ ((W.T @ Y.T) / (s.view(-1, 1) + mu.view(1, -1))))  # (d, N')
    else:
        coef = V @ (q / (s.view(-1, 1) + mu.view(1, -1)))  # (d, N')
    return coef.T, rho_best, crit


def continuous_mode(law) -> str:
    """How ``I`` depends on ``x`` for a continuous law (chooses the cheapest exact algebra):

    * ``"shared_point"``: the perturbed input ``x − I`` is the same for every instance
      (NoisyBaseline: ``x − I = x₀``): the model runs once per draw, and
      ``E[IIᵀ] = E[x₀x₀ᵀ] − m xᵀ − x mᵀ + x xᵀ`` (``m = E[x₀]``) from moments shared by all instances;
    * ``"shared_I"``: ``I`` is the same for every instance (Gaussian, Infinitesimal, Fixed(I)):
      ``E[IIᵀ]`` is shared and factored once;
    * ``"general"``: per-instance accumulation of ``E[IIᵀ]``.
    """
    from .. import perturbations as P

    if isinstance(law, P.NoisyBaseline):
        return "shared_point"
    if isinstance(law, (P.Gaussian, P.Infinitesimal)) or (isinstance(law, P.Fixed) and not law.binary):
        return "shared_I"
    return "general"


class SharedPointMoments:
    """What a NoisyBaseline fit needs from its draws, independent of the instances explained.

    The perturbed input ``x − I = x₀`` does not depend on ``x`` (:func:`continuous_mode`
    ``"shared_point"``), so with ``J`` the ``n`` draws of ``x₀`` (flattened, float64) and ``f(J)``
    the model's outputs for **every** class: ``S = E[JJᵀ]``, ``m = E[J]``, ``f̄ = E[f(J)]`` (C,) and
    ``f̄J = E[f(J) Jᵀ]`` (C × d), plus, for the cross-validated fit, ``J`` and ``f(J)`` themselves.
    From these, ``E[IIᵀ]`` and ``E[I Δf]`` at any ``x`` and target need one forward pass at ``x``
    only (:func:`continuous_optimal`); :class:`Optimal` keeps them across calls with the same seed
    (the sensitivity at every neighbour reuses the draws), keyed by the model's parameters.
    """

    def __init__(self, S: Tensor, m: Tensor, f_mean: Tensor, fJ_mean: Tensor, total: int, scalar: bool,
                 J: Optional[Tensor] = None, outs: Optional[Tensor] = None):
        self.S, self.m, self.f_mean, self.fJ_mean, self.total, self.scalar = S, m, f_mean, fJ_mean, total, scalar
        self.J, self.outs = J, outs

    def columns(self, target: Optional[Tensor], N: int) -> Tensor:
        """The output column explained for each of the ``N`` instances (``target``; column 0 for a
        model with one output)."""
        C = self.f_mean.shape[0]
        if self.scalar or C == 1:
            if self.scalar and target is not None:
                select_output(torch.zeros(1, device=self.m.device), target)  # raises: no class to select
            return torch.zeros(N, dtype=torch.long, device=self.m.device)
        if target is None:
            select_output(torch.zeros(1, C, device=self.m.device), None)  # raises: target required
        return target.to(self.m.device).long().expand(N)


def shared_point_moments(model, law, x: Tensor, n: int, generator, batch_size: int,
                         keep_draws: bool = False) -> SharedPointMoments:
    """Accumulate :class:`SharedPointMoments` from ``n`` draws of ``law`` (one forward pass per draw,
    in blocks of :data:`DRAW_BLOCK`); ``keep_draws`` also stores ``J`` (float64) and ``f(J)``
    (the model's dtype) for :func:`continuous_optimal_cv`, which needs only those: the ``d × d``
    second moment ``S`` and ``E[f(J) Jᵀ]`` are then not accumulated (``None``), so that the dual
    ridge of a large image (d = 150,528 on ImageNet) never builds a ``d × d`` matrix."""
    F = tuple(x.shape[1:])
    d = x[0].numel()
    f64 = torch.float64
    S = None if keep_draws else torch.zeros(d, d, dtype=f64, device=x.device)
    m = torch.zeros(d, dtype=f64, device=x.device)
    f_sum, fJ_sum, Js, outs = None, None, [], []
    total, scalar = 0, False
    n_blocks = 1 if getattr(law, "n_fixed", None) is not None else -(-n // DRAW_BLOCK)
    for _, draws in progress(draw_blocks(law, F, n, generator, x.device, x.dtype), total=n_blocks, desc="draws"):
        P = law.perturbed(x[:1], draws)[0]  # (k, *F), the same for every instance
        out = outputs_batched(model, P, batch_size)
        if out.dim() == 1:
            scalar, out = True, out.view(-1, 1)
        J = P.reshape(P.shape[0], d).to(f64)
        o64 = out.to(f64)
        total += J.shape[0]
        m += J.sum(0)
        f_sum = o64.sum(0) if f_sum is None else f_sum + o64.sum(0)
        if not keep_draws:
            S.addmm_(J.t(), J)
            fJ_sum = o64.t() @ J if fJ_sum is None else fJ_sum.addmm_(o64.t(), J)
        if keep_draws:
            Js.append(J)
            outs.append(out)
    return SharedPointMoments(None if S is None else S / total, m / total, f_sum / total,
                              None if fJ_sum is None else fJ_sum / total, total, scalar,
                              torch.cat(Js) if keep_draws else None, torch.cat(outs) if keep_draws else None)


def continuous_optimal_cv(model, law, x: Tensor, target: Optional[Tensor], n: int, generator, batch_size: int,
                          grid: Tensor, mode: Optional[str] = None,
                          moments: Optional[SharedPointMoments] = None) -> Tuple[Tensor, Tensor]:
    """:func:`continuous_optimal` with each instance's ridge chosen by leave-one-out cross-validation
    (:func:`ridge_cv`), on the same draws. Stores the ``n × d`` design (float64).
    ``moments`` (``"shared_point"`` laws, from :func:`shared_point_moments` with ``keep_draws``):
    the draws and outputs already computed, reused instead of drawing. Returns ``(Φ (N, d), ρ (N,))``."""
    mode = mode or continuous_mode(law)
    F = tuple(x.shape[1:])
    N, d = x.shape[0], x[0].numel()
    f64 = torch.float64
    fx = forward_batched(model, x, target, batch_size)
    Js, dfs, raw = [], [], []
    if mode == "shared_point":
        if moments is None or moments.J is None:
            moments = shared_point_moments(model, law, x, n, generator, batch_size, keep_draws=True)
        cols = moments.columns(target, N)
        dfs.append(fx.view(-1, 1) - moments.outs.t()[cols])
        Js.append(moments.J)
    for _, draws in (draw_blocks(law, F, n, generator, x.device, x.dtype) if mode != "shared_point" else ()):
        if mode == "shared_I":
            J = law.apply(x[:1], draws)[0]
            dfs.append(function_differences(model, x, target, None, batch_size, fx, law=law, draws=draws))
            Js.append(J.reshape(J.shape[0], d).to(f64))
        else:
            dfs.append(function_differences(model, x, target, None, batch_size, fx, law=law, draws=draws))
            raw.append(draws)
    D = torch.cat(dfs, 1).to(f64)  # (N, n)
    if mode == "shared_I":
        phi, rho, _ = ridge_cv(torch.cat(Js), D, grid)
        return phi, rho
    out = torch.empty(N, d, dtype=f64, device=x.device)
    rho = torch.empty(N, dtype=f64, device=x.device)
    J = torch.cat(Js) if mode == "shared_point" else None
    draws = torch.cat(raw) if raw else None
    for i in range(N):
        if mode == "shared_point":
            Xi = x[i].reshape(1, d).to(f64) - J  # I = x − (x − I)
        else:
            Xi = law.apply(x[i : i + 1], draws)[0].reshape(-1, d).to(f64)
        phi_i, rho_i, _ = ridge_cv(Xi, D[i : i + 1], grid)
        out[i], rho[i] = phi_i[0], rho_i[0]
    return out, rho


#: bytes of d×d float64 systems held at once (instances are processed in groups below it)
GRAM_BUDGET = 1 << 28


def _shared_point_solve(S: Tensor, m: Tensor, xf: Tensor, c: Tensor, ridge: float) -> Tensor:
    """Solve ``(S − m xᵀ − x mᵀ + x xᵀ + λ Id) φ = c`` per instance (groups under :data:`GRAM_BUDGET`)."""
    N, d = xf.shape
    out = torch.empty(N, d, dtype=torch.float64, device=xf.device)
    group = max(1, GRAM_BUDGET // (8 * d * d))
    for sl in chunks(N, group):
        xs = xf[sl]
        Mn = S.unsqueeze(0) - m.view(1, d, 1) * xs.unsqueeze(1) - xs.unsqueeze(2) * m.view(1, 1, d) \
            + xs.unsqueeze(2) * xs.unsqueeze(1)
        L = cholesky_factor(add_ridge_(Mn, ridge))
        out[sl] = torch.cholesky_solve(c[sl].unsqueeze(2), L).squeeze(2)
    return out


def continuous_optimal(model, law, x: Tensor, target: Optional[Tensor], n: int, generator, batch_size: int,
                       ridge: float, mode: Optional[str] = None,
                       moments: Optional[SharedPointMoments] = None) -> Tensor:
    """``Φ*_n = (E[IIᵀ] + λ_n Id)⁻¹ E[I Δf]`` for every instance (float64, shape (N, d)),
    ``λ_n = ridge · tr E[IIᵀ] / d``. Under a ``"shared_point"`` law (NoisyBaseline) the draws enter
    through :class:`SharedPointMoments` (``moments``, else accumulated here): with ``Δf = f(x) − f(J)``,
    ``E[IIᵀ] = S − m xᵀ − x mᵀ + x xᵀ`` and ``E[I Δf] = x (f(x) − f̄) − (f(x) m − f̄J)``."""
    mode = mode or continuous_mode(law)
    F = tuple(x.shape[1:])
    N = x.shape[0]
    d = x[0].numel()
    f64 = torch.float64
    fx = forward_batched(model, x, target, batch_size)
    xf = x.reshape(N, d).to(f64)
    total = 0
    n_blocks = 1 if getattr(law, "n_fixed", None) is not None else -(-n // DRAW_BLOCK)
    if mode == "shared_point":
        mom = moments if moments is not None else shared_point_moments(model, law, x, n, generator, batch_size)
        cols = mom.columns(target, N)
        f_x = fx.to(f64)
        mD = f_x - mom.f_mean[cols]  # E[Δf]
        cJ = f_x.view(-1, 1) * mom.m.view(1, -1) - mom.fJ_mean[cols]  # E[Δf J]
        return _shared_point_solve(mom.S, mom.m, xf, xf * mD.view(-1, 1) - cJ, ridge)
    if mode == "shared_I":
        S = torch.zeros(d, d, dtype=f64, device=x.device)
        cJ = torch.zeros(N, d, dtype=f64, device=x.device)
        for _, draws in progress(draw_blocks(law, F, n, generator, x.device, x.dtype), total=n_blocks, desc="draws"):
            J = law.apply(x[:1], draws)[0]  # I, the same for every instance
            df = function_differences(model, x, target, None, batch_size, fx, law=law, draws=draws)
            J = J.reshape(J.shape[0], d).to(f64)
            total += J.shape[0]
            S.addmm_(J.t(), J)
            cJ.addmm_(df.to(f64), J)
        S /= total
        cJ /= total
        L = cholesky_factor(add_ridge_(S, ridge))
        return torch.cholesky_solve(cJ.t(), L).t()
    # general: per-instance E[IIᵀ]; instance groups replay the same draws (generator state restored)
    out = torch.empty(N, d, dtype=f64, device=x.device)
    group = max(1, GRAM_BUDGET // (8 * d * d))
    state = generator.get_state() if N > group else None
    for gi, sl in enumerate(chunks(N, group)):
        if gi > 0:
            generator.set_state(state)
        xs, ts = x[sl], None if target is None else target[sl]
        Mn = torch.zeros(xs.shape[0], d, d, dtype=f64, device=x.device)
        c = torch.zeros(xs.shape[0], d, dtype=f64, device=x.device)
        total = 0
        for _, draws in draw_blocks(law, F, n, generator, x.device, x.dtype):
            per = max(1, batch_size // xs.shape[0])
            for s2 in chunks(draws.shape[0], per):
                I = law.apply(xs, draws[s2])
                df = function_differences(model, xs, ts, None, batch_size, fx[sl], law=law, draws=draws[s2])
                I = I.reshape(xs.shape[0], -1, d).to(f64)
                Mn.baddbmm_(I.transpose(1, 2), I)
                c.add_(torch.bmm(I.transpose(1, 2), df.to(f64).unsqueeze(2)).squeeze(2))
                total += I.shape[1]
        Mn /= total
        c /= total
        L = cholesky_factor(add_ridge_(Mn, ridge))
        out[sl] = torch.cholesky_solve(c.unsqueeze(2), L).squeeze(2)
    return out
