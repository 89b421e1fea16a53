"""Perturbation laws: shapes, dtypes, the laws' distributions, groups, replay, validation."""
import math

import pytest
import torch

from xailib.perturbations import (
    BinaryPerturbation,
    Fixed,
    Gaussian,
    Infinitesimal,
    NoisyBaseline,
    ShapleyKernel,
    SingleFeature,
    SquareRemoval,
)

F_IMG = (1, 8, 8)


def all_laws():
    return [
        NoisyBaseline(),
        Gaussian(0.3),
        Infinitesimal(1e-3),
        SquareRemoval((1, 4)),
        SquareRemoval((2, 3), groups=2),
        SingleFeature(),
        ShapleyKernel(),
        ShapleyKernel(groups=4),
    ]


@pytest.mark.parametrize("law", all_laws(), ids=repr)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_dtype_and_consistency(law, dtype):
    x = torch.rand(3, *F_IMG, dtype=dtype)
    x[:, :, :2] = 0.0
    draws = law.draw(F_IMG, 7, 0, x.device, dtype)
    assert draws.dtype == dtype and draws.device == x.device
    if law.binary:
        assert draws.shape == (7, law.n_groups(F_IMG))
        assert ((draws == 0) | (draws == 1)).all()
    else:
        assert draws.shape == (7, *F_IMG)
    I = law.apply(x, draws)
    assert I.shape == (3, 7, *F_IMG) and I.dtype == dtype
    torch.testing.assert_close(law.perturbed(x, draws), x.unsqueeze(1) - I, rtol=0, atol=1e-6)
    phi = torch.randn_like(x)
    ref = (I.reshape(3, 7, -1) * phi.reshape(3, 1, -1)).sum(-1)
    torch.testing.assert_close(law.dot(x, draws, phi), ref, rtol=1e-5, atol=1e-5)
    # same seed -> same draws; sample() = apply(draw())
    torch.testing.assert_close(law.sample(x, 7, generator=0), I)


def test_float64_draws_are_genuinely_float64():
    for law in (NoisyBaseline(), Gaussian(1.0)):
        d = law.draw((50,), 20, 0, "cpu", torch.float64)
        assert d.dtype == torch.float64
        # float32 noise cast up would be exactly representable in float32
        assert (d.float().double() != d).any()


def test_generator_object_advances_and_seed_repeats():
    law = NoisyBaseline()
    g = torch.Generator().manual_seed(3)
    a, b = law.draw((5,), 4, g), law.draw((5,), 4, g)
    assert not torch.equal(a, b)
    assert torch.equal(law.draw((5,), 4, 3), law.draw((5,), 4, 3))


def test_noisy_baseline_clipping():
    law = NoisyBaseline(sigma=0.5, baseline=0.0, clip=(0.0, 1.0))
    x = torch.rand(2, 30, dtype=torch.float64)
    draws = law.draw((30,), 200, 1, dtype=torch.float64)
    x0 = law.perturbed(x, draws)
    assert x0.min() >= 0 and x0.max() <= 1
    assert (x0 == 0).float().mean() > 0.3  # about half the noise is clipped to 0
    torch.testing.assert_close(x0[0], (0.5 * draws).clamp(0, 1))
    torch.testing.assert_close(x0[0], x0[1])  # noisy baselines shared across instances
    free = NoisyBaseline(sigma=0.5, clip=None).perturbed(x, draws)
    assert free.min() < 0


def _bbox(mask2d):
    rows = mask2d.any(1).nonzero().flatten()
    cols = mask2d.any(0).nonzero().flatten()
    return rows, cols


def test_square_removal_masks_are_squares_in_range():
    law = SquareRemoval(sizes=(2, 5))
    F = (3, 9, 12)  # three channels, non-square image
    z = law.draw(F, 300, 0)
    assert z.shape == (300, 9 * 12)
    m = law.expand(z, F)
    assert torch.equal(m[:, 0], m[:, 1]) and torch.equal(m[:, 0], m[:, 2])  # all channels
    sides = []
    for k in range(300):
        mk = m[k, 0].bool()
        rows, cols = _bbox(mk)
        h, w = len(rows), len(cols)
        assert h == w and 2 <= h <= 5
        assert mk.sum() == h * w and mk[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].all()
        sides.append(h)
    assert set(sides) == {2, 3, 4, 5}
    # positions: every valid top-left corner row is reachable, square always inside
    starts = [int(_bbox(m[k, 0].bool())[0][0]) for k in range(300) if sides[k] == 2]
    assert min(starts) == 0 and max(starts) == 9 - 2


