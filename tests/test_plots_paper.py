"""Unit tests of xailib.paper (printed Table 4), xailib.claims (claim checker), xailib.experiments and xailib.plots."""
import matplotlib

matplotlib.use("Agg")

import math

import numpy as np
import pandas as pd
import pytest
import torch

from xailib import claims, experiments, paper, plots


# ------------------------------------------------------------------ paper
def test_table4_as_printed():
    t = paper.table4()
    assert list(t.index) == ["Grad", "Grad-SG", "IG", "IG-SG", "GBP", "GBP-SG", "SHAP", "Square"]
    assert t.loc["Grad", "SENS (regular)"] == 2.32  # the OCR's "232"
    assert t.loc["Square", "INFD (robust)"] == 0.06
    reg = paper.table4("regular")
    assert list(reg.columns) == ["SENS", "INFD"]
    assert reg.loc["GBP", "SENS"] == 2.36
    t.iloc[0, 0] = -1  # a copy
    assert paper.TABLE4.iloc[0, 0] == 2.32
    with pytest.raises(ValueError, match="network"):
        paper.table4("cifar")


def test_claims_hold_on_the_printed_table():
    c = claims.check_claims(paper.table4("regular"), paper.table4("robust"), sens="SENS", infd="INFD",
                            own_law={"Square": "INFD"})
    assert c["holds"].all(), c[~c["holds"]]
    # 3 SG pairs x 2 metrics x 2 networks + 1 own-law x 2 networks + 8 methods x 2 metrics
    assert len(c) == 12 + 2 + 16
    assert set(c["n"]) == {0}
    assert c["se"].isna().all()
    s = claims.summarize_claims(c)
    assert s["all hold"].all()
    assert claims.verdict_counts(c, "SmoothGrad") == {"holds": 12, "inconclusive": 0, "fails": 0, "total": 12}
    assert claims.verdict_counts(c, "robust", metric="SENS")["total"] == 8


def test_verdict_counts_counts_each_verdict():
    c = pd.DataFrame({"claim": ["SmoothGrad lowers", "SmoothGrad lowers", "SmoothGrad lowers", "robust network"],
                      "metric": ["SENS_max", "INFD[NB]", "SENS_max", "SENS_max"],
                      "verdict": ["holds", "fails", "inconclusive", "holds"]})
    assert claims.verdict_counts(c) == {"holds": 2, "inconclusive": 1, "fails": 1, "total": 4}
    assert claims.verdict_counts(c, "SmoothGrad", metric="SENS_max") == {"holds": 1, "inconclusive": 1, "fails": 0,
                                                                        "total": 2}
    with pytest.raises(KeyError, match="network"):
        claims.verdict_counts(c, network="robust")
    with pytest.raises(TypeError):
        claims.verdict_counts(c.drop(columns="verdict"))


def _per_instance(means: dict, n=40, noise=0.1, seed=0, shared=None):
    rng = np.random.default_rng(seed)
    common = rng.normal(size=n) if shared is None else shared
    rows = []
    for name, (s, i) in means.items():
        e1, e2 = rng.normal(size=n), rng.normal(size=n)
        for k in range(n):
            rows.append({"explainer": name, "instance": k, "SENS": s + common[k] + noise * e1[k],
                         "INFD": i + common[k] + noise * e2[k]})
    return pd.DataFrame(rows)


