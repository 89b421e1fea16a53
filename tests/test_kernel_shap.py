"""KernelSHAP's estimator switches (measured in benchmarks/bench_equal_error.py): efficiency and pairing."""
from __future__ import annotations

import torch

from xailib.explainers import KernelSHAP

D = torch.float64


def test_efficiency_switch_and_pairing_on_a_nonlinear_model():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).to(D)
    x = torch.rand(3, 6, dtype=D)
    total = (net(x) - net(torch.zeros_like(x))).squeeze(1)
    on = KernelSHAP(net, n_samples=64, seed=1)(x)
    con = KernelSHAP(net, n_samples=64, seed=1, efficiency="constrained")(x)
    off = KernelSHAP(net, n_samples=64, seed=1, efficiency="none")(x)
    for phi in (on, con):
        assert torch.allclose(phi.sum(1), total, atol=1e-10)  # Σφ = f(x) − f(b) exactly
    assert (off.sum(1) - total).abs().max() > 1e-6  # plain least squares only approximately
    # "shift" is the plain least squares moved by one constant per instance
    d = on - off
    assert torch.allclose(d, d[:, :1].expand_as(d), atol=1e-12)
    # both converge to the same Shapley values: exact ones by enumeration on 6 features
    import itertools
    import math

    def v(mask):  # mask: 1 = feature kept
        return net(x * mask).squeeze(1)

    exact = torch.zeros_like(x)
    for i in range(6):
        others = [j for j in range(6) if j != i]
        for k in range(6):
            for S in itertools.combinations(others, k):
                m = torch.zeros(6, dtype=D)
                m[list(S)] = 1
                w = math.factorial(k) * math.factorial(5 - k) / math.factorial(6)
                m2 = m.clone()
                m2[i] = 1
                exact[:, i] += w * (v(m2) - v(m))
    for kw in ({}, {"efficiency": "constrained"}, {"paired": False}):
        big = KernelSHAP(net, n_samples=40000, seed=2, **kw)(x)
        assert (big - exact).abs().max() < 0.02 * exact.abs().max(), kw
    small_err = (on - exact).abs().max()
    assert small_err > (KernelSHAP(net, n_samples=40000, seed=2)(x) - exact).abs().max()


def test_masks_kept_across_calls_give_the_same_values_as_fresh_draws():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(20, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    x = torch.rand(4, 1, 4, 5)
    t = torch.tensor([0, 1, 2, 1])
    e = KernelSHAP(net, n_samples=301, seed=5)
    first = e(x[:2], t[:2])
    kept = e._store["masks"][1]
    assert sum(int(z.shape[0]) for z in kept) == 151 and kept[0].dtype == torch.bool
    again = e(x[2:], t[2:])  # replays the kept masks (and the kept Gram factor)
    assert e._store["masks"][1] is kept
    fresh = KernelSHAP(net, n_samples=301, seed=5, cache=False)
    assert torch.equal(again, fresh(x[2:], t[2:]))
    assert torch.equal(first, fresh(x[:2], t[:2]))
    other_seed = KernelSHAP(net, n_samples=301, seed=6, cache=False)(x[2:], t[2:])
    assert not torch.equal(again, other_seed)  # the check can tell different masks apart
    e.seed = 6  # another seed: new masks, never the kept ones
    assert torch.equal(e(x[2:], t[2:]), other_seed)
