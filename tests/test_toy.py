"""The appendix A.5 toy function (xailib.toy) and the explainers/metrics on it."""
import pytest
import torch

from xailib._utils import make_generator

from xailib import toy
from xailib.toy import PAPER_POINTS, PAPER_VALUES, ToyModel, smoothed_gradient, toy_function, toy_gradient


P2 = torch.tensor(PAPER_POINTS[:2], dtype=torch.float64)  # (20, 11.9), (20, 12.1)


def _pts(dtype=torch.float64):
    return torch.tensor(PAPER_POINTS, dtype=dtype)


# --------------------------------------------------------------------------- the function


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_paper_values(dtype):
    f = toy_function(_pts(dtype))
    assert f.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(f, torch.tensor(PAPER_VALUES, dtype=dtype), atol=tol, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_paper_gradients_autograd(dtype):
    x = _pts(dtype).requires_grad_(True)
    toy_function(x).sum().backward()
    expected = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=dtype)
    assert torch.equal(x.grad, expected)  # (20, 11.9) -> (1, 0); (20, 12.1) -> (0, 1)


def test_model_wraps_function_and_keeps_dtype():
    m = ToyModel()
    x = _pts(torch.float64)
    out = m(x)
    assert out.shape == (3, 1) and out.dtype == torch.float64
    torch.testing.assert_close(out[:, 0], toy_function(x))
    assert list(m.parameters()) == []


def test_autograd_gradient_is_the_closed_form_ae_gradient():
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(20000, 2, generator=g, dtype=torch.float64) * 80 - 40).requires_grad_(True)
    toy_function(x).sum().backward()
    assert torch.equal(x.grad, toy_gradient(x.detach()))
    # a unit basis vector everywhere, and both directions occur on both sides of the diagonal
    assert torch.equal(x.grad.sum(1), torch.ones(20000, dtype=torch.float64))
    upper = x.detach()[:, 0] > x.detach()[:, 1]
    for side in (upper, ~upper):
        frac = x.grad[side, 0].mean().item()
        assert 0.45 < frac < 0.55


def test_gradient_flips_in_the_lower_half_plane_only_as_stated():
    # the paper's "(1,0) if k even" is the half-plane a > b; mirrored for b > a
    x = torch.tensor([[20.0, 11.9], [11.9, 20.0], [20.0, 12.1], [12.1, 20.0]], dtype=torch.float64)
    expected = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    assert torch.equal(toy_gradient(x), expected)
    # f is symmetric
    torch.testing.assert_close(toy_function(x), toy_function(x.flip(1)))


def test_continuity_across_parity_boundaries():
    # boundary points |a - b| = m for m = 0..12 on both sides of the diagonal, crossed along a,
    # along b and along a generic direction: the floor jumps must cancel, |Δf| -> 0 with δ
    base = torch.tensor([3.3, -7.1, 20.0], dtype=torch.float64)
    pts = []
    for c in base:
        for m in range(0, 13):
            pts.append([c + m, c])
            pts.append([c, c + m])
    p = torch.tensor(pts, dtype=torch.float64)
    dirs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, -0.8], [0.28, 0.96]], dtype=torch.float64)
    for delta in (1e-2, 1e-4, 1e-7):
        for d in dirs:
            jump = (toy_function(p + delta * d) - toy_function(p - delta * d)).abs()
            # f is piecewise linear with gradient a unit basis vector: |Δf| <= ||2δ d||_∞
            assert jump.max().item() <= 2 * delta * d.abs().max().item() + 1e-9, (delta, d, jump.max())
    # and the floor itself does jump there (the test would catch a broken branch)
    k_lo = torch.floor((p[:, 0] - p[:, 1]).abs() - 1e-4)
    k_hi = torch.floor((p[:, 0] - p[:, 1]).abs() + 1e-4)
    assert (k_hi - k_lo == 1).sum() >= 30


def test_trend_plus_zigzag_form():
    # f = (a + b)/2 + dist(|a - b|, 2Z)/2: an independent formula for the same function
    g = torch.Generator().manual_seed(5)
    x = torch.rand(5000, 2, generator=g, dtype=torch.float64) * 60 - 30
    d = (x[:, 0] - x[:, 1]).abs()
    zigzag = (d - 2 * torch.round(d / 2)).abs() / 2
    torch.testing.assert_close(toy_function(x), x.sum(1) / 2 + zigzag, atol=1e-12, rtol=0)


