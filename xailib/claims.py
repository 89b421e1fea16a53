"""Paired checks of the paper's claims on measured (or printed) MNIST tables.

* :func:`check_claims`: one row per claim (SmoothGrad lowers both metrics, the optimal
  explanations have the lowest infidelity under their own law, the robust network lowers
  both metrics for every explainer), each decided on *paired* per-instance differences with
  a *total* standard error (over instances and over the Monte-Carlo draws shared by all
  instances, :func:`total_se`): a gap smaller than ``z`` total standard errors is reported as
  inconclusive, never as a result; ``correction="holm"`` controls the family-wise error over
  all comparisons (:func:`holm`) (the book's *The paper in brief*, § Monte-Carlo hygiene).
* :func:`summarize_claims`, :func:`verdict_counts`: verdicts counted per claim;
  :func:`paired`, :func:`headline`, :func:`side_by_side`, :func:`summary_table`,
  :func:`relative_infidelity`, :func:`own_law_convergence`: the readings of a table used by
  ``notebooks/mnist`` and ``notebooks/mnist_robust``.

Input frames
------------
``check_claims`` accepts, for each network, either

* what :func:`xailib.metrics.evaluate` returns, an :class:`~xailib.metrics.Evaluation` (its
  tidy ``per_instance`` values are used for paired differences), or that tidy frame; or
* a *per-instance* frame: one row per (explainer, instance), with an ``explainer`` and an
  ``instance`` column (or index levels of these names) and one column per metric
  (:func:`long_form` turns an ``evaluate`` table into one); or
* a *summary* frame: index = explainer names, one column per metric, optionally ``<metric> se``
  (or ``<metric>_se``) columns with standard errors (e.g. :func:`xailib.paper.table4` split by
  network). Without per-instance values differences are not paired; their standard error is
  ``sqrt(se_a² + se_b²)`` (NaN, and the verdict decided by sign alone, when no standard errors
  are given).
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from .paper import METHODS, SMOOTHGRAD_PAIRS, table4


# --------------------------------------------------------------------------- input handling
def _is_per_instance(df: pd.DataFrame) -> bool:
    names = set(df.columns) | set(n for n in df.index.names if n is not None)
    return {"explainer", "instance"} <= names


def _wide(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per-instance frame -> (instance x explainer) values of ``metric``."""
    flat = df.reset_index() if any(n in ("explainer", "instance") for n in df.index.names) else df
    if metric not in flat.columns:
        raise KeyError(f"metric column {metric!r} not found; columns are {list(flat.columns)}")
    w = flat.pivot_table(index="instance", columns="explainer", values=metric, aggfunc="first")
    order = list(dict.fromkeys(flat["explainer"]))  # explainers in the frame's order, not alphabetical
    return w[[c for c in order if c in w.columns]]


def _is_evaluation(obj) -> bool:
    """An :class:`xailib.metrics.Evaluation` (duck-typed: ``summary`` and a tidy ``per_instance``)."""
    return isinstance(getattr(obj, "summary", None), pd.DataFrame) and isinstance(
        getattr(obj, "per_instance", None), pd.DataFrame)


_TIDY = ["explainer", "instance", "metric", "value"]


