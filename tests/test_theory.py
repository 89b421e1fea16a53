"""xailib.theory: every check holds where the theory says it must, and reports a violation on a
constructed case that breaks a hypothesis (a check that cannot fail is no check)."""
import math

import pytest
import torch

from xailib import theory as T

D = torch.float64
SMALL = dict(n_nets=3, n_inputs=3, d=6, depths=(1, 2, 3), widths=(8, 16), scales=(0.5, 1.0, 2.0))


def _hessian(net, x):
    return torch.autograd.functional.hessian(lambda v: net(v.unsqueeze(0)).sum(), x)


# ----------------------------------------------------------------------------- building blocks
def test_random_net_shapes_and_determinism():
    a = T.random_softplus_net(5, [7, 3], 0.5, seed=1)
    b = T.random_softplus_net(5, [7, 3], 0.5, seed=1)
    x = torch.randn(4, 5, dtype=D)
    assert a(x).shape == (4,)
    assert torch.equal(a(x), b(x))
    assert a.depth == 2 and a.weights[0].shape == (7, 5)
    with pytest.raises(ValueError):
        T.random_softplus_net(5, [], 1.0)
    with pytest.raises(ValueError):
        T.SoftplusNet([torch.eye(3, dtype=D)], torch.ones(3, dtype=D), activation="tanh")


def test_hvp_and_power_iteration_match_exact_hessian():
    net = T.random_softplus_net(6, [16, 16], 1.5, seed=3)
    x = torch.randn(3, 6, dtype=D)
    v = torch.randn(3, 6, dtype=D)
    hv = T.hessian_vector_product(net, x, v)
    for i in range(3):
        H = _hessian(net, x[i])
        assert torch.allclose(hv[i], H @ v[i], atol=1e-10)
        est = T.hessian_spectral_norm(net, x[i:i + 1], iters=60)[0]
        true = torch.linalg.matrix_norm(H, 2)
        assert est <= true * (1 + 1e-9)  # errs low
        assert est >= 0.99 * true


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_hessian_norm_bound_is_an_upper_bound_over_the_ball(norm):
    g = torch.Generator().manual_seed(0)
    for seed in range(4):
        net = T.random_softplus_net(5, [8] * (1 + seed % 3), [0.5, 1.0, 2.0, 3.0][seed], seed=seed)
        x = torch.randn(2, 5, dtype=D, generator=g)
        r = 0.7
        bound = T.hessian_norm_bound(net, x, r, norm=norm)
        assert (bound <= T.hessian_norm_bound(net, x, math.inf) * (1 + 1e-12)).all()
        assert math.isclose(float(T.hessian_norm_bound(net, None)[0]), T.lipschitz_bound(net), rel_tol=1e-12)
        for i in range(2):
            for _ in range(20):
                u = torch.randn(5, dtype=D, generator=g)
                u = r * u / (u.norm() if norm == "l2" else u.abs().max()) * torch.rand(1, generator=g, dtype=D)
                h = torch.linalg.matrix_norm(_hessian(net, x[i] + u), 2)
                assert h <= bound[i] * (1 + 1e-9)


def test_derived_lipschitz_bound_dominates_hessian_everywhere():
    net = T.random_softplus_net(4, [6, 6, 6], 2.0, seed=5)
    L = T.lipschitz_bound(net, "derived")
    xs = 3 * torch.randn(50, 4, dtype=D)
    assert max(float(torch.linalg.matrix_norm(_hessian(net, x), 2)) for x in xs) <= L
    with pytest.raises(ValueError):
        T.lipschitz_bound(net, "nope")


