"""Measuring the metrics themselves: how far INFD and SENS can be trusted on a given model.

The book checks the paper's claims *with* its two metrics; this module asks whether a metric
deserves that trust, for any model, explainers and data, from what :func:`xailib.metrics.evaluate`
returns (its per-instance values on shared draws):

* **reliability of rankings** (:func:`ranking_concordance`): do the instances agree on the order
  of the explainers? Kendall's W over instances, the mean pairwise Spearman correlation between
  instances' rankings (0 when a metric ranks at random, 1 when every instance gives the same
  order), with bootstrap intervals over instances; :func:`rank_agreement`: the rank
  correlation between two orderings of the explainers (two metrics, two laws, or the same
  metric with other Monte-Carlo seeds: test–retest), with a bootstrap interval;
* **controls** that a trustworthy metric must separate from real explanations
  (:class:`RandomMap`, :class:`ConstantMap`, :class:`SobelMap`, :func:`randomized_network`), and
  :func:`control_rates`: how often each control scores better than each explainer.

The questions are those of Tomsett et al. (2020, *Sanity Checks for Saliency Metrics*) and of
MetaQuantus (Hedström et al. 2023); the law that keeps removal on the data manifold, for asking
whether a ranking depends on the off-manifold artefact of zeroing, is
:class:`xailib.perturbations.ImputedSquareRemoval`.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from . import _utils as U

__all__ = ["ranking_concordance", "rank_agreement", "control_rates", "control_verdicts", "RandomMap", "ConstantMap",
           "SobelMap", "randomized_network"]


# --------------------------------------------------------------------------- inputs
def _wide(values, metric: Optional[str]) -> pd.DataFrame:
    """instances × explainers values of ``metric`` from an Evaluation, or a wide DataFrame as is."""
    if hasattr(values, "wide") and hasattr(values, "per_instance"):
        if metric is None:
            raise ValueError("`metric` is needed with an Evaluation (e.g. 'INFD[Square]' or 'SENS_max')")
        return values.wide(metric)
    if isinstance(values, pd.DataFrame):
        return values
    raise TypeError(f"`values` must be an Evaluation (what evaluate() returns) or an instances × explainers "
                    f"DataFrame, got {type(values).__name__}")


def _complete(w: pd.DataFrame, name: str) -> np.ndarray:
    if w.shape[1] < 2:
        raise ValueError(f"`{name}` must hold at least 2 explainers to rank, got {list(w.columns)}")
    arr = w.to_numpy(dtype=float)
    arr = arr[np.isfinite(arr).all(1)]
    if arr.shape[0] < 2:
        raise ValueError(f"`{name}` must hold at least 2 instances with finite values for every explainer, "
                         f"got {arr.shape[0]}")
    return arr


def _ranks(arr: np.ndarray) -> np.ndarray:
    """Ranks along the last axis (1 … n), ties averaged."""
    from scipy.stats import rankdata

    return rankdata(arr, axis=-1)


def _kendall_w(R: np.ndarray) -> float:
    """Kendall's W of the rankings ``R`` (m raters × n items), with the correction for ties."""
    m, n = R.shape
    S = ((R.sum(0) - m * (n + 1) / 2) ** 2).sum()
    ties = 0.0
    for row in R:
        _, counts = np.unique(row, return_counts=True)
        ties += (counts**3 - counts).sum()
    denom = m**2 * (n**3 - n) - m * ties
    return float(12 * S / denom) if denom > 0 else float("nan")