def long_form(evaluation, columns: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """An :func:`xailib.metrics.evaluate` result -> per-instance frame, one column per metric.

    ``evaluation``: an :class:`~xailib.metrics.Evaluation` or its tidy ``per_instance`` frame
    (columns ``explainer, instance, metric, value``). One row per (explainer, instance), columns
    ``explainer``, ``instance`` and one column per per-instance metric (``SENS_max``,
    ``INFD[NB]``, ``INFD[NB] raw``, ...; ``columns`` selects some). Explainer/metric pairs
    without values (a global explanation under a continuous law) are NaN.
    """
    if _is_evaluation(evaluation):
        tidy, order = evaluation.per_instance, list(evaluation.summary.index)
    elif isinstance(evaluation, pd.DataFrame) and set(_TIDY) <= set(evaluation.columns):
        tidy, order = evaluation, list(dict.fromkeys(evaluation["explainer"]))
    else:
        raise ValueError("`evaluation` has no per-instance values: pass what evaluate() returns (an Evaluation) "
                         "or its tidy per_instance frame (explainer, instance, metric, value)")
    if tidy.empty:
        raise ValueError("`evaluation` has no per-instance values")
    available = list(dict.fromkeys(tidy["metric"]))
    cols = available if columns is None else list(columns)
    missing = [c for c in cols if c not in available]
    if missing:
        raise KeyError(f"no per-instance values for {missing}; available: {available}")
    out = tidy[tidy["metric"].isin(cols)].pivot_table(
        index=["explainer", "instance"], columns="metric", values="value", aggfunc="first", dropna=False)
    out = out.reindex(columns=cols).reset_index()
    out.columns.name = None
    rank = {n: i for i, n in enumerate(order)}
    out = out.sort_values(["explainer", "instance"], key=lambda s: s.map(rank) if s.name == "explainer" else s)
    return out.reset_index(drop=True)


def _check_frame(df, name: str) -> None:
    if _is_evaluation(df):
        df = df.summary
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"`{name}` must be an Evaluation (from xailib.metrics.evaluate) or a pandas DataFrame, "
                        f"got {type(df).__name__}")
    if df.empty:
        raise ValueError(f"`{name}` is empty")


def _per_instance_frame(df):
    """Evaluation or tidy frame -> per-instance frame (one column per metric); other frames unchanged."""
    if _is_evaluation(df) or (isinstance(df, pd.DataFrame) and list(df.columns) == _TIDY):
        return long_form(df)
    return df


class _Values:
    """Uniform access to per-instance or summary values of one network."""

    def __init__(self, df: pd.DataFrame, name: str):
        _check_frame(df, name)
        self.summary = df.summary if _is_evaluation(df) else (None if _is_per_instance(df) else df)
        df = _per_instance_frame(df)
        self.df = df
        self.name = name
        self.per_instance = _is_per_instance(df)
        self._cache: dict = {}

    def has(self, metric: str, method: str) -> bool:
        if self.per_instance:
            flat = self.df.reset_index() if "explainer" in self.df.index.names else self.df
            if metric not in flat.columns:
                return False
            w = self.wide(metric)
            return method in w.columns and bool(w[method].notna().any())
        return metric in self.df.columns and method in self.df.index and pd.notna(self.df.loc[method, metric])

    def methods(self, metric: str) -> list:
        if self.per_instance:
            w = self.wide(metric)
            return [m for m in w.columns if w[m].notna().any()]
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
        se = float("nan")
        for se_col in (f"{metric} se", f"{metric}_se"):
            if se_col in self.df.columns:
                se = float(self.df.loc[method, se_col])
                break
        return mean, se


    def mc_se(self, metric: str, method: str) -> float:
        """Monte-Carlo standard error of the table mean (``"<metric> mc se"`` of an Evaluation's
        summary or of a summary frame); 0 when none is known (draws not reported)."""
        summ = self.summary
        col = f"{metric} mc se"
        if summ is None or col not in summ.columns or method not in summ.index:
            return 0.0
        v = float(summ.loc[method, col])
        return 0.0 if math.isnan(v) else v


