"""No silent wrong answers, errors that name the problem, and the Captum path (issue 12).

Every test here failed on the code before the fix: a silently wrong value, an obscure torch error,
or a refusal of a Captum callable.
"""
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import xailib
from xailib import _utils as U
from xailib import metrics as M
from xailib.explainers import Gradient, GuidedBackprop, IntegratedGradients, Occlusion, SmoothGrad
from xailib.perturbations import Fixed, NoisyBaseline, SquareRemoval

f64 = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _mlp(norm: str, d=6, h=8, c=3):
    torch.manual_seed(0)
    mid = {"dropout": nn.Dropout(0.5), "batchnorm": nn.BatchNorm1d(h)}[norm]
    net = nn.Sequential(nn.Linear(d, h), mid, nn.ReLU(), nn.Linear(h, c)).double()
    net.train()
    return net


def _state(net):
    return {k: v.clone() for k, v in net.state_dict().items()}, [m.training for m in net.modules()]


# ------------------------------------------------------------------ 1. silent wrong answers
def test_training_mode_dropout_is_explained_in_eval_mode_with_one_warning():
    """Dropout in training mode made two identical Gradient calls differ; now both equal the
    eval-mode gradient, one warning is given per model, and the model stays in training mode."""
    net = _mlp("dropout")
    x = torch.rand(4, 6, dtype=f64, generator=_gen(1))
    with pytest.warns(UserWarning, match=r"model\.eval\(\)"):
        g1 = Gradient(net)(x, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the warning is one-time
        g2 = Gradient(net)(x, 0)
    assert net.training and all(m.training for m in net.modules())
    torch.testing.assert_close(g1, g2, rtol=0, atol=0)
    net.eval()
    torch.testing.assert_close(g1, Gradient(net)(x, 0), rtol=0, atol=0)
    net.train()
    a = M.infidelity(net, g1, x, 0, n_samples=64, generator=3)
    b = M.infidelity(net, g1, x, 0, n_samples=64, generator=3)
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # reproducible with the same seed


def test_batchnorm_mode_and_buffers_unchanged_by_every_entry_point():
    """BatchNorm in training mode mixed the rows (Gradient(x[:1]) != Gradient(x)[:1]) and updated
    running_mean; after every public call the state dict and every training flag are unchanged."""
    net = _mlp("batchnorm")
    with torch.no_grad():  # non-trivial running statistics
        net[1].running_mean.uniform_(-0.3, 0.3)
        net[1].running_var.uniform_(0.5, 1.5)
    x = torch.rand(5, 6, dtype=f64, generator=_gen(2))
    before = _state(net)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = Gradient(net)(x, 1)
        torch.testing.assert_close(Gradient(net)(x[:1], 1), g[:1])  # also N=1 (BatchNorm1d refused it)
        IntegratedGradients(net, steps=4)(x, 1)
        Occlusion(net)(x, 1)
        GuidedBackprop(net)(x, 1)
        SmoothGrad(Gradient(net), n_samples=3)(x, 1)
        M.infidelity(net, Gradient(net), x, 1, n_samples=16)
        M.sensitivity_max(Gradient(net), x, 1, n_samples=4)
        M.sensitivity_noise_floor(SmoothGrad(Gradient(net), n_samples=3), x, 1, n_repeats=2)
        M.robust_infidelity(net, Gradient(net), x, 1, n_samples=8, n_restarts=1, steps=1)
        M.evaluate(net, {"g": Gradient(net)}, x, 1, n_infd=8, n_sens=2)
    after = _state(net)
    assert after[1] == before[1]
    for k in before[0]:
        torch.testing.assert_close(after[0][k], before[0][k], rtol=0, atol=0, msg=k)


def test_target_for_a_scalar_model_is_an_error():
    w = torch.randn(4, dtype=f64, generator=_gen(0))
    x = torch.rand(3, 4, dtype=f64, generator=_gen(1))
    model = lambda z: z @ w  # noqa: E731  returns (N,)
    with pytest.raises(ValueError, match=r"`target` must be None.*\(N,\)"):
        Gradient(model)(x, target=2)
    with pytest.raises(ValueError, match="`target` must be None"):
        M.infidelity(model, torch.zeros_like(x), x, target=0)
    torch.testing.assert_close(Gradient(model)(x), w.expand(3, 4))


def _relu_spellings():
    z0 = torch.zeros(())
    return {
        "F.relu": F.relu,
        "clamp(min=0)": lambda h: h.clamp(min=0),
        "torch.clamp(h, 0)": lambda h: torch.clamp(h, 0),
        "clip(min=0)": lambda h: torch.clip(h, min=0),
        "clamp_min(0)": lambda h: h.clamp_min(0),
        "clamp_(min=0)": lambda h: h.clone().clamp_(min=0),
        "maximum(h, 0)": lambda h: torch.maximum(h, z0.to(h.dtype)),
        "max(zeros, h)": lambda h: torch.max(torch.zeros_like(h), h),
        "fmax": lambda h: torch.fmax(h, torch.zeros_like(h)),
        "threshold(0, 0)": lambda h: F.threshold(h, 0.0, 0.0),
    }


@pytest.mark.parametrize("spelling", list(_relu_spellings()))
def test_guided_backprop_treats_every_relu_spelling_as_relu(spelling):
    """One hidden layer f(x) = vᵀ relu(Wx + b): GBP = Wᵀ(max(v, 0) ⊙ [Wx + b > 0]) for every
    spelling of the ReLU (before the fix clamp/maximum/threshold were refused or left unguided)."""
    g = _gen(5)
    W, b, v = torch.randn(7, 4, generator=g, dtype=f64), torch.randn(7, generator=g, dtype=f64), \
        torch.randn(7, generator=g, dtype=f64)
    act = _relu_spellings()[spelling]
    x = torch.randn(6, 4, generator=g, dtype=f64)
    out = GuidedBackprop(lambda z: act(z @ W.T + b) @ v)(x)
    pre = x @ W.T + b
    want = (v.clamp(min=0) * (pre > 0)) @ W
    torch.testing.assert_close(out, want, rtol=0, atol=1e-12)
    assert (out - Gradient(lambda z: F.relu(z @ W.T + b) @ v)(x)).abs().max() > 0.1


def test_guided_backprop_mixed_spellings_fully_guided():
    """F.relu then clamp(min=0) (was: only the first layer guided, silently)."""
    g = _gen(6)
    W1, W2, w3 = (torch.randn(6, 5, generator=g, dtype=f64), torch.randn(4, 6, generator=g, dtype=f64),
                  torch.randn(4, generator=g, dtype=f64))
    x = torch.randn(5, 5, generator=g, dtype=f64)
    out = GuidedBackprop(lambda z: ((F.relu(z @ W1.T) @ W2.T).clamp(min=0)) @ w3)(x)
    h1 = x @ W1.T
    h2 = F.relu(h1) @ W2.T
    r1 = ((w3.clamp(min=0) * (h2 > 0)) @ W2).clamp(min=0) * (h1 > 0)
    torch.testing.assert_close(out, r1 @ W1, rtol=0, atol=1e-12)


@pytest.mark.parametrize("radius", [float("inf"), float("nan"), -1.0])
def test_non_finite_radius_names_radius(radius):
    model = nn.Sequential(nn.Linear(3, 2)).double().eval()
    x = torch.rand(2, 3, dtype=f64)
    with pytest.raises(ValueError, match="`radius`"):
        M.sensitivity_max(Gradient(model), x, 0, radius=radius)
    with pytest.raises(ValueError, match="`radius`"):
        M.robust_infidelity(model, Gradient(model), x, 0, radius=radius)
    with pytest.raises(ValueError, match="`radius`"):
        M.evaluate(model, {"g": Gradient(model)}, x, 0, radius=radius)


def test_evaluate_with_nothing_to_compute_is_an_error():
    model = nn.Sequential(nn.Linear(3, 2)).double().eval()
    x = torch.rand(2, 3, dtype=f64)
    with pytest.raises(ValueError, match="nothing to compute"):
        M.evaluate(model, {"g": Gradient(model)}, x, 0, perturbations={}, n_sens=0)


# ------------------------------------------------------------------ 2. errors that name the problem
@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_dtype_mismatch_names_x(dtype):
    model = nn.Sequential(nn.Linear(4, 3)).eval()  # float32
    x = torch.rand(2, 4).to(dtype)
    with pytest.raises(TypeError, match=r"`x` has dtype .*float32"):
        Gradient(model)(x, 0)
    with pytest.raises(TypeError, match=r"`x` has dtype"):
        M.infidelity(model, torch.zeros_like(x), x, 0)
    with pytest.raises(TypeError, match=r"`x` has dtype"):
        M.evaluate(model, {"g": Gradient(model)}, x, 0, n_infd=4, n_sens=2)
    # a function wrapping the model is not inspectable: torch's error is translated
    with pytest.raises(TypeError, match=r"`x` has dtype"):
        Gradient(lambda z: model(z))(x, 0)

    class Casting(nn.Module):  # casts its input itself: must not be refused
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, z):
            return self.lin(z.float())

    assert Gradient(Casting().eval())(torch.rand(2, 4, dtype=f64), 0).dtype == f64


