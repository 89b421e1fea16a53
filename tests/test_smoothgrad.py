"""SmoothGrad: joint (noise, path position) sampling of path methods, radius checks, nested streams.

Closed form used throughout (the book's *The paper in brief*, § Explainers): for the quadratic
model ``f(x) = xᵀAx/2 + bᵀx`` (``∇f(y) = Ay + b``) and Integrated Gradients with baseline β,

* local IG:  ``Φ_IG(x) = ∫₀¹ A(β + t(x − β)) + b dt = A(x + β)/2 + b``;
* global IG: ``A_IG(x) = (x − β) ⊙ (A(x + β)/2 + b)``;
* SmoothGrad with uniform L∞ noise z of radius r (``E z = 0``, ``E zzᵀ = (r²/3) Id``):
  ``Φ_IG-SG = A(x + β)/2 + b`` and ``A_IG-SG = (x − β) ⊙ (A(x + β)/2 + b) + (r²/6) diag(A)``.

The joint estimator's integrand ``(x + z − β) ⊙ (A(β + t(x + z − β)) + b)`` depends on t, so an
estimator that got the positions wrong (e.g. left endpoints of the strata) is biased.
"""
from __future__ import annotations

import math

import pytest
import torch

from xailib.explainers import Gradient, IntegratedGradients, SmoothGrad

D = torch.float64


def quadratic(seed=0, d=4):
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(d, d, generator=g, dtype=D)
    A = (M + M.T) / 2
    b = torch.randn(d, generator=g, dtype=D)

    def f(x):
        return 0.5 * ((x @ A) * x).sum(1) + x @ b

    return f, A, b


def closed_form_global(A, b, x, beta, r):
    return (x - beta) * ((x + beta) @ A / 2 + b) + (r * r / 6) * torch.diagonal(A)


def seed_mean(make, x, n_seeds):
    """Mean and standard error over ``n_seeds`` independent seeds of ``make(seed)(x)``."""
    phis = torch.stack([make(s)(x) for s in range(n_seeds)])
    return phis.mean(0), phis.std(0) / math.sqrt(n_seeds)


X = torch.tensor([[0.3, -0.5, 0.8, 0.1], [1.0, 0.2, -0.4, 0.6]], dtype=D)
BETA = torch.tensor([0.1, 0.0, -0.2, 0.3], dtype=D)


def test_joint_is_unbiased_for_the_exact_integral_and_a_biased_rule_is_caught():
    f, A, b = quadratic()
    r = 0.5
    exact = closed_form_global(A, b, X, BETA, r)
    ig = IntegratedGradients(f, baseline=BETA, multiply_by_inputs=True)
    mean, se = seed_mean(lambda s: SmoothGrad(ig, radius=r, n_samples=3, seed=s), X, 800)
    assert (se > 0).all()
    z = (mean - exact) / se
    assert z.abs().max() < 4.5, z
    # planted error: the nested form with a 2-point left Riemann rule (t ∈ {0, 1/2}) is biased
    left = IntegratedGradients(f, baseline=BETA, multiply_by_inputs=True, steps=2, method="riemann_left")
    mean_l, se_l = seed_mean(lambda s: SmoothGrad(left, radius=r, n_samples=3, seed=s, sampling="nested"), X, 300)
    assert ((mean_l - exact) / se_l).abs().max() > 10


def test_joint_local_ig_sg_closed_form_and_cost():
    f, A, b = quadratic(1)
    ig = IntegratedGradients(f, baseline=BETA, steps=50)
    sg = SmoothGrad(ig, radius=0.3, n_samples=4000, seed=3)
    assert sg.joint and sg.gradients_per_explanation == 4000
    assert SmoothGrad(ig, n_samples=200, sampling="nested").gradients_per_explanation == 200 * 50
    exact = (X + BETA) @ A / 2 + b
    # the error is O(r/√n) from the noise term A z/2 (no quadrature error)
    assert torch.allclose(sg(X), exact, atol=0.02)
    assert not torch.allclose(sg(X), exact, atol=1e-6)  # it is a Monte-Carlo estimate