def _box_average_by_quadrature(x, r, n=4001):
    # divergence theorem on the square [a - r, a + r] x [b - r, b + r], trapezoidal rule
    t = torch.linspace(-r, r, n, dtype=torch.float64)
    a, b = x[:, :1], x[:, 1:]

    def f(aa, bb):
        aa, bb = torch.broadcast_tensors(aa, bb)
        return toy_function(torch.stack([aa.reshape(-1), bb.reshape(-1)], 1)).view(aa.shape)

    ga = torch.trapezoid(f(a + r, b + t) - f(a - r, b + t), t, dim=1)
    gb = torch.trapezoid(f(a + t, b + r) - f(a + t, b - r), t, dim=1)
    return torch.stack([ga, gb], 1) / (2 * r) ** 2


def test_smoothed_gradient_closed_form_matches_quadrature():
    g = torch.Generator().manual_seed(2)
    x = torch.cat([P2, torch.rand(6, 2, generator=g, dtype=torch.float64) * 20 - 10,
                   torch.tensor([[3.0, 3.0], [5.0, 4.5]], dtype=torch.float64)])  # also across a = b
    for r in (0.05, 0.3, 0.7, 1.0, 2.6, 9.4):
        torch.testing.assert_close(smoothed_gradient(x, r), _box_average_by_quadrature(x, r), atol=1e-5, rtol=0)


def test_smoothed_gradient_reference_matches_brute_force():
    x = _pts()[:2]
    g = torch.Generator().manual_seed(0)
    u = torch.rand(200000, 2, generator=g, dtype=torch.float64) * 2 - 1
    for r in (0.2, 0.7, 3.3):
        exact = smoothed_gradient(x, r)
        mc = toy_gradient((x.unsqueeze(1) + r * u).reshape(-1, 2)).view(2, -1, 2).mean(1)
        # MC std of a 0/1 mean over 2e5 draws <= 0.0012
        torch.testing.assert_close(exact, mc, atol=6e-3, rtol=0)
    # radius 0.2 around (20, 11.9): the ball reaches 0.1 past the strip edge at |a-b| = 8 ...
    assert smoothed_gradient(x, 0.2)[0, 0] > 0.7
    # ... and a big ball sees as much of both strips
    torch.testing.assert_close(smoothed_gradient(x, 10.3), torch.full((2, 2), 0.5, dtype=torch.float64), atol=1e-3, rtol=0)


@pytest.mark.parametrize(
    "bad, exc",
    [
        (torch.zeros(4, 3), ValueError),
        (torch.zeros(2), ValueError),
        (torch.zeros(4, 2, 1), ValueError),
        (torch.zeros(4, 2, dtype=torch.long), TypeError),
        (torch.tensor([[1.0, float("nan")]]), ValueError),
        ([[1.0, 2.0]], TypeError),
    ],
)
def test_bad_input(bad, exc):
    with pytest.raises(exc, match="x"):
        toy_function(bad)
    with pytest.raises(exc):
        ToyModel()(bad)


def test_smoothed_gradient_validates():
    with pytest.raises(ValueError, match="radius"):
        smoothed_gradient(_pts(), 0.0)
    with pytest.raises(ValueError, match="x"):
        smoothed_gradient(torch.zeros(3, 3), 1.0)


# --------------------------------------------------------------------------- explainers and metrics on the toy


def test_smoothgrad_approaches_half_half_as_radius_grows():
    ex = pytest.importorskip("xailib.explainers")
    n = 4000
    mc_tol = 4 * 0.5 / n**0.5  # 4 standard errors of a mean of 0/1 components
    grad = ex.Gradient(ToyModel())
    # a ball that stays inside a stripe: SmoothGrad is the gradient, (1, 0) and (0, 1)
    small = ex.SmoothGrad(grad, radius=0.04, n_samples=n, noise="uniform_linf", seed=0)(P2)
    torch.testing.assert_close(small, torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64))
    dists = []
    for r in (0.2, 0.5, 1.3, 2.5, 10.3):
        sg = ex.SmoothGrad(grad, radius=r, n_samples=n, noise="uniform_linf", seed=0)(P2)
        assert sg.shape == P2.shape and sg.dtype == P2.dtype
        exact = smoothed_gradient(P2, r)
        # the Monte-Carlo SmoothGrad estimates the exact box average ...
        assert (sg - exact).abs().max().item() < mc_tol, (r, sg, exact)
        dists.append((exact - 0.5).abs().max().item())
        if r >= 2.5:  # ... which tends to (0.5, 0.5)
            assert (sg - 0.5).abs().max().item() < mc_tol + 0.01, (r, sg)
    assert dists[0] > 0.2 and dists[-1] < 1e-3 and dists == sorted(dists, reverse=True)
    # whole radii: the box spans whole zig-zag periods, the average is exactly (0.5, 0.5)
    torch.testing.assert_close(smoothed_gradient(P2, 3.0), torch.full((2, 2), 0.5, dtype=torch.float64))


