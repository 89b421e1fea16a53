"""Estimators: exact sums over finite supports, cross-validated fits, efficiency under the Shapley
kernel, honest Monte-Carlo errors of the evaluation table, and the growth of sensitivity's max."""
import math

import pytest
import torch

from xailib import metrics as M
from xailib.explainers import Gradient, Optimal
from xailib.explainers._regression import ridge_cv
from xailib.perturbations import (
    EXACT_MAX_ATOMS,
    Gaussian,
    NoisyBaseline,
    ShapleyKernel,
    SingleFeature,
    SquareRemoval,
    exact_support,
)
from xailib.theory import exact_shapley

D64 = torch.float64


def mlp(d, hidden=16, act=torch.nn.Tanh, seed=0, n_out=1):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(d, hidden), act(), torch.nn.Linear(hidden, n_out)).double()


class ConvLike(torch.nn.Module):
    """A smooth non-linear model on (1, 6, 6) images."""

    def __init__(self):
        super().__init__()
        self.net = mlp(36, 12, seed=3)

    def forward(self, x):
        return self.net(x.reshape(x.shape[0], -1))


# ---------------------------------------------------------------- supports
def test_square_support_counts_and_weightings():
    law = SquareRemoval()
    assert law.support_size((1, 28, 28)) == sum((29 - s) ** 2 for s in range(1, 11)) == 5605
    masks, p = law.support((1, 28, 28), dtype=D64)
    assert masks.shape == (5605, 784) and math.isclose(float(p.sum()), 1.0, rel_tol=1e-12)
    sides = masks.sum(1).sqrt().round().long()
    assert torch.equal(masks.sum(1), (sides ** 2).to(D64))  # every atom is a full square
    for s in (1, 5, 10):  # "sides": each side has total probability 1/10
        assert math.isclose(float(p[sides == s].sum()), 0.1, rel_tol=1e-12)
    assert len({tuple(m.nonzero().view(-1).tolist()) for m in masks}) == 5605  # all distinct
    _, pq = SquareRemoval(weighting="squares").support((1, 28, 28), dtype=D64)
    torch.testing.assert_close(pq, torch.full_like(pq, 1 / 5605))
    # the sampler follows the same law: empirical side frequencies under "squares"
    z = SquareRemoval(weighting="squares").draw((1, 28, 28), 20000, 0, dtype=D64)
    k = z.sum(1).sqrt().round().long()
    for s in (1, 10):
        expect = (29 - s) ** 2 / 5605
        assert abs(float((k == s).double().mean()) - expect) < 4 * math.sqrt(expect * (1 - expect) / 20000)
    # superpixels: the same squares mapped to groups
    assert SquareRemoval(groups=4).support((1, 28, 28))[0].shape == (5605, 49)
    with pytest.raises(ValueError, match="weighting"):
        SquareRemoval(weighting="pixels")


def test_single_feature_and_shapley_supports():
    m, p = SingleFeature().support((4,), dtype=D64)
    assert torch.equal(m, torch.eye(4, dtype=D64)) and torch.equal(p, torch.full((4,), 0.25, dtype=D64))
    m, p = ShapleyKernel().support((6,), dtype=D64)
    assert m.shape == (62, 6) and math.isclose(float(p.sum()), 1.0, rel_tol=1e-12)
    size_p = ShapleyKernel.size_probabilities(6)
    for k in range(1, 6):
        torch.testing.assert_close(p[m.sum(1) == k].sum(), size_p[k - 1])
    with pytest.raises(ValueError, match="perturbation"):
        ShapleyKernel().support((25,))


def test_support_bad_input():
    with pytest.raises(ValueError, match="perturbation.*no finite support"):
        NoisyBaseline().support((1, 4, 4))
    net = mlp(8)
    x = torch.rand(2, 8, dtype=D64)
    with pytest.raises(ValueError, match="perturbation"):
        M.infidelity(net, torch.ones_like(x), x, perturbation=Gaussian(0.1), exact=True)
    with pytest.raises(ValueError, match="exact"):
        M.infidelity(net, torch.ones_like(x), x, perturbation=SingleFeature(), exact="yes")
    with pytest.raises(ValueError, match="perturbation"):
        Optimal(net, NoisyBaseline(), exact=True)(x)
    with pytest.raises(ValueError, match="exact"):
        exact_support(SquareRemoval((1, 1)), (1, 1, 70000), True, dtype=D64)  # 70,000² float64 masks
    assert exact_support(ShapleyKernel(), (14,), "auto") is None  # 16,382 atoms > EXACT_MAX_ATOMS
    assert EXACT_MAX_ATOMS >= 5605


