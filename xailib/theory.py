"""The paper's propositions and theorems as numerical checks (``notebooks/theory.ipynb``).

NOTES.md, "Theory to check numerically", is the specification. One function per statement;
each returns a :class:`CheckResult` with per-instance ``lhs`` and ``rhs`` written so that the
statement reads **lhs ≤ rhs** for every instance, ``holds`` (all instances), ``tightness``
(lhs / rhs) and the ``settings`` used. No check asserts: a violation is reported, not raised.

Estimation sides. A sup/max that cannot be computed exactly is estimated so that errors can
only *hide* a violation, never invent one: a sup on the left is a **lower** estimate (random
restarts + projected gradient ascent, every candidate a feasible point), a sup on the right is
an **upper** bound (certified, e.g. by interval bounds on the Hessian of a softplus network)
or, where the statement allows, the same feasible candidates are shared by both sides so that
the inequality holds exactly for the estimates (see each docstring). Where a right-hand side
can only be estimated from below (``hessian="estimate"``), the docstring and ``notes`` say so.

Plots: :func:`plot_check` (lhs against rhs with y = x, and the tightness); :func:`summarize`
tabulates several checks. Networks: :func:`random_softplus_net` builds ``f(x) = cᵀσ(W_l … σ(W_1 x))`` with zero biases
(Prop. A.1), ``σ`` softplus (or ReLU, to break the smoothness hypotheses on purpose).
Computations run in float64. Balls are Euclidean (ℓ₂) unless a ``norm`` argument says otherwise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ._utils import (
    check_input,
    check_positive,
    forward_target,
    function_differences,
    make_generator,
)

__all__ = [
    "CheckResult",
    "SoftplusNet",
    "random_softplus_net",
    "random_instances",
    "RippleModel",
    "model_gradient",
    "hessian_vector_product",
    "hessian_spectral_norm",
    "hessian_norm_bound",
    "lipschitz_bound",
    "max_gradient_change",
    "pgd_logistic",
    "exact_shapley",
    "check_lipschitz_bound",
    "check_hessian_bounds",
    "check_adversarial_risk_bound",
    "check_robust_infidelity_lower_bound",
    "check_smoothgrad_sensitivity",
    "check_smoothgrad_infidelity",
    "check_optimal_explanation",
    "check_gradient_optimality",
    "check_occlusion_optimality",
    "check_shap_optimality",
    "summarize",
    "plot_check",
    "ALL_CHECKS",
]

DTYPE = torch.float64


def _single_threaded(fn):
    """Run a check with one intra-op thread (restored afterwards): the networks are tiny, and
    on a busy 2-core machine thread hand-offs cost more than the matrix products (50× slower
    forward passes were measured with 2 threads under load)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        n = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(n)

    return wrapper


# =========================================================================== result record
@dataclass
class CheckResult:
    """Outcome of one numerical check: the statement reads ``lhs ≤ rhs`` per instance.

    ``lhs``, ``rhs``, ``tightness`` (= lhs / rhs) and ``holds_each`` are tensors of shape
    ``(n_instances,)``; ``holds`` is True when every instance satisfies
    ``lhs ≤ rhs · (1 + rtol) + atol`` (and its hypothesis, when the statement has one:
    ``hypothesis`` is then a boolean tensor; an instance whose hypothesis fails does not hold).
    ``info`` holds per-instance extras (tensors or lists of length n_instances: network depth,
    part of the statement, auxiliary estimates); ``notes`` say which side each estimate errs on.
    """

    name: str
    statement: str
    lhs: Tensor
    rhs: Tensor
    holds: bool
    tightness: Tensor
    holds_each: Tensor
    settings: dict
    info: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    hypothesis: Optional[Tensor] = None

    @property
    def n(self) -> int:
        return int(self.lhs.numel())

    @property
    def n_violations(self) -> int:
        return int((~self.holds_each).sum())

    def to_frame(self):
        """A pandas DataFrame, one row per instance: lhs, rhs, tightness, holds and ``info``."""
        import pandas as pd

        cols = {
            "lhs": self.lhs.detach().cpu().numpy(),
            "rhs": self.rhs.detach().cpu().numpy(),
            "tightness": self.tightness.detach().cpu().numpy(),
            "holds": self.holds_each.cpu().numpy(),
        }
        if self.hypothesis is not None:
            cols["hypothesis"] = self.hypothesis.cpu().numpy()
        for k, v in self.info.items():
            if isinstance(v, Tensor):
                v = v.detach().cpu().numpy()
            if len(v) == self.n:
                cols[k] = v
        return pd.DataFrame(cols)

    def summary(self) -> dict:
        """One row for :func:`summarize`: counts and the range of the tightness."""
        t = self.tightness[torch.isfinite(self.tightness)]
        q = (lambda p: float(torch.quantile(t, p))) if t.numel() else (lambda p: float("nan"))
        return {
            "check": self.name,
            "statement": self.statement,
            "instances": self.n,
            "violations": self.n_violations,
            "holds": self.holds,
            "tightness min": q(0.0),
            "tightness median": q(0.5),
            "tightness max": q(1.0),
        }

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"CheckResult({self.name}: holds={self.holds}, {s['violations']}/{s['instances']} violations, "
            f"tightness {s['tightness min']:.3g}..{s['tightness max']:.3g} (median {s['tightness median']:.3g}))"
        )


