"""Tests of xailib.explainers: closed forms, optimality, invariances, validation.

Each test states the property it checks; the closed forms are derived in the docstrings.
"""
import itertools
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from xailib import perturbations as P
from xailib._utils import make_generator
from xailib.explainers import (
    Explainer,
    Gradient,
    GuidedBackprop,
    IntegratedGradients,
    KernelSHAP,
    Occlusion,
    Optimal,
    SmoothGrad,
    to_global,
    to_local,
)

f64 = torch.float64


# ----------------------------------------------------------------------------- fixtures
def linear_model(d, dtype=f64, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=g, dtype=f64).to(dtype)
    return (lambda x: x.reshape(x.shape[0], -1) @ w), w


def quadratic_model(d, seed=0):
    """f(x) = ½ xᵀAx + βᵀx with A symmetric; ∇f(x) = Ax + β."""
    g = torch.Generator().manual_seed(seed)
    B = torch.randn(d, d, generator=g, dtype=f64)
    A = (B + B.T) / 2
    beta = torch.randn(d, generator=g, dtype=f64)

    def f(x):
        return 0.5 * ((x @ A) * x).sum(1) + x @ beta

    return f, A, beta


def mlp(d, hidden=16, out=1, seed=0, act=nn.Softplus):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, hidden), act(), nn.Linear(hidden, out)).double()


class Net3(nn.Module):
    """Two-hidden-layer ReLU net written with F.relu (functional ReLUs)."""

    def __init__(self, W1, W2, w3, style="functional"):
        super().__init__()
        self.W1, self.W2, self.w3, self.style = W1, W2, w3, style
        self.relu = nn.ReLU(inplace=(style == "module_inplace"))

    def forward(self, x):
        h1 = x @ self.W1.T
        if self.style == "functional":
            a1 = F.relu(h1)
            a2 = F.relu(a1 @ self.W2.T)
        elif self.style in ("module", "module_inplace"):
            a1 = self.relu(h1)
            a2 = self.relu(a1 @ self.W2.T)
        elif self.style == "tensor":
            a1 = h1.relu_()
            a2 = torch.relu(a1 @ self.W2.T)
        else:  # functional in-place
            a1 = F.relu(h1, inplace=True)
            a2 = torch.relu_(a1 @ self.W2.T)
        return a2 @ self.w3


def relu_weights(seed=1):
    g = torch.Generator().manual_seed(seed)
    W1 = torch.randn(8, 5, generator=g, dtype=f64)
    W2 = torch.randn(6, 8, generator=g, dtype=f64)
    w3 = torch.tensor([1.0, -1.5, 0.7, -0.3, 2.0, -0.8], dtype=f64)  # mixed signs
    return W1, W2, w3


def exact_shapley(f, x, baseline=0.0):
    """Shapley values of v(S) = f(x_S, baseline elsewhere) by enumeration of all subsets."""
    n, d = x.shape
    out = torch.zeros_like(x)
    with torch.no_grad():
        for i in range(d):
            others = [j for j in range(d) if j != i]
            for r in range(d):
                wgt = math.factorial(r) * math.factorial(d - r - 1) / math.factorial(d)
                for S in itertools.combinations(others, r):
                    m = torch.full_like(x, baseline)
                    m[:, list(S)] = x[:, list(S)]
                    m2 = m.clone()
                    m2[:, i] = x[:, i]
                    out[:, i] += wgt * (f(m2) - f(m))
    return out


def infidelity_global(f, A, x, law, n, seed):
    """Raw INFD = E[(zᵀA − Δf)²] for a binary law (B.2 form), or E[(IᵀΦ − Δf)²] for a
    continuous one (A is then the local Φ), on draws fixed by ``seed``."""
    draws = law.draw(x.shape[1:], n, seed, x.device, x.dtype)
    with torch.no_grad():
        fx = f(x)
        fp = f(law.perturbed(x, draws).reshape(-1, *x.shape[1:])).view(x.shape[0], n)
    df = fx.view(-1, 1) - fp
    if law.binary:
        pred = torch.einsum("kf,nf->nk", law.expand(draws, x.shape[1:]).reshape(n, -1), A.reshape(x.shape[0], -1))
    else:
        I = law.apply(x, draws)
        pred = torch.einsum("nkf,nf->nk", I.reshape(x.shape[0], n, -1), A.reshape(x.shape[0], -1))
    return ((pred - df) ** 2).mean(1)