def test_square_removal_sides_larger_than_image_are_clamped():
    law = SquareRemoval(sizes=(3, 50))
    assert law.side_range((1, 6, 8)) == (3, 6)
    z = law.draw((1, 6, 8), 200, 0)
    sides = z.view(200, 6, 8).any(2).sum(1)
    assert sides.min() >= 3 and sides.max() == 6
    assert set(sides.tolist()) == {3, 4, 5, 6}


def test_superpixel_groups():
    F = (2, 6, 6)
    law = SquareRemoval(sizes=(2, 4), groups=2)
    assert law.n_groups(F) == 9
    z = law.draw(F, 50, 0)
    A = torch.randn(4, *F, dtype=torch.float64)
    m = law.expand(z.double(), F)
    torch.testing.assert_close(law.group_sum(A) @ z.double().T, torch.einsum("nf,mf->nm", A.flatten(1), m.flatten(1)))
    g = torch.randn(4, 9, dtype=torch.float64)
    torch.testing.assert_close(law.group_sum(law.spread(g, F)), g)
    # label maps (spatial, shared by channels) renumbered in sorted order
    lab = torch.tensor([[5, 5, 9], [7, 7, 9], [7, 7, 9]])
    sf = SingleFeature(groups=lab)
    assert sf.n_groups((1, 3, 3)) == 3
    assert sf.group_sum(torch.ones(1, 1, 3, 3)).tolist() == [[2.0, 4.0, 3.0]]
    with pytest.raises(ValueError, match="groups"):
        SingleFeature(groups=torch.zeros(4, 4, dtype=torch.long)).n_groups((1, 3, 3))
    with pytest.raises(TypeError, match="groups"):
        SingleFeature(groups=1.5)


def test_single_feature_and_infinitesimal():
    law = SingleFeature()
    z = law.draw((2, 5), 30, 0)
    assert (z.sum(1) == 1).all()
    assert (z.sum(0) == 3).all()  # stratified: each of the 10 groups exactly 3 times
    inf = Infinitesimal(eps=1e-3)
    d = inf.draw((10,), 25, 0, dtype=torch.float64)
    assert ((d != 0).sum(1) == 1).all() and torch.allclose(d.sum(1), torch.full((25,), 1e-3, dtype=torch.float64))
    zu = SingleFeature(stratified=False).draw((10,), 1000, 0)
    assert (zu.sum(1) == 1).all() and zu.sum(0).min() > 60


def test_shapley_kernel_size_distribution():
    scipy_stats = pytest.importorskip("scipy.stats")
    G, n = 8, 20000
    law = ShapleyKernel()
    z = law.draw((G,), n, 0)
    k = z.sum(1).long()
    assert k.min() >= 1 and k.max() <= G - 1
    counts = torch.bincount(k, minlength=G)[1:G].double()
    kk = torch.arange(1, G, dtype=torch.float64)
    p = (G - 1) / (kk * (G - kk))
    p = p / p.sum()
    torch.testing.assert_close(law.size_probabilities(G), p)
    chi2 = float((((counts - n * p) ** 2) / (n * p)).sum())
    assert scipy_stats.chi2.sf(chi2, df=G - 2) > 1e-3
    # given the size, the subset is uniform: each feature in a fraction k/G of size-k draws
    sel = z[k == 2]
    freq = sel.mean(0)
    assert torch.allclose(freq, torch.full_like(freq, 2 / G), atol=0.03)
    with pytest.raises(ValueError):
        ShapleyKernel().draw((1,), 5, 0)


def test_fixed_replays():
    x = torch.rand(3, 4, dtype=torch.float64)
    I = torch.randn(6, 4, dtype=torch.float64)
    law = Fixed(I)
    assert not law.binary and law.n_fixed == 6
    out = law.sample(x, 6)
    assert torch.equal(out, I.unsqueeze(0).expand(3, 6, 4))
    assert torch.equal(law.draw((4,), 2), I[:2])
    with pytest.raises(ValueError, match="6 draws"):
        law.draw((4,), 7)
    with pytest.raises(ValueError):
        law.draw((5,), 2)
    z = (torch.rand(5, 4) > 0.5).double()
    lb = Fixed(masks=z, baseline=0.5)
    assert lb.binary
    torch.testing.assert_close(lb.sample(x, 5), (x - 0.5).unsqueeze(1) * z.unsqueeze(0))
    # masks over superpixels
    lb2 = Fixed(masks=torch.tensor([[1.0, 0.0]]), groups=2)
    assert lb2.sample(torch.ones(1, 4), 1).tolist() == [[[1.0, 1.0, 0.0, 0.0]]]
    with pytest.raises(ValueError, match="0 and 1"):
        Fixed(masks=torch.full((2, 4), 0.5))
    with pytest.raises(ValueError):
        Fixed()