def _cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 3)).eval()


def test_image_without_batch_dimension_names_x():
    model = _cnn()
    img = torch.rand(1, 8, 8)  # one image (C, H, W), no batch dimension
    with pytest.raises(ValueError, match=r"`x`.*unsqueeze\(0\)"):
        Gradient(model)(img, 0)
    with pytest.raises(ValueError, match=r"`x`.*unsqueeze\(0\)"):
        M.infidelity(model, torch.zeros_like(img), img, 0)
    with pytest.raises(ValueError, match=r"`x`.*\(N, \*F\)"):  # not inspectable: torch's error translated
        Gradient(lambda z: model(z))(img, 0)
    assert Gradient(model)(img.unsqueeze(0), 0).shape == (1, 1, 8, 8)
    # a CNN whose unbatched output has a plausible shape: caught by the row count, not silently used
    pooled = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(0), nn.Linear(3, 2))
    with pytest.raises(ValueError, match=r"`x`.*unsqueeze\(0\)"):
        Gradient(lambda z: pooled(z))(img)


def test_model_with_internal_reshape_is_not_refused():
    """A model that adds the channel dimension itself takes (N, H, W): no false refusal."""
    cnn = _cnn()

    class AddChannel(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = cnn

        def forward(self, z):
            return self.net(z.unsqueeze(1))

    x = torch.rand(1, 8, 8)
    assert Gradient(AddChannel().eval())(x, 0).shape == (1, 8, 8)


def test_model_returning_a_tuple_names_model():
    net = nn.Linear(3, 2).double()
    x = torch.rand(2, 3, dtype=f64)
    with pytest.raises(TypeError, match=r"`model` must return a tensor.*tuple.*\[0\]"):
        Gradient(lambda z: (net(z), z))(x, 0)
    with pytest.raises(TypeError, match="tuple"):
        M.infidelity(lambda z: (net(z), z), torch.zeros_like(x), x, 0)


def test_explainer_class_instead_of_instance():
    model = nn.Linear(3, 2).double()
    x = torch.rand(2, 3, dtype=f64)
    with pytest.raises(TypeError, match=r"class Gradient.*Gradient\(model\)"):
        M.infidelity(model, Gradient, x, 0)
    with pytest.raises(TypeError, match=r"class Gradient"):
        M.sensitivity_max(Gradient, x, 0)
    with pytest.raises(TypeError, match=r"explainers\['g'\].*class Gradient"):
        M.evaluate(model, {"g": Gradient}, x, 0)
    with pytest.raises(TypeError, match=r"`model`.*class"):
        Gradient(nn.Linear)


def test_model_none():
    x = torch.rand(2, 3, dtype=f64)
    with pytest.raises(TypeError, match="`model` is None"):
        M.infidelity(None, torch.zeros_like(x), x)
    with pytest.raises(TypeError, match="`model` is None"):
        Gradient(None)
    with pytest.raises(TypeError, match="`model` is None"):
        M.evaluate(None, {"g": Gradient(nn.Linear(3, 2))}, x, 0)


def test_negative_target_says_negative():
    model = nn.Linear(3, 4).double()
    x = torch.rand(2, 3, dtype=f64)
    with pytest.raises(ValueError, match="negative"):
        Gradient(model)(x, -1)
    with pytest.raises(ValueError, match="negative"):
        Gradient(model)(x, torch.tensor([0, -2]))
    with pytest.raises(ValueError, match="negative"):
        M.infidelity(model, torch.zeros_like(x), x, -1)
    with pytest.raises(ValueError, match="negative"):
        U.select_output(torch.zeros(2, 4), torch.tensor([1, -1]))


# ------------------------------------------------------------------ 3. Captum users
def _captum_setup():
    captum_attr = pytest.importorskip("captum.attr")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double().eval()
    x = torch.rand(4, 5, dtype=f64, generator=_gen(3))
    t = torch.tensor([0, 2, 1, 2])
    return captum_attr, net, x, t


def test_metrics_accept_a_captum_callable_as_local_by_default():
    captum_attr, net, x, t = _captum_setup()
    sal = captum_attr.Saliency(net).attribute  # |∇f|, takes target= by keyword
    ref = Gradient(net)(x, t).abs()
    for law in (NoisyBaseline(), SquareRemoval((1, 2))):
        a = M.infidelity(net, sal, x, t, perturbation=law, n_samples=64)
        b = M.infidelity(net, ref, x, t, perturbation=law, n_samples=64)
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(M.sensitivity_max(sal, x, t, n_samples=8),
                               M.sensitivity_max(lambda z, target: Gradient(net)(z, target).abs(), x, t, n_samples=8))
    ev = M.evaluate(net, {"sal": sal, "grad": Gradient(net)}, x, t, n_infd=32, n_sens=4)
    assert list(ev.summary.index) == ["sal", "grad"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a plain function: no "different model" warning
        M.infidelity(net, lambda z, target: Gradient(net)(z, target), x, t, n_samples=8)


def test_captum_global_attributions_via_kind():
    """Captum's IG with multiply_by_inputs is a global explanation A = x ⊙ Φ: say so with kind."""
    captum_attr, net, x, t = _captum_setup()
    ig = captum_attr.IntegratedGradients(net, multiply_by_inputs=True).attribute  # 2nd positional = baselines
    A = ig(x, target=t)
    law = SquareRemoval((1, 2))
    want = M.infidelity(net, A, x, t, perturbation=law, kind="global", n_samples=64)
    got1 = M.infidelity(net, ig, x, t, perturbation=law, kind="global", n_samples=64)
    got2 = M.infidelity(net, xailib.captum.explanation(ig, kind="global"), x, t, perturbation=law, n_samples=64)
    torch.testing.assert_close(got1, want)
    torch.testing.assert_close(got2, want)
    assert not torch.allclose(M.infidelity(net, ig, x, t, perturbation=law, n_samples=64), want)
    with pytest.raises(ValueError, match="continuous"):  # global under a continuous law
        M.infidelity(net, xailib.captum.explanation(ig, kind="global"), x, t, perturbation=NoisyBaseline())


def _noise_perturb(inputs):
    noise = 0.1 * torch.randn_like(inputs)
    return noise, inputs - noise


def test_law_from_perturb_func_matches_captum_infidelity():
    """Same global seed → the same perturbations as captum.metrics.infidelity (one batch)."""
    captum_metrics = pytest.importorskip("captum.metrics")
    _, net, x, t = _captum_setup()
    phi = Gradient(net)(x, t)
    n = 50
    law = xailib.captum.law_from_perturb_func(_noise_perturb, seed=11)
    for normalize, scaling in ((True, "optimal"), (False, None)):
        torch.manual_seed(11)
        ref = captum_metrics.infidelity(net, _noise_perturb, x, phi, target=t, n_perturb_samples=n,
                                        normalize=normalize)
        ours = M.infidelity(net, phi, x, t, perturbation=law, n_samples=n, scaling=scaling, batch_size=37)
        torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-12)


def test_law_from_perturb_func_seeding():
    """Seeded from the metric's generator: reproducible, chunking-invariant, global RNG untouched."""
    _, net, x, t = _captum_setup()
    phi = Gradient(net)(x, t)
    law = xailib.captum.law_from_perturb_func(_noise_perturb)
    state = torch.get_rng_state()
    a = M.infidelity(net, phi, x, t, perturbation=law, n_samples=40, generator=1)
    assert torch.equal(torch.get_rng_state(), state)
    b = M.infidelity(net, phi, x, t, perturbation=law, n_samples=40, generator=1, batch_size=7)
    c = M.infidelity(net, phi, x, t, perturbation=law, n_samples=40, generator=2)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
    assert not torch.allclose(a, c)
    # the perturbations are exactly perturb_func's: replaying them with Fixed gives the same value (N=1)
    x1, t1 = x[:1], t[:1]
    draws = law.draw(x1.shape[1:], 30, U.make_generator(0, stream="infidelity"))
    I = law.apply(x1, draws)[0]
    torch.testing.assert_close(M.infidelity(net, phi[:1], x1, t1, perturbation=law, n_samples=30),
                               M.infidelity(net, phi[:1], x1, t1, perturbation=Fixed(I), n_samples=30))


def test_sensitivity_max_matches_captum_on_identical_draws():
    captum_metrics = pytest.importorskip("captum.metrics")
    captum_attr, net, x, t = _captum_setup()
    sal = captum_attr.Saliency(net).attribute
    n, r = 12, 0.05
    noise = M._uniform_ball(tuple(x.shape[1:]), n, r, 0, x.device, x.dtype)
    ref = captum_metrics.sensitivity_max(sal, x, perturb_func=lambda inp: inp + noise.repeat(x.shape[0], 1),
                                         n_perturb_samples=n, target=t)
    ours = M.sensitivity_max(sal, x, t, radius=r, n_samples=n, generator=0)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------ 4. setup prints once
def test_setup_prints_once_and_returns_nothing(capsys):
    import warnings
    from pathlib import Path

    threads, det, fmt = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), warnings.formatwarning
    try:
        out = xailib.setup(style=False)
        # warnings print without the folder the package (or a chapter) lives in
        inside = str(Path(xailib.__file__).resolve().parent / "sanity.py")
        assert warnings.formatwarning("m", UserWarning, inside, 7) == "xailib/sanity.py:7: UserWarning: m\n"
        assert warnings.formatwarning("m", RuntimeWarning, "/tmp/ipykernel_1/2.py", 3) == "2.py:3: RuntimeWarning: m\n"
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)
        warnings.formatwarning = fmt
    printed = capsys.readouterr().out
    assert out is None  # the cell's value is not shown again
    assert printed.count("xailib: profile=") == 1 and printed.startswith("xailib: profile=")