# ----------------------------------------------------------------------------- linear model
def test_linear_model_closed_forms():
    """Linear f = wᵀx: Grad = IG = SG(Grad) = Occlusion = Optimal(NB) = Optimal(Gaussian) = w;
    Optimal(Square) = KernelSHAP = IG(global) = w ⊙ (x − b)."""
    d = 6
    f, w = linear_model(d)
    x = torch.rand(4, d, dtype=f64)
    W = w.expand_as(x)
    assert torch.allclose(Gradient(f)(x), W, atol=1e-12)
    assert torch.allclose(IntegratedGradients(f)(x), W, atol=1e-12)
    assert torch.allclose(SmoothGrad(Gradient(f), n_samples=16)(x), W, atol=1e-12)
    assert torch.allclose(Occlusion(f)(x), W, atol=1e-10)
    for law in (P.NoisyBaseline(), P.NoisyBaseline(clip=None), P.Gaussian(0.3)):
        phi = Optimal(f, law, n_samples=4000, ridge=0.0)(x)
        assert torch.allclose(phi, W, atol=1e-8), law
        phi = Optimal(f, law, n_samples=4000)(x)  # default ridge: negligible bias
        assert torch.allclose(phi, W, atol=1e-3), law
    b = 0.25
    gl = w * (x - b)
    sq = Optimal(f, P.SquareRemoval(sizes=(1, 3), baseline=b), n_samples=3000)
    assert sq.kind == "global" and sq.name == "Square"
    assert torch.allclose(sq(x), gl, atol=1e-5)
    assert torch.allclose(KernelSHAP(f, 1000, baseline=b)(x), gl, atol=1e-6)
    assert torch.allclose(IntegratedGradients(f, baseline=b, multiply_by_inputs=True)(x), gl, atol=1e-12)


# ----------------------------------------------------------------------------- quadratic model
def test_optimal_quadratic_noisy_baseline_closed_form():
    """f = ½xᵀAx + βᵀx, NoisyBaseline without clipping: I = m + η, m = x − b₀, η = −σε.
    Δf = f(x) − f(x − I) = gᵀI − ½IᵀAI with g = ∇f(x) = Ax + β (exact for a quadratic).
    E[IIᵀ] = mmᵀ + σ²Id and E[I·IᵀAI] = m(mᵀAm + σ² tr A) + 2σ²Am (odd moments of η vanish), so
    Φ* = g − ½ (mmᵀ + σ²Id)⁻¹ [m(mᵀAm + σ² tr A) + 2σ²Am] ≠ ∇f(x)."""
    d, sigma, b0 = 3, 0.5, 0.2
    f, A, beta = quadratic_model(d)
    x = torch.tensor([[0.9, 0.1, 0.6], [0.3, 0.8, 0.5]], dtype=f64)
    law = P.NoisyBaseline(sigma=sigma, baseline=b0, clip=None)
    phi = Optimal(f, law, n_samples=100_000, ridge=0.0)(x)
    for n in range(x.shape[0]):
        g = A @ x[n] + beta
        m = x[n] - b0
        M = torch.outer(m, m) + sigma**2 * torch.eye(d, dtype=f64)
        rhs = m * (m @ A @ m + sigma**2 * torch.trace(A)) + 2 * sigma**2 * (A @ m)
        closed = g - 0.5 * torch.linalg.solve(M, rhs)
        assert (closed - g).abs().max() > 0.3  # the case is non-trivial
        assert torch.allclose(phi[n], closed, atol=0.06), (phi[n], closed)


def test_optimal_quadratic_gaussian_is_gradient():
    """Centred Gaussian I: E[I·IᵀAI] = 0, hence Φ* = ∇f(x) = Ax + β exactly."""
    d = 4
    f, A, beta = quadratic_model(d, seed=3)
    x = torch.rand(3, d, dtype=f64)
    phi = Optimal(f, P.Gaussian(0.3), n_samples=50_000, ridge=0.0)(x)
    grad = x @ A + beta
    assert torch.allclose(phi, grad, atol=0.03)
    assert torch.allclose(Gradient(f)(x), grad, atol=1e-12)