# ---------------------------------------------------------------- exact infidelity
def test_exact_infidelity_is_seed_free_and_the_sampled_limit():
    model = ConvLike()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 1, 6, 6, generator=g, dtype=D64)
    phi = torch.randn(x.shape, generator=g, dtype=D64)
    law = SquareRemoval((1, 3))
    ex = [M.infidelity(model, phi, x, perturbation=law, generator=s, return_details=True) for s in (0, 7)]
    torch.testing.assert_close(ex[0].infidelity, ex[1].infidelity, rtol=0, atol=1e-10)
    assert (ex[0].se == 0).all()
    s = M.infidelity(model, phi, x, perturbation=law, n_samples=20000, exact=False, generator=3,
                     return_details=True)
    assert ((s.infidelity - ex[0].infidelity).abs() < 4 * s.se).all()
    assert not torch.equal(s.infidelity, ex[0].infidelity)


def test_exact_infidelity_of_linear_model_closed_form():
    w = torch.randn(36, dtype=D64, generator=torch.Generator().manual_seed(2))
    model = torch.nn.Linear(36, 1, bias=False).double()
    model.weight.data = w.view(1, -1)

    def f(x):
        return model(x.reshape(x.shape[0], -1))

    x = torch.rand(2, 1, 6, 6, dtype=D64)
    law = SquareRemoval((1, 2))
    grad = w.view(1, 1, 6, 6).expand_as(x)
    assert M.infidelity(f, grad, x, perturbation=law, scaling=None).abs().max() < 1e-24
    # Φ = 0: INFD = E[(Iᵀw)²] = Σ_k p_k (z_kᵀ((x − b) ⊙ w))², by hand
    Z, p = law.support((1, 6, 6), dtype=D64)
    A = (x * w.view(1, 1, 6, 6)).reshape(2, -1)
    ref = ((A @ Z.T) ** 2) @ p
    torch.testing.assert_close(M.infidelity(f, torch.zeros_like(x), x, perturbation=law, scaling=None), ref,
                               rtol=1e-12, atol=0)


# ---------------------------------------------------------------- exact optimal explanations
def test_exact_optimal_square_linear_and_seed_free():
    model = ConvLike()
    x = torch.rand(2, 1, 6, 6, dtype=D64)
    law = SquareRemoval((1, 3))
    a = Optimal(model, law, seed=0)(x)
    torch.testing.assert_close(a, Optimal(model, law, seed=5, n_samples=10)(x), rtol=0, atol=1e-10)
    # it is the minimiser of the exact infidelity: any perturbation of it does worse (unscaled)
    base = M.infidelity(model, a, x, perturbation=law, kind="global", scaling=None)
    for s in range(3):
        e = 1e-3 * torch.randn(a.shape, dtype=D64, generator=torch.Generator().manual_seed(s))
        assert (M.infidelity(model, a + e, x, perturbation=law, kind="global", scaling=None) > base).all()
    # and a sampled fit with many draws approaches it
    smp = Optimal(model, law, n_samples=20000, exact=False, ridge=1e-8)(x)
    assert (smp - a).norm() / a.norm() < 0.05


def test_optimal_single_feature_few_samples_is_occlusion_not_zeros():
    net = mlp(4)
    x = torch.rand(3, 4, dtype=D64)
    occ = net(x) - torch.stack([net(x * (1 - torch.eye(4, dtype=D64)[i])) for i in range(4)], 1).squeeze(-1)
    opt = Optimal(net, SingleFeature(), n_samples=2)(x)
    torch.testing.assert_close(opt, occ, rtol=1e-8, atol=1e-12)
    assert (opt.abs() > 0).all()
    with pytest.warns(UserWarning, match="never appear"):
        Optimal(net, SingleFeature(), n_samples=2, exact=False)(x)