def total_se(se: float, mc_a: float, mc_b: float) -> float:
    """Total standard error of a difference of two table means: ``√(se² + mc_a² + mc_b²)``.

    ``se``: over instances (paired when possible); ``mc_a``, ``mc_b``: the Monte-Carlo errors of
    the two means (draws shared by all instances, :func:`xailib.metrics.evaluate`'s ``mc se``).
    Adding the two Monte-Carlo variances ignores their covariance: when both means use the same
    draws (two explainers of one table) their errors are usually positively correlated, and the
    sum over-states the error of the difference (conservative).
    """
    return math.sqrt(se**2 + mc_a**2 + mc_b**2)


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjustment of ``m`` p-values (family-wise error control).

    Sort ``p_(1) ≤ … ≤ p_(m)``; the adjusted value of ``p_(i)`` is
    ``max_{j ≤ i} min(1, (m − j + 1) p_(j))``, returned in the input order. Rejecting where the
    adjusted value is below ``α`` is Holm's procedure: the probability of any false rejection
    among the ``m`` is at most ``α`` whatever their dependence. NaN p-values are not counted in
    ``m`` and stay NaN.
    """
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"`pvalues` must be one-dimensional, got shape {p.shape}")
    ok = ~np.isnan(p)
    if ((p[ok] < 0) | (p[ok] > 1)).any():
        raise ValueError("`pvalues` must lie in [0, 1]")
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(ok)
    m = len(idx)
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    adj = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(adj)
    return out


def degrees_of_freedom(se: float, total: float, n: int) -> float:
    """Welch–Satterthwaite degrees of freedom of ``difference / total se``.

    ``total² = se² + mc²``: ``se`` is estimated from ``n`` paired instances (``n − 1`` degrees of
    freedom), the Monte-Carlo part ``mc`` from many draws (taken as known), so
    ``df = (n − 1)·(total / se)⁴``. Infinite (the normal law) for summary frames (``n = 0``) or
    when ``se`` is 0 or NaN.
    """
    if n is None or n < 2 or not (se > 0) or math.isnan(total):
        return math.inf
    return (n - 1) * (total / se) ** 4


def _p_two_sided(diff: float, se: float, df: float = math.inf) -> float:
    """Two-sided p-value of ``diff / se``: Student-t with ``df`` degrees of freedom (normal when infinite)."""
    if math.isnan(se) or se <= 0:
        return float("nan")
    if math.isinf(df):
        return math.erfc(abs(diff) / se / math.sqrt(2))
    from scipy.stats import t as student_t

    return float(2 * student_t.sf(abs(diff) / se, df))


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


def _is_infd_column(c) -> bool:
    return isinstance(c, str) and c.startswith("INFD[") and c.endswith("]")


def _verdict(diff: float, se: float, z: float) -> str:
    """'holds' when diff < 0 by more than z standard errors, 'fails' when > 0 likewise."""
    if math.isnan(se):
        return "holds" if diff < 0 else "fails"
    if diff < -z * se:
        return "holds"
    if diff > z * se:
        return "fails"
    return "inconclusive"


def _row(claim, network, metric, lower, other, diff, se, n, z, mc_a=0.0, mc_b=0.0):
    tot = total_se(se, mc_a, mc_b) if not math.isnan(se) else float("nan")
    verdict = _verdict(diff, tot, z)
    return {
        "claim": claim,
        "network": network,
        "metric": metric,
        "lower": lower,
        "than": other,
        "difference": diff,
        "se": se,
        "mc se": math.sqrt(mc_a**2 + mc_b**2),
        "total se": tot,
        "z": diff / tot if tot > 0 else float("nan"),
        "df": degrees_of_freedom(se, tot, n),
        "p": _p_two_sided(diff, tot, degrees_of_freedom(se, tot, n)),
        "n": n,
        "verdict": verdict,
        "holds": verdict == "holds",
    }


def _apply_holm(rows: list, alpha: float) -> None:
    """Holm over all rows with a p-value: verdicts by adjusted p < alpha and the difference's sign."""
    adj = holm([r["p"] for r in rows]) if rows else []
    for r, pa in zip(rows, adj):
        r["p (Holm)"] = float(pa)
        if not math.isnan(pa):
            r["verdict"] = ("holds" if r["difference"] < 0 else "fails") if pa < alpha else "inconclusive"
            r["holds"] = r["verdict"] == "holds"