def test_continuous_structured_algebra_matches_general():
    """The shared-moment algebra (NB: x − I = x₀ shared; Gaussian: I shared) equals the generic
    per-instance accumulation of E[IIᵀ] on the same draws."""
    net = mlp(5)
    x = torch.rand(3, 5, dtype=f64)
    for law in (P.NoisyBaseline(), P.Gaussian(0.2)):
        a = Optimal(net, law, n_samples=3000)
        b = Optimal(net, law, n_samples=3000)
        b._mode = "general"
        assert torch.allclose(a(x), b(x), atol=1e-8, rtol=1e-8)


def test_optimal_infinitesimal_is_gradient():
    """Prop. 2.2: I = ε eᵢ, ε → 0 ⇒ Φ* → ∇f."""
    net = mlp(4, act=nn.Tanh)
    x = torch.rand(2, 4, dtype=f64)
    phi = Optimal(net, P.Infinitesimal(eps=1e-5), n_samples=400)(x)
    assert torch.allclose(phi, Gradient(net)(x), atol=1e-4)


def test_optimal_single_feature_is_occlusion():
    """Prop. 2.3: the optimal global explanation for one-feature removal is occlusion-1,
    A = (x − b) ⊙ Φ_occlusion."""
    net = mlp(6, act=nn.Tanh)
    x = torch.rand(3, 6, dtype=f64)
    b = 0.3
    opt = Optimal(net, P.SingleFeature(baseline=b), n_samples=600)
    occ = Occlusion(net, baseline=b)(x)
    assert torch.allclose(opt(x), to_global(occ, x, b), atol=1e-8)


# ----------------------------------------------------------------------------- Occlusion
def test_occlusion_formula_and_zero_at_baseline():
    """Φᵢ = (f(x) − f(x with xᵢ = b)) / (xᵢ − b); 0 where xᵢ = b (never divided by 1)."""
    net = mlp(5, act=nn.Tanh)
    b = 0.5
    x = torch.rand(3, 5, dtype=f64)
    x[0, 1] = b
    x[:, 3] = b  # feature equal to the baseline everywhere: not evaluated at all
    phi = Occlusion(net, baseline=b, batch_size=4)(x)
    with torch.no_grad():
        fx = net(x).squeeze(1)
        for n in range(3):
            for i in range(5):
                xo = x[n : n + 1].clone()
                xo[0, i] = b
                want = 0.0 if x[n, i] == b else ((fx[n] - net(xo).squeeze()) / (x[n, i] - b)).item()
                assert phi[n, i].item() == pytest.approx(want, abs=1e-12)
    assert phi[0, 1] == 0 and (phi[:, 3] == 0).all()
    # tensor baseline (per feature)
    bt = torch.full((5,), b, dtype=f64)
    assert torch.allclose(Occlusion(net, baseline=bt)(x), phi, atol=1e-12)


# ----------------------------------------------------------------------------- Shapley
def test_kernel_shap_converges_to_exact_shapley():
    """KernelSHAP (efficiency-constrained regression on Shapley-kernel masks) ≈ the exact Shapley
    values (enumeration over subsets) on a nonlinear model, d = 6, within Monte-Carlo error;
    efficiency Σφ = f(x) − f(b) holds exactly."""
    d = 6
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(d, 12), nn.Tanh(), nn.Linear(12, 12), nn.Tanh(), nn.Linear(12, 1)).double()
    with torch.no_grad():
        net[0].weight.mul_(3)

    def f(x):
        return net(x).squeeze(-1)

    b = 0.1
    x = torch.rand(3, d, dtype=f64)
    exact = exact_shapley(f, x, b)
    base = f(torch.full((1, d), b, dtype=f64)).detach()
    assert torch.allclose(exact.sum(1), f(x).detach() - base, atol=1e-10)
    scale = exact.abs().max()
    errs = []
    for n in (500, 20000):
        ks = KernelSHAP(f, n_samples=n, baseline=b)(x)
        assert torch.allclose(ks.sum(1), f(x).detach() - base, atol=1e-8)  # efficiency
        errs.append((ks - exact).abs().max() / scale)
    assert errs[1] < 0.02, errs
    assert errs[1] < errs[0] or errs[0] < 0.01


