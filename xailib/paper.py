"""The paper's printed numbers and a checker for the claims the MNIST chapters must reproduce.

* :data:`TABLE4` / :func:`table4`: appendix Table 4 of Yeh et al. (2019) as printed (MNIST,
  regular vs adversarially trained network; the OCR's dropped decimal points restored, see
  ``../shared/paper/NOTES.md``). The paper prints no NB or Occlusion row there.
* :func:`check_claims`: one row per claim (SmoothGrad lowers both metrics, the optimal
  explanations have the lowest infidelity under their own law, the robust network lowers
  both metrics for every explainer), each decided on *paired* per-instance differences with
  a standard error: a gap smaller than ``z`` standard errors is reported as inconclusive,
  never as a result.

Used by ``notebooks/mnist.ipynb`` and ``notebooks/mnist_robust.ipynb``.

Input frames
------------
``check_claims`` accepts, for each network, either

* a *per-instance* frame: one row per (explainer, instance), with an ``explainer`` and an
  ``instance`` column (or index levels of these names) and one column per metric; the
  per-instance frame of :func:`xailib.metrics.evaluate` is of this kind; or
* a *summary* frame: index = explainer names, one column per metric, optionally ``<metric>_se``
  columns with standard errors (e.g. :func:`table4` split by network). Without per-instance
  values differences are not paired; their standard error is ``sqrt(se_a² + se_b²)`` (NaN, and
  the verdict decided by sign alone, when no standard errors are given).
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Optional, Sequence

import pandas as pd

#: the explainer rows of the MNIST tables, in the paper's order (plus NB and Occlusion)
METHODS = ("Grad", "Grad-SG", "IG", "IG-SG", "GBP", "GBP-SG", "SHAP", "NB", "Square", "Occlusion")

#: SmoothGrad pairs (base, smoothed)
SMOOTHGRAD_PAIRS = (("Grad", "Grad-SG"), ("IG", "IG-SG"), ("GBP", "GBP-SG"))

#: appendix Table 4 as printed: SENS_max and INFD, regular and adversarially trained network
TABLE4 = pd.DataFrame(
    {
        "SENS (regular)": [2.32, 1.82, 2.05, 1.69, 2.36, 1.83, 0.35, 0.24],
        "INFD (regular)": [2.42, 1.88, 1.78, 1.77, 2.42, 1.82, 1.20, 0.46],
        "SENS (robust)": [0.21, 0.13, 0.16, 0.11, 0.21, 0.13, 0.23, 0.11],
        "INFD (robust)": [0.36, 0.35, 0.21, 0.20, 0.36, 0.35, 0.14, 0.06],
    },
    index=pd.Index(["Grad", "Grad-SG", "IG", "IG-SG", "GBP", "GBP-SG", "SHAP", "Square"], name="method"),
)


def table4(network: Optional[str] = None) -> pd.DataFrame:
    """A copy of the printed Table 4.

    ``network=None`` gives all four columns; ``"regular"`` or ``"robust"`` gives that network's
    two columns renamed ``SENS`` and ``INFD`` (the summary form :func:`check_claims` accepts).
    """
    if network is None:
        return TABLE4.copy()
    if network not in ("regular", "robust"):
        raise ValueError(f"`network` must be None, 'regular' or 'robust', got {network!r}")
    out = TABLE4[[f"SENS ({network})", f"INFD ({network})"]].copy()
    out.columns = ["SENS", "INFD"]
    return out


# --------------------------------------------------------------------------- input handling
def _is_per_instance(df: pd.DataFrame) -> bool:
    names = set(df.columns) | set(n for n in df.index.names if n is not None)
    return {"explainer", "instance"} <= names


def _wide(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per-instance frame -> (instance x explainer) values of ``metric``."""
    flat = df.reset_index() if any(n in ("explainer", "instance") for n in df.index.names) else df
    if metric not in flat.columns:
        raise KeyError(f"metric column {metric!r} not found; columns are {list(flat.columns)}")
    return flat.pivot_table(index="instance", columns="explainer", values=metric, aggfunc="first")


def _check_frame(df, name: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"`{name}` must be a pandas DataFrame, got {type(df).__name__}")
    if df.empty:
        raise ValueError(f"`{name}` is empty")