def _result(name, statement, lhs, rhs, settings, info=None, notes=None, rtol=1e-6, atol=0.0,
            hypothesis=None) -> CheckResult:
    lhs = lhs.detach().to(DTYPE).reshape(-1)
    rhs = rhs.detach().to(DTYPE).reshape(-1)
    atol_t = torch.as_tensor(atol, dtype=DTYPE).expand_as(rhs) if not isinstance(atol, Tensor) else atol.to(DTYPE)
    ok = lhs <= rhs * (1 + rtol) + atol_t
    if hypothesis is not None:
        hypothesis = hypothesis.reshape(-1).bool()
        ok = ok & hypothesis
    with torch.no_grad():
        tight = torch.where(rhs != 0, lhs / rhs, torch.where(lhs == 0, torch.zeros_like(lhs), torch.full_like(lhs, math.inf)))
    settings = dict(settings)
    settings.setdefault("rtol", rtol)
    return CheckResult(
        name=name, statement=statement, lhs=lhs, rhs=rhs, holds=bool(ok.all()), tightness=tight,
        holds_each=ok, settings=settings, info=dict(info or {}), notes=list(notes or []), hypothesis=hypothesis,
    )


def summarize(results: Sequence[CheckResult]):
    """Summary table (pandas DataFrame) of several checks, one row each."""
    import pandas as pd

    return pd.DataFrame([r.summary() for r in results])


# =========================================================================== networks
class SoftplusNet(nn.Module):
    """``f(x) = cᵀ σ(W_l … σ(W_1 x))``, zero biases (Prop. A.1); output shape ``(N,)``.

    ``activation``: ``"softplus"`` (``σ(v) = log(1 + eᵛ)``, ``0 < σ' < 1``, ``0 < σ'' ≤ 1/4``) or
    ``"relu"`` (breaks every smoothness hypothesis: the gradient jumps). Inputs ``(N, d)``
    (or ``(N, *F)``, flattened).
    """

    def __init__(self, weights: Sequence[Tensor], c: Tensor, activation: str = "softplus"):
        super().__init__()
        if activation not in ("softplus", "relu"):
            raise ValueError(f"`activation` must be 'softplus' or 'relu', got {activation!r}")
        if len(weights) < 1:
            raise ValueError("`weights` must hold at least one matrix")
        for i, W in enumerate(weights):
            self.register_buffer(f"W{i}", W.detach().clone())
        self.register_buffer("c", c.detach().clone().reshape(-1))
        self.depth = len(weights)
        self.activation = activation
        if self.c.numel() != weights[-1].shape[0]:
            raise ValueError("`c` must have one entry per unit of the last layer")

    @property
    def weights(self) -> list:
        return [getattr(self, f"W{i}") for i in range(self.depth)]

    @property
    def in_features(self) -> int:
        return self.W0.shape[1]

    def act(self, v: Tensor) -> Tensor:
        return F.softplus(v) if self.activation == "softplus" else F.relu(v)

    def forward(self, x: Tensor) -> Tensor:
        h = x.reshape(x.shape[0], -1)
        for W in self.weights:
            h = self.act(h @ W.T)
        return h @ self.c

    def extra_repr(self) -> str:
        shapes = [tuple(W.shape) for W in self.weights]
        return f"activation={self.activation}, weights={shapes}"


def random_softplus_net(d: int, widths: Sequence[int], scale: float = 1.0, seed=0, activation: str = "softplus",
                        dtype=DTYPE) -> SoftplusNet:
    """A random :class:`SoftplusNet`: ``d`` inputs, hidden ``widths`` (depth ``l = len(widths)``).

    ``W_i`` has i.i.d. ``N(0, scale² / fan_in)`` entries (``scale = 1``: the usual "LeCun"
    variance; small ``scale``: small weight norms); ``c`` has ``N(0, 1 / width_l)`` entries.
    """
    check_positive(d, "d", integer=True)
    check_positive(scale, "scale")
    widths = [int(w) for w in widths]
    if not widths or min(widths) < 1:
        raise ValueError(f"`widths` must be a non-empty list of positive ints, got {widths!r}")
    g = make_generator(seed)
    weights, fan_in = [], d
    for w in widths:
        weights.append(scale * torch.randn(w, fan_in, generator=g, dtype=torch.float64) / math.sqrt(fan_in))
        fan_in = w
    c = torch.randn(fan_in, generator=g, dtype=torch.float64) / math.sqrt(fan_in)
    return SoftplusNet([W.to(dtype) for W in weights], c.to(dtype), activation)


class RippleModel(nn.Module):
    """``f(x) = base(x) + a · sin(ωᵀx)``: a model whose gradient is far more sensitive than its
    output when ``a`` is small and ``‖ω‖`` large (``‖∇ sin‖ ~ a‖ω‖`` while ``|Δf| ≤ 2a``); used to show
    a case where Theorem C.1's lower bound on robust infidelity is not vacuous."""

    def __init__(self, base: nn.Module, amplitude: float = 0.05, frequency: float = 20.0, seed=0, d: int = 8):
        super().__init__()
        self.base = base
        g = make_generator(seed)
        w = torch.randn(d, generator=g, dtype=DTYPE)
        self.register_buffer("omega", frequency * w / w.norm())
        self.amplitude = float(amplitude)
        self.depth = getattr(base, "depth", -1)

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(x.shape[0], -1)
        return _f(self.base, x) + self.amplitude * torch.sin(x @ self.omega)