def test_claims_are_paired_and_three_way():
    # big instance-to-instance variation (common), small paired differences
    df = _per_instance({"Grad": (1.0, 1.0), "Grad-SG": (0.9, 1.0), "IG": (1.0, 1.0), "IG-SG": (1.3, 1.0)}, noise=0.01)
    c = claims.check_claims(df, sens="SENS", infd="INFD").set_index(["lower", "metric"])
    assert c.loc[("Grad-SG", "SENS"), "verdict"] == "holds"  # 0.1 gap, paired se ~ 0.002
    assert c.loc[("IG-SG", "SENS"), "verdict"] == "fails"
    assert c.loc[("Grad-SG", "INFD"), "verdict"] == "inconclusive"
    assert not c.loc[("Grad-SG", "INFD"), "holds"]
    assert c.loc[("Grad-SG", "SENS"), "n"] == 40
    assert c.loc[("Grad-SG", "SENS"), "difference"] == pytest.approx(-0.1, abs=0.01)
    # the same gap without pairing (summary) is inconclusive: instance variation dominates
    summ = claims.summary_table(df, ["SENS", "INFD"])
    c2 = claims.check_claims(summ, sens="SENS", infd="INFD").set_index(["lower", "metric"])
    assert c2.loc[("Grad-SG", "SENS"), "verdict"] == "inconclusive"


def test_own_law_and_robust_claims():
    shared = np.random.default_rng(5).normal(size=30)
    reg = _per_instance({"Grad": (2.0, 2.0), "NB": (1.0, 0.5), "Square": (1.0, 1.5)}, n=30, noise=0.01, shared=shared)
    reg["INFD (Square)"] = reg["INFD"] + np.where(reg["explainer"] == "Square", -2.0, 0.0)
    rob = reg.copy()
    rob["SENS"] -= 0.5
    rob.loc[rob["explainer"] == "NB", "INFD"] += 1.5  # robust worse for NB: 2.0 > Square 1.5
    c = claims.check_claims(reg, rob, sens="SENS", infd=["INFD"], own_law={"NB": "INFD", "Square": "INFD (Square)", "X": "INFD"},
                           smoothgrad_pairs=())
    own = c[c["claim"].str.startswith("optimal")].set_index(["network", "lower"])
    assert own.loc[("regular", "NB"), "than"] == "Square"
    assert own.loc[("regular", "NB"), "verdict"] == "holds"
    assert own.loc[("robust", "NB"), "verdict"] == "fails"
    rb = c[c["claim"].str.startswith("robust")].set_index(["metric", "lower"])
    assert rb.loc[("SENS", "Grad (robust)"), "verdict"] == "holds"
    assert rb.loc[("INFD", "NB (robust)"), "verdict"] == "fails"
    assert rb.loc[("INFD", "Grad (robust)"), "verdict"] == "inconclusive"  # zero difference


def test_check_claims_validates():
    with pytest.raises(TypeError, match="df_regular"):
        claims.check_claims([1, 2])
    with pytest.raises(ValueError, match="df_regular"):
        claims.check_claims(pd.DataFrame())
    with pytest.raises(ValueError, match="z"):
        claims.check_claims(paper.table4("regular"), z=-1)
    with pytest.raises(ValueError, match="per-instance"):
        claims.summary_table(paper.table4("regular"), ["SENS"])


def test_summary_and_side_by_side():
    df = _per_instance({"Square": (1.0, 1.0), "Grad": (2.0, 2.0), "Zed": (0.0, 0.0)}, n=10)
    s = claims.summary_table(df, ["SENS", "INFD"])
    assert list(s.index) == ["Grad", "Square", "Zed"]
    assert list(s.columns) == ["SENS", "SENS se", "INFD", "INFD se"]
    w = df[df.explainer == "Grad"]["SENS"]
    assert s.loc["Grad", "SENS"] == pytest.approx(w.mean())
    assert s.loc["Grad", "SENS se"] == pytest.approx(w.std() / np.sqrt(10))
    sbs = claims.side_by_side(s, "regular", {"SENS": "SENS", "INFD": "INFD"})
    assert sbs.loc["Grad", "SENS paper"] == 2.32
    assert np.isnan(sbs.loc["Zed", "INFD paper"])
    # index levels work as well as columns
    s2 = claims.summary_table(df.set_index(["explainer", "instance"]), ["SENS"])
    assert s2.loc["Grad", "SENS"] == pytest.approx(s.loc["Grad", "SENS"])


