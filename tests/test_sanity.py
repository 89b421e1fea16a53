"""Layer randomisation and similarity scores of xailib.sanity (closed forms and planted errors)."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr

from xailib import sanity
from xailib.explainers import Gradient
from xailib.models import MnistCNN


def _net(seed=0):
    torch.manual_seed(seed)
    return MnistCNN(c1=4, c2=4, hidden=8).eval()


def test_layers_in_order():
    assert list(sanity.layers(_net())) == ["features.0", "features.3", "classifier.1", "classifier.3"]


def test_randomized_copy_shares_nothing_and_original_unchanged():
    m = _net()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    r = sanity.randomize(m, list(sanity.layers(m)), seed=3)
    ptrs = {p.data_ptr() for p in m.parameters()}
    assert not ptrs & {p.data_ptr() for p in r.parameters()}
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k  # original untouched
        assert not torch.equal(v, r.state_dict()[k]), k  # every tensor redrawn
    # a change to the copy does not reach the original
    with torch.no_grad():
        next(r.parameters()).add_(1.0)
    assert torch.equal(next(m.parameters()), before["features.0.weight"])


def test_randomize_only_named_layers_and_default_init_scale():
    m = _net()
    r = sanity.randomize(m, ["classifier.3"], seed=0)
    sd, sr = m.state_dict(), r.state_dict()
    for k in sd:
        same = torch.equal(sd[k], sr[k])
        assert same == (not k.startswith("classifier.3")), k
    w = r.classifier[3].weight
    bound = 1 / math.sqrt(w.shape[1])
    assert w.abs().max() <= bound and w.abs().max() > 0.8 * bound
    # same layer, same seed -> same random weights whatever else is randomised
    r2 = sanity.randomize(m, ["classifier.1", "classifier.3"], seed=0)
    assert torch.equal(r2.classifier[3].weight, w)
    assert not torch.equal(sanity.randomize(m, ["classifier.3"], seed=1).classifier[3].weight, w)


def test_cascade_and_independent_stages():
    m = _net()
    c = sanity.cascade(m)
    assert list(c)[0] == "trained" and "all random" in list(c)[-1] and len(c) == 5
    names = list(sanity.layers(m))
    for k, (stage, net) in enumerate(c.items()):
        changed = [n for n in names if not torch.equal(dict(net.named_modules())[n].weight, dict(m.named_modules())[n].weight)]
        assert changed == names[len(names) - k:], stage  # the top k layers
    ind = sanity.independent(m)
    assert len(ind) == 4 and list(ind)[0] == "independent (classifier.3)"
    with pytest.raises(ValueError, match="which"):
        sanity.randomize(m, ["nope"])


def test_rank_ties_and_spearman_against_scipy():
    a = torch.tensor([[3.0, 1.0, 1.0, 2.0, 5.0]])
    assert torch.allclose(sanity.rank(a), torch.tensor([[4.0, 1.5, 1.5, 3.0, 5.0]], dtype=torch.float64))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 1, 6, 6, generator=g).round(decimals=1)
    y = x + torch.randn(5, 1, 6, 6, generator=g)
    ours = sanity.spearman(x, y)
    ref = [spearmanr(x[i].flatten(), y[i].flatten())[0] for i in range(5)]
    assert np.allclose(ours.numpy(), ref)
    assert torch.allclose(sanity.spearman(x, 2 * x + 1), torch.ones(5, dtype=torch.float64))
    assert torch.allclose(sanity.spearman(x, -x), -torch.ones(5, dtype=torch.float64))


def test_ssim_closed_forms():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 1, 28, 28, generator=g)
    assert torch.allclose(sanity.ssim(a, a), torch.ones(3, dtype=torch.float64))
    # constant images c, d: variances 0, so SSIM = (2cd + C1) / (c² + d² + C1) exactly
    c, d = 0.2, 0.7
    C1 = 0.01**2
    s = sanity.ssim(torch.full((1, 1, 16, 16), c, dtype=torch.float64), torch.full((1, 1, 16, 16), d, dtype=torch.float64))
    assert s.item() == pytest.approx((2 * c * d + C1) / (c * c + d * d + C1), rel=1e-9)
    # a checkerboard against its inverse: equal local means, covariance = -variance, so SSIM ~ -1
    chk = (torch.arange(16).view(-1, 1) + torch.arange(16).view(1, -1)) % 2
    p = 0.5 + 0.5 * chk.float() - 0.25
    q = 1.0 - p
    sq = sanity.ssim(p[None, None], q[None, None]).item()
    assert sq < -0.9
    # symmetric, and decreases with added noise
    b = (a + 0.3 * torch.rand(3, 1, 28, 28, generator=g)).clamp(0, 1)
    assert torch.allclose(sanity.ssim(a, b), sanity.ssim(b, a))
    assert (sanity.ssim(a, b) < 1).all()


def test_compare_verdicts_planted():
    """A map that ignores the network (x itself) fails; the gradient of a randomised net changes."""
    m = _net()
    nets = sanity.cascade(m)
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(1))

    class Input:
        kind = "local"

        def __call__(self, x, target=None):
            return x.clone()

    maps, table = sanity.compare(lambda net: {"input": Input(), "Grad": Gradient(net)}, nets, x, 0, progress=False)
    assert set(table.columns) == {"stage", "explainer", "instance", "metric", "value"}
    summ = sanity.summarize(table)
    assert summ.loc[("trained", "Grad"), "spearman |phi|"] == pytest.approx(1.0)
    v = sanity.verdicts(table)
    assert v.loc["input", "verdict"] == "fails"
    assert v.loc["input", "spearman |phi|"] == pytest.approx(1.0)
    assert v.loc["Grad", "spearman |phi|"] < 0.9


def test_noise_floor_makes_noisy_explainer_inconclusive():
    """A planted explainer that returns pure noise 'passes' without the noise floor, not with it."""
    from xailib import make_generator

    m = _net()
    nets = sanity.cascade(m)
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(2))

    calls = iter(range(100, 200))

    class Noise:  # fresh draws at every call, as a sampled explainer with too few samples
        kind = "local"

        def __call__(self, x, target=None, *, generator=None):
            g = make_generator(next(calls) if generator is None else generator, stream="Noise")
            return torch.randn(x.shape, generator=g)

    make = lambda net: {"noise": Noise(), "Grad": Gradient(net)}  # noqa: E731
    _, plain = sanity.compare(make, nets, x, 0, progress=False)
    assert sanity.verdicts(plain).loc["noise", "verdict"] == "passes"
    _, table = sanity.compare(make, nets, x, 0, progress=False, repeat_seed=1)
    v = sanity.verdicts(table)
    assert v.loc["noise", "verdict"] == "inconclusive (noisy)" and abs(v.loc["noise", "noise floor"]) < 0.2
    assert v.loc["Grad", "noise floor"] == pytest.approx(1.0)  # deterministic: identical repeat


def test_memo_and_metric_summary():
    m = _net()
    g = Gradient(m)
    x = torch.rand(2, 1, 28, 28)
    t = torch.tensor([0, 1])
    phi = torch.zeros_like(x)
    memo = sanity.Memo(g, x, t, phi)
    assert memo(x, t) is phi
    assert torch.allclose(memo(x + 0.1, t), g(x + 0.1, t))
    df = pd.DataFrame({"a": [1]})

    class Ev:
        summary = df

        def wide(self, metric):
            return {"SENS_max": df}[metric]

    assert sanity.metric_summary(Ev()) is df
    assert sanity.metric_per_instance(Ev(), "SENS_max") is df


class _Blocks(torch.nn.Module):
    """A wrapped network with two blocks of two layers and a head: names ``model.stem``, ``model.blocks.i.j``, ``model.head``."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        lin = torch.nn.Linear
        inner = torch.nn.Module()
        inner.stem = lin(4, 4)
        inner.blocks = torch.nn.Sequential(torch.nn.Sequential(lin(4, 4), lin(4, 4)), torch.nn.Sequential(lin(4, 4), lin(4, 4)))
        inner.head = lin(4, 3)
        self.model = inner

    def forward(self, x):
        m = self.model
        return m.head(m.blocks(m.stem(x)))