def random_instances(n_nets: int = 8, n_inputs: int = 4, d: int = 8, depths=(1, 2, 3, 4), widths=(8, 16, 32),
                     scales=(0.5, 1.0, 2.0), seed=0, activation: str = "softplus", input_scale: float = 1.0):
    """``n_nets`` random networks (depth, width, scale drawn from the given tuples) with
    ``n_inputs`` inputs ``x ~ N(0, input_scale² Id)`` each: a list of ``(net, x, meta)``."""
    check_positive(n_nets, "n_nets", integer=True)
    check_positive(n_inputs, "n_inputs", integer=True)
    g = make_generator(seed)
    out = []
    for k in range(n_nets):
        depth = int(depths[int(torch.randint(len(depths), (1,), generator=g))])
        width = int(widths[int(torch.randint(len(widths), (1,), generator=g))])
        scale = float(scales[int(torch.randint(len(scales), (1,), generator=g))])
        net_seed = int(torch.randint(2**31 - 1, (1,), generator=g))
        net = random_softplus_net(d, [width] * depth, scale, net_seed, activation)
        x = input_scale * torch.randn(n_inputs, d, generator=g, dtype=DTYPE)
        out.append((net, x, {"net": k, "depth": depth, "width": width, "scale": scale}))
    return out


def _as_instances(nets, x, kw, seed, activation="softplus"):
    """Normalise the (nets, x) arguments of the checks to a list of (net, x, meta)."""
    if nets is None:
        return random_instances(seed=seed, activation=activation, **kw)
    if isinstance(nets, nn.Module) or callable(nets) and not isinstance(nets, (list, tuple)):
        nets = [nets]
    if x is None:
        raise ValueError("`x` is required when `nets` is given")
    xs = list(x) if isinstance(x, (list, tuple)) else [x] * len(nets)
    if len(xs) != len(nets):
        raise ValueError("`x` must be one tensor or one tensor per network")
    out = []
    for k, (net, xx) in enumerate(zip(nets, xs)):
        check_input(xx, "x")
        meta = {"net": k, "depth": getattr(net, "depth", -1), "width": -1, "scale": float("nan")}
        if isinstance(net, SoftplusNet):
            meta["width"] = int(net.weights[0].shape[0])
        out.append((net, xx.detach().to(DTYPE), meta))
    return out