# --------------------------------------------------------------------------- claims
def check_claims(
    df_regular: pd.DataFrame,
    df_robust: Optional[pd.DataFrame] = None,
    *,
    sens: str = "SENS_max",
    infd: Optional[str | Sequence[str]] = None,
    own_law: Optional[Mapping[str, str]] = None,
    smoothgrad_pairs: Iterable = SMOOTHGRAD_PAIRS,
    z: float = 2.0,
    correction: Optional[str] = None,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Check the paper's three ordering claims; one row per comparison.

    Parameters
    ----------
    df_regular, df_robust:
        per-instance or summary frames (module docstring) of the regular and the adversarially
        trained network; ``df_robust=None`` checks the claims about one network only.
    sens:
        the SENS_max column (``"SENS"`` for :func:`xailib.paper.table4` frames).
    infd:
        the infidelity column(s) SmoothGrad and robustness are judged on (a name or a list);
        default: every ``INFD[<law>]`` column of ``df_regular`` (the :func:`~xailib.metrics.evaluate`
        names), else ``"INFD"``.
    own_law:
        ``{optimal explainer: infidelity column of its own law}``; the optimal explainer must
        have the lowest value of that column among all explainers holding it (compared with the
        runner-up). Default ``{"NB": "INFD[NB]", "Square": "INFD[Square]"}``. Pairs whose
        explainer or column is missing are skipped.
    z:
        a claim "holds" when the paired difference is below ``-z`` *total* standard errors,
        "fails" when above ``+z``, and is "inconclusive" in between (without ``correction``).
    correction:
        ``"holm"``: the rows are one family of tests; each gets a two-sided p-value from
        ``difference / total se`` (Student-t with :func:`degrees_of_freedom`: with few paired
        instances the standard error is itself uncertain, and the normal law would overstate the
        evidence), the Holm-adjusted p-values (:func:`holm`) decide:
        "holds"/"fails" by the sign where the adjusted value is below ``alpha``, else
        "inconclusive" (``z`` is then unused). ``None`` (default): no multiplicity correction.

    Returns
    -------
    DataFrame
        Columns ``claim, network, metric, lower, than, difference, se, mc se, total se, z, df, p, n,
        verdict, holds`` (and ``p (Holm)`` with ``correction="holm"``): ``difference`` is
        mean(``lower``) − mean(``than``) (negative when the claim is right), ``se`` its standard
        error over instances (paired when per-instance values are given), ``mc se`` the
        Monte-Carlo part (draws shared by all instances: the ``mc se`` columns of an
        :class:`~xailib.metrics.Evaluation` or a summary frame, 0 when absent), ``total se`` =
        ``√(se² + mc se²)`` (:func:`total_se`), ``z`` = difference / total se, ``df`` its
        Welch–Satterthwaite degrees of freedom (inf for summary frames), ``p`` its two-sided
        Student-t p-value, ``n`` the number of paired instances (0 for summary frames).
    """
    if correction not in (None, "holm"):
        raise ValueError(f"`correction` must be None or 'holm', got {correction!r}")
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise ValueError(f"`alpha` must be a number in (0, 1), got {alpha!r}")
    if not (isinstance(z, (int, float)) and z >= 0):
        raise ValueError(f"`z` must be a number >= 0, got {z!r}")
    nets = [("regular", _Values(df_regular, "df_regular"))]
    if df_robust is not None:
        nets.append(("robust", _Values(df_robust, "df_robust")))
    if infd is None:
        cols = list(nets[0][1].df.columns)
        infds = [c for c in cols if _is_infd_column(c)] or ["INFD"]
    else:
        infds = [infd] if isinstance(infd, str) else list(infd)
    if own_law is None:
        own_law = {"NB": "INFD[NB]", "Square": "INFD[Square]"}
    rows = []
    for net, vals in nets:
        for metric in [sens, *infds]:
            for base, smooth in smoothgrad_pairs:
                if vals.has(metric, base) and vals.has(metric, smooth):
                    d, se, n = paired_difference(vals, smooth, vals, base, metric)
                    rows.append(_row("SmoothGrad lowers the metric", net, metric, smooth, base, d, se, n, z,
                                     vals.mc_se(metric, smooth), vals.mc_se(metric, base)))
        for method, metric in own_law.items():
            if not vals.has(metric, method):
                continue
            others = [m for m in vals.methods(metric) if m != method]
            if not others:
                continue
            means = {m: vals.mean_se(metric, m)[0] for m in others}
            runner_up = min(means, key=means.get)
            d, se, n = paired_difference(vals, method, vals, runner_up, metric)
            rows.append(_row("optimal explanation has the lowest INFD under its own law", net, metric,
                             method, runner_up, d, se, n, z, vals.mc_se(metric, method),
                             vals.mc_se(metric, runner_up)))
    if df_robust is not None:
        reg, rob = nets[0][1], nets[1][1]
        for metric in [sens, *infds]:
            for method in reg.methods(metric):
                if rob.has(metric, method):
                    d, se, n = paired_difference(rob, method, reg, method, metric)
                    rows.append(_row("robust network lowers the metric", "robust vs regular", metric,
                                     f"{method} (robust)", f"{method} (regular)", d, se, n, z,
                                     rob.mc_se(metric, method), reg.mc_se(metric, method)))
    cols = ["claim", "network", "metric", "lower", "than", "difference", "se", "mc se", "total se", "z", "df", "p"]
    if correction == "holm":
        _apply_holm(rows, alpha)
        cols.append("p (Holm)")
    cols += ["n", "verdict", "holds"]
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

    Columns ``<metric>`` and ``<metric> se`` for each metric (the naming of
    :func:`xailib.metrics.evaluate`); rows in ``methods`` order (those present). Accepts an
    ``evaluate`` table (its per-instance values) or a long per-instance frame.
    """
    _check_frame(df, "df")
    df = _per_instance_frame(df)
    if not _is_per_instance(df):
        raise ValueError("`df` must be a per-instance frame with 'explainer' and 'instance' columns")
    vals = _Values(df, "df")
    out = {}
    for m in metrics:
        w = vals.wide(m)
        out[m] = w.mean()
        out[f"{m} se"] = w.std(ddof=1) / np.sqrt(w.notna().sum().clip(lower=1))
    res = pd.DataFrame(out)
    order = [m for m in methods if m in res.index] + [m for m in res.index if m not in methods]
    res = res.loc[order]
    res.index.name = "explainer"
    return res


def with_total_se(table, metrics: Sequence[str]) -> pd.DataFrame:
    """Each metric's mean over instances next to its total standard error (over instances and
    Monte-Carlo draws), as columns ``<metric>`` and ``<metric> ± total``; one row per explainer.

    ``table``: an :func:`xailib.metrics.evaluate` table or its ``summary`` frame (which has the
    ``<metric> total se`` columns). The chapters' first table (``notebooks/mnist``).
    """
    summary = getattr(table, "summary", table)
    if not isinstance(summary, pd.DataFrame):
        raise TypeError(f"`table` must be an evaluate() table or its summary DataFrame, got {type(table).__name__}")
    cols = [c for m in metrics for c in (m, f"{m} total se")]
    missing = [c for c in cols if c not in summary.columns]
    if missing:
        raise ValueError(f"`metrics`: the table has no columns {missing}; metrics with a total se: "
                         f"{[c[:-len(' total se')] for c in summary.columns if str(c).endswith(' total se')]}")
    return summary[cols].rename(columns=lambda c: c.replace(" total se", " ± total"))


def side_by_side(measured: pd.DataFrame, network: str, metrics: Mapping[str, str]) -> pd.DataFrame:
    """Measured summary next to the printed Table 4 values of ``network``.

    ``metrics`` maps a printed column (``"SENS"``/``"INFD"``) to the measured column. Rows
    missing from the paper get NaN.
    """
    paper = table4(network)
    out = pd.DataFrame(index=measured.index)
    for printed, col in metrics.items():
        out[f"{printed} measured"] = measured[col]
        for se_col in (f"{col} se", f"{col}_se"):
            if se_col in measured.columns:
                out[f"{printed} ± se"] = measured[se_col]
                break
        out[f"{printed} paper"] = paper[printed].reindex(measured.index)
    return out


def relative_infidelity(table, energy: Mapping[str, Sequence[float]]) -> pd.DataFrame:
    """Per-instance INFD divided by the energy ``E[Δf²]`` of the function differences, per law.

    ``table``: an :class:`~xailib.metrics.Evaluation` (what :func:`~xailib.metrics.evaluate` returns).

    ``energy[law]``: ``E[Δf²]`` per instance under that law: the (optimally scaled) infidelity
    of the zero explanation, ``xailib.metrics.infidelity(model, zeros, x, ..., perturbation=law)``
    with the same draws. The ratio is the fraction of the model's response to the perturbations
    the explanation leaves unexplained (0: perfect, 1: no better than Φ = 0); unlike INFD it does
    not shrink when the network's logits shrink, so it compares networks fairly. Returns a long
    per-instance frame with columns ``explainer, instance, SENS_max`` (when present) and
    ``rINFD[<law>]``, accepted by :func:`check_claims` and :func:`summary_table`.
    """
    long = long_form(table)
    out = long[["explainer", "instance"] + (["SENS_max"] if "SENS_max" in long.columns else [])].copy()
    for law, e in energy.items():
        col = f"INFD[{law}]"
        if col not in long.columns:
            raise KeyError(f"`table` has no {col!r} column")
        e = np.asarray([float(v) for v in e], dtype=float)
        if e.ndim != 1 or (long["instance"].max() + 1) != len(e):
            raise ValueError(f"`energy[{law!r}]` must hold one value per instance ({long['instance'].max() + 1})")
        out[f"rINFD[{law}]"] = long[col].to_numpy() / e[long["instance"].to_numpy()]
    return out


def paired(table, metric: str, a: str, b: str, z: float = 2.0) -> dict:
    """Paired comparison of two explainers (rows ``a`` and ``b``) of one table on ``metric``.

    ``table``: an :class:`~xailib.metrics.Evaluation` or a per-instance frame (module docstring).

    Returns ``{"difference": mean(a − b), "se": its standard error over instances, "total se":
    with the Monte-Carlo errors of both means (:func:`total_se`), "n": pairs, "verdict": "a lower"
    | "a higher" | "inconclusive"}`` (``z`` total standard errors decide).
    """
    vals = _Values(table, "table")
    for m in (a, b):
        if not vals.has(metric, m):
            raise KeyError(f"no {metric!r} values for {m!r}")
    d, se, n = paired_difference(vals, a, vals, b, metric)
    tot = total_se(se, vals.mc_se(metric, a), vals.mc_se(metric, b)) if not math.isnan(se) else se
    v = _verdict(d, tot, z)
    return {"difference": d, "se": se, "total se": tot, "n": n,
            "verdict": {"holds": "a lower", "fails": "a higher", "inconclusive": "inconclusive"}[v]}


def headline(evaluation, kinds: Mapping[str, str], local_law: str = "NB", global_law: str = "Square") -> pd.DataFrame:
    """The paper's reading of an :func:`~xailib.metrics.evaluate` result: one INFD per explainer.

    The paper evaluates local explanations under the noisy baseline and global ones (SHAP,
    Square) under square removal (appendix B.1/B.2). ``evaluation``: an
    :class:`~xailib.metrics.Evaluation`; ``kinds``: ``{explainer: "local" | "global"}``
    (e.g. ``{n: e.kind for n, e in explainers.items()}``). Columns: ``SENS_max``, ``SENS_max se``,
    ``INFD`` and ``INFD se`` (over instances), ``INFD mc se`` (Monte-Carlo error of the mean,
    ``sqrt(mean(mc_se²) / N)``) and ``law`` (the column used).
    """
    if not _is_evaluation(evaluation):
        raise TypeError(f"`evaluation` must be what xailib.metrics.evaluate returns, got {type(evaluation).__name__}")
    table = evaluation.summary
    _check_frame(table, "evaluation")
    mc_metrics = set(evaluation.per_instance["metric"])
    rows = {}
    for name in table.index:
        if name not in kinds:
            raise KeyError(f"no kind given for explainer {name!r}")
        law = global_law if kinds[name] == "global" else local_law
        col = f"INFD[{law}]"
        mc_se = float("nan")
        if f"{col} mc_se" in mc_metrics:
            mc = evaluation.wide(f"{col} mc_se")
            if name in mc.columns:
                v = mc[name].dropna().to_numpy()
                mc_se = float(np.sqrt(np.mean(np.square(v)) / len(v))) if len(v) else float("nan")
        rows[name] = {
            "SENS_max": table.loc[name, "SENS_max"] if "SENS_max" in table.columns else float("nan"),
            "SENS_max se": table.loc[name, "SENS_max se"] if "SENS_max se" in table.columns else float("nan"),
            "INFD": table.loc[name, col],
            "INFD se": table.loc[name, f"{col} se"],
            "INFD mc se": mc_se,
            "law": law,
        }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "explainer"
    return out


def own_law_convergence(table, optimal_tables: Mapping,
                        own_law: Optional[Mapping[str, str]] = None, z: float = 2.0) -> pd.DataFrame:
    """The own-law claim as the optimal explanations' sample count grows.

    ``table``: the full :func:`~xailib.metrics.evaluate` result (all explainers);
    ``optimal_tables[n]``: an ``evaluate`` result of the optimal explainers estimated with ``n``
    samples, on the **same** instances and perturbation draws (same ``generator``), so that
    per-instance values pair with ``table``'s. For each ``n`` and each optimal explainer, its INFD
    under its own law is compared with the best *other* explainer of ``table`` (paired over
    instances). Returns one row per (n, explainer): ``INFD``, ``runner-up``, its ``INFD``,
    ``difference`` (optimal − runner-up), ``se`` (over instances), ``total se`` (with the
    Monte-Carlo errors of both means), ``verdict`` (as :func:`check_claims`, on the total se).
    """
    own_law = {"NB": "INFD[NB]", "Square": "INFD[Square]"} if own_law is None else own_law
    base = _Values(table, "table")
    rows = []
    for n, opt in optimal_tables.items():
        ov = _Values(opt, f"optimal_tables[{n}]")
        for method, metric in own_law.items():
            if not ov.has(metric, method):
                continue
            others = [m for m in base.methods(metric) if m not in own_law]
            if not others:
                continue
            means = {m: base.mean_se(metric, m)[0] for m in others}
            runner = min(means, key=means.get)
            d, se, k = paired_difference(ov, method, base, runner, metric)
            tot = total_se(se, ov.mc_se(metric, method), base.mc_se(metric, runner)) if not math.isnan(se) else se
            rows.append({"n_samples": n, "explainer": method, "metric": metric,
                         "INFD": ov.mean_se(metric, method)[0], "runner-up": runner,
                         "runner-up INFD": means[runner], "difference": d, "se": se, "total se": tot,
                         "verdict": _verdict(d, tot, z)})
    return pd.DataFrame(rows)


def verdict_counts(claims: pd.DataFrame, claim: Optional[str] = None, **where) -> dict:
    """How many comparisons of ``claims`` (from :func:`check_claims`) hold, fail, are inconclusive.

    ``claim`` selects rows whose ``claim`` starts with it (e.g. ``"SmoothGrad"``); keyword
    arguments select rows by column value (``metric="SENS_max"``, ``network="robust"``).
    Returns ``{"holds": int, "inconclusive": int, "fails": int, "total": int}``, the numbers the
    chapters' prose quotes ("holds in 8 of 9 comparisons").
    """
    if not isinstance(claims, pd.DataFrame) or "verdict" not in claims.columns:
        raise TypeError("`claims` must be the DataFrame returned by check_claims")
    sel = claims
    if claim is not None:
        sel = sel[sel["claim"].str.startswith(claim)]
    for col, val in where.items():
        if col not in sel.columns:
            raise KeyError(f"`claims` has no column {col!r}")
        sel = sel[sel[col] == val]
    counts = sel["verdict"].value_counts()
    out = {v: int(counts.get(v, 0)) for v in ("holds", "inconclusive", "fails")}
    out["total"] = int(len(sel))
    return out
