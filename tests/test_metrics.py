"""Metrics: closed forms, invariances, reproducibility, B.2 brute force, Captum cross-check."""
import math

import pytest
import torch

from xailib import metrics as M
from xailib._utils import make_generator
from xailib.perturbations import (
    Fixed,
    Gaussian,
    Infinitesimal,
    NoisyBaseline,
    ShapleyKernel,
    SingleFeature,
    SquareRemoval,
)

D64 = torch.float64
F = (1, 5, 5)
d = 25


# ---------------------------------------------------------------- closed-form fakes
class Linear(torch.nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = w

    def forward(self, x):
        return x.reshape(x.shape[0], -1) @ self.w


class Quadratic(torch.nn.Module):
    """f(x) = ½ xᵀAx, ∇f = Ax, ∇²f = A."""

    def __init__(self, A):
        super().__init__()
        self.A = A

    def forward(self, x):
        z = x.reshape(x.shape[0], -1)
        return 0.5 * ((z @ self.A) * z).sum(1)


class SmallNet(torch.nn.Module):
    def __init__(self, n_out=1, dtype=D64):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.W = torch.randn(d, 8, generator=g, dtype=dtype) / 3
        self.V = torch.randn(8, n_out, generator=g, dtype=dtype)

    def forward(self, x):
        out = torch.tanh(x.reshape(x.shape[0], -1) @ self.W.to(x.dtype)) @ self.V.to(x.dtype)
        return out[:, 0] if out.shape[1] == 1 else out


class Gradient:
    """Stand-in for xailib.explainers.Gradient (closed-form tests must not depend on it)."""

    kind, stochastic, name = "local", False, "Grad"

    def __init__(self, model):
        self.model = model
        self.calls = 0

    def __call__(self, x, target=None, *, generator=None):
        self.calls += 1
        xx = x.detach().requires_grad_(True)
        with torch.enable_grad():
            out = self.model(xx)
            if out.dim() == 2:
                out = out.gather(1, target.view(-1, 1))
            (g,) = torch.autograd.grad(out.sum(), xx)
        return g


class LinearMap:
    """Φ(y) = y Mᵀ (a deterministic explainer with a known sensitivity)."""

    kind, stochastic, name = "local", False, "Lin"

    def __init__(self, M):
        self.M = M

    def __call__(self, x, target=None, *, generator=None):
        return (x.reshape(x.shape[0], -1) @ self.M.T).view_as(x)


class NoisyConst:
    """Φ(y) = w + σ ε(seed), ε shared by all rows: a stochastic explainer with zero true sensitivity."""

    kind, name = "local", "Noisy"
    stochastic = True

    def __init__(self, w, sigma=0.1, seed=0):
        self.w, self.sigma, self.seed = w, sigma, seed

    def __call__(self, x, target=None, *, generator=None):
        g = make_generator(self.seed if generator is None else generator)
        eps = torch.randn(x.shape[1:], generator=g, dtype=x.dtype)
        return (self.w.view(x.shape[1:]) + self.sigma * eps).expand_as(x).clone()


class Const:
    """Φ(y) = phi for every input (phi of the feature shape): zero sensitivity."""

    def __init__(self, phi, kind="local"):
        self.phi, self.kind, self.stochastic, self.name = phi, kind, False, "const"

    def __call__(self, x, target=None, *, generator=None):
        return self.phi.expand_as(x).clone()


def laws():
    return [NoisyBaseline(), Gaussian(0.2), Infinitesimal(1e-2), SquareRemoval((1, 3)), SingleFeature(),
            ShapleyKernel(), SquareRemoval((1, 4), groups=2)]


@pytest.fixture
def lin():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(d, generator=g, dtype=D64)
    x = torch.rand(4, *F, generator=g, dtype=D64)
    x[:, :, :2] = 0.0  # zero "background" pixels: the B.2 trap
    return Linear(w), w, x


# ---------------------------------------------------------------- infidelity
@pytest.mark.parametrize("law", laws(), ids=repr)
def test_linear_gradient_has_zero_infidelity(lin, law):
    model, w, x = lin
    phi = w.view(1, *F).expand_as(x).clone()
    for scaling in ("optimal", None):
        v = M.infidelity(model, phi, x, perturbation=law, n_samples=200, scaling=scaling)
        assert v.shape == (4,) and v.abs().max() < 1e-24
    v = M.infidelity(model, Gradient(model), x, perturbation=law, n_samples=100)
    assert v.abs().max() < 1e-24


@pytest.mark.parametrize("law", [NoisyBaseline(), Gaussian(0.3), SquareRemoval((1, 3)), ShapleyKernel()], ids=repr)
def test_scaling_invariance_and_raw_closed_form(lin, law):
    model, w, x = lin
    g = torch.Generator().manual_seed(5)
    phi = torch.randn(x.shape, generator=g, dtype=D64)
    a = M.infidelity(model, phi, x, perturbation=law, n_samples=300)
    for c in (0.01, 3.0, 1e4):
        torch.testing.assert_close(M.infidelity(model, c * phi, x, perturbation=law, n_samples=300), a,
                                   rtol=1e-9, atol=1e-14)
    # raw INFD of Φ = c∇f on a linear model is (c − 1)² E[(Iᵀw)²] (same draws)
    wphi = w.view(1, *F).expand_as(x)
    base = M.infidelity(model, torch.zeros_like(x), x, perturbation=law, n_samples=300, scaling=None)
    for c in (0.0, 0.5, 2.0, -1.0):
        raw = M.infidelity(model, c * wphi, x, perturbation=law, n_samples=300, scaling=None)
        torch.testing.assert_close(raw, (c - 1) ** 2 * base, rtol=1e-10, atol=1e-20)
        opt = M.infidelity(model, c * wphi, x, perturbation=law, n_samples=300)
        if c != 0:
            assert opt.abs().max() < 1e-20  # β* = 1/c recovers the gradient
    # Gaussian: E[(Iᵀw)²] = σ²‖w‖², Monte-Carlo check within 5 standard errors
    if isinstance(law, Gaussian):
        det = M.infidelity(model, torch.zeros_like(x), x, perturbation=law, n_samples=4000, scaling=None,
                           return_details=True)
        exact = law.sigma ** 2 * float(w @ w)
        assert ((det.raw - exact).abs() < 5 * det.raw_se).all()


def test_details_and_beta_guard(lin):
    model, w, x = lin
    phi = torch.randn(x.shape, dtype=D64)
    det = M.infidelity(model, phi, x, n_samples=200, return_details=True)
    assert isinstance(det, M.InfidelityDetails)
    assert (det.infidelity <= det.raw + 1e-12).all() and (det.se > 0).all()
    # β* = E[(IᵀΦ)Δf] / E[(IᵀΦ)²] from the same draws
    I = NoisyBaseline().sample(x, 200, generator=make_generator(0, stream="infidelity"))
    a = (I * phi.unsqueeze(1)).flatten(2).sum(-1)
    b = model(x).view(-1, 1) - model((x.unsqueeze(1) - I).reshape(-1, *F)).view(4, 200)
    torch.testing.assert_close(det.beta, (a * b).mean(1) / (a * a).mean(1))
    # zero explanation: E[(IᵀΦ)²] = 0 -> β = 0, INFD = E[Δf²] (no division by zero)
    det0 = M.infidelity(model, torch.zeros_like(x), x, n_samples=50, return_details=True)
    assert torch.isfinite(det0.infidelity).all() and (det0.beta == 0).all()
    torch.testing.assert_close(det0.infidelity, det0.raw)


@pytest.mark.parametrize("law", [SquareRemoval((1, 3)), ShapleyKernel(baseline=0.0), SingleFeature(),
                                 SquareRemoval((2, 4), baseline=0.3, groups=2)], ids=repr)
def test_binary_law_matches_brute_force_with_explicit_I(law):
    model = SmallNet()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(3, *F, generator=g, dtype=D64)
    x[:, :, :2] = 0.0  # zero pixels, baseline 0: dividing by x would break here
    phi = torch.randn(x.shape, generator=g, dtype=D64)
    n = 150
    z = law.draw(F, n, make_generator(0, stream="infidelity"), dtype=D64)
    m = law.expand(z, F)  # (n, *F) 0/1 feature masks
    I = (x - law.baseline).unsqueeze(1) * m.unsqueeze(0)
    dots = (I * phi.unsqueeze(1)).flatten(2).sum(-1)
    df = model(x).view(-1, 1) - model((x.unsqueeze(1) - I).reshape(-1, *F)).view(3, n)
    beta = (dots * df).mean(1) / (dots ** 2).mean(1)
    ref_opt = ((beta.view(-1, 1) * dots - df) ** 2).mean(1)
    ref_raw = ((dots - df) ** 2).mean(1)
    got = M.infidelity(model, phi, x, perturbation=law, n_samples=n, return_details=True, exact=False)
    torch.testing.assert_close(got.infidelity, ref_opt, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(got.raw, ref_raw, rtol=1e-12, atol=1e-15)
    # the same explanation in global form A = (x − b) ⊙ Φ gives the same numbers
    A = (x - law.baseline) * phi
    torch.testing.assert_close(M.infidelity(model, A, x, perturbation=law, n_samples=n, kind="global",
                                            exact=False),
                               ref_opt, rtol=1e-12, atol=1e-15)
    # and a Fixed replay of the masks too
    torch.testing.assert_close(
        M.infidelity(model, phi, x, perturbation=Fixed(masks=z, baseline=law.baseline, groups=law.groups)),
        ref_opt, rtol=1e-12, atol=1e-15)


def test_batch_size_invariance_and_dtypes():
    model = SmallNet(n_out=3)
    x = torch.rand(5, *F, dtype=D64)
    t = torch.tensor([0, 1, 2, 0, 1])
    phi = torch.randn_like(x)
    ref = None
    for bs in (1, 7, 64, 10_000):
        for law in (NoisyBaseline(), SquareRemoval((1, 3))):
            v = M.infidelity(model, phi, x, t, perturbation=law, n_samples=40, batch_size=bs)
            assert v.dtype == D64
        v = M.infidelity(model, phi, x, t, n_samples=40, batch_size=bs)
        ref = v if ref is None else ref
        torch.testing.assert_close(v, ref, rtol=1e-12, atol=0)
    m32 = model  # casts its float64 weights to the input dtype
    sq = SquareRemoval((1, 3))  # masks do not depend on the dtype: compare float32 with float64
    v32 = M.infidelity(m32, phi.float(), x.float(), t, perturbation=sq, n_samples=40)
    assert v32.dtype == torch.float32
    v64 = M.infidelity(model, phi, x, t, perturbation=sq, n_samples=40)
    torch.testing.assert_close(v32.double(), v64, rtol=1e-3, atol=1e-6)
    assert M.infidelity(m32, phi.float(), x.float(), t, n_samples=40).dtype == torch.float32


class _PerInstanceNB(NoisyBaseline):
    """The noisy baseline with its shared points switched off: one pass per instance and draw."""

    shared_points = False


class _Counting(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.rows = net, 0

    def forward(self, x):
        self.rows += x.shape[0]
        return self.net(x)


def test_noisy_baseline_points_are_evaluated_once_for_all_instances():
    """x − I = x₀ does not depend on x: f(x₀) once per draw, each instance's own target read
    from it; the values equal one pass per instance and draw (to float64 rounding), N× fewer rows."""
    model = _Counting(SmallNet(n_out=3))
    x = torch.rand(6, *F, dtype=D64)
    t = torch.tensor([0, 1, 2, 2, 1, 0])
    phi = torch.randn_like(x)
    want = None
    for law, bs in ((_PerInstanceNB(), 64), (NoisyBaseline(), 64), (NoisyBaseline(), 7)):
        model.rows = 0
        det = M.infidelity(model, phi, x, t, perturbation=law, n_samples=50, generator=3, batch_size=bs,
                           return_details=True)
        rows = model.rows - 6  # less f(x)
        if want is None:
            want = det
            assert rows == 6 * 50
            continue
        assert rows == 50
        for a, b in zip(det, want):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
    ev = M.evaluate(model, {"Grad": lambda x_, t_: phi}, x, t, perturbations={"NB": NoisyBaseline()}, n_infd=50,
                    n_sens=0, generator=3)
    ev_ref = M.evaluate(model, {"Grad": lambda x_, t_: phi}, x, t, perturbations={"NB": _PerInstanceNB()},
                        n_infd=50, n_sens=0, generator=3)
    torch.testing.assert_close(torch.tensor(ev.summary.values), torch.tensor(ev_ref.summary.values), rtol=1e-12,
                               atol=1e-15)
    # the checks of one pass per instance hold: a missing or out-of-range target is named
    with pytest.raises(ValueError, match="target"):
        M.infidelity(model, phi, x, None, perturbation=NoisyBaseline(), n_samples=5)
    with pytest.raises(ValueError, match="target"):
        M.infidelity(model, phi, x, torch.tensor([0, 1, 2, 3, 0, 0]), perturbation=NoisyBaseline(), n_samples=5)
    scalar = Linear(torch.randn(d, dtype=D64))  # one output per instance: no target
    a = M.infidelity(scalar, phi, x, None, perturbation=NoisyBaseline(), n_samples=20, generator=1)
    b = M.infidelity(scalar, phi, x, None, perturbation=_PerInstanceNB(), n_samples=20, generator=1)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)


def test_global_explanation_under_continuous_law_is_an_error(lin):
    model, w, x = lin
    with pytest.raises(ValueError, match="to_local"):
        M.infidelity(model, x.clone(), x, perturbation=NoisyBaseline(), kind="global")
    with pytest.raises(ValueError, match="binary law"):
        M.infidelity(model, Const(x[0], kind="global"), x, perturbation=Gaussian(0.1))


def test_bad_inputs_name_the_argument():
    model = SmallNet(n_out=3)
    x = torch.rand(2, *F, dtype=D64)
    phi = torch.randn_like(x)
    with pytest.raises(ValueError, match="target"):
        M.infidelity(model, phi, x, n_samples=5)
    with pytest.raises(ValueError, match="explanation"):
        M.infidelity(model, phi[:, :, :3], x, 0, n_samples=5)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="`x`"):
        M.infidelity(model, phi, bad, 0)
    with pytest.raises(TypeError, match="`x`"):
        M.infidelity(model, phi, (x * 10).long(), 0)
    with pytest.raises(ValueError, match="n_samples"):
        M.infidelity(model, phi, x, 0, n_samples=0)
    with pytest.raises(TypeError, match="perturbation"):
        M.infidelity(model, phi, x, 0, perturbation="NB")
    with pytest.raises(ValueError, match="scaling"):
        M.infidelity(model, phi, x, 0, scaling="max")
    lm = LinearMap(torch.eye(d, dtype=D64))
    with pytest.raises(ValueError, match="radius"):
        M.sensitivity_max(lm, x, radius=0.0)
    with pytest.raises(ValueError, match="n_samples"):
        M.sensitivity_max(lm, x, n_samples=-1)
    with pytest.raises(ValueError, match="target"):
        M.sensitivity_max(Gradient(model), x)
    with pytest.raises(TypeError, match="explainer"):
        M.sensitivity_max(object(), x)
    with pytest.raises(ValueError, match="radius"):
        M.robust_infidelity(model, Gradient(model), x, 0, radius=-1.0)


def test_cross_check_with_captum_on_identical_draws():
    captum_metrics = pytest.importorskip("captum.metrics")
    model = SmallNet(n_out=3)
    g = torch.Generator().manual_seed(4)
    x = torch.rand(3, *F, generator=g, dtype=D64)
    x[:, :, 0] = 0.0
    t = torch.tensor([2, 0, 1])
    phi = torch.randn(x.shape, generator=g, dtype=D64)
    n = 64
    for law in (NoisyBaseline(), SquareRemoval((1, 3))):
        draws = law.draw(F, n, make_generator(0, stream="infidelity"), dtype=D64)
        I = law.apply(x, draws)  # (N, n, *F), explicit

        def perturb(inputs, I=I):
            flat = I.reshape(-1, *F)
            return flat, inputs - flat

        for normalize, scaling in ((True, "optimal"), (False, None)):
            ref = captum_metrics.infidelity(model, perturb, x, phi, target=t, n_perturb_samples=n,
                                            normalize=normalize)
            ours = M.infidelity(model, phi, x, t, perturbation=law, n_samples=n, scaling=scaling, exact=False)
            assert ((ours - ref).abs() / ref.abs()).max() <= 1e-10
            if law.binary:
                rep = M.infidelity(model, phi, x, t, perturbation=Fixed(masks=draws), scaling=scaling)
                assert ((rep - ref).abs() / ref.abs()).max() <= 1e-10
    # a continuous Fixed(I) replay: the same I for every instance
    I0 = 0.1 * torch.randn(n, *F, generator=g, dtype=D64)
    ref = captum_metrics.infidelity(model, lambda inp: (I0.repeat(3, 1, 1, 1), inp - I0.repeat(3, 1, 1, 1)),
                                    x, phi, target=t, n_perturb_samples=n, normalize=True)
    ours = M.infidelity(model, phi, x, t, perturbation=Fixed(I0))
    assert ((ours - ref).abs() / ref.abs()).max() <= 1e-10


# ---------------------------------------------------------------- sensitivity
def test_sensitivity_linear_map_closed_form():
    x = torch.rand(3, *F, dtype=D64)
    for c in (0.5, 2.0):
        lm = LinearMap(c * torch.eye(d, dtype=D64))
        raw = M.sensitivity_max(lm, x, radius=0.1, n_samples=50, normalize=False, generator=7)
        # Φ(y) − Φ(x) = c u: the same for every instance; c·‖u‖ with u uniform in the L∞ ball
        assert torch.allclose(raw, raw[0].expand(3))
        assert c * 0.1 * math.sqrt(d / 3) * 0.8 <= raw[0] <= c * 0.1 * math.sqrt(d)
        # the draws: u = (2 U − 1) r from a fresh generator with the seed and the "sensitivity" stream
        u = (2 * torch.rand((50, *F), generator=make_generator(7, stream="sensitivity"), dtype=D64) - 1) * 0.1
        torch.testing.assert_close(raw[0], c * u.flatten(1).norm(dim=1).max())
        rel = M.sensitivity_max(lm, x, radius=0.1, n_samples=50, normalize=True, generator=7)
        torch.testing.assert_close(rel, raw / (c * x.flatten(1).norm(dim=1)))


def _ball_draws(seed, n, r, stream="sensitivity"):
    return (2 * torch.rand((n, *F), generator=make_generator(seed, stream=stream), dtype=D64) - 1) * r


def test_sensitivity_global_form_linear_closed_form():
    # f = wᵀx, Grad Φ = w everywhere: local SENS = 0; global (x − b) ⊙ w vs (y − b) ⊙ w differ by w ⊙ u
    g = torch.Generator().manual_seed(5)
    w = torch.randn(d, generator=g, dtype=D64)
    model = Linear(w)
    x = torch.rand(4, *F, generator=g, dtype=D64)
    u = _ball_draws(3, 40, 0.1).flatten(1)
    wu = (u * w).norm(dim=1)
    loc = M.sensitivity_max(Gradient(model), x, radius=0.1, n_samples=40, normalize=False, generator=3)
    assert loc.abs().max() == 0
    raw = M.sensitivity_max(Gradient(model), x, radius=0.1, n_samples=40, normalize=False, generator=3, form="global")
    torch.testing.assert_close(raw, wu.max().expand(4))
    assert (raw <= 0.1 * w.norm()).all() and (raw >= 0.5 * 0.1 * w.norm()).all()
    rel = M.sensitivity_max(Gradient(model), x, radius=0.1, n_samples=40, generator=3, form="global")
    torch.testing.assert_close(rel, raw / (x.flatten(1) * w).norm(dim=1))
    # a baseline b: compares (x − b) ⊙ w; the difference is still w ⊙ u, the relative scale changes
    relb = M.sensitivity_max(Gradient(model), x, radius=0.1, n_samples=40, generator=3, form="global", baseline=0.5)
    torch.testing.assert_close(relb, raw / ((x.flatten(1) - 0.5) * w).norm(dim=1))
    # both maps unit-normalised: ‖w⊙y/‖w⊙y‖ − w⊙x/‖w⊙x‖‖, max over the same draws, ≤ 2
    unit = M.sensitivity_max(Gradient(model), x, radius=0.1, n_samples=40, generator=3, form="global",
                             normalize="unit")
    ax = x.flatten(1) * w
    ay = (x.flatten(1)[:, None, :] + u[None]) * w
    ref = (ay / ay.norm(dim=2, keepdim=True) - (ax / ax.norm(dim=1, keepdim=True))[:, None]).norm(dim=2).max(1).values
    torch.testing.assert_close(unit, ref)
    assert (unit <= 2).all()
    # unit and relative are scale-free (f → 10 f leaves them unchanged), raw is not
    big = Gradient(Linear(10 * w))
    torch.testing.assert_close(M.sensitivity_max(big, x, n_samples=40, generator=3, form="global",
                                                 normalize="unit"), unit)
    torch.testing.assert_close(M.sensitivity_max(big, x, n_samples=40, generator=3, form="global"), rel)
    torch.testing.assert_close(M.sensitivity_max(big, x, n_samples=40, generator=3, form="global",
                                                 normalize="raw"), 10 * raw)
    # a global explainer's output is compared as returned under both forms
    A = torch.rand(F, dtype=D64)
    for form in ("local", "global"):
        assert M.sensitivity_max(Const(A, kind="global"), x, form=form).abs().max() == 0
    with pytest.raises(ValueError, match="form"):
        M.sensitivity_max(Gradient(model), x, form="both")
    with pytest.raises(ValueError, match="normalize"):
        M.sensitivity_max(Gradient(model), x, normalize="l1")


def test_evaluate_sens_form_matches_standalone_and_shares_neighbours():
    model = Quadratic(torch.eye(d, dtype=D64) * 2)
    x = torch.rand(3, *F, dtype=D64)
    kw = dict(perturbations={"G": Gaussian(0.1)}, n_infd=20, n_sens=10, generator=4, sens_reps=2)
    ev = M.evaluate(model, {"Grad": Gradient(model)}, x, sens_form="global", normalize="unit", **kw)
    both = M.evaluate(model, {"Grad": Gradient(model)}, x, **kw,
                      sens_form={"SENS_max": ("local", True), "SENS_max[global]": ("global", "unit")})
    loc = M.evaluate(model, {"Grad": Gradient(model)}, x, **kw)
    ref = M.sensitivity_max(Gradient(model), x, n_samples=10, generator=4, form="global", normalize="unit")
    ref1 = M.sensitivity_max(Gradient(model), x, n_samples=10, generator=make_generator(4, stream="sensitivity/1"),
                             form="global", normalize="unit")
    torch.testing.assert_close(torch.tensor(ev.wide("SENS_max")["Grad"].to_numpy()), (ref + ref1) / 2)
    torch.testing.assert_close(torch.tensor(both.wide("SENS_max[global]")["Grad"].to_numpy()), (ref + ref1) / 2)
    torch.testing.assert_close(torch.tensor(both.wide("SENS_max")["Grad"].to_numpy()),
                               torch.tensor(loc.wide("SENS_max")["Grad"].to_numpy()))
    for c in ("SENS_max[global]", "SENS_max[global] se", "SENS_max[global] mc se", "SENS_max[global] total se"):
        assert c in both.summary.columns
    assert ev.settings["sens_form"] == {"SENS_max": ["global", "unit"]}
    with pytest.raises(ValueError, match="sens_form"):
        M.evaluate(model, {"Grad": Gradient(model)}, x, sens_form="globale", **kw)
    with pytest.raises(ValueError, match="sens_form"):
        M.evaluate(model, {"Grad": Gradient(model)}, x, sens_form={"S": ("global",)}, **kw)


def test_sensitivity_conventions_closed_form_and_consistency():
    g = torch.Generator().manual_seed(6)
    w = torch.randn(d, generator=g, dtype=D64)
    model = Linear(w)
    x = torch.rand(5, *F, generator=g, dtype=D64)
    tab = M.sensitivity_conventions(Gradient(model), x, radii=(0.1, 0.2), n_samples=30, reps=3, generator=2)
    assert list(tab.index.names) == ["form", "normalization", "radius"] and len(tab) == 2 * 3 * 2
    # local Grad of a linear model: 0 under every normalisation and radius
    assert (tab.loc["local", "SENS_max"] == 0).all()
    # global raw: mean over replications of max_j ‖w ⊙ u_j‖, the same for every instance (se 0)
    for r in (0.1, 0.2):
        per_rep = [(_ball_draws(2, 30, r, "sensitivity" if k == 0 else f"sensitivity/{k}").flatten(1) * w)
                   .norm(dim=1).max() for k in range(3)]
        row = tab.loc[("global", "raw", r)]
        assert row["SENS_max"] == pytest.approx(float(torch.stack(per_rep).mean()), rel=1e-12)
        assert row["se"] == pytest.approx(0, abs=1e-12)
        assert row["mc se"] == pytest.approx(float(torch.stack(per_rep).std() / math.sqrt(3)), rel=1e-9)
        # replication 0 is the stand-alone sensitivity_max at that radius
        one = M.sensitivity_conventions(Gradient(model), x, radii=(r,), forms=("global",), normalizations=("unit",),
                                        n_samples=30, reps=1, generator=2)
        ref = M.sensitivity_max(Gradient(model), x, radius=r, n_samples=30, generator=2, form="global",
                                normalize="unit")
        assert one.loc[("global", "unit", r), "SENS_max"] == pytest.approx(float(ref.mean()), rel=1e-12)
    # raw scales linearly with the radius (shared directions); unit never exceeds 2
    raw = tab.xs(("global", "raw"), level=("form", "normalization"))["SENS_max"]
    assert raw[0.2] == pytest.approx(2 * raw[0.1], rel=1e-12)
    assert (tab.xs("unit", level="normalization")["SENS_max"] <= 2).all()
    with pytest.raises(ValueError, match="radii"):
        M.sensitivity_conventions(Gradient(model), x, radii=(0.1, -1.0))
    with pytest.raises(ValueError, match="forms"):
        M.sensitivity_conventions(Gradient(model), x, forms=("flat",))


def test_sensitivity_quadratic_gradient_bound_and_batch_invariance():
    g = torch.Generator().manual_seed(3)
    B = torch.randn(d, d, generator=g, dtype=D64)
    A = B @ B.T / d
    model = Quadratic(A)
    x = torch.rand(4, *F, generator=g, dtype=D64)
    grad = Gradient(model)
    vals = [M.sensitivity_max(grad, x, radius=0.05, n_samples=30, normalize=False, batch_size=bs) for bs in (1, 13, 1000)]
    for v in vals[1:]:
        torch.testing.assert_close(v, vals[0], rtol=1e-12, atol=0)
    # ‖A u‖₂ ≤ ‖A‖₂ ‖u‖₂ ≤ ‖A‖₂ r √d  (Prop. A.2 with the Hessian A)
    bound = torch.linalg.matrix_norm(A, 2) * 0.05 * math.sqrt(d)
    assert (vals[0] <= bound).all() and (vals[0] > 0).all()
    # the gradient map is y ↦ Ay: SENS equals the linear-map closed form
    torch.testing.assert_close(vals[0], M.sensitivity_max(LinearMap(A), x, radius=0.05, n_samples=30,
                                                          normalize=False))
    v32 = M.sensitivity_max(Gradient(Quadratic(A.float())), x.float(), radius=0.05, n_samples=30)
    assert v32.dtype == torch.float32


def test_common_random_numbers_and_noise_floor():
    w = torch.randn(d, dtype=D64)
    x = torch.rand(3, *F, dtype=D64)
    ex = NoisyConst(w, sigma=0.1)
    # true sensitivity 0: with CRN (own seed at x and every y) the estimate is exactly 0
    assert M.sensitivity_max(ex, x, n_samples=20).abs().max() == 0
    floor = M.sensitivity_noise_floor(ex, x, n_repeats=8)
    expected = 0.1 * math.sqrt(2 * d) / float((w + 0).norm())  # E‖σ(ε_a − ε_b)‖ / ‖Φ‖ roughly
    assert (floor > 0.3 * expected).all() and (floor < 3 * expected).all()
    assert (M.sensitivity_noise_floor(ex, x, n_repeats=8, reduce="max") >= floor).all()
    assert (M.sensitivity_noise_floor(LinearMap(torch.eye(d, dtype=D64)), x) == 0).all()


# ---------------------------------------------------------------- robust infidelity
def test_robust_infidelity():
    model = SmallNet()
    x = torch.rand(3, *F, dtype=D64)
    grad = Gradient(model)
    law = NoisyBaseline()
    base = M.infidelity(model, grad, x, perturbation=law, n_samples=60, generator=1)
    rs = M.robust_infidelity(model, grad, x, perturbation=law, radius=0.1, n_samples=60, n_restarts=2, steps=0,
                             generator=1)
    r, u, infd0 = M.robust_infidelity(model, grad, x, perturbation=law, radius=0.1, n_samples=60, n_restarts=2,
                                      steps=4, generator=1, return_details=True)
    torch.testing.assert_close(infd0, base, rtol=1e-10, atol=1e-15)  # same draws at u = 0
    assert (rs >= base - 1e-15).all() and (r >= rs - 1e-15).all()  # search keeps the best value
    assert (r > base).all() and u.abs().max() <= 0.1 + 1e-12
    # the reported maximiser is a genuine point: re-evaluating INFD there gives the value
    again = M.infidelity(model, grad, x + u, perturbation=law, n_samples=60, generator=1)
    torch.testing.assert_close(again, r, rtol=1e-8, atol=1e-14)
    # linear model: the gradient is exact everywhere, RINFD = 0 (binary law, non-gradient path)
    lm = Linear(torch.randn(d, dtype=D64))
    r0 = M.robust_infidelity(lm, Const(lm.w.view(F)), x,
                             perturbation=SquareRemoval((1, 3)), radius=0.1, n_samples=30, n_restarts=1, steps=2)
    assert r0.abs().max() < 1e-24


def test_robust_gradient_matches_finite_differences():
    model = SmallNet()
    x = torch.rand(2, *F, dtype=D64)
    law = SquareRemoval((1, 3))
    draws = law.draw(F, 40, 0, dtype=D64)
    val, gx = M._infd_value_and_grad(model, Gradient(model), x, None, law, draws, "local", "optimal", 16, True, True)
    h = 1e-6
    for j in (0, 7, 24):
        e = torch.zeros_like(x).view(2, -1)
        e[:, j] = h
        e = e.view_as(x)
        vp, _ = M._infd_value_and_grad(model, Gradient(model), x + e, None, law, draws, "local", "optimal", 16, False, True)
        vm, _ = M._infd_value_and_grad(model, Gradient(model), x - e, None, law, draws, "local", "optimal", 16, False, True)
        torch.testing.assert_close(gx.view(2, -1)[:, j], (vp - vm) / (2 * h), rtol=1e-5, atol=1e-9)


# ---------------------------------------------------------------- evaluate
class Counting(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.inputs = inner, 0

    def forward(self, x):
        self.inputs += x.shape[0]
        return self.inner(x)


def test_evaluate_table_pairing_and_cost():
    pd = pytest.importorskip("pandas")
    net = SmallNet(n_out=3)
    model = Counting(net)
    x = torch.rand(4, *F, dtype=D64)
    t = torch.tensor([0, 1, 2, 1])
    g = torch.Generator().manual_seed(9)
    phis = {k: torch.randn(F, generator=g, dtype=D64).expand_as(x) for k in ("a", "b", "c")}
    explainers = {"zeta": Const(phis["a"][0]), "alpha": Const(phis["b"][0]), "glob": Const(phis["c"][0], kind="global")}
    laws_ = {"NB": NoisyBaseline(), "Square": SquareRemoval((1, 3))}
    model.inputs = 0
    ev = M.evaluate(model, explainers, x, t, perturbations=laws_, n_infd=50, n_sens=5, generator=3, exact=False,
                    sens_reps=1)
    df = ev.summary
    # one set of forward passes: f(x) once, n for NB (the same points for every instance) and N·n
    # for Square, whatever the number of explainers
    assert model.inputs == 4 + 50 + 4 * 50
    assert list(df.index) == ["zeta", "alpha", "glob"]
    assert list(df.columns)[:6] == ["SENS_max", "SENS_max se", "INFD[NB]", "INFD[NB] se", "INFD[Square]",
                                    "INFD[Square] se"]
    assert list(df.columns)[6:] == [f"{c} {k}" for c in ("SENS_max", "INFD[NB]", "INFD[Square]")
                                    for k in ("mc se", "total se")]
    assert math.isnan(df.loc["glob", "INFD[NB]"]) and not math.isnan(df.loc["glob", "INFD[Square]"])
    assert any("glob" in n for n in ev.notes)
    # every entry equals the stand-alone metric with the same seed
    for name, law in laws_.items():
        ref = M.infidelity(net, phis["a"], x, t, perturbation=law, n_samples=50, generator=3, exact=False)
        torch.testing.assert_close(torch.tensor(ev.wide(f"INFD[{name}]")["zeta"].to_numpy(), dtype=D64), ref)
        assert math.isclose(df.loc["zeta", f"INFD[{name}]"], float(ref.mean()), rel_tol=1e-12)
        assert math.isclose(df.loc["zeta", f"INFD[{name}] se"], float(ref.std() / 2), rel_tol=1e-9)
    ref = M.infidelity(net, phis["c"], x, t, perturbation=laws_["Square"], n_samples=50, generator=3, kind="global",
                       exact=False)
    torch.testing.assert_close(torch.tensor(ev.wide("INFD[Square]")["glob"].to_numpy(), dtype=D64), ref)
    pi = ev.wide("INFD[NB]")
    assert isinstance(pi, pd.DataFrame) and pi.shape == (4, 2) and list(pi.columns) == ["zeta", "alpha"]
    assert list(pi.index) == [0, 1, 2, 3]
    # the tidy table: one row per (explainer, instance, metric)
    tidy = ev.per_instance
    assert list(tidy.columns) == ["explainer", "instance", "metric", "value"]
    assert set(tidy["metric"]) == {"SENS_max", "INFD[NB]", "INFD[NB] raw", "INFD[NB] beta", "INFD[NB] mc_se",
                                   "INFD[Square]", "INFD[Square] raw", "INFD[Square] beta", "INFD[Square] mc_se"}
    assert len(tidy) == 4 * (3 + 2 * 4 + 3 * 4)  # SENS for 3, NB for 2 explainers, Square for 3 (4 metrics each)
    with pytest.raises(ValueError, match="metric"):
        ev.wide("INFD[nope]")
    with pytest.warns(DeprecationWarning):
        pd.testing.assert_frame_equal(M.per_instance(ev, "INFD[NB]"), pi)
    assert "zeta" in repr(ev) and "glob" in repr(ev) and "<table" in ev._repr_html_()
    assert ev.settings["n_infd"] == 50 and ev.settings["N"] == 4
    # constant explainers have zero sensitivity
    assert df["SENS_max"].abs().max() == 0
    # per-instance values survive pandas operations (no DataFrame.attrs)
    both = pd.concat([ev.per_instance.assign(run=0), ev.per_instance.assign(run=1)])
    assert len(both) == 2 * len(tidy)


def test_evaluate_sensitivity_matches_standalone():
    A = torch.eye(d, dtype=D64) * 2
    model = Quadratic(A)
    x = torch.rand(3, *F, dtype=D64)
    ev = M.evaluate(model, {"Grad": Gradient(model)}, x, perturbations={"G": Gaussian(0.1)}, n_infd=20, n_sens=10,
                    generator=4, sens_reps=1)
    ref = M.sensitivity_max(Gradient(model), x, n_samples=10, generator=4)
    torch.testing.assert_close(torch.tensor(ev.wide("SENS_max")["Grad"].to_numpy(), dtype=D64), ref)


# ---------------------------------------------------------------- device
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, D64])
def test_cuda_device_and_dtype_preserved(dtype):
    dev = torch.device("cuda")
    model = SmallNet(n_out=3).to(dev)
    model.W, model.V = model.W.to(dev), model.V.to(dev)
    x = torch.rand(3, *F, dtype=dtype, device=dev)
    t = torch.tensor([0, 1, 2], device=dev)
    grad = Gradient(model)
    for law in laws():
        draws = law.draw(F, 16, 0, dev, dtype)
        assert draws.device.type == "cuda" and draws.dtype == dtype
        if dtype == D64 and not law.binary and not isinstance(law, Infinitesimal):
            assert (draws.float().double() != draws).any()
        v = M.infidelity(model, grad, x, t, perturbation=law, n_samples=16, return_details=True)
        assert all(f.device.type == "cuda" and f.dtype == dtype for f in v)
    s = M.sensitivity_max(grad, x, t, n_samples=8)
    assert s.device.type == "cuda" and s.dtype == dtype
    r = M.robust_infidelity(model, grad, x, t, NoisyBaseline(), 0.1, n_samples=16, n_restarts=1, steps=2)
    assert r.device.type == "cuda" and r.dtype == dtype and torch.isfinite(r).all()
    ev = M.evaluate(model, {"Grad": grad}, x, t, n_infd=16, n_sens=4)
    assert ev.summary.notna().all().all()