# ------------------------------------------------------------------ plots
def test_zscore():
    x = torch.randn(3, 1, 5, 5) * 7 + 2
    z = plots.zscore(x)
    assert z.shape == (3, 5, 5)
    np.testing.assert_allclose(z.reshape(3, -1).mean(1), 0, atol=1e-12)
    np.testing.assert_allclose(z.reshape(3, -1).std(1), 1, atol=1e-12)
    assert (plots.zscore(np.ones((4, 4))) == 0).all()
    assert (plots.zscore(np.full((4, 4), 1e-20)) == 0).all() and (plots.zscore(np.full((4, 4), 7e5)) == 0).all()
    tiny = plots.zscore(1e-16 * x)  # tiny but varying (a randomised network's gradient): shown, not blanked
    assert np.allclose(tiny, z)
    with pytest.raises(ValueError, match="maps"):
        plots.zscore(np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        plots.zscore(np.full((2, 2), np.nan))


def test_saliency_grid_and_sweep():
    import matplotlib.pyplot as plt

    x = torch.rand(2, 1, 6, 6)
    fig = plots.saliency_grid(x, {"Grad": torch.randn(2, 1, 6, 6), "NB": torch.randn(2, 1, 6, 6)},
                              row_labels=["a", "b"], title="t")
    assert len(fig.axes) == 2 * 3 + 1  # + colourbar
    assert fig.axes[-1].get_ylabel() == "saliency (z-score)"
    plt.close(fig)
    fig = plots.saliency_grid(x, {"Grad": torch.randn(2, 1, 6, 6)}, transpose=True)
    assert fig.axes[0].get_ylabel() == "input"
    plt.close(fig)
    with pytest.raises(ValueError, match="shape"):
        plots.saliency_grid(x, {"Grad": torch.randn(3, 1, 6, 6)})
    with pytest.raises(ValueError, match="row_labels"):
        plots.saliency_grid(x, {"Grad": torch.randn(2, 1, 6, 6)}, row_labels=["a"])
    df = pd.DataFrame({"r": [0.1, 0.2], "INFD": [1.0, 0.5], "INFD_se": [0.1, 0.1], "SENS": [1, 2]})
    fig = plots.sweep_plot(df, "r", ["INFD", "SENS"], xlabel="radius")
    assert fig.axes[0].get_xlabel() == "radius"
    plt.close(fig)
    ax = plots.grouped_bars({"reg": df.set_index("r"), "rob": df.set_index("r")}, "INFD", log=True)
    assert ax.get_yscale() == "log"
    plt.close("all")


def test_cascade_curves_plot_the_summary_means_and_two_se():
    import matplotlib.pyplot as plt

    from xailib import sanity

    rows = [(st, e, i, m, v) for st, base in (("trained", 1.0), ("cascade 1 (all random)", 0.2))
            for e in ("A", "B") for i, v in enumerate((base - 0.1, base + 0.1)) for m in sanity.SIMILARITIES]
    summ = sanity.summarize(pd.DataFrame(rows, columns=["stage", "explainer", "instance", "metric", "value"]))
    fig = plots.cascade_curves(summ, ["trained", "cascade 1 (all random)"], ["A", "B"], title="t")
    assert len(fig.axes) == 3 and fig.axes[0].get_ylabel() == "similarity to the trained network's map"
    line = fig.axes[0].lines[0]
    assert np.allclose(line.get_ydata(), [1.0, 0.2])  # the means, stage by stage
    caps = fig.axes[0].containers[0]  # the error bar of A: ± 2 se (se = 0.1 for two values ± 0.1)
    seg = caps.lines[2][0].get_segments()[0]
    assert np.isclose(seg[1][1] - seg[0][1], 4 * 0.1)
    plt.close(fig)
    with pytest.raises(ValueError, match="no row"):
        plots.cascade_curves(summ, ["trained", "cascade 2"], ["A"])
    with pytest.raises(ValueError, match="columns"):
        plots.cascade_curves(summ, ["trained"], ["A"], metrics=["kendall"])


def test_claims_on_an_evaluate_table():
    from xailib import explainers as E, metrics as M, perturbations as P
    from xailib.models import MLP

    torch.manual_seed(0)
    model = MLP(16, (8,), 3).eval()
    x = torch.rand(6, 1, 4, 4)
    laws = {"NB": P.NoisyBaseline(), "Square": P.SquareRemoval(sizes=(1, 2))}
    ex = {
        "Grad": E.Gradient(model),
        "Grad-SG": E.SmoothGrad(E.Gradient(model), n_samples=8),
        "NB": E.Optimal(model, laws["NB"], n_samples=200),
        "Square": E.Optimal(model, laws["Square"], n_samples=200),
    }
    table = M.evaluate(model, ex, x, 1, perturbations=laws, n_infd=50, n_sens=3)
    long = claims.long_form(table, ["SENS_max", "INFD[NB]", "INFD[Square]"])
    assert len(long) == 4 * 6 and list(long.columns[:2]) == ["explainer", "instance"]
    assert long[long.explainer == "Square"]["INFD[NB]"].isna().all()  # global under a continuous law
    assert long[long.explainer == "Grad"]["SENS_max"].tolist() == pytest.approx(table.wide("SENS_max")["Grad"].tolist())
    assert claims.long_form(table.per_instance, ["SENS_max"]).equals(long[["explainer", "instance", "SENS_max"]])
    s = claims.summary_table(table, ["SENS_max", "INFD[Square]"])
    assert s.loc["Grad", "SENS_max"] == pytest.approx(table.summary.loc["Grad", "SENS_max"])
    assert s.loc["NB", "INFD[Square] se"] == pytest.approx(table.summary.loc["NB", "INFD[Square] se"])
    c = claims.check_claims(table, table)
    assert set(c["metric"]) == {"SENS_max", "INFD[NB]", "INFD[Square]"}
    own = c[c.claim.str.startswith("optimal")]
    assert set(own["lower"]) == {"NB", "Square"}
    assert "Square" not in set(own[own.metric == "INFD[NB]"]["than"])  # NaN entries are skipped
    rob = c[c.claim.str.startswith("robust")]
    assert (rob["difference"] == 0).all() and (rob["verdict"] == "inconclusive").all()
    with pytest.raises(ValueError, match="per-instance"):
        claims.long_form(paper.table4("regular"))
    # mean ± total se: the total combines the spread over digits with the Monte-Carlo error
    tot = claims.with_total_se(table, ["SENS_max", "INFD[NB]"])
    assert list(tot.columns) == ["SENS_max", "SENS_max ± total", "INFD[NB]", "INFD[NB] ± total"]
    g = table.summary.loc["Grad-SG"]
    assert tot.loc["Grad-SG", "SENS_max ± total"] == pytest.approx(np.hypot(g["SENS_max se"], g["SENS_max mc se"]))
    assert tot.loc["Grad-SG", "SENS_max ± total"] > g["SENS_max se"]  # SmoothGrad's own draws add error
    assert claims.with_total_se(table.summary, ["SENS_max"]).equals(tot[["SENS_max", "SENS_max ± total"]])
    with pytest.raises(ValueError, match="INFD\\[Occlusion\\]"):
        claims.with_total_se(table, ["INFD[Occlusion]"])
    with pytest.raises(TypeError, match="summary DataFrame"):
        claims.with_total_se([1, 2], ["SENS_max"])


def test_settings_explainers_headline_and_projection():
    from xailib import metrics as M
    from xailib.models import MLP

    s = experiments.mnist_settings("default")
    assert experiments.mnist_settings("paper")["n_opt"] == 20000 and experiments.mnist_settings("paper")["n_sens"] == 50
    assert set(experiments.settings_table().columns) == {"meaning", "default", "paper", "this run"}
    torch.manual_seed(0)
    model = MLP(16, (8,), 3).eval()
    small = dict(s, n_sg=4, ig_steps=4, n_opt=100, n_shap=100, square_sizes=(1, 2))
    ex = experiments.make_explainers(model, small)
    assert list(ex) == list(paper.METHODS)
    assert {n: e.kind for n, e in ex.items()}["SHAP"] == "global"
    assert experiments.make_explainers(model, small, sg_radius=0.5, names=["Grad-SG"])["Grad-SG"].radius == 0.5
    with pytest.raises(ValueError, match="unknown"):
        experiments.make_explainers(model, small, names=["Saliency"])
    x = torch.rand(4, 1, 4, 4)
    sub = {n: ex[n] for n in ("Grad", "Grad-SG", "SHAP", "Square")}
    table = M.evaluate(model, sub, x, 0, perturbations=experiments.laws(small), n_infd=30, n_sens=2)
    h = claims.headline(table, {n: e.kind for n, e in sub.items()})
    assert h.loc["Grad", "law"] == "NB" and h.loc["SHAP", "law"] == "Square"
    assert h.loc["SHAP", "INFD"] == table.summary.loc["SHAP", "INFD[Square]"]
    mc = table.wide("INFD[NB] mc_se")["Grad"].to_numpy()
    assert h.loc["Grad", "INFD mc se"] == pytest.approx(np.sqrt(np.mean(mc**2) / len(mc)))
    assert h.loc["Grad", "INFD mc se"] > 0
    p = claims.paired(table, "SENS_max", "Grad-SG", "Grad")
    assert p["n"] == 4 and p["verdict"] in ("a lower", "a higher", "inconclusive")
    zeros = torch.zeros_like(x)
    energy = {k: M.infidelity(model, zeros, x, 0, law, n_samples=30).tolist() for k, law in experiments.laws(small).items()}
    rel = claims.relative_infidelity(table, energy)
    g = rel[rel.explainer == "Grad"]["rINFD[NB]"].to_numpy()
    np.testing.assert_allclose(g, table.wide("INFD[NB]")["Grad"].to_numpy() / np.array(energy["NB"]))
    assert (rel["rINFD[Square]"].dropna() <= 1 + 1e-9).all()  # optimal scaling never does worse than Φ = 0
    proj = experiments.project_time({"Grad": 0.01, "IG-SG": 0.1, "Square": 0.5, "NB": 0.2}, 1e-4,
                                    paper_seconds={"NB": 3.0})
    # joint IG-SG: cost ∝ n_igsg (400 / 480), not n_sg × ig_steps; 50 digits × (1 + 2 reps × 50 neighbours)
    assert proj.loc["IG-SG", "paper [min]"] == pytest.approx(50 * 101 * 0.1 * (400 / 480) / 60)
    assert proj.loc["IG-SG", "default [min]"] == pytest.approx(20 * 21 * 0.1 / 60)
    assert proj.loc["Square", "paper [min]"] == pytest.approx(50 * 101 * 0.5 / 60)  # exact: same cost per explanation
    assert proj.loc["NB", "paper [min]"] == pytest.approx(50 * 101 * 3.0 / 60)      # measured at the paper's count
    # INFD: NB sampled (n_infd draws, the same points for all 50 digits), Square exact over its 5,605 squares
    assert proj.loc["INFD (both laws)", "paper [min]"] == pytest.approx((1000 + 50 * 5605) * 1e-4 / 60)
    r = experiments.sample_ratios(experiments.mnist_settings("default"), experiments.mnist_settings("paper"))
    assert r["Square"] == 1.0 and r["IG-SG"] == pytest.approx(400 / 480) and r["NB"] == 20
    old = {k: v for k, v in s.items() if k not in ("n_igsg", "sens_reps", "square_weighting")}  # older settings dicts
    assert experiments.make_explainers(model, dict(old, n_sg=4, ig_steps=4), names=["IG-SG"])["IG-SG"].n_samples == 16
    assert proj.loc["total", "default [min]"] == pytest.approx(proj["default [min]"].iloc[:-1].sum())


def test_own_law_convergence():
    def frame(vals):
        return pd.DataFrame([{"explainer": e, "instance": i, "INFD[NB]": v + 0.01 * i}
                             for e, v in vals.items() for i in range(5)])

    table = frame({"Grad": 1.0, "IG": 0.8, "NB": 2.0})
    opt = {100: frame({"NB": 1.5}), 1000: frame({"NB": 0.5})}
    c = claims.own_law_convergence(table, opt, own_law={"NB": "INFD[NB]"}).set_index("n_samples")
    assert (c["runner-up"] == "IG").all()
    assert c.loc[100, "verdict"] == "fails" and c.loc[1000, "verdict"] == "holds"
    assert c.loc[1000, "difference"] == pytest.approx(-0.3)


def test_prose_helpers_and_evaluation_settings():
    assert experiments.as_words([]) == "none"
    assert experiments.as_words(["Grad"]) == "Grad"
    assert experiments.as_words(["Grad", "IG", "GBP"]) == "Grad, IG and GBP"
    s = experiments.mnist_settings("paper")
    assert experiments.evaluation_settings(s, 3) == {"n_infd": 1000, "n_sens": 50, "sens_reps": 2, "radius": 0.1,
                                                     "generator": 3}
    with pytest.raises(ValueError, match="n_pgd"):
        experiments.networks_table({}, torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long), 0)