# ----------------------------------------------------------------------------- optimality
@pytest.mark.parametrize("law_name", ["noisy_baseline", "square"])
def test_optimal_has_lowest_infidelity(law_name):
    """Optimal(law) has lower infidelity under law than Grad, IG and SmoothGrad, evaluated on the
    same (independent of the fit) perturbation draws, raw and after optimal scaling."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(36, 24), nn.Softplus(), nn.Linear(24, 3)).double()
    x = torch.rand(4, 1, 6, 6, dtype=f64)
    target = torch.tensor([0, 1, 2, 0])
    if law_name == "noisy_baseline":
        law = P.NoisyBaseline()
    else:
        law = P.SquareRemoval(sizes=(1, 3))
    opt = Optimal(net, law, n_samples=6000, seed=1)
    expl = {
        "opt": opt(x, target),
        "grad": Gradient(net)(x, target),
        "ig": IntegratedGradients(net, steps=20)(x, target),
        "sg": SmoothGrad(Gradient(net), n_samples=30)(x, target),
    }

    def f(z):
        return net(z).gather(1, target.view(-1, 1).repeat_interleave(z.shape[0] // 4, 0)).squeeze(1)

    # evaluate on fresh draws: for binary laws compare global forms, for continuous local ones
    n = 3000
    draws = law.draw(x.shape[1:], n, 7, x.device, x.dtype)
    with torch.no_grad():
        fx = net(x).gather(1, target.view(-1, 1)).squeeze(1)
        pts = law.perturbed(x, draws)  # (N, n, *F)
        fp = torch.stack([net(pts[i])[:, target[i]] for i in range(4)])
    df = fx.view(-1, 1) - fp
    if law.binary:
        mask = law.expand(draws, x.shape[1:]).reshape(n, -1)
        pred = {k: mask @ (v if k == "opt" else to_global(v, x, law.baseline)).reshape(4, -1).T for k, v in expl.items()}
    else:
        I = law.apply(x, draws).reshape(4, n, -1)
        pred = {k: torch.einsum("nkf,nf->nk", I, v.reshape(4, -1)).T for k, v in expl.items()}
    raw, scaled = {}, {}
    for k, p in pred.items():
        p = p.T
        raw[k] = ((p - df) ** 2).mean(1)
        beta = (p * df).mean(1) / (p * p).mean(1)
        scaled[k] = ((beta.view(-1, 1) * p - df) ** 2).mean(1)
    for k in ("grad", "ig", "sg"):
        assert (raw["opt"] < raw[k]).all(), (k, raw)
        assert (scaled["opt"] <= scaled[k] * 1.001).all(), (k, scaled)


# ----------------------------------------------------------------------------- Guided Backprop
def hand_gbp(x, W1, W2, w3):
    """Guided back-propagation by hand: R ← [h > 0]·max(R, 0) at each ReLU."""
    h1 = x @ W1.T
    h2 = F.relu(h1) @ W2.T
    r2 = w3.clamp(min=0) * (h2 > 0)
    r1 = (r2 @ W2).clamp(min=0) * (h1 > 0)
    return r1 @ W1


@pytest.mark.parametrize("style", ["functional", "module", "module_inplace", "tensor", "functional_inplace"])
def test_guided_backprop_functional_and_module_relus(style):
    """GBP on a net using F.relu (and nn.ReLU, Tensor.relu_, in-place forms) equals the hand
    computation and differs from Grad (module swapping would silently return Grad)."""
    W1, W2, w3 = relu_weights()
    net = Net3(W1, W2, w3, style)
    x = torch.randn(5, 5, dtype=f64, generator=torch.Generator().manual_seed(2))
    gbp = GuidedBackprop(net)(x)
    want = hand_gbp(x, W1, W2, w3)
    assert want.abs().max() > 0.1
    assert torch.allclose(gbp, want, atol=1e-12)
    assert (gbp - Gradient(net)(x)).abs().max() > 0.1


def hand_gbp_clipped(x, W1, W2, w3, c, c_back=None):
    """Guided back-propagation through clipped ReLUs min(max(h, 0), c) by hand:
    R ← [0 < h < c_back]·max(R, 0) at each activation (``c_back`` = c: the clipped-ReLU rule)."""
    c_back = c if c_back is None else c_back
    h1 = x @ W1.T
    h2 = h1.clamp(0, c) @ W2.T
    r2 = w3.clamp(min=0) * ((h2 > 0) & (h2 < c_back))
    r1 = (r2 @ W2).clamp(min=0) * ((h1 > 0) & (h1 < c_back))
    return r1 @ W1


@pytest.mark.parametrize("style", ["module", "module_inplace", "functional", "hardtanh", "clamp"])
def test_guided_backprop_on_relu6_matches_the_closed_form(style):
    """ReLU6 (MobileNet's and EfficientNet-Lite's activation) is a clipped ReLU: GBP guides it on its
    linear piece 0 < h < 6, whatever its spelling, and equals the hand computation; it differs from
    Grad and from the ReLU rule (which would pass the saturated units h > 6), so all three are told apart."""
    W1, W2, w3 = relu_weights()
    W1, W2 = 3 * W1, 2 * W2  # large pre-activations: many units saturate above 6
    act = {"module": nn.ReLU6(), "module_inplace": nn.ReLU6(inplace=True), "functional": F.relu6,
           "hardtanh": lambda h: F.hardtanh(h, 0.0, 6.0), "clamp": lambda h: h.clamp(0, 6)}[style]
    net = lambda z: act(act(z @ W1.T) @ W2.T) @ w3  # noqa: E731
    x = torch.randn(16, 5, dtype=f64, generator=torch.Generator().manual_seed(2))
    h1 = x @ W1.T
    assert (h1 > 6).float().mean() > 0.1 and (h1 < 0).float().mean() > 0.1
    gbp = GuidedBackprop(net)(x)
    want = hand_gbp_clipped(x, W1, W2, w3, 6.0)
    assert want.abs().max() > 0.1
    assert torch.allclose(gbp, want, atol=1e-12)
    assert (gbp - Gradient(net)(x)).abs().max() > 0.1
    relu_rule = hand_gbp_clipped(x, W1, W2, w3, 6.0, float("inf"))  # the ReLU rule on the same forward pass
    assert (gbp - relu_rule).abs().max() > 0.1


def test_guided_backprop_refuses_what_it_cannot_handle():
    W1, W2, w3 = relu_weights()
    x = torch.randn(2, 5, dtype=f64)
    with pytest.raises(ValueError, match="no ReLU"):
        GuidedBackprop(lambda z: (z @ W1.T).sum(1))(x)
    with pytest.raises(ValueError, match="no ReLU"):  # a where-ReLU is invisible: refused, not Grad
        GuidedBackprop(lambda z: torch.where(z @ W1.T > 0, z @ W1.T, 0.0).sum(1))(x)
    with pytest.raises(ValueError, match="no ReLU"):  # clamp below a negative bound is not a (clipped) ReLU
        GuidedBackprop(lambda z: (z @ W1.T).clamp(-1, 1).sum(1))(x)
    with pytest.raises(ValueError, match="hardtanh"):  # a hardtanh that is not a clipped ReLU has no rule
        GuidedBackprop(nn.Sequential(nn.Linear(5, 3), nn.ReLU(), nn.Hardtanh(), nn.Linear(3, 1)).double())(x)
    with pytest.raises(ValueError, match="sigmoid"):
        GuidedBackprop(lambda z: torch.sigmoid(F.relu(z @ W1.T)).sum(1))(x)
    with pytest.raises(ValueError, match="gelu"):
        GuidedBackprop(nn.Sequential(nn.Linear(5, 3), nn.ReLU(), nn.GELU(), nn.Linear(3, 1)).double())(x)
    out = GuidedBackprop(lambda z: torch.sigmoid(F.relu(z @ W1.T)).sum(1), strict=False)(x)
    assert out.shape == x.shape


# ----------------------------------------------------------------------------- IG
def test_integrated_gradients_completeness_and_methods():
    """Σᵢ (xᵢ − bᵢ) Φᵢ = f(x) − f(b); Gauss–Legendre is exact to ~1e-10 on a smooth net."""
    net = mlp(5, act=nn.Tanh)
    x = torch.rand(4, 5, dtype=f64)
    b = torch.rand(4, 5, dtype=f64)  # per-instance baseline
    with torch.no_grad():
        gap = (net(x) - net(b)).squeeze(1)
    for method, tol in (("gausslegendre", 1e-10), ("riemann_trapezoid", 1e-3), ("riemann_middle", 1e-3)):
        A = IntegratedGradients(net, baseline=b, steps=40, method=method, multiply_by_inputs=True, batch_size=7)(x)
        assert torch.allclose(A.sum(1), gap, atol=tol), method
    ig = IntegratedGradients(net, baseline=b, steps=40)
    assert ig.kind == "local" and IntegratedGradients(net, multiply_by_inputs=True).kind == "global"
    assert torch.allclose(to_global(ig(x), x, b), (x - b) * ig(x))


# ----------------------------------------------------------------------------- SmoothGrad
def test_smoothgrad_quadratic_and_float64_noise():
    """SG of Grad for f = ½xᵀAx + βᵀx is A(x + δ̄) + β, δ̄ the mean of the drawn noise;
    float64 input ⇒ float64 noise; uniform noise lies in the L∞ ball."""
    f, A, beta = quadratic_model(4)
    x = torch.rand(3, 4, dtype=f64)
    sg = SmoothGrad(Gradient(f), radius=0.3, n_samples=64, seed=5)
    delta = sg.draw_noise((4,), sg._make_generator(None, x.device), x.device, x.dtype)
    assert delta.dtype == f64 and (delta.float().double() != delta).any()
    assert delta.abs().max() <= 0.3
    assert torch.allclose(sg(x), (x + delta.mean(0)) @ A + beta, atol=1e-12)
    gauss = SmoothGrad(Gradient(f), radius=0.3, n_samples=64, noise="gaussian")
    assert gauss(x).dtype == f64
    assert SmoothGrad(IntegratedGradients(f, multiply_by_inputs=True)).kind == "global"
    assert SmoothGrad(Gradient(f)).name == "Grad-SG"


def test_smoothgrad_of_ig_with_per_instance_baseline():
    """SG(IG) with a per-instance baseline: each instance uses its own baseline in the stack."""
    net = mlp(4, act=nn.Tanh)
    x = torch.rand(3, 4, dtype=f64)
    b = torch.rand(3, 4, dtype=f64)
    sg = SmoothGrad(IntegratedGradients(net, baseline=b, steps=6), n_samples=5, batch_size=4)
    full = sg(x)
    for i in range(3):
        one = SmoothGrad(IntegratedGradients(net, baseline=b[i], steps=6), n_samples=5)(x[i : i + 1])
        assert torch.allclose(full[i : i + 1], one, atol=1e-12)


# ----------------------------------------------------------------------------- invariances
def _all_explainers(net, bs):
    return [
        Gradient(net, batch_size=bs),
        IntegratedGradients(net, steps=5, batch_size=bs),
        GuidedBackprop(net, batch_size=bs),
        SmoothGrad(Gradient(net), n_samples=7, batch_size=bs),
        SmoothGrad(GuidedBackprop(net, batch_size=bs), n_samples=7, batch_size=bs),
        Occlusion(net, batch_size=bs),
        KernelSHAP(net, n_samples=300, batch_size=bs),
        Optimal(net, P.NoisyBaseline(), n_samples=500, batch_size=bs),
        Optimal(net, P.Gaussian(0.1), n_samples=500, batch_size=bs),
        Optimal(net, P.SquareRemoval(sizes=(1, 2)), n_samples=500, batch_size=bs),
    ]


def test_batch_size_and_instance_composition_invariance():
    """Same seed ⇒ same result whatever batch_size and whichever instances share the batch
    (draws are shared by all instances); repeated calls are identical (common random numbers)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(9, 7), nn.ReLU(), nn.Linear(7, 2)).double()
    x = torch.rand(5, 1, 3, 3, dtype=f64)
    t = torch.tensor([0, 1, 1, 0, 1])
    for e_big, e_small in zip(_all_explainers(net, 4096), _all_explainers(net, 3)):
        a = e_big(x, t)
        assert torch.allclose(a, e_small(x, t), atol=1e-10, rtol=1e-8), e_big.name
        assert torch.allclose(a[1:3], e_big(x[1:3], t[1:3]), atol=1e-10, rtol=1e-8), e_big.name
        assert torch.equal(a, e_big(x, t)), e_big.name