def test_metric_and_explainer_with_equal_seeds_draw_independently():
    """The in-sample trap: Optimal(seed=0) scored by infidelity(generator=0) must not be scored
    on its own fitting draws. Replaying the fit's stream gives the (smaller) in-sample residual."""
    from xailib.explainers import Optimal

    model = SmallNet()
    x = torch.rand(2, *F, generator=torch.Generator().manual_seed(3), dtype=D64)
    law = NoisyBaseline()
    opt = Optimal(model, law, n_samples=64, seed=0)
    fit = law.draw(F, 64, make_generator(0, stream="Optimal"), dtype=D64)
    metric = law.draw(F, 64, make_generator(0, stream="infidelity"), dtype=D64)
    assert not torch.allclose(fit, metric)
    out_of_sample = M.infidelity(model, opt, x, perturbation=law, n_samples=64, generator=0)
    in_sample = M.infidelity(model, opt, x, perturbation=law, n_samples=64,
                             generator=make_generator(0, stream="Optimal"))
    assert (in_sample < out_of_sample).all()


# ---------------------------------------------------------------- relative (scale-free) infidelity
class _Scaled(torch.nn.Module):
    """Temperature scaling of a model's output: c · f(x)."""

    def __init__(self, model, c):
        super().__init__()
        self.model, self.c = model, c

    def forward(self, x):
        return self.c * self.model(x)