class _Values:
    """Uniform access to per-instance or summary values of one network."""

    def __init__(self, df: pd.DataFrame, name: str):
        _check_frame(df, name)
        self.df = df
        self.name = name
        self.per_instance = _is_per_instance(df)
        self._cache: dict = {}

    def has(self, metric: str, method: str) -> bool:
        if self.per_instance:
            flat = self.df.reset_index() if "explainer" in self.df.index.names else self.df
            return metric in flat.columns and method in set(flat["explainer"])
        return metric in self.df.columns and method in self.df.index and pd.notna(self.df.loc[method, metric])

    def methods(self, metric: str) -> list:
        if self.per_instance:
            return [m for m in self.wide(metric).columns]
        if metric not in self.df.columns:
            return []
        return [m for m in self.df.index if pd.notna(self.df.loc[m, metric])]

    def wide(self, metric: str) -> pd.DataFrame:
        if metric not in self._cache:
            self._cache[metric] = _wide(self.df, metric)
        return self._cache[metric]

    def mean_se(self, metric: str, method: str) -> tuple:
        if self.per_instance:
            v = self.wide(metric)[method].dropna()
            se = v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else float("nan")
            return float(v.mean()), float(se)
        mean = float(self.df.loc[method, metric])
        se_col = f"{metric}_se"
        se = float(self.df.loc[method, se_col]) if se_col in self.df.columns else float("nan")
        return mean, se


def paired_difference(a: _Values, ma: str, b: _Values, mb: str, metric: str) -> tuple:
    """Mean of ``a[ma] - b[mb]`` for ``metric`` and its standard error (paired when possible)."""
    if a.per_instance and b.per_instance:
        va, vb = a.wide(metric)[ma], b.wide(metric)[mb]
        d = (va - vb).dropna()
        if len(d) == 0:
            raise ValueError(f"no common instances to pair {ma!r} and {mb!r} on {metric!r}")
        se = d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
        return float(d.mean()), float(se), int(len(d))
    mean_a, se_a = a.mean_se(metric, ma)
    mean_b, se_b = b.mean_se(metric, mb)
    return mean_a - mean_b, math.sqrt(se_a**2 + se_b**2), 0


def _verdict(diff: float, se: float, z: float) -> str:
    """'holds' when diff < 0 by more than z standard errors, 'fails' when > 0 likewise."""
    if math.isnan(se):
        return "holds" if diff < 0 else "fails"
    if diff < -z * se:
        return "holds"
    if diff > z * se:
        return "fails"
    return "inconclusive"


def _row(claim, network, metric, lower, other, diff, se, n, z):
    verdict = _verdict(diff, se, z)
    return {
        "claim": claim,
        "network": network,
        "metric": metric,
        "lower": lower,
        "than": other,
        "difference": diff,
        "se": se,
        "n": n,
        "verdict": verdict,
        "holds": verdict == "holds",
    }