def _bootstrap(fn, m: int, n_boot: int, seed: int, level: float):
    rng = np.random.default_rng(seed)
    vals = np.array([fn(rng.integers(0, m, m)) for _ in range(n_boot)], dtype=float)
    lo, hi = np.nanquantile(vals, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _check_boot(n_boot, level):
    U.check_positive(n_boot, "n_boot", integer=True)
    if not (isinstance(level, float) and 0 < level < 1):
        raise ValueError(f"`level` must be a float in (0, 1), got {level!r}")


# --------------------------------------------------------------------------- reliability
def ranking_concordance(values, metric: Optional[str] = None, *, n_boot: int = 1000, level: float = 0.95,
                        seed: int = 0) -> pd.Series:
    """Do the instances agree on the order of the explainers under ``metric``?

    ``values``: an :class:`~xailib.metrics.Evaluation` (with ``metric``) or an instances ×
    explainers DataFrame; instances with a missing value are dropped. Each instance ranks the
    explainers (ties averaged); with ``m`` instances:

    * ``W``, Kendall's coefficient of concordance (tie-corrected), in [0, 1]; ``E[W] = 1/m``
      when every ranking is random;
    * ``mean spearman`` = ``(mW − 1)/(m − 1)``, the mean Spearman correlation over pairs of
      instances: 0 when the metric ranks at random, 1 when all instances agree;
    * both with percentile bootstrap intervals over instances (``n_boot`` resamples, ``seed``).

    Returns a Series: ``W, W low, W high, mean spearman, mean spearman low, mean spearman high,
    instances, explainers``.
    """
    _check_boot(n_boot, level)
    R = _ranks(_complete(_wide(values, metric), "values"))
    m, n = R.shape

    def stats(rows):
        w = _kendall_w(R[rows])
        return w, (m * w - 1) / (m - 1)

    w, r = stats(np.arange(m))
    wl, wh = _bootstrap(lambda rows: stats(rows)[0], m, n_boot, seed, level)
    rl, rh = _bootstrap(lambda rows: stats(rows)[1], m, n_boot, seed, level)
    return pd.Series({"W": w, "W low": wl, "W high": wh, "mean spearman": r, "mean spearman low": rl,
                      "mean spearman high": rh, "instances": m, "explainers": n})


def rank_agreement(a, b, metric_a: Optional[str] = None, metric_b: Optional[str] = None, *,
                   n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> pd.Series:
    """Rank correlation between two orderings of the same explainers by their mean over instances.

    ``a``, ``b``: Evaluations (with ``metric_a``, ``metric_b``; ``metric_b`` defaults to
    ``metric_a``) or instances × explainers DataFrames over the **same instances** (two metrics
    or laws of one table; or one metric of two tables computed with different Monte-Carlo
    seeds: test–retest). Returns ``spearman``, ``kendall`` and the bootstrap interval of
    ``spearman`` over instances (resampled jointly in ``a`` and ``b``), with ``explainers`` and
    ``instances``.
    """
    from scipy.stats import kendalltau, spearmanr

    _check_boot(n_boot, level)
    wa, wb = _wide(a, metric_a), _wide(b, metric_b if metric_b is not None else metric_a)
    common = [c for c in wa.columns if c in wb.columns]
    rows = wa.index.intersection(wb.index)
    wa, wb = wa.loc[rows, common], wb.loc[rows, common]
    ok = np.isfinite(wa.to_numpy(float)).all(1) & np.isfinite(wb.to_numpy(float)).all(1)
    A, B = _complete(wa[ok], "a"), _complete(wb[ok], "b")
    if len(common) < 3:
        raise ValueError(f"a rank correlation needs at least 3 explainers common to `a` and `b`, got {common}")

    def rho(idx):
        return spearmanr(A[idx].mean(0), B[idx].mean(0)).statistic

    m = A.shape[0]
    full = np.arange(m)
    lo, hi = _bootstrap(rho, m, n_boot, seed, level)
    return pd.Series({"spearman": float(rho(full)), "spearman low": lo, "spearman high": hi,
                      "kendall": float(kendalltau(A.mean(0), B.mean(0)).statistic), "explainers": len(common),
                      "instances": m})


def control_rates(values, metric: Optional[str] = None, controls: Sequence[str] = (),
                  lower_is_better: bool = True) -> pd.DataFrame:
    """How often each control scores better than each real explainer, instance by instance.

    ``values``: an Evaluation (with ``metric``) or an instances × explainers DataFrame holding
    both the explainers and the ``controls`` (names of columns: :class:`RandomMap`,
    :class:`ConstantMap`, :class:`SobelMap`, :func:`randomized_network`'s explainers, evaluated
    in the same table). Rows: the real explainers; columns: the controls; entries: the fraction
    of instances where the control's value is better (lower, for INFD and SENS) than the
    explainer's, with ``<control> low`` / ``high`` Wilson 95% intervals. A trustworthy metric
    gives a real explanation a rate near 0 against every control; a rate near 0.5 or above says
    the metric cannot tell that explanation from the control.
    """
    w = _wide(values, metric)
    real = _real_explainers(w, controls)
    out = {}
    for c in controls:
        rate, low, high = zip(*(_wilson(*_control_better(w, e, c, lower_is_better)) for e in real))
        out[c], out[f"{c} low"], out[f"{c} high"] = list(rate), list(low), list(high)
    return pd.DataFrame(out, index=pd.Index(real, name="explainer"))


def _real_explainers(w: pd.DataFrame, controls: Sequence[str]) -> list:
    """The columns of ``w`` that are not ``controls`` (every control must be a column)."""
    missing = [c for c in controls if c not in w.columns]
    if not controls or missing:
        raise ValueError(f"`controls` must name columns of the table; missing {missing or 'all'}; "
                         f"columns: {list(w.columns)}")
    real = [c for c in w.columns if c not in controls]
    if not real:
        raise ValueError("the table holds only controls: nothing to compare them with")
    return real


def _control_better(w: pd.DataFrame, explainer: str, control: str, lower_is_better: bool):
    """``(k, n)``: on how many of the ``n`` instances with both values the control scores better."""
    pair = w[[explainer, control]].dropna()
    better = pair[control] < pair[explainer] if lower_is_better else pair[control] > pair[explainer]
    return int(better.sum()), len(pair)


def control_verdicts(values, metrics: Sequence[str], controls: Sequence[str], alpha: float = 0.05,
                     lower_is_better: bool = True) -> pd.DataFrame:
    """Can each metric tell each real explainer from each control? One row per (metric, explainer, control).

    For every pair the instances are paired (the same digits, draws and neighbours): ``k`` of the
    ``n`` instances score the control better. Under "the metric cannot tell them apart" ``k`` is
    Binomial(n, 1/2); the two-sided exact binomial p-value of every row, Holm-adjusted over the
    whole table (:func:`xailib.claims.holm`), decides: ``"prefers the explainer"`` (adjusted p <
    ``alpha``, fewer than half), ``"prefers the control"`` (adjusted p < ``alpha``, more than half),
    else ``"cannot tell"``. ``values``: an Evaluation holding every metric and both kinds of rows.
    Columns ``metric, explainer, control, n, control better, rate, p, p (Holm), verdict``.
    """
    from scipy.stats import binomtest

    from .claims import holm

    if not (isinstance(alpha, float) and 0 < alpha < 1):
        raise ValueError(f"`alpha` must be a float in (0, 1), got {alpha!r}")
    metrics = list(metrics)
    if not metrics:
        raise ValueError("`metrics` must name at least one metric")
    controls = list(controls)
    rows = []
    for metric in metrics:
        w = _wide(values, metric)
        for e in _real_explainers(w, controls):
            for c in controls:
                k, n = _control_better(w, e, c, lower_is_better)
                p = float(binomtest(k, n, 0.5).pvalue) if n else float("nan")
                rows.append({"metric": metric, "explainer": e, "control": c, "n": n, "control better": k,
                             "rate": k / n if n else float("nan"), "p": p})
    out = pd.DataFrame(rows)
    out["p (Holm)"] = holm(out["p"].to_numpy())
    out["verdict"] = np.where(out["p (Holm)"] < alpha, np.where(out["rate"] < 0.5, "prefers the explainer",
                                                                 "prefers the control"), "cannot tell")
    return out


def _wilson(k: int, n: int, z: float = 1.959964):
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    p = k / n
    den = 1 + z**2 / n
    mid = (p + z**2 / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / den
    return p, max(0.0, mid - half), min(1.0, mid + half)


# --------------------------------------------------------------------------- controls
class _Control:
    kind = "local"
    stochastic = False

    def __init__(self, name: Optional[str] = None):
        self.name = name or type(self).__name__

    def _check(self, x) -> Tensor:
        return U.check_input(x, "x")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class RandomMap(_Control):
    """A control: standard normal noise that knows nothing of the model, a pseudo-random function
    of the input: each row's map is drawn from a generator seeded with a hash of that row's
    values and ``seed``. So the map of ``x`` does not depend on the batch it is explained in,
    a neighbour ``y ≠ x`` gets an unrelated map (SENS sees pure noise), and a second ``seed``
    gives a second random explanation (``generator=``, an int, overrides ``seed`` for one call)."""

    def __init__(self, seed: int = 0, name: Optional[str] = None):
        super().__init__(name)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"`seed` must be an int, got {type(seed).__name__}")
        self.seed = seed

    def __call__(self, x, target=None, *, generator=None):
        import hashlib

        x = self._check(x)
        seed = self.seed if generator is None else int(generator if isinstance(generator, int)
                                                        else generator.initial_seed())
        rows = []
        for row in x.detach().to("cpu", torch.float64).numpy():
            h = hashlib.blake2b(row.tobytes() + seed.to_bytes(8, "little", signed=True), digest_size=8)
            g = torch.Generator().manual_seed(int.from_bytes(h.digest(), "little") & ((1 << 63) - 1))
            rows.append(torch.randn(row.shape, generator=g, dtype=torch.float64))
        return torch.stack(rows).to(device=x.device, dtype=x.dtype)


class ConstantMap(_Control):
    """A control: the same value at every feature (its SENS is 0: a metric that rewards it is gamed)."""

    def __init__(self, value: float = 1.0, name: Optional[str] = None):
        super().__init__(name)
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value != 0):
            raise ValueError(f"`value` must be a finite non-zero number, got {value!r}")
        self.value = float(value)

    def __call__(self, x, target=None, *, generator=None):
        return torch.full_like(self._check(x), self.value)


class SobelMap(_Control):
    """A control: the edge magnitude of ``x`` itself (Sobel, per channel, zero padding), a map that
    looks like an explanation and knows nothing of the model (Adebayo et al. 2018)."""

    def __call__(self, x, target=None, *, generator=None):
        x = self._check(x)
        if x.dim() not in (3, 4):
            raise ValueError(f"SobelMap needs images (N, C, H, W) or (N, H, W), got shape {tuple(x.shape)}")
        img = x if x.dim() == 4 else x.unsqueeze(1)
        C = img.shape[1]
        kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=x.dtype, device=x.device)
        k = torch.stack([kx, kx.T]).unsqueeze(1).repeat(C, 1, 1, 1)  # (2C, 1, 3, 3)
        g = torch.nn.functional.conv2d(img, k, padding=1, groups=C).view(img.shape[0], C, 2, *img.shape[2:])
        out = g.pow(2).sum(2).sqrt()
        return out if x.dim() == 4 else out[:, 0]


def randomized_network(make_explainer: Callable, model: torch.nn.Module, seed: int = 0):
    """A control: ``make_explainer(net)`` for ``net`` = ``model`` with every layer re-initialised
    (:func:`xailib.sanity.randomize`): an explanation of a network that knows nothing, scored
    against the trained one. The model must have parameters (else ``ValueError``)."""
    from .sanity import layers, randomize

    if not callable(make_explainer):
        raise TypeError("`make_explainer` must be a callable net -> explainer (e.g. xailib.explainers.Gradient)")
    net = randomize(model, list(layers(model)), seed=seed)
    ex = make_explainer(net)
    try:
        ex.name = f"{getattr(ex, 'name', type(ex).__name__)} (random net)"
    except AttributeError:  # an explainer whose name is read-only keeps it
        pass
    return ex
