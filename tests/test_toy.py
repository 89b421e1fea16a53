"""The appendix A.5 toy function (xailib.toy) and the explainers/metrics on it."""
import math

import pytest
import torch

from xailib import toy
from xailib.toy import PAPER_POINTS, PAPER_VALUES, ToyModel, smoothed_gradient, toy_function, toy_gradient


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


def test_smoothed_gradient_reference_matches_brute_force():
    x = _pts()[:2]
    g = torch.Generator().manual_seed(0)
    u = torch.rand(200000, 2, generator=g, dtype=torch.float64) * 2 - 1
    for r in (0.2, 0.7, 3.3):
        exact = smoothed_gradient(x, r)
        mc = torch.stack([toy_gradient(p + r * u).mean(0) for p in x])
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