@pytest.mark.parametrize("law", [NoisyBaseline(), SquareRemoval((1, 3))], ids=repr)
def test_relative_infidelity_is_scale_free_and_raw_scales_with_c_squared(law):
    """Scaling the logits by c multiplies INFD by c² and leaves rINFD = INFD / E[Δf²] unchanged."""
    model = SmallNet()
    x = torch.rand(4, *F, generator=torch.Generator().manual_seed(3), dtype=D64)
    phi = torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=D64)
    kw = dict(perturbation=law, n_samples=300, generator=5, return_details=True)
    d1 = M.infidelity(model, phi, x, **kw)
    for c in (3.0, 0.1):
        dc = M.infidelity(_Scaled(model, c), phi, x, **kw)
        torch.testing.assert_close(dc.infidelity, c**2 * d1.infidelity)
        torch.testing.assert_close(dc.energy, c**2 * d1.energy)
        torch.testing.assert_close(dc.relative, d1.relative)
        torch.testing.assert_close(dc.relative_se, d1.relative_se)
    assert ((d1.relative >= 0) & (d1.relative <= 1 + 1e-12)).all()  # optimal scaling: β = 0 gives exactly 1
    # the zero map explains nothing: rINFD = 1; the gradient of a linear model explains all: rINFD = 0
    d0 = M.infidelity(model, torch.zeros_like(x), x, **kw)
    torch.testing.assert_close(d0.relative, torch.ones(4, dtype=D64))
    w = torch.randn(d, generator=torch.Generator().manual_seed(6), dtype=D64)
    lin = Linear(w)
    if not law.binary:
        dl = M.infidelity(lin, w.view(1, *F).expand_as(x), x, **kw)
        assert dl.relative.abs().max() < 1e-20
    # relative=True returns rINFD itself
    torch.testing.assert_close(M.infidelity(model, phi, x, perturbation=law, n_samples=300, generator=5, relative=True),
                               d1.relative)
    with pytest.raises(TypeError, match="relative"):
        M.infidelity(model, phi, x, relative="yes")


