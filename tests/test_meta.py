"""xailib.meta: reliability of rankings and controls, against cases with known answers."""
import numpy as np
import pandas as pd
import pytest
import torch

from xailib import meta, metrics as M
from xailib.explainers import Gradient
from xailib.perturbations import NoisyBaseline, SquareRemoval


def test_kendall_w_and_mean_spearman_by_hand():
    # 3 instances rank 4 explainers: two agree, one reverses. Column rank sums 6, 7, 8, 9 around 7.5:
    # S = 5, W = 12·5 / (3²·(4³ − 4)) = 1/9; pairwise Spearman 1, −1, −1: mean −1/3 = (3W − 1)/2
    w = pd.DataFrame([[1, 2, 3, 4], [10, 20, 30, 40], [4, 3, 2, 1]], columns=list("abcd"), dtype=float)
    r = meta.ranking_concordance(w, n_boot=50)
    assert r["W"] == pytest.approx(1 / 9) and r["mean spearman"] == pytest.approx(-1 / 3)
    same = meta.ranking_concordance(pd.DataFrame([[1, 2, 3]] * 5, columns=list("abc"), dtype=float), n_boot=50)
    assert same["W"] == pytest.approx(1.0) and same["mean spearman"] == pytest.approx(1.0)


def test_a_metric_that_ranks_at_random_gets_no_concordance():
    rng = np.random.default_rng(0)
    w = pd.DataFrame(rng.normal(size=(400, 6)), columns=[f"e{k}" for k in range(6)])
    r = meta.ranking_concordance(w, n_boot=300)
    assert abs(r["mean spearman"]) < 0.02 and r["mean spearman low"] < 0 < r["mean spearman high"]
    assert r["W"] == pytest.approx(1 / 400, abs=0.01)
    # a metric with a real order plus noise: clearly above 0
    signal = w + np.arange(6) * 1.0
    assert meta.ranking_concordance(signal, n_boot=300)["mean spearman low"] > 0.3


def test_rank_agreement_between_orderings():
    rng = np.random.default_rng(1)
    base = pd.DataFrame(rng.normal(size=(30, 5)) + np.arange(5), columns=list("abcde"))
    assert meta.rank_agreement(base, base + 0.01, n_boot=100)["spearman"] == pytest.approx(1.0)
    rev = meta.rank_agreement(base, -base, n_boot=100)
    assert rev["spearman"] == pytest.approx(-1.0) and rev["kendall"] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="at least 3 explainers"):
        meta.rank_agreement(base[["a", "b"]], base[["a", "b"]])


def test_sobel_map_closed_form_and_constant_and_random_controls():
    j = torch.arange(8, dtype=torch.float64)
    x = (0.1 * j).view(1, 1, 1, 8).expand(2, 3, 8, 8).contiguous()  # a horizontal ramp, 3 channels
    s = meta.SobelMap()(x)
    assert s.shape == x.shape
    torch.testing.assert_close(s[:, :, 1:-1, 1:-1], torch.full_like(s[:, :, 1:-1, 1:-1], 0.8))  # 8a, a = 0.1
    c = meta.ConstantMap(2.0)(x)
    assert (c == 2).all()
    r1, r2 = meta.RandomMap(seed=3), meta.RandomMap(seed=3)
    y = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(r1(y), r2(y))  # seeded: a function of the input
    torch.testing.assert_close(r1(y[2:3]), r1(y)[2:3])  # whatever the batch
    assert not torch.allclose(r1(y + 1e-9), r1(y))  # another input, an unrelated map
    assert abs(float(r1(y).std()) - 1) < 0.2 and not torch.equal(r1(y, generator=5), r1(y))
    with pytest.raises(ValueError, match="value"):
        meta.ConstantMap(0.0)
    with pytest.raises(ValueError, match="images"):
        meta.SobelMap()(torch.rand(2, 5))


def test_a_planted_perfect_explanation_of_a_linear_model_beats_every_control():
    g = torch.Generator().manual_seed(0)

    class Lin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(36, 3, dtype=torch.float64)

        def forward(self, v):
            return self.lin(v.reshape(v.shape[0], -1))

    torch.manual_seed(0)
    model = Lin()
    x = torch.rand(12, 1, 6, 6, generator=g, dtype=torch.float64)
    t = torch.arange(12) % 3
    explainers = {"Grad": Gradient(model), "random": meta.RandomMap(), "constant": meta.ConstantMap(),
                  "sobel": meta.SobelMap(), "Grad (random net)": meta.randomized_network(Gradient, model)}
    ev = M.evaluate(model, explainers, x, t, {"NB": NoisyBaseline(), "Square": SquareRemoval((1, 3))},
                    n_infd=128, n_sens=0, generator=0)
    controls = ["random", "constant", "sobel", "Grad (random net)"]
    for law in ("NB", "Square"):
        rates = meta.control_rates(ev, f"INFD[{law}]", controls)
        assert list(rates.index) == ["Grad"]
        assert (rates.loc["Grad", controls] == 0).all(), rates  # the gradient of a linear model is exact
        assert (rates.loc["Grad", [f"{c} high" for c in controls]] < 0.3).all()
    v = meta.control_verdicts(ev, ["INFD[NB]", "INFD[Square]"], controls)
    assert len(v) == 2 * 4 and (v["verdict"] == "prefers the explainer").all()  # 0 of 12: p = 2⁻¹¹, Holm × 8
    assert v["p"].iloc[0] == pytest.approx(2 * 0.5**12)
    # a planted metric that prefers a control on every instance, and one that cannot tell
    w = pd.DataFrame({"E": np.ones(12), "better": np.zeros(12), "coin": np.r_[np.zeros(6), 2 * np.ones(6)]})
    got = meta.control_verdicts(type("Ev", (), {"wide": lambda self, m: w, "per_instance": None})(), ["m"],
                                ["better", "coin"]).set_index("control")["verdict"]
    assert got["better"] == "prefers the control" and got["coin"] == "cannot tell"
    # and the controls themselves are not ranked consistently above the gradient: W of the whole table is high
    assert meta.ranking_concordance(ev, "INFD[Square]", n_boot=100)["W"] > 0.3


def test_bad_input_names_what_is_wrong():
    w = pd.DataFrame({"only": [1.0, 2.0]})
    with pytest.raises(ValueError, match="at least 2 explainers"):
        meta.ranking_concordance(w)
    with pytest.raises(ValueError, match="at least 2 instances"):
        meta.ranking_concordance(pd.DataFrame({"a": [1.0], "b": [2.0]}))
    with pytest.raises(ValueError, match="controls"):
        meta.control_rates(pd.DataFrame({"a": [1.0], "b": [2.0]}), controls=["c"])
    with pytest.raises(TypeError, match="values"):
        meta.ranking_concordance([[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="metric"):
        meta.ranking_concordance(type("E", (), {"wide": None, "per_instance": None})())
    with pytest.raises(ValueError, match="no parameters"):
        meta.randomized_network(Gradient, torch.nn.Flatten())