def test_validation():
    with pytest.raises(ValueError, match="sigma"):
        NoisyBaseline(sigma=0)
    with pytest.raises(ValueError, match="sizes"):
        SquareRemoval(sizes=(5, 2))
    with pytest.raises(TypeError, match="sizes"):
        SquareRemoval(sizes=(1.5, 2))
    with pytest.raises(ValueError, match="clip"):
        NoisyBaseline(clip=(1.0, 0.0))
    with pytest.raises(ValueError, match="n"):
        Gaussian(1.0).draw((3,), 0)
    with pytest.raises(TypeError, match="baseline"):
        SingleFeature(baseline="zero")
    assert isinstance(SquareRemoval(), BinaryPerturbation)
    assert math.isclose(NoisyBaseline().sigma, 0.2)


# ---------------------------------------------------------------- removal with imputation (ROAD)
def _impute_by_hand(img, removed):
    """An independent dense solve of the harmonic imputation on a small (H, W) image: numpy, explicit loops."""
    import numpy as np

    H, W = img.shape
    nb = {(0, 1): 1 / 6, (0, -1): 1 / 6, (1, 0): 1 / 6, (-1, 0): 1 / 6,
          (1, 1): 1 / 12, (1, -1): 1 / 12, (-1, 1): 1 / 12, (-1, -1): 1 / 12}
    var = [p for p in removed]
    ix = {p: k for k, p in enumerate(var)}
    A, b = np.zeros((len(var), len(var))), np.zeros(len(var))
    for (i, j), k in ix.items():
        tot = 0.0
        for (dy, dx), w in nb.items():
            y, x = i + dy, j + dx
            if 0 <= y < H and 0 <= x < W:
                tot += w
                if (y, x) in ix:
                    A[k, ix[(y, x)]] -= w
                else:
                    b[k] += w * img[y, x]
        A[k, k] += tot
    out = img.copy()
    for p, v in zip(var, np.linalg.solve(A, b)):
        out[p] = v
    return out


def test_imputation_equals_its_closed_form_on_a_4x4_image():
    import numpy as np
    from xailib.perturbations import ImputedSquareRemoval, imputation_operator

    g = torch.Generator().manual_seed(0)
    img = torch.rand(4, 4, generator=g, dtype=torch.float64)
    # one interior pixel: the weighted mean of its 8 neighbours (4 × 1/6 + 4 × 1/12 = 1)
    m = torch.zeros(4, 4, dtype=torch.bool)
    m[1, 2] = True
    idx, src, P = imputation_operator(m)
    direct = img[0, 2] + img[2, 2] + img[1, 1] + img[1, 3]
    diag = img[0, 1] + img[0, 3] + img[2, 1] + img[2, 3]
    assert idx.tolist() == [6] and sorted(src.tolist()) == [1, 2, 3, 5, 7, 9, 10, 11]  # its 8 neighbours
    assert float(P @ img.reshape(-1)[src]) == pytest.approx(float(direct / 6 + diag / 12), abs=1e-14)
    # a 2 × 2 square, in the corner and in the middle, against the hand-written solve
    for corner in ((0, 0), (1, 1), (2, 2)):
        rem = [(corner[0] + a, corner[1] + b) for a in (0, 1) for b in (0, 1)]
        m = torch.zeros(4, 4, dtype=torch.bool)
        for p in rem:
            m[p] = True
        law = ImputedSquareRemoval((2, 2), noise=0.0)
        draws = torch.cat([m.double().view(1, 1, 4, 4), torch.zeros(1, 1, 4, 4, dtype=torch.float64)], 1)
        got = law.perturbed(img.view(1, 1, 4, 4), draws)[0, 0, 0].numpy()
        np.testing.assert_allclose(got, _impute_by_hand(img.numpy(), rem), rtol=0, atol=1e-13)
        I = law.apply(img.view(1, 1, 4, 4), draws)[0, 0, 0]
        assert (I[~m] == 0).all()  # kept pixels are not perturbed
    # harmonic interpolation keeps a linear ramp where the whole 8-neighbourhood is inside the image
    r6 = torch.arange(6, dtype=torch.float64)
    ramp = 0.3 * r6.view(-1, 1) - 0.2 * r6.view(1, -1) + 1
    m = torch.zeros(6, 6, dtype=torch.bool)
    m[2:4, 2:4] = True
    idx, src, P = imputation_operator(m)
    assert len(src) == 12  # the ring around the 2 × 2 square
    torch.testing.assert_close(P @ ramp.reshape(-1)[src], ramp.reshape(-1)[idx], rtol=0, atol=1e-13)