def test_generator_argument_and_stochastic_flags():
    net = mlp(4)
    x = torch.rand(2, 4, dtype=f64)
    sg = SmoothGrad(Gradient(net), n_samples=8, seed=0)
    assert sg.stochastic and not Gradient(net).stochastic
    assert torch.equal(sg(x), sg(x, generator=0))
    assert not torch.equal(sg(x), sg(x, generator=1))
    assert torch.equal(sg(x, generator=1), SmoothGrad(Gradient(net), n_samples=8, seed=1)(x))
    g = torch.Generator().manual_seed(3)
    a, b = sg(x, generator=g), sg(x, generator=g)  # a Generator advances
    assert not torch.equal(a, b)
    opt = Optimal(net, P.SquareRemoval(sizes=(1, 2)), n_samples=300, exact=False, ridge=1e-6)
    first = opt(x)  # the E[zzᵀ] factor is cached for the next call with the same seed
    assert opt._store["factor"][1] is not None and torch.equal(first, opt(x))
    assert not torch.equal(first, opt(x, generator=4))
    exact = Optimal(net, P.SquareRemoval(sizes=(1, 2)))  # finite support: summed exactly, seed-free
    assert torch.equal(exact(x), exact(x, generator=4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_preserved(dtype):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(9, 5), nn.ReLU(), nn.Linear(5, 2)).to(dtype)
    x = torch.rand(2, 1, 3, 3, dtype=dtype)
    for e in _all_explainers(net, 64):
        out = e(x, 1)
        assert out.dtype == dtype and out.shape == x.shape and out.device == x.device, e.name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_device_preserved_cuda():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(9, 5), nn.ReLU(), nn.Linear(5, 2)).double().cuda()
    x = torch.rand(2, 1, 3, 3, dtype=f64, device="cuda")
    cpu_net = nn.Sequential(nn.Flatten(), nn.Linear(9, 5), nn.ReLU(), nn.Linear(5, 2)).double()
    cpu_net.load_state_dict({k: v.cpu() for k, v in net.state_dict().items()})
    for e, ec in zip(_all_explainers(net, 64), _all_explainers(cpu_net, 64)):
        out = e(x, 1)
        assert out.device == x.device and out.dtype == x.dtype, e.name
        if not e.stochastic:
            assert torch.allclose(out.cpu(), ec(x.cpu(), 1), atol=1e-10), e.name