def test_max_gradient_change_is_feasible_lower_estimate():
    net = T.random_softplus_net(6, [16], 2.0, seed=2)
    x = torch.randn(3, 6, dtype=D)
    val, u = T.max_gradient_change(net, x, 0.4, restarts=3, steps=20)
    assert (u.norm(dim=1) <= 0.4 * (1 + 1e-9)).all()
    g0, gu = T.model_gradient(net, x), T.model_gradient(net, x + u)
    assert torch.allclose((gu - g0).norm(dim=1), val, rtol=1e-9)
    # gradient ascent beats (or ties) plain random sampling in the ball
    rnd = torch.randn(200, 6, dtype=D)
    rnd = 0.4 * rnd / rnd.norm(dim=1, keepdim=True)
    for i in range(3):
        best_rand = (T.model_gradient(net, x[i] + rnd) - g0[i]).norm(dim=1).max()
        assert val[i] >= best_rand * (1 - 1e-6)


def test_exact_shapley_efficiency_and_symmetry():
    net = T.random_softplus_net(5, [8, 8], 1.0, seed=0)
    x = torch.randn(3, 5, dtype=D)
    phi = T.exact_shapley(net, x)
    with torch.no_grad():
        gap = net(x) - net(torch.zeros_like(x))
    assert torch.allclose(phi.sum(1), gap, atol=1e-12)
    lin = torch.nn.Linear(5, 1, bias=False).double()
    assert torch.allclose(T.exact_shapley(lin, x), lin.weight[0] * x, atol=1e-12)


def test_result_record_interface():
    r = T.check_gradient_optimality(**SMALL, eps=(0.1,))
    assert r.lhs.shape == r.rhs.shape == r.tightness.shape == r.holds_each.shape == (9,)
    assert isinstance(r.holds, bool) and isinstance(r.settings, dict) and r.settings["eps"] == [0.1]
    df = r.to_frame()
    assert {"lhs", "rhs", "tightness", "holds", "depth", "eps"} <= set(df.columns)
    s = T.summarize([r])
    assert s.loc[0, "violations"] == 0 and bool(s.loc[0, "holds"])


# ----------------------------------------------------------------------------- Prop. A.1
def test_lipschitz_bound_holds_derived_and_local():
    for bound in ("derived", "local"):
        r = T.check_lipschitz_bound(**SMALL, bound=bound, restarts=2, steps=15)
        assert r.holds, bound
        assert (r.tightness > 0).all() and (r.tightness <= 1).all()


def test_lipschitz_bound_fails_for_relu():
    r = T.check_lipschitz_bound(**SMALL, bound="derived", activation="relu", radius=0.05, restarts=8, steps=5)
    assert not r.holds


def test_a1_counterexample_breaks_every_reading_of_the_printed_product():
    df = T.a1_counterexample(0.1, 0.1)
    sens = 0.1 * (1 / (1 + math.exp(-0.1)) - 0.5)
    assert math.isclose(float(df.loc["paper", "SENS_max"]), sens, rel_tol=1e-12) and 2.49e-3 < sens < 2.50e-3
    assert math.isclose(float(df.loc["paper", "L r"]), 1.0e-3, rel_tol=1e-12)  # c² · 1 · r
    assert math.isclose(float(df.loc["paper/4", "L r"]), 2.5e-4, rel_tol=1e-12)
    assert math.isclose(float(df.loc["paper/4^l", "L r"]), 1e-3 / 16, rel_tol=1e-12)  # l = 2 layers
    assert not df.loc[["paper", "paper/4", "paper/4^l"], "holds"].any()
    assert bool(df.loc["derived", "holds"])
    # the check finds the same by ascent on the same network (lhs independent of the rhs arithmetic)
    net = T.SoftplusNet([torch.ones(1, 1, dtype=D)], torch.tensor([0.1], dtype=D))
    r = T.check_lipschitz_bound(net, torch.zeros(1, 1, dtype=D), radius=0.1, bound="paper", restarts=2, steps=20)
    assert not r.holds and math.isclose(float(r.lhs[0]), sens, rel_tol=1e-6)