def test_optimal_shapley_kernel_is_the_shapley_value():
    net = mlp(6)
    x = torch.rand(3, 6, dtype=D64)
    ref = exact_shapley(net, x)
    assert (Optimal(net, ShapleyKernel())(x) - ref).abs().max() < 1e-3  # exact support: ~1e-15
    smp = Optimal(net, ShapleyKernel(), n_samples=20000, exact=False)(x)
    assert (smp - ref).abs().max() < 1e-3
    # efficiency holds for the sampled fit too
    total = net(x).view(-1) - net(torch.zeros_like(x)).view(-1)
    torch.testing.assert_close(smp.sum(1), total, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- cross-validated fits
def test_ridge_cv_closed_form_loo():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(30, 5, generator=g, dtype=D64)
    Y = torch.randn(2, 30, generator=g, dtype=D64)
    grid = torch.tensor([1e-3, 1e-1, 10.0], dtype=D64)
    coef, rho, crit = ridge_cv(X, Y, grid)
    # brute-force leave-one-out for the second grid point
    n, d = X.shape
    lam = 1e-1 * float((X ** 2).sum()) / d
    errs = []
    for j in range(n):
        keep = torch.arange(n) != j
        Xj, Yj = X[keep], Y[:, keep]
        w = torch.linalg.solve(Xj.T @ Xj + lam * torch.eye(d, dtype=D64), Xj.T @ Yj.T)
        errs.append((Y[:, j] - X[j] @ w) ** 2)
    torch.testing.assert_close(crit[:, 1], torch.stack(errs).mean(0), rtol=1e-10, atol=0)
    best = crit.argmin(1)
    torch.testing.assert_close(rho, grid[best])
    for i in range(2):  # the returned coefficients are the full-data fit at the chosen ridge
        lam = float(rho[i]) * float((X ** 2).sum()) / d
        w = torch.linalg.solve(X.T @ X + lam * torch.eye(d, dtype=D64), X.T @ Y[i])
        torch.testing.assert_close(coef[i], w, rtol=1e-9, atol=1e-12)


def test_ridge_cv_dual_equals_primal_when_n_below_d():
    """n < d: the n × n kernel form gives the primal fit, criterion and ridge choice (a planted
    slip, e.g. a missing √s in U, moves the criterion by orders of magnitude)."""
    g = torch.Generator().manual_seed(1)
    X = torch.randn(12, 40, generator=g, dtype=D64)
    Y = X @ torch.randn(40, 3, generator=g, dtype=D64) + 0.3 * torch.randn(12, 3, generator=g, dtype=D64)
    grid = torch.logspace(-4, 2, 7, dtype=D64)
    primal = ridge_cv(X, Y.T, grid, dual=False)
    dual = ridge_cv(X, Y.T, grid)  # n < d: dual by default
    torch.testing.assert_close(dual[2], primal[2], rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(dual[1], primal[1])
    torch.testing.assert_close(dual[0], primal[0], rtol=1e-7, atol=1e-10)
    # and both are the ridge solution at the chosen ρ
    lam = float(primal[1][0]) * float((X ** 2).sum()) / 40
    w = torch.linalg.solve(X.T @ X + lam * torch.eye(40, dtype=D64), X.T @ Y[:, 0])
    torch.testing.assert_close(dual[0][0], w, rtol=1e-6, atol=1e-9)


def test_cv_fit_exact_on_linear_model():
    w = torch.randn(16, dtype=D64, generator=torch.Generator().manual_seed(4))

    def f(x):
        return x.reshape(x.shape[0], -1) @ w

    x = torch.rand(3, 16, dtype=D64)
    for law in (NoisyBaseline(), Gaussian(0.1)):
        opt = Optimal(f, law, n_samples=64)
        phi = opt(x)  # linear f: the optimum is w, leave-one-out residuals vanish as the ridge does
        assert (opt.cv_ridge_ == opt.ridge_grid.min()).all()
        torch.testing.assert_close(phi, w.expand_as(x), rtol=1e-3, atol=1e-4)
        assert (phi - w).norm() / w.norm() < 1e-3


def test_cv_beats_plain_fit_out_of_sample_at_small_n():
    d = 64
    net = mlp(d, 32, act=torch.nn.ReLU, seed=0)
    x = torch.rand(4, d, dtype=D64, generator=torch.Generator().manual_seed(0))
    law = NoisyBaseline()
    cv = Optimal(net, law, n_samples=70, seed=1)
    plain = Optimal(net, law, n_samples=70, seed=1, ridge=1e-6)
    ref = Optimal(net, law, n_samples=8000, seed=2, ridge=1e-6)(x)

    def infd(p):  # out of sample: independent draws
        return M.infidelity(net, p, x, perturbation=law, n_samples=8000, generator=5).mean()

    r = infd(ref)
    ex_cv, ex_plain = infd(cv(x)) - r, infd(plain(x)) - r
    assert ex_cv < ex_plain / 1.5, (float(ex_cv), float(ex_plain))
    assert cv.cv_ridge_.shape == (4,) and (cv.cv_ridge_ > 1e-6).all()


def test_cv_fit_batch_size_independent_and_bad_grid():
    net = mlp(10)
    x = torch.rand(5, 10, dtype=D64)
    a = Optimal(net, NoisyBaseline(), n_samples=40, batch_size=7)(x)
    b = Optimal(net, NoisyBaseline(), n_samples=40, batch_size=1000)(x)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(a[2:4], Optimal(net, NoisyBaseline(), n_samples=40)(x[2:4]), rtol=1e-10, atol=1e-12)
    big = Optimal(net, NoisyBaseline(), n_samples=60)  # n ≥ 5 d: no cross-validation, the fixed ridge
    torch.testing.assert_close(big(x), Optimal(net, NoisyBaseline(), n_samples=60, ridge=1e-6)(x), rtol=0, atol=0)
    assert big.cv_ridge_ is None
    for bad in ([], [0.1, -1.0], [float("nan")], "abc"):
        with pytest.raises(ValueError, match="ridge_grid"):
            Optimal(net, NoisyBaseline(), ridge_grid=bad)
    with pytest.raises(ValueError, match="ridge"):
        Optimal(net, NoisyBaseline(), ridge="loo")


# ---------------------------------------------------------------- evaluate: exact and MC errors
def test_evaluate_exact_law_has_zero_mc_error_and_is_seed_free():
    model = ConvLike()
    x = torch.rand(3, 1, 6, 6, dtype=D64)
    ex = {"Grad": Gradient(model)}
    laws = {"Sq": SquareRemoval((1, 3))}
    e1 = M.evaluate(model, ex, x, perturbations=laws, n_sens=0, generator=1)
    e2 = M.evaluate(model, ex, x, perturbations=laws, n_sens=0, generator=2)
    assert e1.summary.loc["Grad", "INFD[Sq] mc se"] == 0 and e1.settings["exact_laws"] == ["Sq"]
    assert abs(e1.summary.loc["Grad", "INFD[Sq]"] - e2.summary.loc["Grad", "INFD[Sq]"]) < 1e-12
    assert e1.summary.loc["Grad", "INFD[Sq] total se"] == e1.summary.loc["Grad", "INFD[Sq] se"]


def test_evaluate_mc_errors_match_seed_to_seed_spread():
    """Over 60 seeds, the reported MC standard error of each table mean (INFD with draws shared by
    all instances, SENS from replications) matches the observed spread of the means within ±30%."""
    d = 12
    net = mlp(d, 16, act=torch.nn.Softplus, seed=1)
    with torch.no_grad():
        net[0].weight.mul_(4.0)  # clearly non-linear at the scale of the perturbations
    x = torch.rand(8, d, dtype=D64, generator=torch.Generator().manual_seed(3))
    ex = {"Grad": Gradient(net)}
    laws = {"NB": NoisyBaseline()}
    means, ses = {"INFD[NB]": [], "SENS_max": []}, {"INFD[NB]": [], "SENS_max": []}
    naive = []  # per-instance MC errors combined as if independent (what the chapters printed before)
    for seed in range(60):
        ev = M.evaluate(net, ex, x, perturbations=laws, n_infd=100, n_sens=8, sens_reps=4, generator=seed)
        s = ev.summary
        for c in means:
            means[c].append(s.loc["Grad", c])
            ses[c].append(s.loc["Grad", c + " mc se"])
        naive.append(math.sqrt((ev.wide("INFD[NB] mc_se")["Grad"] ** 2).sum()) / len(x))
    ratios = {}
    for c in means:
        sd = torch.tensor(means[c], dtype=D64).std()
        rms = torch.tensor(ses[c], dtype=D64).pow(2).mean().sqrt()
        ratios[c] = float(rms / sd)
        assert 0.7 < ratios[c] < 1.3, (c, float(rms), float(sd))
    # the planted error: treating shared draws as independent understates the spread
    sd = torch.tensor(means["INFD[NB]"], dtype=D64).std()
    assert float(torch.tensor(naive, dtype=D64).pow(2).mean().sqrt() / sd) < 0.8


def test_sensitivity_growth():
    net = mlp(6, 8, act=torch.nn.ReLU, seed=2)
    x = torch.rand(3, 6, dtype=D64)
    gr = M.sensitivity_growth(Gradient(net), x, n_values=(2, 8, 32), n_reps=3, generator=0)
    assert list(gr.index) == [2, 8, 32]
    assert (gr["SENS_max"].diff().dropna() >= 0).all() and gr["rel. to max n"].iloc[-1] == 1
    ref = M.sensitivity_max(Gradient(net), x, n_samples=32, generator=0)
    one = M.sensitivity_growth(Gradient(net), x, n_values=(32,), n_reps=1, generator=0)
    assert math.isclose(one["SENS_max"].iloc[0], float(ref.mean()), rel_tol=1e-12)
    with pytest.raises(ValueError, match="n_values"):
        M.sensitivity_growth(Gradient(net), x, n_values=(0, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_exact_and_cv_paths_preserve_device_and_dtype():
    dev = torch.device("cuda")
    model = ConvLike().to(dev)
    x = torch.rand(2, 1, 6, 6, dtype=D64, device=dev)
    m, p = SquareRemoval((1, 3)).support((1, 6, 6), device=dev, dtype=D64)
    assert m.device.type == "cuda" and p.device.type == "cuda"
    for law in (SquareRemoval((1, 3)), NoisyBaseline()):
        a = Optimal(model, law, n_samples=60)(x)
        assert a.device.type == "cuda" and a.dtype == D64 and torch.isfinite(a).all()
        if law.binary:  # exact: no random draws, so the CPU gives the same map
            cpu = Optimal(ConvLike(), law, n_samples=60)(x.cpu())
            torch.testing.assert_close(a.cpu(), cpu, rtol=1e-8, atol=1e-10)
    ev = M.evaluate(model, {"G": Gradient(model)}, x, perturbations={"Sq": SquareRemoval((1, 3))}, n_sens=3)
    assert ev.summary.notna().all().all()


# ---------------------------------------------------------------- NoisyBaseline: draws' moments kept across calls
class _Counting(torch.nn.Module):
    """Counts the rows the wrapped model evaluates."""

    def __init__(self, net):
        super().__init__()
        self.net, self.rows = net, 0

    def forward(self, x):
        self.rows += x.shape[0]
        return self.net(x)


@pytest.mark.parametrize("ridge", [1e-6, "cv"])
def test_noisy_baseline_moments_are_reused_and_exact(ridge):
    """At a second point (a sensitivity neighbour) NB reuses its draws' moments: one forward pass per
    instance instead of n + N, and the same result as a fresh fit; changing the model's weights in
    place, or passing a torch.Generator, recomputes (a stale cache would be a silent wrong answer)."""
    from xailib.explainers import Optimal
    from xailib.models import MLP
    from xailib.perturbations import NoisyBaseline

    torch.manual_seed(0)
    net = _Counting(MLP(12, (16,), 3, activation="softplus").double().eval())
    x = torch.rand(2, 12, dtype=D64)
    y = (x + 0.05 * torch.rand(2, 12, dtype=D64)).clamp(0, 1)
    t = torch.tensor([0, 2])
    n = 300
    nb = Optimal(net, NoisyBaseline(), n_samples=n, ridge=ridge)
    nb(x, t)
    net.rows = 0
    got = nb(y, t)
    assert net.rows == 2  # f(y) only: the draws' outputs were kept
    fresh = Optimal(net, NoisyBaseline(), n_samples=n, ridge=ridge, cache=False)
    torch.testing.assert_close(got, fresh(y, t), rtol=1e-10, atol=1e-12)
    # the shared-point algebra equals the general per-instance accumulation on the same draws
    general = Optimal(net, NoisyBaseline(), n_samples=n, ridge=ridge, cache=False)
    general._mode = "general"
    torch.testing.assert_close(got, general(y, t), rtol=1e-8, atol=1e-10)
    # weights changed in place: recomputed, and equal to a fresh fit of the new model
    with torch.no_grad():
        next(net.parameters()).add_(0.3)
    net.rows = 0
    changed = nb(y, t)
    assert net.rows == n + 2
    torch.testing.assert_close(changed, Optimal(net, NoisyBaseline(), n_samples=n, ridge=ridge, cache=False)(y, t),
                               rtol=1e-10, atol=1e-12)
    assert not torch.allclose(changed, got)
    # explicit generators: draws not reproducible from a key, never cached
    for _ in range(2):
        net.rows = 0
        nb(y, t, generator=torch.Generator().manual_seed(5))
        assert net.rows == n + 2