def test_holm_hand_computed():
    # m = 4: sorted 0.01, 0.02, 0.03, 0.5 -> 4·0.01 = 0.04, 3·0.02 = 0.06, 2·0.03 = 0.06, 1·0.5 = 0.5
    adj = claims.holm([0.03, 0.5, 0.01, 0.02])
    np.testing.assert_allclose(adj, [0.06, 0.5, 0.04, 0.06])
    # monotone step-down: a later smaller product is lifted to the running max; caps at 1; NaN not counted
    np.testing.assert_allclose(claims.holm([0.001, 0.04, 0.045, float("nan")]), [0.003, 0.08, 0.08, np.nan])
    np.testing.assert_allclose(claims.holm([0.4, 0.6]), [0.8, 0.8])
    np.testing.assert_allclose(claims.holm([0.9, 0.8]), [1.0, 1.0])
    assert claims.holm([]).size == 0
    with pytest.raises(ValueError, match="pvalues"):
        claims.holm([0.5, 1.5])


def _frame(vals, mc=None):
    """Per-instance frame for two explainers; ``mc``: summary frame of Monte-Carlo errors."""
    rows = [{"explainer": e, "instance": i, "INFD[NB]": v[i]} for e, v in vals.items() for i in range(len(v))]
    return pd.DataFrame(rows)