def test_relative_infidelity_mc_error_matches_the_spread_over_seeds():
    """The delta-method MC error of rINFD against the standard deviation of 200 independent estimates."""
    model = SmallNet()
    x = torch.rand(2, *F, generator=torch.Generator().manual_seed(7), dtype=D64)
    phi = torch.randn(x.shape, generator=torch.Generator().manual_seed(8), dtype=D64)
    runs = [M.infidelity(model, phi, x, n_samples=100, generator=s, return_details=True) for s in range(200)]
    spread = torch.stack([r.relative for r in runs]).std(0)
    claimed = torch.stack([r.relative_se for r in runs]).mean(0)
    assert ((claimed / spread - 1).abs() < 0.2).all(), (claimed, spread)


def test_evaluate_relative_columns_match_standalone_and_temperature():
    model = SmallNet(n_out=3)
    x = torch.rand(5, *F, generator=torch.Generator().manual_seed(9), dtype=D64)
    t = torch.tensor([0, 1, 2, 0, 1])
    laws = {"NB": NoisyBaseline(), "Square": SquareRemoval((1, 3))}
    ex = {"Grad": Gradient(model)}
    ev = M.evaluate(model, ex, x, t, laws, n_infd=64, n_sens=0, generator=2, relative=True)
    for col in ("rINFD[NB]", "rINFD[NB] se", "rINFD[NB] mc se", "rINFD[NB] total se", "rINFD[Square]"):
        assert col in ev.summary.columns, col
    assert ev.summary.loc["Grad", "rINFD[Square] mc se"] == 0.0  # exact sum over the squares' support
    for lname, law in laws.items():
        det = M.infidelity(model, Gradient(model), x, t, perturbation=law, n_samples=64, generator=2, return_details=True)
        torch.testing.assert_close(torch.tensor(ev.wide(f"rINFD[{lname}]")["Grad"].to_numpy()), det.relative)
        torch.testing.assert_close(torch.tensor(ev.wide(f"INFD[{lname}] energy")["Grad"].to_numpy()), det.energy)
    # the table mean's MC error: the sd over draws of the per-draw mean of the delta-method terms
    hot = M.evaluate(_Scaled(model, 4.0), {"Grad": Gradient(_Scaled(model, 4.0))}, x, t, laws, n_infd=64, n_sens=0,
                     generator=2, relative=True)
    for lname in laws:
        assert hot.summary.loc["Grad", f"INFD[{lname}]"] == pytest.approx(16 * ev.summary.loc["Grad", f"INFD[{lname}]"])
        assert hot.summary.loc["Grad", f"rINFD[{lname}]"] == pytest.approx(ev.summary.loc["Grad", f"rINFD[{lname}]"])
        assert hot.summary.loc["Grad", f"rINFD[{lname}] mc se"] == pytest.approx(
            ev.summary.loc["Grad", f"rINFD[{lname}] mc se"])
    plain = M.evaluate(model, ex, x, t, laws, n_infd=64, n_sens=0, generator=2)
    assert not any(c.startswith("rINFD") for c in plain.summary.columns)
    with pytest.raises(TypeError, match="relative"):
        M.evaluate(model, ex, x, t, laws, n_infd=8, n_sens=0, relative=1)


def test_evaluate_relative_table_mc_error_matches_the_spread_over_seeds():
    """The table mean of rINFD over instances sharing draws: claimed MC se against 150 independent tables."""
    model = SmallNet(n_out=3)
    x = torch.rand(4, *F, generator=torch.Generator().manual_seed(10), dtype=D64)
    t = torch.tensor([0, 1, 2, 0])
    ex = {"Grad": Gradient(model)}
    tabs = [M.evaluate(model, ex, x, t, {"NB": NoisyBaseline()}, n_infd=80, n_sens=0, generator=s, relative=True).summary
            for s in range(150)]
    means = torch.tensor([tb.loc["Grad", "rINFD[NB]"] for tb in tabs])
    claimed = torch.tensor([tb.loc["Grad", "rINFD[NB] mc se"] for tb in tabs]).mean()
    assert abs(float(claimed / means.std()) - 1) < 0.25, (claimed, means.std())