def test_printed_product_readings_scored_on_all_layers():
    net = T.random_softplus_net(4, [5, 3], 1.0, seed=2)
    fro = [float(torch.linalg.matrix_norm(W, "fro")) ** 2 for W in net.weights]
    prod = float(net.c.norm()) ** 2 * fro[0] * fro[1]  # l = 3 layers, the output layer included
    assert math.isclose(T.lipschitz_bound(net, "paper"), prod, rel_tol=1e-12)
    assert math.isclose(T.lipschitz_bound(net, "paper/4^l"), prod / 64, rel_tol=1e-12)
    # planted: a small output layer breaks every reading (degree 2 in c), not the derived bound
    small = T.SoftplusNet(net.weights, 1e-3 * net.c)
    x = torch.randn(3, 4, dtype=D, generator=torch.Generator().manual_seed(0))
    r = T.check_lipschitz_bound(small, x, radius=0.5, restarts=2, steps=15)
    tab = T.paper_readings_table(r)
    assert r.holds and tab.loc["derived", "violations"] == 0
    assert (tab.loc[["paper", "paper/4", "paper/4^l"], "violations"] == 3).all()
    rp = T.rescore_lipschitz(r, "paper/4")
    assert not rp.holds and rp.n_violations == 3 and torch.equal(rp.lhs, r.lhs)
    assert T.rescore_lipschitz(r, "derived").holds


# ----------------------------------------------------------------------------- A.2
def test_hessian_bounds_hold_with_certified_L():
    r = T.check_hessian_bounds(**SMALL, n_perturbations=64, restarts=2, steps=15)
    assert r.holds
    assert set(r.info["part"]) == {"sens", "infd"}


def test_hessian_bounds_fail_for_relu():
    r = T.check_hessian_bounds(**SMALL, activation="relu", radius=0.1, n_perturbations=32, restarts=4, steps=5)
    assert not r.holds


# ----------------------------------------------------------------------------- Thm. A.1
@pytest.mark.parametrize("norm,eps", [("l2", 0.3), ("linf", 0.1)])
def test_adversarial_risk_bound_holds(norm, eps):
    r = T.check_adversarial_risk_bound(**SMALL, norm=norm, eps=eps, restarts=2, steps=15)
    assert r.holds
    assert (r.info["hessian_estimate"] <= r.info["hessian_certified"] * (1 + 1e-9)).all()


def test_adversarial_risk_bound_fails_when_shrunk():
    r = T.check_adversarial_risk_bound(**SMALL, restarts=2, steps=15)
    # scored on the loss increase: the clean loss is out of both sides
    assert torch.allclose(r.info["adversarial_loss"] - r.info["loss"], r.lhs)
    assert (r.lhs >= 0).all() and float(r.tightness.median()) > 0.1
    r = T.check_adversarial_risk_bound(**SMALL, rhs_scale=0.5, restarts=2, steps=15)  # planted
    assert not r.holds


# ----------------------------------------------------------------------------- Thm. C.1
def test_robust_infidelity_lower_bound_holds():
    r = T.check_robust_infidelity_lower_bound(n_nets=2, n_inputs=2, d=6, depths=(1, 2), widths=(8,),
                                              n_perturbations=16, restarts=2, steps=10)
    assert r.holds


def test_gaussian_draws_have_the_requested_sigma():
    from xailib.theory._core import _gaussian_draws

    I = _gaussian_draws(0.3, 8, 4000, 0)
    assert abs(float(I.std()) - 0.3) < 0.01


def _ripples():
    base = T.random_instances(n_nets=4, n_inputs=3, d=8, depths=(1, 2), scales=(1.0,), seed=1)
    return [T.RippleModel(net, 0.02, 50.0, seed=i, d=8) for i, (net, _, _) in enumerate(base)], [x for _, x, _ in base]


@pytest.mark.parametrize("plant", [None, "rinfd_at_x", "no_quarter"])
def test_robust_infidelity_bound_on_ripple_models_and_planted_errors(plant):
    nets, xs = _ripples()
    r = T.check_robust_infidelity_lower_bound(nets, xs, plant=plant, n_perturbations=32, restarts=2, steps=15)
    part = torch.tensor([p == "rinfd" for p in r.info["part"]])
    if plant is None:
        assert r.holds and (r.lhs[part] > 0).sum() >= 6  # not vacuous
    else:
        assert not r.holds and not r.holds_each[part].all()