class _FakeEvaluation:
    """Duck-typed Evaluation: tidy per-instance values and a summary with ``mc se`` columns."""

    def __init__(self, vals, mc):
        self.per_instance = pd.DataFrame([{"explainer": e, "instance": i, "metric": "INFD[NB]", "value": x}
                                          for e, v in vals.items() for i, x in enumerate(v)])
        self.summary = pd.DataFrame({"INFD[NB]": {e: float(np.mean(v)) for e, v in vals.items()},
                                     "INFD[NB] mc se": mc})


def test_claims_total_se_and_holm_verdicts():
    base = np.array([1.0, 1.1, 0.9, 1.05, 0.95, 1.02])
    # NB lower than Grad by 0.1 on every instance: paired se 0, so only the Monte-Carlo part limits
    vals = {"Grad": base, "NB": base - 0.1}
    quiet = claims.check_claims(_FakeEvaluation(vals, {"Grad": 0.0, "NB": 0.0}), own_law={"NB": "INFD[NB]"},
                                smoothgrad_pairs=())
    assert quiet.loc[0, "verdict"] == "holds" and quiet.loc[0, "total se"] == pytest.approx(0, abs=1e-12)
    noisy = claims.check_claims(_FakeEvaluation(vals, {"Grad": 0.04, "NB": 0.03}), own_law={"NB": "INFD[NB]"},
                                smoothgrad_pairs=())
    r = noisy.iloc[0]
    assert r["mc se"] == pytest.approx(0.05) and r["total se"] == pytest.approx(0.05, abs=1e-9)
    assert r["z"] == pytest.approx(-2.0, rel=1e-6) and r["verdict"] == "inconclusive"  # |z| not > 2
    assert r["p"] == pytest.approx(0.0455, abs=1e-4)
    # Holm over a family: three rows from one table with p = 0.0455 each -> adjusted 0.1365: inconclusive
    sg = {"Grad": base, "Grad-SG": base - 0.2, "NB": base - 0.1}
    fam = claims.check_claims(_FakeEvaluation(sg, {"Grad": 0.04, "Grad-SG": 0.0, "NB": 0.03}),
                              own_law={"NB": "INFD[NB]"}, smoothgrad_pairs=[("Grad", "Grad-SG")], correction="holm")
    assert "p (Holm)" in fam.columns and len(fam) == 2
    sgrow = fam[fam.claim.str.startswith("SmoothGrad")].iloc[0]   # -0.2 / 0.04: z = -5, holds after Holm
    assert sgrow["verdict"] == "holds" and sgrow["p (Holm)"] == pytest.approx(2 * sgrow["p"])
    own = fam[fam.claim.str.startswith("optimal")].iloc[0]       # runner-up is Grad-SG: NB is higher, z = +2.5
    assert own["than"] == "Grad-SG" and own["z"] == pytest.approx(0.1 / 0.03, rel=1e-6)
    assert own["p (Holm)"] == pytest.approx(own["p"]) and own["verdict"] == "fails"
    with pytest.raises(ValueError, match="correction"):
        claims.check_claims(_FakeEvaluation(vals, {"Grad": 0, "NB": 0}), correction="bonferroni")