# ----------------------------------------------------------------------------- helpers
def test_to_global_to_local():
    x = torch.tensor([[0.0, 0.5, 1.0]], dtype=f64)
    phi = torch.tensor([[2.0, 3.0, -1.0]], dtype=f64)
    A = to_global(phi, x, baseline=0.5)
    assert torch.equal(A, torch.tensor([[-1.0, 0.0, -0.5]], dtype=f64))
    back = to_local(A, x, baseline=0.5)
    assert torch.equal(back, torch.tensor([[2.0, 0.0, -1.0]], dtype=f64))  # 0 where x = baseline


# ----------------------------------------------------------------------------- validation
def test_bad_input_is_refused_naming_the_argument():
    net = mlp(4, out=3)
    x = torch.rand(2, 4, dtype=f64)
    for e in (Gradient(net), Occlusion(net), KernelSHAP(net, 50), Optimal(net, P.Gaussian(0.1), n_samples=50),
              SmoothGrad(Gradient(net), n_samples=2), IntegratedGradients(net, steps=3), GuidedBackprop(
                  nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 3)).double())):
        with pytest.raises(ValueError, match="target"):
            e(x)
        with pytest.raises(ValueError, match="NaN"):
            e(torch.full((1, 4), float("nan"), dtype=f64), 0)
        with pytest.raises(TypeError, match="floating"):
            e(torch.ones(1, 4, dtype=torch.long), 0)
        with pytest.raises(ValueError, match="batched"):
            e(torch.rand(4, dtype=f64), 0)
    with pytest.raises(TypeError, match="differentiable"):
        Gradient(lambda z: z.detach().sum(1))(x)
    def no_grad_model(z):
        with torch.no_grad():
            return z.sum(1)

    with pytest.raises(TypeError, match="differentiable"):
        SmoothGrad(IntegratedGradients(no_grad_model))(x)
    with pytest.raises(ValueError, match="n_samples"):
        SmoothGrad(Gradient(net), n_samples=0)
    with pytest.raises(ValueError, match="n_samples"):
        Optimal(net, P.Gaussian(0.1), n_samples=-1)
    with pytest.raises(ValueError, match="n_samples"):
        KernelSHAP(net, n_samples=0)
    with pytest.raises(ValueError, match="steps"):
        IntegratedGradients(net, steps=0)
    with pytest.raises(ValueError, match="radius"):
        SmoothGrad(Gradient(net), radius=0.0)
    with pytest.raises(ValueError, match="noise"):
        SmoothGrad(Gradient(net), noise="laplace")
    with pytest.raises(ValueError, match="method"):
        IntegratedGradients(net, method="simpson")
    with pytest.raises(TypeError, match="base"):
        SmoothGrad(net)
    with pytest.raises(TypeError, match="perturbation"):
        Optimal(net, "square")
    with pytest.raises(ValueError, match="baseline"):
        IntegratedGradients(net, baseline=torch.zeros(3))(x, 0)
    with pytest.raises(TypeError, match="model"):
        Gradient(3)
    with pytest.raises(ValueError, match="batch_size"):
        Gradient(net, batch_size=0)