def test_b_of_x_minus_i_has_the_expectation_inside_the_max():
    nets, xs = _ripples()
    r = T.check_robust_infidelity_lower_bound(nets[0], xs[0], n_perturbations=16, restarts=2, steps=15)
    net, x = nets[0], xs[0]
    from xailib.theory._core import _gaussian_draws, _sub

    I = _gaussian_draws(0.3, 8, 16, _sub(0, 0))
    with torch.no_grad():
        fI = net((x.unsqueeze(1) - I).reshape(-1, 8)).view(3, 16)
        # B(x − I) at any u is a lower estimate of the max over one u for all draws
        for _ in range(5):
            u = torch.randn(8, dtype=D)
            u = 0.3 * u / u.norm()
            val = (net((x.unsqueeze(1) - I + u).reshape(-1, 8)).view(3, 16) - fI).abs().mean(1)
            assert (val <= r.info["B_prime"][:3] * (1 + 1e-9)).all()


def test_literal_squared_form_fails_on_linear_model():
    lin = torch.nn.Linear(6, 1, bias=False).double()
    x = torch.randn(3, 6, dtype=D)
    r = T.check_robust_infidelity_lower_bound(lin, x, positive_part=False, n_perturbations=16, restarts=2, steps=5)
    assert not r.holds
    assert T.check_robust_infidelity_lower_bound(lin, x, n_perturbations=16, restarts=2, steps=5).holds


# ----------------------------------------------------------------------------- Thm. 4.1 / 4.2
def test_smoothgrad_sensitivity_holds_with_common_noise():
    r = T.check_smoothgrad_sensitivity(n_nets=2, n_inputs=2, d=6, depths=(1, 2), widths=(8,), sg_samples=16,
                                       rhs_samples=16, restarts=2, steps=10)
    assert r.holds
    assert float(r.info["sg_mismatch"].max()) < 1e-10  # our Φ_k is xailib's SmoothGrad
    assert (r.rhs <= r.info["rhs_certified"] * (1 + 1e-9)).all()  # ascent (errs low) below the certified value


def test_smoothgrad_sensitivity_fails_with_independent_noise():
    r = T.check_smoothgrad_sensitivity(n_nets=2, n_inputs=2, d=6, depths=(1, 2), widths=(8,), sg_samples=16,
                                       rhs_samples=16, radius=0.05, common_noise=False, restarts=2, steps=10)
    assert not r.holds


def test_smoothgrad_infidelity_holds_where_smoothing_matters():
    r = T.check_smoothgrad_infidelity(**SMALL, sg_samples=32, rhs_samples=32, n_perturbations=128)
    assert r.holds
    assert (r.info["C1"] < 0.25).all() and (r.info["C2_tight"] <= 1 + 1e-12).all()
    assert float(r.info["sg_change"].median()) > 0.05  # SmoothGrad changes the explanation


def test_smoothgrad_infidelity_reports_a_planted_error():
    r = T.check_smoothgrad_infidelity(**SMALL, sg_samples=32, rhs_samples=32, n_perturbations=128, plant=3.0)  # e.g. a wrong normalisation
    assert not r.holds


def test_smoothgrad_infidelity_flags_C1_above_quarter():
    r = T.check_smoothgrad_infidelity(**SMALL, sg_radius=1.0, sigma=0.1, sg_samples=16, n_perturbations=64)
    assert not r.holds
    bad = r.info["C1"] >= 0.25
    assert bad.any() and not r.hypothesis[bad].any() and not r.holds_each[bad].any()


# ----------------------------------------------------------------------------- Props. 2.1–2.4
def test_optimal_explanation_holds_and_fails_with_large_ridge():
    kw = dict(SMALL, n_samples=500, n_alternatives=4)
    r = T.check_optimal_explanation(**kw)
    assert r.holds and float(r.info["rel_dist_lstsq"].max()) < 1e-5
    assert not T.check_optimal_explanation(**kw, ridge=1.0).holds