def test_claims_p_values_are_student_t_with_welch_satterthwaite_df():
    """Three instances: a paired difference of −0.5 with se 0.1 (z = −5) is p = 2·t₂.sf(5) = 0.038, not 6e-7."""
    from scipy.stats import t as student_t

    base = np.array([1.0, 2.0, 3.0])
    d = np.array([-0.5 - 0.1 * math.sqrt(3), -0.5, -0.5 + 0.1 * math.sqrt(3)])  # mean −0.5, sd 0.1·√3: se 0.1
    vals = {"Grad": base, "NB": base + d}
    r = claims.check_claims(_FakeEvaluation(vals, {"Grad": 0.0, "NB": 0.0}), own_law={"NB": "INFD[NB]"},
                            smoothgrad_pairs=()).iloc[0]
    assert r["n"] == 3 and r["se"] == pytest.approx(0.1) and r["z"] == pytest.approx(-5.0)
    assert r["df"] == pytest.approx(2.0)
    assert r["p"] == pytest.approx(2 * student_t.sf(5.0, 2)) and 0.03 < r["p"] < 0.04
    assert math.erfc(5 / math.sqrt(2)) < 1e-6  # what the normal law would have said
    # with a Monte-Carlo part: total² = se² + mc², df = (n − 1)(total/se)⁴ (the MC part taken as known)
    r = claims.check_claims(_FakeEvaluation(vals, {"Grad": 0.06, "NB": 0.08}), own_law={"NB": "INFD[NB]"},
                            smoothgrad_pairs=()).iloc[0]
    tot = math.sqrt(0.1**2 + 0.1**2)
    assert r["total se"] == pytest.approx(tot) and r["df"] == pytest.approx(2 * (tot / 0.1) ** 4)
    assert r["p"] == pytest.approx(2 * student_t.sf(0.5 / tot, 2 * (tot / 0.1) ** 4))
    # Holm on a planted family: ten such claims at z = −5 on 3 instances are not evidence (p·10 > 0.05),
    # where the normal law would call all ten "holds"
    assert claims.holm([2 * student_t.sf(5.0, 2)] * 10).min() > 0.05
    assert claims.degrees_of_freedom(0.1, 0.1, 0) == math.inf  # summary frames: the normal law
    assert claims.degrees_of_freedom(0.0, 0.05, 6) == math.inf  # se 0: only the (known) MC part