# --------------------------------------------------------------------------- claims
def check_claims(
    df_regular: pd.DataFrame,
    df_robust: Optional[pd.DataFrame] = None,
    *,
    sens: str = "SENS",
    infd: str | Sequence[str] = "INFD",
    own_law: Optional[Mapping[str, str]] = None,
    smoothgrad_pairs: Iterable = SMOOTHGRAD_PAIRS,
    z: float = 2.0,
) -> pd.DataFrame:
    """Check the paper's three ordering claims; one row per comparison.

    Parameters
    ----------
    df_regular, df_robust:
        per-instance or summary frames (module docstring) of the regular and the adversarially
        trained network; ``df_robust=None`` checks the claims about one network only.
    sens:
        the SENS_max column.
    infd:
        the infidelity column(s) SmoothGrad and robustness are judged on (a name or a list).
    own_law:
        ``{optimal explainer: infidelity column of its own law}``, e.g.
        ``{"NB": "INFD (NB)", "Square": "INFD (Square)"}``; the optimal explainer must have the
        lowest value of that column among all explainers holding it (compared with the runner-up).
        Skipped for explainers not in the frame.
    z:
        a claim "holds" when the paired difference is below ``-z`` standard errors, "fails" when
        above ``+z``, and is "inconclusive" in between.

    Returns
    -------
    DataFrame with columns ``claim, network, metric, lower, than, difference, se, n, verdict,
    holds``: ``difference`` is mean(``lower``) − mean(``than``) (negative when the claim is
    right), ``se`` its standard error (paired over instances when per-instance values are given),
    ``n`` the number of paired instances (0 for summary frames).
    """
    if not (isinstance(z, (int, float)) and z >= 0):
        raise ValueError(f"`z` must be a number >= 0, got {z!r}")
    infds = [infd] if isinstance(infd, str) else list(infd)
    nets = [("regular", _Values(df_regular, "df_regular"))]
    if df_robust is not None:
        nets.append(("robust", _Values(df_robust, "df_robust")))
    rows = []
    for net, vals in nets:
        for metric in [sens, *infds]:
            for base, smooth in smoothgrad_pairs:
                if vals.has(metric, base) and vals.has(metric, smooth):
                    d, se, n = paired_difference(vals, smooth, vals, base, metric)
                    rows.append(_row("SmoothGrad lowers the metric", net, metric, smooth, base, d, se, n, z))
        for method, metric in (own_law or {}).items():
            if not vals.has(metric, method):
                continue
            others = [m for m in vals.methods(metric) if m != method]
            if not others:
                continue
            means = {m: vals.mean_se(metric, m)[0] for m in others}
            runner_up = min(means, key=means.get)
            d, se, n = paired_difference(vals, method, vals, runner_up, metric)
            rows.append(_row("optimal explanation has the lowest INFD under its own law", net, metric,
                             method, runner_up, d, se, n, z))
    if df_robust is not None:
        reg, rob = nets[0][1], nets[1][1]
        for metric in [sens, *infds]:
            for method in reg.methods(metric):
                if rob.has(metric, method):
                    d, se, n = paired_difference(rob, method, reg, method, metric)
                    rows.append(_row("robust network lowers the metric", "robust vs regular", metric,
                                     f"{method} (robust)", f"{method} (regular)", d, se, n, z))
    cols = ["claim", "network", "metric", "lower", "than", "difference", "se", "n", "verdict", "holds"]
    return pd.DataFrame(rows, columns=cols)


def summarize_claims(claims: pd.DataFrame) -> pd.DataFrame:
    """Count verdicts per claim (and network): how many comparisons hold, fail, are inconclusive."""
    if not isinstance(claims, pd.DataFrame) or "verdict" not in claims.columns:
        raise TypeError("`claims` must be the DataFrame returned by check_claims")
    out = (
        claims.groupby(["claim", "network", "verdict"]).size().unstack("verdict", fill_value=0)
        .reindex(columns=["holds", "inconclusive", "fails"], fill_value=0)
    )
    out["all hold"] = (out["inconclusive"] == 0) & (out["fails"] == 0)
    return out


def summary_table(df: pd.DataFrame, metrics: Sequence[str], methods: Sequence[str] = METHODS) -> pd.DataFrame:
    """Per-instance frame -> mean and standard error over instances, one row per explainer.

    Columns ``<metric>`` and ``<metric>_se`` for each metric; rows in ``methods`` order (those
    present).
    """
    _check_frame(df, "df")
    if not _is_per_instance(df):
        raise ValueError("`df` must be a per-instance frame with 'explainer' and 'instance' columns")
    vals = _Values(df, "df")
    out = {}
    for m in metrics:
        w = vals.wide(m)
        out[m] = w.mean()
        out[f"{m}_se"] = w.std(ddof=1) / math.sqrt(len(w))
    res = pd.DataFrame(out)
    order = [m for m in methods if m in res.index] + [m for m in res.index if m not in methods]
    res = res.loc[order]
    res.index.name = "explainer"
    return res


def side_by_side(measured: pd.DataFrame, network: str, metrics: Mapping[str, str]) -> pd.DataFrame:
    """Measured summary next to the printed Table 4 values of ``network``.

    ``metrics`` maps a printed column (``"SENS"``/``"INFD"``) to the measured column. Rows
    missing from the paper get NaN.
    """
    paper = table4(network)
    out = pd.DataFrame(index=measured.index)
    for printed, col in metrics.items():
        out[f"{printed} measured"] = measured[col]
        if f"{col}_se" in measured.columns:
            out[f"{printed} ± se"] = measured[f"{col}_se"]
        out[f"{printed} paper"] = paper[printed].reindex(measured.index)
    return out