def test_imputed_removal_draws_noise_support_and_errors():
    from xailib.perturbations import ImputedSquareRemoval

    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 8, 8, generator=g, dtype=torch.float64)
    law = ImputedSquareRemoval((2, 4), noise=0.05)
    d1 = law.draw((3, 8, 8), 40, generator=7, dtype=torch.float64)
    assert d1.shape == (40, 4, 8, 8) and torch.equal(d1, law.draw((3, 8, 8), 40, generator=7, dtype=torch.float64))
    sides = d1[:, 0].sum((1, 2)).sqrt()
    assert ((sides >= 2) & (sides <= 4) & (sides == sides.round())).all()  # whole squares of side 2-4
    quiet = ImputedSquareRemoval((2, 4), noise=0.0)
    diff = law.perturbed(x, d1) - quiet.perturbed(x, d1)  # exactly the noise, on the square only, every channel
    mask = d1[:, :1].bool().unsqueeze(0).expand(3, 40, 3, 8, 8)
    torch.testing.assert_close(diff[mask], (0.05 * d1[:, 1:]).unsqueeze(0).expand(3, -1, -1, -1, -1)[mask])
    assert (diff[~mask] == 0).all()
    # a batch is the instances one by one (draws shared), and dot = Σ I ⊙ Φ
    I = law.apply(x, d1)
    torch.testing.assert_close(I[1:2], law.apply(x[1:2], d1))
    phi = torch.randn(x.shape, generator=g, dtype=torch.float64)
    torch.testing.assert_close(law.dot(x, d1, phi), (I * phi.unsqueeze(1)).flatten(2).sum(-1))
    # noise 0: the finite support of the squares (exact sums); with noise: none
    assert quiet.support_size((3, 8, 8)) == sum((9 - k) ** 2 for k in (2, 3, 4)) and law.support_size((3, 8, 8)) is None
    z, p = quiet.support((3, 8, 8), dtype=torch.float64)
    assert z.shape == (quiet.support_size((3, 8, 8)), 4, 8, 8) and float(p.sum()) == pytest.approx(1.0)
    # a square over the whole image: nothing to impute from, plain removal to the baseline
    whole = ImputedSquareRemoval((8, 8), noise=0.0, baseline=0.25)
    dw = whole.draw((3, 8, 8), 2, generator=0, dtype=torch.float64)
    assert (whole.perturbed(x, dw) == 0.25).all()
    for F in ((1, 1, 1), (5,), (1, 1, 6)):
        with pytest.raises(ValueError, match="2 x 2|image features"):
            law.draw(F, 3)
    for bad in (-0.1, float("nan"), True):
        with pytest.raises(ValueError, match="noise"):
            ImputedSquareRemoval(noise=bad)


def test_imputed_removal_in_infidelity_optimal_and_evaluate():
    """A linear model's gradient is exact under any law (Δf = wᵀI): INFD 0; the optimal explanation of the
    law reaches it; and an explanation's INFD does not depend on the batch size."""
    from xailib import metrics as M
    from xailib.explainers import Optimal
    from xailib.perturbations import ImputedSquareRemoval

    g = torch.Generator().manual_seed(2)
    w = torch.randn(36, generator=g, dtype=torch.float64)

    class Lin(torch.nn.Module):
        def forward(self, v):
            return v.reshape(v.shape[0], -1) @ w

    x = torch.rand(3, 1, 6, 6, generator=g, dtype=torch.float64)
    law = ImputedSquareRemoval((1, 3), noise=0.01)
    grad = w.view(1, 1, 6, 6).expand_as(x)
    infd = M.infidelity(Lin(), grad, x, perturbation=law, n_samples=200, generator=0)
    assert infd.abs().max() < 1e-20
    opt = Optimal(Lin(), law, n_samples=400)
    assert opt.kind == "local"
    phi = opt(x, generator=0)
    assert M.infidelity(Lin(), phi, x, perturbation=law, n_samples=200, generator=3, relative=True).max() < 1e-9
    noise = torch.randn(x.shape, generator=g, dtype=torch.float64)
    a = M.infidelity(Lin(), noise, x, perturbation=law, n_samples=100, generator=1, batch_size=7)
    b = M.infidelity(Lin(), noise, x, perturbation=law, n_samples=100, generator=1, batch_size=1000)
    torch.testing.assert_close(a, b)
    assert (a > 1e-3).all()  # a random map is not faithful
    quiet = ImputedSquareRemoval((1, 3), noise=0.0)
    ev = M.evaluate(Lin(), {"noise": lambda v, t=None: noise}, x, None, {"ROAD": quiet}, n_infd=64, n_sens=0)
    exact = M.infidelity(Lin(), noise, x, perturbation=quiet, exact=True)
    torch.testing.assert_close(torch.tensor(ev.wide("INFD[ROAD]")["noise"].to_numpy()), exact)
    assert ev.summary.loc["noise", "INFD[ROAD] mc se"] == 0.0  # summed over its squares