def test_dataset_settings_profiles_and_laws(monkeypatch):
    """CIFAR-10 and ImageNet settings follow appendix B.1; the smoke profile shrinks every count."""
    c = experiments.settings("cifar10", "paper")
    i = experiments.settings("imagenet", "paper")
    assert c["square_sizes"] == (1, 15) and i["square_sizes"] == (10, 30) and i["square_groups"] == 2
    assert c["n_opt"] == i["n_opt"] == 20000 and c["n_sens"] == i["n_sens"] == 50 and c["sens_radius"] == 0.1
    assert "SHAP" in c["explainers"] and "SHAP" not in i["explainers"] and "NB" not in i["explainers"]
    sq = experiments.laws(i)["Square"]
    assert sq.n_groups((3, 224, 224)) == 112 * 112  # 2×2 superpixels
    assert experiments.laws(c)["Square"].support_size((3, 32, 32)) == sum((33 - k) ** 2 for k in range(1, 16))
    monkeypatch.setenv("XAILIB_PROFILE", "smoke")
    sm = experiments.settings("imagenet")
    assert sm["n_opt"] == experiments.SMOKE["n_opt"] and sm["image_size"] == 64 and sm["arch"] == "resnet18"
    assert experiments.settings("cifar10")["square_sizes"] == (1, 15)  # structure kept, counts shrunk
    assert xailib_pick_smoke() == (3, 1)
    with pytest.raises(ValueError, match="dataset"):
        experiments.settings("svhn")
    t = experiments.settings_table("cifar10")
    assert t.loc["explainers", "paper"].startswith("Grad, Grad-SG")