def test_optimal_lowest_infidelity_with_metrics_module():
    """Cross-check with xailib.metrics.infidelity on shared Fixed draws: Optimal(Square) (global)
    has the lowest raw and scaled INFD among Grad, IG, Grad-SG, Occlusion and SHAP."""
    metrics = pytest.importorskip("xailib.metrics")
    torch.manual_seed(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(25, 16), nn.Softplus(), nn.Linear(16, 1)).double()
    x = torch.rand(3, 1, 5, 5, dtype=f64)
    law = P.SquareRemoval(sizes=(1, 3))
    fixed = P.Fixed(masks=law.draw((1, 5, 5), 2000, 11, "cpu", f64), baseline=0.0, groups="pixel")
    explainers = {
        "Square": Optimal(net, law, n_samples=5000),
        "Grad": Gradient(net),
        "IG": IntegratedGradients(net, steps=16),
        "Grad-SG": SmoothGrad(Gradient(net), n_samples=20),
        "Occlusion": Occlusion(net),
        "SHAP": KernelSHAP(net, n_samples=1000, groups="pixel"),
    }
    for scaling in (None, "optimal"):
        vals = {k: metrics.infidelity(net, e, x, perturbation=fixed, n_samples=2000, scaling=scaling)
                for k, e in explainers.items()}
        for k, v in vals.items():
            if k != "Square":
                assert (vals["Square"] <= v * 1.001).all(), (scaling, k, vals)