def test_joint_independent_of_batch_size_and_instance_composition():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).to(D)
    y = torch.tensor([0, 2])
    ref = SmoothGrad(IntegratedGradients(net, baseline=BETA), n_samples=13, seed=4)(X, y)
    for bs in (1, 5, 13, 1024):
        phi = SmoothGrad(IntegratedGradients(net, baseline=BETA, batch_size=bs), n_samples=13, seed=4,
                         batch_size=bs)(X, y)
        assert torch.allclose(phi, ref, rtol=0, atol=1e-13)
    one = SmoothGrad(IntegratedGradients(net, baseline=BETA), n_samples=13, seed=4)(X[1:], y[1:])
    assert torch.allclose(one, ref[1:], rtol=0, atol=1e-13)
    # per-instance baselines follow their rows
    B = torch.stack([BETA, -BETA])
    both = SmoothGrad(IntegratedGradients(net, baseline=B), n_samples=13, seed=4, batch_size=3)(X, y)
    alone = SmoothGrad(IntegratedGradients(net, baseline=-BETA), n_samples=13, seed=4)(X[1:], y[1:])
    assert torch.allclose(both[1:], alone, rtol=0, atol=1e-13)
    assert torch.allclose(both[:1], ref[:1], rtol=0, atol=1e-13)


def test_joint_reproducible_from_seed_and_generator():
    f, _, _ = quadratic(2)
    ig = IntegratedGradients(f)
    a = SmoothGrad(ig, n_samples=9, seed=7)(X)
    assert torch.equal(a, SmoothGrad(ig, n_samples=9, seed=7)(X))  # common random numbers
    assert torch.equal(SmoothGrad(ig, n_samples=9, seed=0)(X, generator=7), a)
    assert not torch.allclose(a, SmoothGrad(ig, n_samples=9, seed=8)(X))


def test_nested_and_joint_agree_in_the_limit():
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).to(D)
    ig = IntegratedGradients(net, steps=8, method="gausslegendre")  # quadrature error ≪ Monte-Carlo error
    joint = SmoothGrad(ig, radius=0.4, n_samples=60000, seed=1)(X)
    nested = SmoothGrad(ig, radius=0.4, n_samples=6000, seed=2, sampling="nested")(X)
    small = SmoothGrad(ig, radius=0.4, n_samples=30, seed=1)(X)
    scale = nested.abs().max()
    gap = (joint - nested).abs().max() / scale
    assert gap < 0.01, gap
    assert (small - nested).abs().max() / scale > 3 * gap  # the tolerance is not vacuous


def test_non_path_base_same_for_both_samplings():
    f, _, _ = quadratic(3)
    a = SmoothGrad(Gradient(f), n_samples=11, seed=2)
    assert not a.joint
    assert torch.equal(a(X), SmoothGrad(Gradient(f), n_samples=11, seed=2, sampling="nested")(X))


@pytest.mark.parametrize("radius", [math.inf, -math.inf, math.nan])
def test_non_finite_radius_is_a_value_error(radius):
    f, _, _ = quadratic()
    with pytest.raises(ValueError, match="radius"):
        SmoothGrad(Gradient(f), radius=radius)


def test_bad_sampling_is_a_value_error():
    f, _, _ = quadratic()
    with pytest.raises(ValueError, match="sampling"):
        SmoothGrad(Gradient(f), sampling="both")


def test_nested_smoothgrad_default_seeds_use_independent_noise():
    """SG(SG(∇f)) with one noise draw per level on f = Σ xᵢ³/6 (∇f = x²/2):
    independent levels give E = (x² + 2σ²)/2, the same noise at both levels (x² + 4σ²)/2."""

    def f(x):
        return (x**3).sum(1) / 6

    r = 1.0
    s2 = r * r / 3
    x = X[:1]
    mean, se = seed_mean(lambda s: SmoothGrad(SmoothGrad(Gradient(f), radius=r, n_samples=1, seed=s), radius=r,
                                              n_samples=1, seed=s), x, 1000)
    indep, same = (x**2 + 2 * s2) / 2, (x**2 + 4 * s2) / 2
    assert ((mean - indep) / se).abs().max() < 4.5
    assert ((mean - same) / se).abs().min() > 6