@pytest.mark.parametrize("law_name", ["gaussian", "noisy_baseline"])
@pytest.mark.parametrize("scaling", ["optimal", None])
def test_optimal_explanation_infidelity_not_above_gradient(law_name, scaling):
    ex = pytest.importorskip("xailib.explainers")
    pt = pytest.importorskip("xailib.perturbations")
    mt = pytest.importorskip("xailib.metrics")
    law = pt.Gaussian(1.0) if law_name == "gaussian" else pt.NoisyBaseline(sigma=2.0, baseline=15.0, clip=None)
    model = ToyModel()
    n, seed = 3000, 7
    x = torch.cat([P2, torch.tensor([[17.3, 9.6], [25.0, 21.4]], dtype=torch.float64)])
    opt = ex.Optimal(model, law, n_samples=n, seed=seed)
    # in-sample on purpose: the metric replays the fit's own draws (the explainer's stream), where
    # the least-squares optimum provably cannot lose. (With an int seed the metric would draw from
    # its own "infidelity" stream, independent of the fit.)
    def common():
        fit_draws = make_generator(seed, stream="Optimal")
        return dict(perturbation=law, n_samples=n, generator=fit_draws, scaling=scaling)

    infd_opt = mt.infidelity(model, opt, x, **common())
    infd_grad = mt.infidelity(model, ex.Gradient(model), x, **common())
    assert infd_opt.shape == (4,)
    # same draws for the fit and the metric: the least-squares optimum cannot lose, neither to
    # the gradient nor to the near-optimal (0.5, 0.5) of SmoothGrad nor to a nudged copy of itself
    assert (infd_opt <= infd_grad * (1 + 1e-6) + 1e-9).all(), (infd_opt, infd_grad)
    sg = ex.SmoothGrad(ex.Gradient(model), radius=2.0, n_samples=500)
    infd_sg = mt.infidelity(model, sg, x, **common())
    assert (infd_opt <= infd_sg * (1 + 1e-6) + 1e-9).all(), (infd_opt, infd_sg)
    phi = opt(x)
    for nudge in ([0.01, -0.01], [0.01, 0.01], [-0.02, 0.0]):
        nudged = mt.infidelity(model, phi + torch.tensor(nudge, dtype=phi.dtype), x, **common())
        assert (infd_opt <= nudged * (1 + 1e-6) + 1e-9).all(), (nudge, infd_opt, nudged)
    # and on this function it wins clearly at the paper's points
    assert (infd_opt[:2] < 0.9 * infd_grad[:2]).all(), (infd_opt, infd_grad)


def test_exact_smoothgrad_explainer():
    pytest.importorskip("xailib.explainers")
    mt = pytest.importorskip("xailib.metrics")
    e = toy.ExactSmoothGrad(ToyModel(), radius=0.2)
    out = e(P2.float())
    assert out.shape == (2, 2) and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), smoothed_gradient(P2, 0.2), atol=1e-6, rtol=0)
    # no Monte-Carlo noise: its sensitivity shrinks like 1/radius (SmoothGrad's own, Thm. 4.1)
    s = [mt.sensitivity_max(toy.ExactSmoothGrad(ToyModel(), radius=r), P2, radius=0.1, n_samples=20).max().item()
         for r in (0.2, 2.3, 20.3)]
    assert s[0] > 0.3 and s[1] < 0.02 and s[2] < 1e-3, s
    with pytest.raises(TypeError, match="model"):
        toy.ExactSmoothGrad(torch.nn.Linear(2, 1))
    with pytest.raises(ValueError):
        e(torch.zeros(2, 3))