def _meta_info(meta_list, counts):
    info = {}
    for key in ("net", "depth", "width", "scale"):
        vals = []
        for m, c in zip(meta_list, counts):
            vals += [m[key]] * c
        info[key] = vals
    return info


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
    spectral norm, equal to it once the iteration has converged to the top |eigenvalue|)."""
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


def _project(u: Tensor, radius: float, norm: str) -> Tensor:
    if norm == "linf":
        return u.clamp(-radius, radius)
    nrm = u.norm(dim=1, keepdim=True)
    return u * torch.clamp(radius / nrm.clamp_min(1e-300), max=1.0)


def _ascend(objective: Callable, x: Tensor, radius: float, restarts: int, steps: int, seed, norm: str = "l2",
            extra: Optional[Tensor] = None, lr: float = 0.3):
    """Projected (normalised-)gradient ascent of ``objective(y, idx)`` over ``‖y − x_n‖ ≤ radius``.

    ``objective`` maps rows ``y`` (B, d) and their instance indices ``idx`` (B,) to values (B,).
    ``restarts`` random starts on the sphere per instance (plus ``extra`` starting offsets
    (N, d) when given); every iterate is a feasible point, and the best value met is returned:
    a **lower estimate** of the max. Returns ``(best (N,), best_u (N, d))``.
    """
    N, d = x.shape
    g = make_generator(seed)
    u0 = [_sphere(N * restarts, d, radius, g, norm)]
    if extra is not None:
        u0.append(_project(extra.to(DTYPE), radius, norm))
    u = torch.cat(u0)
    K = u.shape[0] // N
    idx = torch.arange(N).repeat(K)
    xr = x[idx]
    best = torch.full((N * K,), -math.inf, dtype=DTYPE)
    best_u = u.clone()
    for t in range(steps + 1):
        with torch.enable_grad():
            uu = u.detach().requires_grad_(True)
            val = objective(xr + uu, idx)
            grad = None
            if t < steps and val.requires_grad:
                grad = torch.autograd.grad(val.sum(), uu, allow_unused=True)[0]
        val = val.detach()
        better = val > best
        best = torch.where(better, val, best)
        best_u = torch.where(better.unsqueeze(1), u.detach(), best_u)
        if grad is None:
            break
        eta = lr * radius * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t / max(steps, 1))))
        if norm == "linf":
            step = eta * torch.sign(grad)
        else:
            step = eta * grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-300)
        u = _project(u.detach() + step, radius, norm)
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


# =========================================================================== certified bounds
def lipschitz_bound(net: SoftplusNet, bound: str = "derived") -> float:
    """A Lipschitz constant of ``∇f`` for a softplus network (Prop. A.1), in ℓ₂.

    ``bound="derived"`` (valid, the chapter's derivation): writing ``z_i = W_i h_{i−1}``,
    ``h_i = σ(z_i)``, ``g_i = ∂f/∂h_i``, the Hessian is
    ``∇²f = Σ_i M_iᵀ diag(σ''(z_i) ⊙ g_i) M_i`` with ``M_i = ∂z_i/∂x = W_i D_{i−1} W_{i−1} … D_1 W_1``,
    ``D_j = diag(σ'(z_j))``. With ``σ' ≤ 1``, ``σ'' ≤ 1/4``: ``‖M_i‖ ≤ P_i = ∏_{j≤i} ‖W_j‖₂`` and
    ``‖g_i‖_∞ ≤ ‖g_i‖₂ ≤ ‖c‖₂ ∏_{j>i} ‖W_j‖₂``, so
    ``L = (‖c‖₂/4) · ∏_{j=1}^{l} ‖W_j‖₂ · Σ_{i=1}^{l} P_i``.

    ``bound="paper"``: the product form of the paper's proof sketch, ``‖c‖₂ ∏_i ‖W_i‖_F²``
    (the OCR drops ``c``; f is linear in ``c``, so ``‖c‖₂`` is the only consistent factor).
    It is **not** a valid bound in general: deep networks with small weights violate it
    (see ``notebooks/theory.ipynb``).
    """
    if not isinstance(net, SoftplusNet):
        raise TypeError("`net` must be a SoftplusNet")
    Ws = net.weights
    cn = float(net.c.norm())
    if bound == "paper":
        return cn * math.prod(float(torch.linalg.matrix_norm(W, "fro")) ** 2 for W in Ws)
    if bound != "derived":
        raise ValueError(f"`bound` must be 'derived' or 'paper', got {bound!r}")
    spec = [float(torch.linalg.matrix_norm(W, 2)) for W in Ws]
    P = [math.prod(spec[: i + 1]) for i in range(len(spec))]
    return cn / 4.0 * math.prod(spec) * sum(P)


@_single_threaded
def hessian_norm_bound(net: SoftplusNet, x: Optional[Tensor] = None, radius: float = math.inf,
                       norm: str = "l2") -> Tensor:
    """Certified upper bound on ``sup_{‖δ‖≤r} ‖∇²f(x + δ)‖₂`` for a :class:`SoftplusNet` (per row).

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


# =========================================================================== Prop. A.1
@_single_threaded
def check_lipschitz_bound(nets=None, x=None, *, radius: float = 0.5, bound: str = "derived", restarts: int = 4,
                          steps: int = 30, mc_samples: int = 0, seed=0, n_nets: int = 8, n_inputs: int = 4,
                          d: int = 8, depths=(1, 2, 3, 4), widths=(8, 16, 32), scales=(0.5, 1.0, 2.0),
                          activation: str = "softplus") -> CheckResult:
    """Prop. A.1: ``SENS_max(∇f, x, r) ≤ L · r`` (raw sensitivity, ℓ₂ ball and ℓ₂ distance).

    * lhs: raw SENS_max by random restarts + projected gradient ascent
      (:func:`max_gradient_change`), optionally also ``xailib.metrics.sensitivity_max``
      (``normalize=False``, ``mc_samples`` Monte-Carlo points of the inscribed ℓ∞ ball of
      radius ``r/√d``): the max of feasible values, **errs low**.
    * rhs: ``L · r`` with ``L`` from :func:`lipschitz_bound` (``bound="derived"``, exact
      arithmetic of a valid bound; ``"paper"``: the paper's product form, not valid in
      general) or ``bound="local"``: :func:`hessian_norm_bound` over the ball (valid, tighter).

    ``nets``/``x``: given networks and inputs (one tensor, or one per network); otherwise
    ``n_nets`` random networks (:func:`random_instances`) with ``n_inputs`` inputs each.
    ``activation="relu"`` breaks the hypothesis (the same weight-based bound is then violated).
    """
    if bound not in ("derived", "paper", "local"):
        raise ValueError(f"`bound` must be 'derived', 'paper' or 'local', got {bound!r}")
    check_positive(radius, "radius")
    inst = _as_instances(nets, x, dict(n_nets=n_nets, n_inputs=n_inputs, d=d, depths=depths, widths=widths,
                                       scales=scales), seed, activation)
    lhs, rhs, asc, mcs, L_other, counts, metas = [], [], [], [], [], [], []
    for k, (net, xx, meta) in enumerate(inst):
        s_asc, _ = max_gradient_change(net, xx, radius, restarts, steps, seed=_sub(seed, k))
        s = s_asc
        if mc_samples:
            s_mc = _mc_sensitivity(net, xx, radius / math.sqrt(xx.shape[1]), mc_samples, _sub(seed, k, 7))
            s = torch.maximum(s, s_mc)
            mcs.append(s_mc)
        if bound == "local":
            L = hessian_norm_bound(net, xx, radius)
        else:
            L = torch.full((xx.shape[0],), lipschitz_bound(net, bound), dtype=DTYPE)
        other = "paper" if bound != "paper" else "derived"
        L_other.append(torch.full((xx.shape[0],), lipschitz_bound(net, other), dtype=DTYPE))
        lhs.append(s)
        asc.append(s_asc)
        rhs.append(L * radius)
        counts.append(xx.shape[0])
        metas.append(meta)
    info = _meta_info(metas, counts)
    info["sens_ascent"] = torch.cat(asc)
    if mcs:
        info["sens_mc"] = torch.cat(mcs)
    info[f"L_{'paper' if bound != 'paper' else 'derived'}"] = torch.cat(L_other)
    notes = ["lhs: raw SENS_max by restarts + projected gradient ascent (errs low)",
             f"rhs: L·r with L = {bound} bound" + (" (not a valid bound in general)" if bound == "paper" else " (valid upper bound)")]
    return _result("Prop. A.1", "SENS_max(∇f, x, r) ≤ L r", torch.cat(lhs), torch.cat(rhs),
                   dict(radius=radius, bound=bound, restarts=restarts, steps=steps, mc_samples=mc_samples, seed=seed,
                        activation=activation), info, notes, rtol=1e-9)


def _mc_sensitivity(model, x, radius_linf, n, seed):
    """``xailib.metrics.sensitivity_max`` (raw, ℓ∞ ball of radius ``radius_linf``) of Grad."""
    from .explainers import Gradient
    from .metrics import sensitivity_max

    return sensitivity_max(Gradient(model), x, radius=radius_linf, n_samples=n, normalize=False,
                           generator=seed).to(DTYPE)


# =========================================================================== A.2
@_single_threaded
def check_hessian_bounds(nets=None, x=None, *, radius: float = 0.5, sigma: float = 0.1, n_perturbations: int = 256,
                         hessian: str = "certified", restarts: int = 4, steps: int = 30, seed=0, n_nets: int = 8,
                         n_inputs: int = 4, d: int = 8, depths=(1, 2, 3, 4), widths=(8, 16, 32),
                         scales=(0.5, 1.0, 2.0), activation: str = "softplus") -> CheckResult:
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
    """
    from .perturbations import Fixed, Gaussian

    if hessian not in ("certified", "estimate"):
        raise ValueError(f"`hessian` must be 'certified' or 'estimate', got {hessian!r}")
    inst = _as_instances(nets, x, dict(n_nets=n_nets, n_inputs=n_inputs, d=d, depths=depths, widths=widths,
                                       scales=scales), seed, activation)
    lhs, rhs, parts, Ls, counts, metas = [], [], [], [], [], []
    for k, (net, xx, meta) in enumerate(inst):
        N, dd = xx.shape
        s, _ = max_gradient_change(net, xx, radius, restarts, steps, seed=_sub(seed, k))
        I = Gaussian(sigma).draw((dd,), n_perturbations, generator=_sub(seed, k, 5), dtype=DTYPE)
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


def _raw_infidelity(model, phi: Tensor, x: Tensor, perturbation, n: Optional[int] = None) -> Tensor:
    """Raw INFD (no optimal scaling) of a local explanation ``phi`` on the replayed draws."""
    from .metrics import infidelity

    n = perturbation.n_fixed if n is None else n
    return infidelity(model, phi.detach(), x, perturbation=perturbation, n_samples=n, scaling=None).to(DTYPE)


# =========================================================================== Thm. A.1
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
                                 n_nets: int = 8, n_inputs: int = 4, d: int = 8, depths=(1, 2, 3, 4),
                                 widths=(8, 16, 32), scales=(0.5, 1.0, 2.0), activation: str = "softplus",
                                 rhs_scale: float = 1.0) -> CheckResult:
    """Theorem A.1 (binary logistic loss): per instance (the proof is pointwise),
    ``sup_{‖δ‖≤ε} ℓ(f(x+δ), y) ≤ ℓ(f(x), y) + ε ‖∇f(x)‖_* + (ε²/2) sup_{‖δ‖≤ε} ‖∇²f(x+δ)‖``;
    averaging over instances gives the theorem's expectations.

    * lhs: PGD with restarts (:func:`pgd_logistic`), **errs low**.
    * ``‖∇f‖_*``: exact (ℓ₂ dual of ℓ₂; ℓ₁ dual of ℓ∞).
    * Hessian term: the operator norm ``sup_{‖v‖≤1} |vᵀHv|`` in the ball's norm; ℓ₂: spectral norm;
      ℓ∞: bounded by ``d ‖H‖₂``. ``hessian="certified"``: :func:`hessian_norm_bound` over the ball
      (**errs high**, safe); ``"estimate"``: power iteration on Hessian-vector products at random
      points of the ball (**errs low**, documented, not safe). Both are reported in ``info``.
    * ``y``: labels in {0, 1}; default random (seeded). ``rhs_scale`` < 1 shrinks the bound on
      purpose (a check that can fail).
    """
    if norm not in ("l2", "linf"):
        raise ValueError(f"`norm` must be 'l2' or 'linf', got {norm!r}")
    inst = _as_instances(nets, x, dict(n_nets=n_nets, n_inputs=n_inputs, d=d, depths=depths, widths=widths,
                                       scales=scales), seed, activation)
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
        lhs.append(adv)
        rhs.append(rhs_scale * (l0 + eps * dual + eps**2 / 2 * factor * H))
        h_cert.append(cert)
        h_est.append(est)
        gterm.append(eps * dual)
        base.append(l0)
        counts.append(N)
        metas.append(meta)
    info = _meta_info(metas, counts)
    info.update(loss=torch.cat(base), gradient_term=torch.cat(gterm), hessian_certified=torch.cat(h_cert),
                hessian_estimate=torch.cat(h_est))
    notes = ["lhs: PGD with restarts (errs low)",
             "Hessian sup: " + ("certified interval bound (errs high)" if hessian == "certified"
                                else "power iteration at sampled points (errs LOW)")]
    return _result("Thm. A.1", "sup ℓ(f(x+δ),y) ≤ ℓ(f(x),y) + ε‖∇f‖_* + ε²/2 sup‖∇²f‖", torch.cat(lhs),
                   torch.cat(rhs), dict(eps=eps, norm=norm, hessian=hessian, restarts=restarts, steps=steps,
                                        seed=seed, activation=activation, rhs_scale=rhs_scale), info, notes,
                   rtol=1e-9)


# =========================================================================== Thm. C.1
@_single_threaded
def check_robust_infidelity_lower_bound(nets=None, x=None, *, radius: float = 0.3, sigma: float = 0.3,
                                        n_perturbations: int = 32, positive_part: bool = True, restarts: int = 2,
                                        steps: int = 20, seed=0, n_nets: int = 4, n_inputs: int = 4, d: int = 8,
                                        depths=(1, 2, 3), widths=(8, 16, 32), scales=(0.5, 1.0, 2.0),
                                        activation: str = "softplus") -> CheckResult:
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
    """
    from .perturbations import Fixed, Gaussian

    inst = _as_instances(nets, x, dict(n_nets=n_nets, n_inputs=n_inputs, d=d, depths=depths, widths=widths,
                                       scales=scales), seed, activation)
    lhs, rhs, parts, counts, metas = [], [], [], [], []
    from .explainers import Gradient
    from .metrics import robust_infidelity

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


# =========================================================================== Thm. 4.1 / 4.2
def _smoothgrad(net, radius, n_samples, noise, seed):
    from .explainers import Gradient, SmoothGrad

    return SmoothGrad(Gradient(net), radius=radius, n_samples=n_samples, noise=noise, seed=seed)


def _sg_noise(sg, d) -> Tensor:
    return sg.draw_noise((d,), sg._make_generator(None, torch.device("cpu")), torch.device("cpu"), DTYPE)


@_single_threaded
def check_smoothgrad_sensitivity(nets=None, x=None, *, radius: float = 0.3, sg_radius: float = 0.3,
                                 sg_samples: int = 32, noise: str = "uniform_linf", common_noise: bool = True,
                                 restarts: int = 3, steps: int = 25, seed=0, n_nets: int = 6, n_inputs: int = 4,
                                 d: int = 8, depths=(1, 2, 3), widths=(8, 16, 32), scales=(0.5, 1.0, 2.0),
                                 activation: str = "softplus") -> CheckResult:
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
    """
    inst = _as_instances(nets, x, dict(n_nets=n_nets, n_inputs=n_inputs, d=d, depths=depths, widths=widths,
                                       scales=scales), seed, activation)
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
                                seed=0, n_nets: int = 8, n_inputs: int = 4, d: int = 8, depths=(1, 2, 3, 4),
                                widths=(8, 16, 32), scales=(0.5, 1.0, 2.0), activation: str = "softplus"
                                ) -> CheckResult:
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
    """
    from .perturbations import Fixed, Gaussian

    inst = _as_instances(nets, x, dict(n_nets=n_nets, n_inputs=n_inputs, d=d, depths=depths, widths=widths,
                                       scales=scales), seed, activation)
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


# =========================================================================== Props. 2.1–2.4
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
                              n_alternatives: int = 16, alt_scale: float = 0.1, seed=0, n_nets: int = 8,
                              n_inputs: int = 4, d: int = 8, depths=(1, 2, 3, 4), widths=(8, 16, 32),
                              scales=(0.5, 1.0, 2.0), activation: str = "softplus") -> CheckResult:
    """Prop. 2.1 for ``I ~ N(0, σ² Id)``: the closed form ``Φ* = (E[IIᵀ])⁻¹ E[I Δf]``
    (``xailib.explainers.Optimal`` on replayed draws, ``ridge``) minimises INFD.

    lhs: ``INFD(Φ*)``; rhs: the smallest INFD among the Monte-Carlo minimiser (least squares of
    ``IᵀΦ ≈ Δf`` over the same draws, ``torch.linalg.lstsq``) and ``n_alternatives`` random
    perturbations of Φ* (relative sizes ``alt_scale · 10^{−U(0,3)}``); all on the same draws, so
    the comparison is exact (no Monte-Carlo error between the sides). ``info``: the relative
    distance between Φ* and the least-squares minimiser, and the held-out INFD of both on
    independent draws. A large ``ridge`` shrinks Φ* and the check fails (a check that can fail).
    """
    from .explainers import Optimal
    from .perturbations import Fixed, Gaussian

    inst = _as_instances(nets, x, dict(n_nets=n_nets, n_inputs=n_inputs, d=d, depths=depths, widths=widths,
                                       scales=scales), seed, activation)
    g = make_generator(seed)
    lhs, rhs, dist, ho_opt, ho_ls, counts, metas = [], [], [], [], [], [], []
    for k, (net, xx, meta) in enumerate(inst):
        N, dd = xx.shape
        sk = _sub(seed, k)
        I = Gaussian(sigma).draw((dd,), n_samples, generator=sk, dtype=DTYPE)
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
        J = Fixed(Gaussian(sigma).draw((dd,), n_samples, generator=sk + 1, dtype=DTYPE))
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
def check_gradient_optimality(nets=None, x=None, *, eps=(0.3, 0.1, 0.03, 0.01, 0.001), seed=0, n_nets: int = 8,
                              n_inputs: int = 4, d: int = 8, depths=(1, 2, 3, 4), widths=(8, 16, 32),
                              scales=(0.5, 1.0, 2.0), activation: str = "softplus") -> CheckResult:
    """Prop. 2.2, quantitatively: for ``I = ε e_i`` the optimal explanation
    (``Optimal(Infinitesimal(ε))``) is the finite difference ``Φ*_i = (f(x) − f(x − εe_i))/ε`` and
    ``‖Φ*_ε − ∇f(x)‖_∞ ≤ (ε/2) sup_{‖δ‖≤ε} ‖∇²f(x+δ)‖`` → 0 (Taylor), one row per (input, ε).

    rhs: :func:`hessian_norm_bound` (certified, errs high; for other models the power-iteration
    estimate at sampled points, which errs low) plus a float64 round-off allowance
    ``4·10⁻¹⁶ (|f(x)| + 1)/ε``. A ReLU network breaks the hypothesis (its a.e. Hessian is 0,
    the bound 0, but a kink within ε makes the finite difference differ from the gradient).
    """
    from .explainers import Gradient, Optimal
    from .perturbations import Infinitesimal

    inst = _as_instances(nets, x, dict(n_nets=n_nets, n_inputs=n_inputs, d=d, depths=depths, widths=widths,
                                       scales=scales), seed, activation)
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
                               n_alternatives: int = 16, alt_scale: float = 0.1, seed=0, n_nets: int = 8,
                               n_inputs: int = 4, d: int = 8, depths=(1, 2, 3, 4), widths=(8, 16, 32),
                               scales=(0.5, 1.0, 2.0), activation: str = "softplus") -> CheckResult:
    """Prop. 2.3: for ``I = e_i ⊙ (x − b)`` (``SingleFeature(baseline=b)``) occlusion-1
    (``Occlusion(baseline=b)``) has zero infidelity, hence is optimal.

    lhs: ``INFD(occlusion)``; rhs: the smallest INFD among ``Optimal(SingleFeature)`` and
    ``n_alternatives`` random perturbations of occlusion — exact expectations: the draws are each
    feature once (stratified), so INFD is the exact mean over the ``d`` perturbations.
    ``explainer_baseline`` ≠ ``baseline`` (occlusion for another law) makes the check fail.
    ``info["max_abs_diff"]``: ``max |x⊙Φ_occ − A_opt|`` in the global form.
    """
    from .explainers import Occlusion, Optimal, to_global
    from .metrics import infidelity
    from .perturbations import Fixed, SingleFeature

    eb = baseline if explainer_baseline is None else explainer_baseline
    inst = _as_instances(nets, x, dict(n_nets=n_nets, n_inputs=n_inputs, d=d, depths=depths, widths=widths,
                                       scales=scales), seed, activation)
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
    from .explainers import to_local

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
                          n_alternatives: int = 16, alt_scale: float = 0.1, n_samples: int = 4000, seed=0,
                          n_nets: int = 8, n_inputs: int = 4, d: int = 6, depths=(1, 2, 3, 4), widths=(8, 16, 32),
                          scales=(0.5, 1.0, 2.0), activation: str = "softplus") -> CheckResult:
    """Prop. 2.4: for ``I = (x − b) ⊙ z``, z drawn with the Shapley kernel, the global optimal
    explanation is the Shapley value — as the minimiser of the *exact* kernel-weighted INFD over
    the ``2^d − 2`` proper coalitions **subject to efficiency** ``Σ A = f(x) − f(b)`` (the empty
    and full coalitions carry infinite kernel weight; Lundberg & Lee's Theorem 2).

    lhs: exact INFD of the exact Shapley value (:func:`exact_shapley`); rhs: the smallest exact
    INFD among ``n_alternatives`` random perturbations of it, projected onto the efficiency
    constraint, and the (projected) ``Optimal(ShapleyKernel)`` and ``KernelSHAP`` estimates.
    ``efficiency=False`` drops the projection (the unconstrained minimiser beats the Shapley
    value: the check fails unless f is additive). ``info``: relative errors of ``Optimal`` and
    ``KernelSHAP`` against the exact values.
    """
    from .explainers import KernelSHAP, Optimal
    from .perturbations import ShapleyKernel

    inst = _as_instances(nets, x, dict(n_nets=n_nets, n_inputs=n_inputs, d=d, depths=depths, widths=widths,
                                       scales=scales), seed, activation)
    g = make_generator(seed)
    lhs, rhs, err_opt, err_ks, counts, metas = [], [], [], [], [], []
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
        A_opt = Optimal(net, ShapleyKernel(baseline=baseline), n_samples=n_samples, ridge=1e-10, seed=_sub(seed, k, 6))(xx).to(DTYPE)
        A_ks = KernelSHAP(net, n_samples=n_samples, baseline=baseline, seed=_sub(seed, k, 6))(xx).to(DTYPE)
        cands = torch.cat([alts, project(A_opt).unsqueeze(0), project(A_ks).unsqueeze(0)])
        if not efficiency:  # the unconstrained least-squares minimiser
            sw = w.sqrt()
            A_ls = torch.linalg.lstsq((Zp * sw.unsqueeze(1)).unsqueeze(0).expand(N, -1, -1),
                                      (dF * sw).unsqueeze(2)).solution.squeeze(2)
            cands = torch.cat([cands, A_ls.unsqueeze(0)])
        lhs.append(infd(phi))
        rhs.append(infd(cands).min(0).values)
        nrm = phi.norm(dim=1).clamp_min(1e-300)
        err_opt.append((A_opt - phi).norm(dim=1) / nrm)
        err_ks.append((A_ks - phi).norm(dim=1) / nrm)
        counts.append(N)
        metas.append(meta)
    info = _meta_info(metas, counts)
    info.update(rel_err_optimal=torch.cat(err_opt), rel_err_kernelshap=torch.cat(err_ks))
    rhs_t = torch.cat(rhs)
    return _result("Prop. 2.4", "INFD_π(Shapley) ≤ INFD_π(A), Σ A = f(x) − f(b)", torch.cat(lhs), rhs_t,
                   dict(baseline=baseline, efficiency=efficiency, n_alternatives=n_alternatives, alt_scale=alt_scale,
                        n_samples=n_samples, seed=seed), info, ["exact expectations over all coalitions"],
                   rtol=1e-9, atol=1e-14 * (1 + rhs_t.abs().max()))