def test_sparse_gram_accumulation_matches_dense():
    """The sparse product used for large sparse masks (G ≥ 1024) equals the dense zᵀz."""
    from xailib.explainers._regression import add_gram

    law = P.SquareRemoval(sizes=(1, 5))
    z = law.draw((1, 40, 40), 300, 0, "cpu", torch.float32)
    assert z.shape[1] == 1600 and float(z.mean()) < 0.1
    M = torch.zeros(1600, 1600, dtype=f64)
    add_gram(M, z)
    assert torch.equal(M, z.double().T @ z.double())


def test_optimal_noisy_baseline_on_a_large_image_is_the_dual_ridge():
    """NB on d = 30,000 features (above the d×d limit) with n = 64 ≪ d draws: solved in the dual,
    never building a d×d matrix. On a linear model Δf = wᵀI exactly, so the cross-validated ridge
    (λ → small) is the minimum-norm interpolant of the draws, the projection of w on the span of
    the draws' I, computed here independently by least squares; a fixed ridge is refused, naming
    the dual."""
    from xailib.perturbations import NoisyBaseline

    d_img = (3, 100, 100)
    w = torch.randn(*d_img, generator=torch.Generator().manual_seed(0), dtype=f64)

    def lin(z):
        return (z * w).flatten(1).sum(1, keepdim=True)

    x = torch.rand(2, *d_img, generator=torch.Generator().manual_seed(1), dtype=f64)
    law = NoisyBaseline(sigma=0.2)
    opt = Optimal(lin, law, n_samples=64, seed=3)
    phi = opt(x, torch.zeros(2, dtype=torch.long))
    draws = law.draw(d_img, 64, make_generator(3, x.device, "Optimal"), x.device, x.dtype)  # the explainer's stream
    for i in range(2):
        I = law.apply(x[i : i + 1], draws)[0].reshape(64, -1)
        proj = torch.linalg.lstsq(I.T, w.reshape(-1, 1)).solution  # w ≈ Iᵀa: the projection is Iᵀa
        want = (I.T @ proj).squeeze(1)
        cos = (phi[i].reshape(-1) @ want) / (phi[i].norm() * want.norm())
        assert cos > 0.99, cos
    with pytest.raises(ValueError, match="dual ridge"):
        Optimal(lin, law, n_samples=64, ridge=1e-3)(x, torch.zeros(2, dtype=torch.long))
