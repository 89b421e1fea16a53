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


def test_paper_product_form_is_violated_by_deep_narrow_nets():
    kw = dict(n_nets=3, n_inputs=3, d=6, depths=(8,), widths=(1,), scales=(0.3,), radius=1.0, restarts=2, steps=15)
    assert not T.check_lipschitz_bound(**kw, bound="paper").holds
    assert T.check_lipschitz_bound(**kw, bound="derived").holds


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
    r = T.check_adversarial_risk_bound(**SMALL, rhs_scale=0.5, restarts=2, steps=15)
    assert not r.holds


# ----------------------------------------------------------------------------- Thm. C.1
def test_robust_infidelity_lower_bound_holds():
    r = T.check_robust_infidelity_lower_bound(n_nets=2, n_inputs=2, d=6, depths=(1, 2), widths=(8,),
                                              n_perturbations=16, restarts=2, steps=10)
    assert r.holds


def test_robust_infidelity_bound_nonvacuous_on_ripple_model():
    base = T.random_softplus_net(6, [8], 1.0, seed=0)
    x = torch.randn(2, 6, dtype=D)
    r = T.check_robust_infidelity_lower_bound(T.RippleModel(base, 0.02, 50.0, d=6), x, n_perturbations=16,
                                              restarts=2, steps=10)
    assert r.holds
    part = torch.tensor([p == "rinfd" for p in r.info["part"]])
    assert (r.lhs[part] > 0).all()


def test_literal_squared_form_fails_on_linear_model():
    lin = torch.nn.Linear(6, 1, bias=False).double()
    x = torch.randn(3, 6, dtype=D)
    r = T.check_robust_infidelity_lower_bound(lin, x, positive_part=False, n_perturbations=16, restarts=2, steps=5)
    assert not r.holds
    assert T.check_robust_infidelity_lower_bound(lin, x, n_perturbations=16, restarts=2, steps=5).holds


# ----------------------------------------------------------------------------- Thm. 4.1 / 4.2
def test_smoothgrad_sensitivity_holds_with_common_noise():
    r = T.check_smoothgrad_sensitivity(n_nets=2, n_inputs=2, d=6, depths=(1, 2), widths=(8,), sg_samples=16,
                                       restarts=2, steps=10)
    assert r.holds
    assert float(r.info["sg_mismatch"].max()) < 1e-10  # our Φ_k is xailib's SmoothGrad


def test_smoothgrad_sensitivity_fails_with_independent_noise():
    r = T.check_smoothgrad_sensitivity(n_nets=2, n_inputs=2, d=6, depths=(1, 2), widths=(8,), sg_samples=16,
                                       radius=0.05, common_noise=False, restarts=2, steps=10)
    assert not r.holds


def test_smoothgrad_infidelity_holds_for_small_kernel():
    r = T.check_smoothgrad_infidelity(**SMALL, sg_samples=16, n_perturbations=64)
    assert r.holds
    assert (r.info["C1"] < 0.25).all() and (r.info["C2"] <= 1 + 1e-12).all()


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