def test_gradient_optimality_holds_and_fails_for_relu():
    r = T.check_gradient_optimality(**SMALL)
    assert r.holds
    assert not T.check_gradient_optimality(**dict(SMALL, widths=(32,)), activation="relu", eps=(0.5,)).holds


def test_occlusion_optimality_holds_and_fails_with_wrong_baseline():
    assert T.check_occlusion_optimality(**SMALL).holds
    assert not T.check_occlusion_optimality(**SMALL, explainer_baseline=0.5).holds


def test_shap_optimality_holds_and_fails_without_efficiency():
    kw = dict(SMALL, d=5, n_samples=1000, n_alternatives=4)
    r = T.check_shap_optimality(**kw)
    assert r.holds
    assert float(r.info["rel_err_kernelshap"].max()) < 0.05
    assert not T.check_shap_optimality(**kw, efficiency=False).holds


def test_optimal_shapley_kernel_matches_exact_shapley_on_six_features():
    kw = dict(SMALL, d=6, n_alternatives=2)
    r = T.check_shap_optimality(**kw, exact="auto")  # Optimal's exact sum over the 62 coalitions
    assert r.holds and float(r.info["max_abs_err_optimal"].max()) < 1e-3
    r2 = T.check_shap_optimality(**kw, n_samples=20000)  # sampled: converging, efficiency imposed
    assert r2.holds and float(r2.info["rel_err_optimal"].median()) < 0.02


def test_hessian_norm_bound_survives_a_search_for_the_worst_point():
    # deep, large-weight networks: power iteration at many points of the ball (on the sphere and
    # inside) must never exceed the certified bound
    for seed, (depth, scale) in enumerate([(4, 3.0), (5, 2.0), (2, 4.0)]):
        net = T.random_softplus_net(6, [12] * depth, scale, seed=seed)
        x = torch.randn(2, 6, dtype=D, generator=torch.Generator().manual_seed(seed))
        for r in (0.05, 0.5, 2.0):
            est = T._hessian_sup_estimate(net, x, r, n_points=64, iters=40, seed=seed)
            assert (est <= T.hessian_norm_bound(net, x, r) * (1 + 1e-9)).all()


def test_plot_check_and_summary_table():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = T.check_hessian_bounds(**SMALL, n_perturbations=16, restarts=1, steps=3)
    fig = T.plot_check(r, hue="part")
    assert len(fig.axes) == 2
    plt.close(fig)
    s = T.summarize([r, T.check_gradient_optimality(**SMALL)])
    assert list(s.columns) == ["check", "statement", "instances", "violations", "holds", "tightness min",
                               "tightness median", "tightness max"]
    assert s.instances.tolist() == [18, 45]


def test_checks_validate_arguments():
    with pytest.raises(ValueError):
        T.check_lipschitz_bound(**SMALL, bound="frobenius")
    with pytest.raises(ValueError):
        T.check_lipschitz_bound(**SMALL, radius=-1.0)
    with pytest.raises(ValueError):
        T.check_adversarial_risk_bound(**SMALL, norm="l1")
    with pytest.raises(ValueError):
        T.check_lipschitz_bound(T.random_softplus_net(6, [4]), None)


def test_population_replaces_the_keywords():
    """A Population gives the same instances as the keywords it replaces; mixing both is an error."""
    pop = T.Population(**SMALL)
    a, b = pop.instances(seed=4), T.random_instances(**SMALL, seed=4)
    assert all(torch.equal(na.W0, nb.W0) and torch.equal(xa, xb) for (na, xa, _), (nb, xb, _) in zip(a, b))
    r1 = T.check_lipschitz_bound(pop, steps=5)
    r2 = T.check_lipschitz_bound(steps=5, **SMALL)
    assert torch.equal(r1.lhs, r2.lhs) and torch.equal(r1.rhs, r2.rhs)
    with pytest.raises(ValueError, match="Population"):
        T.check_lipschitz_bound(pop, n_nets=2)
    with pytest.raises(TypeError, match="n_netz"):
        T.check_lipschitz_bound(n_netz=2)
