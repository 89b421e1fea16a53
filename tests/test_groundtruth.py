"""Cue data sets and localisation scores of xailib.groundtruth (closed forms and planted cases)."""
import numpy as np
import pytest
import torch
from torch import nn

from xailib import groundtruth as G
from xailib.explainers import Gradient


@pytest.fixture(scope="module")
def patch():
    return G.make_cue_dataset("patch", "train", n=500, position="fixed", seed=0)


def test_cues_distinct():
    p = G.patch_codes()
    d = (p.view(10, 1, -1) != p.view(1, 10, -1)).float().sum(-1) / 4  # cells differ (2x2 px each)
    assert (d + 100 * torch.eye(10) >= 4).all()
    g = G.glyphs(9)
    assert g.shape == (10, 9, 9) and g.max() == 1
    assert ((g.view(10, 1, -1) - g.view(1, 10, -1)).abs().sum(-1) + 100 * torch.eye(10) > 3).all()


def test_cue_written_and_label_is_cue(patch):
    s = G.PATCH_SIZE
    codes = G.patch_codes()
    assert torch.equal(patch.x[:, 0, :s, :s], codes[patch.y])
    assert patch.mask[:, 0, :s, :s].all() and patch.mask.sum() == len(patch) * s * s
    assert patch.area == pytest.approx(s * s / 784)


def test_digit_carries_no_label_information(patch):
    # the label is a permutation of the digit labels: same balanced marginal ...
    assert torch.equal(torch.bincount(patch.y, minlength=10), torch.bincount(patch.digit, minlength=10))
    # ... and independent of the digit: chi-square does not reject, agreement at chance level
    stat, dof, p, table = G.label_independence(patch.digit, patch.y)
    assert dof == 81 and p > 0.01
    assert abs(float((patch.digit == patch.y).float().mean()) - 0.1) < 0.05
    # planted dependence is detected
    assert G.label_independence(patch.digit, patch.digit)[2] < 1e-10


def test_random_position_and_move_remove():
    ds = G.make_cue_dataset("text", "test", n=50, position="random", seed=0)
    assert len(set(map(tuple, ds.pos.tolist()))) > 20
    s = ds.cue.shape[-1]
    for i in range(5):
        r, c = ds.pos[i].tolist()
        assert torch.equal(ds.x[i, 0, r:r + s, c:c + s], ds.cue[ds.y[i]])
    x0 = G.remove_cue(ds)
    assert (x0[ds.mask] == 0).all() and torch.equal(x0[~ds.mask], ds.x[~ds.mask])
    xm, mm = G.move_cue(ds)
    assert mm.sum() == ds.mask.sum() and not torch.equal(mm, ds.mask)
    with pytest.raises(ValueError, match="kind"):
        G.make_cue_dataset("sound")


class Masked(nn.Module):
    """A linear model whose weights are zero on a given region: it ignores that region by construction."""

    def __init__(self, zero_region):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        w = torch.randn(10, 784, generator=g)
        w[:, zero_region.view(-1)] = 0
        self.w = nn.Parameter(w)

    def forward(self, x):
        return x.reshape(x.shape[0], -1) @ self.w.T


def test_model_ignoring_cue_scores_zero_mass(patch):
    model = Masked(patch.mask[0, 0])
    phi = Gradient(model)(patch.x[:20], patch.y[:20])
    assert torch.allclose(G.mass_on_cue(phi, patch.mask[:20]), torch.zeros(20, dtype=torch.float64))
    assert torch.allclose(G.mass_on_cue(phi, patch.mask[:20], "positive"), torch.zeros(20, dtype=torch.float64))
    assert G.pointing_game(phi, patch.mask[:20]).sum() == 0
    # the opposite model, reading only the cue, scores 1
    model2 = Masked(~patch.mask[0, 0])
    phi2 = Gradient(model2)(patch.x[:20], patch.y[:20])
    assert torch.allclose(G.mass_on_cue(phi2, patch.mask[:20]), torch.ones(20, dtype=torch.float64))
    assert G.pointing_game(phi2, patch.mask[:20], absolute=True).sum() == 20


def test_mass_closed_forms():
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    mask[:, :, :2, :2] = True
    phi = torch.ones(2, 1, 4, 4)
    assert torch.allclose(G.mass_on_cue(phi, mask), torch.full((2,), 0.25, dtype=torch.float64))
    phi[1, 0, 0, 0] = -5.0  # in the cue: counts for |phi|, not for the positive part
    assert G.mass_on_cue(phi, mask)[1].item() == pytest.approx(8 / 20)
    assert G.mass_on_cue(phi, mask, "positive")[1].item() == pytest.approx(3 / 15)
    assert G.pointing_game(phi, mask).tolist() == [1.0, 1.0]  # ties: a maximiser lies in the cue
    assert G.pointing_game(phi, mask, absolute=True).tolist() == [1.0, 1.0]  # |-5| is the maximum, in the cue
    phi[0, 0, 3, 3] = 2.0  # a single maximum outside the cue
    assert G.pointing_game(phi, mask).tolist() == [0.0, 1.0]
    assert G.pointing_game(phi, mask, absolute=True).tolist() == [0.0, 1.0]
    assert torch.isnan(G.mass_on_cue(torch.zeros(1, 1, 4, 4), mask[:1])).all()
    with pytest.raises(ValueError, match="mask"):
        G.mass_on_cue(phi, mask[:1])


def test_spearman_ci():
    a = np.arange(30.0)
    rho, lo, hi = G.spearman_ci(a, a ** 3)
    assert rho == pytest.approx(1.0) and lo == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    rho, lo, hi = G.spearman_ci(rng.normal(size=200), rng.normal(size=200))
    assert lo < 0 < hi and hi - lo < 0.4
    rho, lo, hi = G.spearman_ci(a, -a + rng.normal(size=30))
    assert hi < -0.8


@pytest.mark.parametrize("kind", ["patch", "text"])
def test_committed_cue_networks_read_the_cue(kind):
    from xailib.models import evaluate_accuracy

    m = G.get_cue_model(kind, verbose=False)
    ds = G.make_cue_dataset(kind, "test", n=300, position=G.CUE_TRAIN["position"], seed=G.CUE_TRAIN["seed"])
    assert evaluate_accuracy(m, ds.x, ds.y) > 0.95
    assert evaluate_accuracy(m, G.remove_cue(ds), ds.y) < 0.2
    assert evaluate_accuracy(m, G.move_cue(ds)[0], ds.y) < 0.3
    with pytest.raises(ValueError, match="unknown training settings"):
        G.cue_config(kind, epoch=3)