# =========================================================================== plotting
def plot_check(result: CheckResult, hue: Optional[str] = None, title: Optional[str] = None, log: bool = True,
               lhs_label: str = "lhs", rhs_label: str = "rhs", axes=None):
    """Scatter of lhs against rhs with the line y = x (points above it violate the statement),
    and the distribution of the tightness lhs / rhs. ``hue``: an ``info`` column to colour by.
    Zeros (and infinities) cannot sit on log axes: they are left out and counted in the title."""
    import matplotlib.pyplot as plt
    import numpy as np

    df = result.to_frame()
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    else:
        fig = axes[0].figure
    ax, ax2 = axes
    ok = np.isfinite(df.lhs) & np.isfinite(df.rhs)
    if log:
        ok &= (df.lhs > 0) & (df.rhs > 0)
    d = df[ok]
    groups = [(None, d)] if hue is None else list(d.groupby(hue))
    for key, g in groups:
        ax.scatter(g.rhs, g.lhs, s=14, alpha=0.7, label=None if key is None else f"{hue}={key}")
    if len(d):
        lo = min(d.lhs.min(), d.rhs.min())
        hi = max(d.lhs.max(), d.rhs.max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel(rhs_label)
    ax.set_ylabel(lhs_label)
    left_out = int((~ok).sum())
    ax.set_title((title or result.name) + (f" ({left_out} points at 0/inf not shown)" if left_out else ""),
                 fontsize=10)
    ax.legend(fontsize=8)
    tt = df[np.isfinite(df.tightness) & (df.tightness > 0)]
    if len(tt):
        t = tt.tightness
        wide = log and t.max() / t.min() > 100
        vals = np.log10(t) if wide else t
        bins = np.histogram_bin_edges(vals, bins=30)
        if hue is None:
            ax2.hist(vals, bins=bins)
        else:
            keys, parts = zip(*[(k, (np.log10(g.tightness) if wide else g.tightness)) for k, g in tt.groupby(hue)])
            ax2.hist(list(parts), bins=bins, stacked=True, label=[f"{hue}={k}" for k in keys])
            ax2.legend(fontsize=8)
        ax2.axvline(0.0 if wide else 1.0, color="k", ls="--", lw=1)
        ax2.set_xlabel("log10 tightness (lhs / rhs)" if wide else "tightness (lhs / rhs)")
    ax2.set_ylabel("instances")
    ax2.set_title(f"holds: {result.holds}  ({result.n_violations}/{result.n} violations)", fontsize=10)
    fig.tight_layout()
    return fig


ALL_CHECKS = {
    "Prop. 2.1": check_optimal_explanation,
    "Prop. 2.2": check_gradient_optimality,
    "Prop. 2.3": check_occlusion_optimality,
    "Prop. 2.4": check_shap_optimality,
    "Prop. A.1": check_lipschitz_bound,
    "A.2": check_hessian_bounds,
    "Thm. A.1": check_adversarial_risk_bound,
    "Thm. C.1": check_robust_infidelity_lower_bound,
    "Thm. 4.1": check_smoothgrad_sensitivity,
    "Thm. 4.2": check_smoothgrad_infidelity,
}