def xailib_pick_smoke():
    import xailib

    return xailib.pick(default=1, paper=2, smoke=3), xailib.pick(default=1, paper=2)


def test_project_time_from_reduced_counts_and_shape():
    """Costs measured at reduced counts scale linearly to each profile; INFD counts the sampled
    Square law on ImageNet (its support is far above the exact-sum threshold)."""
    d = experiments.settings("imagenet", "default")
    p = experiments.settings("imagenet", "paper")
    m = dict(d, n_sg=2, n_igsg=4, ig_steps=4, n_opt=64)
    proj = experiments.project_time({"Grad-SG": 1.0, "Square": 2.0, "Grad": 0.5}, 0.01, default=d, paper=p,
                                    shape=(3, 224, 224), measured=m)
    per_default = 1.0 * d["n_sg"] / 2
    assert proj.loc["Grad-SG", "s per explanation (default)"] == pytest.approx(per_default)
    assert proj.loc["Grad-SG", "default [min]"] == pytest.approx(
        d["n_instances"] * (1 + d["sens_reps"] * d["n_sens"]) * per_default / 60)
    assert proj.loc["Square", "paper [min]"] == pytest.approx(50 * 101 * 2.0 * 20000 / 64 / 60)
    assert proj.loc["Grad", "paper [min]"] == pytest.approx(50 * 101 * 0.5 / 60)
    # INFD: ImageNet's table has no NB row, but local explainers are scored under NB: both laws sampled
    assert proj.loc["INFD (both laws)", "paper [min]"] == pytest.approx((1000 + 50 * 1000) * 0.01 / 60)


def test_optimal_system_cost_small():
    from xailib.perturbations import SquareRemoval

    law = SquareRemoval(sizes=(2, 4), groups=2)
    out = experiments.optimal_system_cost(law, (3, 16, 16), n_draws=200)
    assert out["groups"] == 64 and out["matrix [GiB]"] == pytest.approx(64 * 64 * 8 / 2**30)
    assert out["factor [s]"] >= 0
    assert np.isnan(experiments.optimal_system_cost(law, (3, 16, 16), factor=False)["factor [s]"])