def test_groups_by_block_and_block_cascade():
    m = _Blocks()
    assert list(sanity.groups(m)) == list(sanity.layers(m))  # depth None: one unit per layer
    g = sanity.groups(m, depth=2)  # the shared "model." is dropped
    assert g == {"stem": ["model.stem"], "blocks.0": ["model.blocks.0.0", "model.blocks.0.1"],
                 "blocks.1": ["model.blocks.1.0", "model.blocks.1.1"], "head": ["model.head"]}
    assert list(sanity.groups(m, depth=1)) == ["stem", "blocks", "head"]
    c = sanity.cascade(m, depth=2)
    assert list(c) == ["trained", "cascade 1 (head)", "cascade 2 (head..blocks.1)", "cascade 3 (head..blocks.0)",
                       "cascade 4 (all random)"]
    layer_order = list(sanity.layers(m))
    expect = [[], ["model.head"], ["model.blocks.1.0", "model.blocks.1.1", "model.head"],
              layer_order[1:], layer_order]
    for (stage, net), want in zip(c.items(), expect):
        mods, orig = dict(net.named_modules()), dict(m.named_modules())
        changed = [n for n in layer_order if not torch.equal(mods[n].weight, orig[n].weight)]
        assert changed == want, stage  # whole blocks, from the top
    ind = sanity.independent(m, depth=2)
    assert list(ind) == ["independent (head)", "independent (blocks.1)", "independent (blocks.0)", "independent (stem)"]
    net = ind["independent (blocks.0)"]
    assert torch.equal(net.model.blocks[1][0].weight, m.model.blocks[1][0].weight)
    assert not torch.equal(net.model.blocks[0][1].weight, m.model.blocks[0][1].weight)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="depth"):
            sanity.groups(m, depth=bad)


def test_verdicts_student_t_quantile_for_few_instances():
    """N = 3 similarities 0.2, 0.3, 0.4 (se 0.058): z = 2 passes (0.42 < 0.5), the t₂ quantile 4.53 does not (0.56)."""
    from scipy.stats import norm, t as student_t

    vals = {"all": [0.2, 0.3, 0.4], "tr": [1.0, 1.0, 1.0]}
    rows = [(st, "E", i, m, v) for st, key in (("cascade 1 (all random)", "all"), ("trained", "tr"))
            for i, v in enumerate(vals[key]) for m in sanity.SIMILARITIES]
    table = pd.DataFrame(rows, columns=["stage", "explainer", "instance", "metric", "value"])
    se = np.std(vals["all"], ddof=1) / math.sqrt(3)
    assert sanity.verdicts(table, z=2).loc["E", "verdict"] == "passes"
    v = sanity.verdicts(table)  # z="t" by default
    q = student_t.ppf(norm.cdf(2.0), 2)
    assert v.loc["E", "quantile"] == pytest.approx(q)
    assert v.loc["E", "upper"] == pytest.approx(0.3 + q * se)
    assert v.loc["E", "verdict"] == "fails"
    with pytest.raises(ValueError, match="z"):
        sanity.verdicts(table, z="normal")
    with pytest.raises(ValueError, match="z"):
        sanity.verdicts(table, z=float("nan"))
