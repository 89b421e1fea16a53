"""The sanity check of Adebayo et al. (2018), the paper's Fig. 9: explanations against randomised networks.

An explanation that stays the same when the network's weights are destroyed cannot be explaining
the network. This module builds the randomised networks and scores how similar the maps stay.

Layer randomisation (``model`` any ``nn.Module``; its *layers* are the modules that own parameters
directly, in registration order = input to output for the book's networks):

* :func:`randomize`: a deep copy with some layers re-initialised; the original is untouched and the
  copy shares no tensor with it. Each layer's new weights come from its own seeded stream (the
  layer's name), so the same layer gets the same random weights in every stage.
* :func:`cascade`: trained, then the top 1, 2, ..., L layers randomised (output layer down); the
  last stage is the all-random network.
* :func:`independent`: one layer randomised at a time, the others trained.
* :func:`stages`: both, as one ordered dict.
* :func:`groups`: what is randomised as one unit: each layer, or with ``depth=k`` each block (layers
  grouped by their names' first k components), for deep networks such as EfficientNet.

Re-initialisation: PyTorch's default for ``Linear``/``Conv`` layers, every parameter
``U(-1/√fan_in, 1/√fan_in)`` (``fan_in`` = input features × kernel size).

Similarity of two maps of one instance (:func:`similarity`; per instance, then mean and standard
error ``std/√N`` over the instances in :func:`compare`):

* ``spearman |phi|``: Spearman rank correlation of the absolute maps over the features;
* ``spearman phi``: the same with signs;
* ``ssim``: SSIM (Wang et al., 2004) of the absolute maps, each scaled to [0, 1] by its maximum
  (:func:`ssim`: Gaussian window 11×11, σ = 1.5, ``C1 = (0.01 L)²``, ``C2 = (0.03 L)²``, L = 1).

Verdict (:func:`verdicts`): an explainer *passes* when its maps of the all-random network are
clearly unlike those of the trained one: the mean ``spearman |phi|`` at the all-random stage plus
its standard error times the Student-t quantile of two normal standard errors (N − 1 degrees of
freedom) is below ``threshold`` (0.5 by default); it *fails* otherwise; and it is
*inconclusive* when two runs of it on the trained network (different seeds) are not themselves
clearly similar (the noise floor, ``compare(..., repeat_seed=1)``).

Chapter: ``notebooks/sanity_check`` (the book's *The paper in brief*, § Experiments).
"""
from __future__ import annotations

import copy
import math
from collections import OrderedDict
from typing import Callable, Dict, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import _utils as U

__all__ = [
    "layers",
    "randomize",
    "groups",
    "cascade",
    "independent",
    "stages",
    "rank",
    "spearman",
    "ssim",
    "similarity",
    "compare",
    "summarize",
    "verdicts",
    "metric_summary",
    "metric_per_instance",
    "Memo",
    "SIMILARITIES",
    "REPEAT",
]

#: the similarity scores of :func:`similarity`, in order
SIMILARITIES = ("spearman |phi|", "spearman phi", "ssim")

#: the stage name of the repeated reference explanations (:func:`compare`'s ``repeat_seed``)
REPEAT = "trained, other seed"


# --------------------------------------------------------------------------- layer randomisation
def layers(model: nn.Module) -> "OrderedDict[str, nn.Module]":
    """The modules of ``model`` that own parameters directly, in registration order (input → output)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")
    out = OrderedDict()
    for name, m in model.named_modules():
        if any(True for _ in m.parameters(recurse=False)):
            out[name] = m
    if not out:
        raise ValueError("`model` has no parameters to randomise")
    return out


def _fan_in(module: nn.Module) -> int:
    w = getattr(module, "weight", None)
    if isinstance(w, Tensor) and w.dim() >= 2:
        return int(w[0].numel())
    p = next(module.parameters(recurse=False))
    return int(p.numel())


@torch.no_grad()
def _reinit(module: nn.Module, name: str, seed: int) -> None:
    gen = U.make_generator(seed, "cpu", stream=f"randomize:{name}")
    bound = 1.0 / math.sqrt(max(_fan_in(module), 1))
    for p in module.parameters(recurse=False):
        new = (torch.rand(p.shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound
        p.copy_(new.to(dtype=p.dtype, device=p.device))


def randomize(model: nn.Module, which: Sequence[str], seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` with the layers named in ``which`` re-initialised at random.

    ``which``: names from :func:`layers` (``[]`` gives an untouched copy). Every parameter of a
    chosen layer is drawn from ``U(-1/√fan_in, 1/√fan_in)`` with a generator seeded by ``seed``
    and the layer's name, so a layer's random weights do not depend on which other layers are
    randomised. The copy is in eval mode and shares no tensor with ``model``.
    """
    names = layers(model)
    which = list(which)
    unknown = [w for w in which if w not in names]
    if unknown:
        raise ValueError(f"`which` names unknown layers {unknown}; layers are {list(names)}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"`seed` must be an int, got {type(seed).__name__}")
    out = copy.deepcopy(model)
    new_layers = layers(out)
    for w in which:
        _reinit(new_layers[w], w, seed)
    out.eval()
    return out


def _label(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{names[0]}..{names[-1]}"


def groups(model: nn.Module, depth: Optional[int] = None) -> "OrderedDict[str, list]":
    """The units that :func:`cascade` and :func:`independent` randomise: ``{label: [layer names]}``, input → output.

    ``depth=None``: one unit per layer of :func:`layers` (the label is the layer's name). ``depth=k``:
    layers grouped by the first ``k`` components of their dotted names, once the leading components
    that every layer shares are dropped (a wrapper's ``model.``), so a deep network is randomised
    block by block, as Adebayo et al. did for Inception v3: with timm's EfficientNet, ``depth=2``
    gives ``conv_stem, bn1, blocks.0, ..., blocks.6, conv_head, bn2, classifier``. A group is
    listed where its first layer is (a group is a subtree of modules, so its layers are contiguous).
    """
    names = list(layers(model))
    if depth is None:
        return OrderedDict((n, [n]) for n in names)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"`depth` must be None or an int >= 1, got {depth!r}")
    parts = [n.split(".") for n in names]
    common = 0
    while all(len(p) > common + 1 for p in parts) and len({p[common] for p in parts}) == 1:
        common += 1
    out: "OrderedDict[str, list]" = OrderedDict()
    for n, p in zip(names, parts):
        out.setdefault(".".join(p[common:common + depth]), []).append(n)  # a subtree: contiguous in module order
    return out


def cascade(model: nn.Module, seed: int = 0, depth: Optional[int] = None) -> "OrderedDict[str, nn.Module]":
    """``{"trained": copy, "cascade 1 (<top>)": ..., ..., "cascade L (all random)": ...}``.

    Stage k randomises the top k units of :func:`groups` (layers, or blocks with ``depth``),
    output down; the last stage is the all-random network.
    """
    units = groups(model, depth)
    labels = list(units)
    out = OrderedDict(trained=randomize(model, [], seed))
    L = len(labels)
    for k in range(1, L + 1):
        top = labels[L - k:][::-1]
        tag = "all random" if k == L else _label(top)
        out[f"cascade {k} ({tag})"] = randomize(model, [n for u in top for n in units[u]], seed)
    return out


def independent(model: nn.Module, seed: int = 0, depth: Optional[int] = None) -> "OrderedDict[str, nn.Module]":
    """``{"independent (<unit>)": copy with only that unit randomised}``, output unit first (units: :func:`groups`)."""
    units = groups(model, depth)
    return OrderedDict((f"independent ({u})", randomize(model, units[u], seed)) for u in list(units)[::-1])


def stages(model: nn.Module, seed: int = 0, depth: Optional[int] = None) -> "OrderedDict[str, nn.Module]":
    """:func:`cascade` followed by :func:`independent` (one ordered dict of networks)."""
    out = cascade(model, seed, depth)
    out.update(independent(model, seed, depth))
    return out


# --------------------------------------------------------------------------- similarity scores
def rank(a: Tensor) -> Tensor:
    """Ranks along the last dimension (1 … n), ties given their average rank."""
    n = a.shape[-1]
    order = a.argsort(dim=-1, stable=True)
    sorted_a = a.gather(-1, order)
    pos = torch.arange(1, n + 1, dtype=torch.float64, device=a.device).expand(a.shape).clone()
    # average ranks over runs of ties: for each run, mean of its positions
    new_run = torch.ones_like(sorted_a, dtype=torch.bool)
    new_run[..., 1:] = sorted_a[..., 1:] != sorted_a[..., :-1]
    run_id = new_run.long().cumsum(-1) - 1
    sums = torch.zeros_like(pos).scatter_add_(-1, run_id, pos)
    counts = torch.zeros_like(pos).scatter_add_(-1, run_id, torch.ones_like(pos))
    avg = sums.gather(-1, run_id) / counts.gather(-1, run_id)
    return torch.empty_like(avg).scatter_(-1, order, avg)


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation per instance: Pearson correlation of the ranks over all features.

    ``a``, ``b``: ``(N, *F)`` → ``(N,)`` (float64). A constant map has no ranking: NaN.
    """
    a = U.check_input(a, "a")
    U.check_same_shape(b, a, "b")
    ra, rb = rank(a.reshape(a.shape[0], -1).double()), rank(b.reshape(b.shape[0], -1).double())
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    den = (ra.norm(dim=1) * rb.norm(dim=1))
    return (ra * rb).sum(1) / den.where(den > 0, torch.full_like(den, float("nan")))


def _gaussian_window(size: int, sigma: float, dtype, device) -> Tensor:
    c = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(c**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(a: Tensor, b: Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> Tensor:
    """Mean structural similarity (Wang et al., 2004) per instance, ``(N, C, H, W)`` → ``(N,)``.

    ``SSIM = (2 μa μb + C1)(2 σab + C2) / ((μa² + μb² + C1)(σa² + σb² + C2))`` with local means,
    variances and covariance under a normalised Gaussian window (``window`` × ``window``, ``sigma``),
    ``C1 = (k1 L)²``, ``C2 = (k2 L)²``, ``L = data_range``; averaged over the valid positions and
    the channels. Identical images give 1; the window is shrunk to the image if larger.
    """
    a = U.check_input(a, "a", min_dim=4)
    U.check_same_shape(b, a, "b")
    if a.dim() != 4:
        raise ValueError(f"`a` must have shape (N, C, H, W), got {tuple(a.shape)}")
    U.check_positive(data_range, "data_range")
    U.check_positive(window, "window", integer=True)
    U.check_positive(sigma, "sigma")
    a, b = a.double(), b.double()
    N, C, H, W = a.shape
    w = min(window, H, W)
    g = _gaussian_window(w, sigma, a.dtype, a.device).expand(C, 1, w, w)

    def filt(z):
        return F.conv2d(z, g, groups=C)

    mu_a, mu_b = filt(a), filt(b)
    saa = filt(a * a) - mu_a**2
    sbb = filt(b * b) - mu_b**2
    sab = filt(a * b) - mu_a * mu_b
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2))
    return s.mean(dim=(1, 2, 3))


def _unit_abs(phi: Tensor) -> Tensor:
    a = phi.abs().double()
    m = a.reshape(a.shape[0], -1).max(1).values.clamp_min(1e-30)
    return a / m.view(-1, *([1] * (a.dim() - 1)))


def similarity(phi_a: Tensor, phi_b: Tensor) -> Dict[str, Tensor]:
    """Per-instance similarities of two explanations of the same inputs: ``{score: (N,)}``.

    Scores: ``spearman |phi|``, ``spearman phi`` and ``ssim`` (of the absolute maps scaled to
    [0, 1]; needs image-shaped maps ``(N, C, H, W)``, NaN otherwise).
    """
    phi_a = U.check_input(phi_a, "phi_a")
    U.check_same_shape(phi_b, phi_a, "phi_b")
    out = {
        "spearman |phi|": spearman(phi_a.abs(), phi_b.abs()),
        "spearman phi": spearman(phi_a, phi_b),
    }
    if phi_a.dim() == 4:
        out["ssim"] = ssim(_unit_abs(phi_a), _unit_abs(phi_b))
    else:
        out["ssim"] = torch.full((phi_a.shape[0],), float("nan"), dtype=torch.float64)
    return out


# --------------------------------------------------------------------------- the experiment
def compare(
    make_explainers: Callable[[nn.Module], Mapping[str, Callable]],
    networks: Mapping[str, nn.Module],
    x: Tensor,
    target=None,
    reference: str = "trained",
    progress: Optional[bool] = None,
    repeat_seed: Optional[int] = None,
):
    """Explain ``x`` under every network and score each map against the ``reference`` network's.

    ``make_explainers(model) -> {name: explainer}`` (e.g. ``lambda m: xailib.experiments.make_explainers(m, s)``).
    Returns ``(maps, table)``: ``maps[stage][explainer]`` the ``(N, *F)`` explanations, and a tidy
    DataFrame with columns ``stage, explainer, instance, metric, value`` (metrics :data:`SIMILARITIES`).

    ``repeat_seed``: also explain with the ``reference`` network again, every explainer called with
    ``generator=repeat_seed`` (stage :data:`REPEAT`): the similarity of two runs of the same
    explainer on the same network, the *noise floor* that randomisation must be compared with
    (1 for deterministic explainers; low for a Monte-Carlo explainer with too few samples).
    """
    import pandas as pd

    if not isinstance(networks, Mapping) or reference not in networks:
        raise ValueError(f"`networks` must be a mapping holding the reference stage {reference!r}")
    x = U.check_input(x, "x")
    t = U.check_target(target, x.shape[0], x.device)
    maps: Dict[str, Dict[str, Tensor]] = OrderedDict()
    for stage in U.progress(list(networks), desc="stages", disable=None if progress is None else not progress):
        ex = make_explainers(networks[stage])
        maps[stage] = OrderedDict((name, e(x, t).detach()) for name, e in ex.items())
    if repeat_seed is not None:
        ex = make_explainers(networks[reference])
        maps[REPEAT] = OrderedDict((name, e(x, t, generator=int(repeat_seed)).detach()) for name, e in ex.items())
    rows = []
    for stage, per in maps.items():
        for name, phi in per.items():
            sims = similarity(maps[reference][name], phi)
            for metric, vals in sims.items():
                for i, v in enumerate(vals.tolist()):
                    rows.append((stage, name, i, metric, v))
    table = pd.DataFrame(rows, columns=["stage", "explainer", "instance", "metric", "value"])
    return maps, table


def summarize(table):
    """Mean and standard error (``std/√N``) over instances: index (stage, explainer), columns per metric."""
    g = table.groupby(["stage", "explainer", "metric"], sort=False)["value"]
    out = g.agg(mean="mean", se=lambda v: v.std(ddof=1) / math.sqrt(v.count()) if v.count() > 1 else float("nan"))
    out = out.unstack("metric")
    out.columns = [m if s == "mean" else f"{m} se" for s, m in out.columns]
    metrics = [m for m in SIMILARITIES if m in out.columns]
    return out[[c for m in metrics for c in (m, f"{m} se")]]


def verdicts(table, stage: str = None, threshold: float = 0.5, metric: str = "spearman |phi|", z="t"):
    """Per explainer: passes when ``mean + z·se`` of ``metric`` at ``stage`` is below ``threshold``.

    ``stage`` defaults to the all-random stage of :func:`cascade`. When ``table`` holds the
    :data:`REPEAT` stage (``compare(..., repeat_seed=...)``), an explainer whose repeated maps of
    the *trained* network are themselves not clearly similar (``mean − z·se`` of the noise floor
    not above ``threshold``) gets ``"inconclusive (noisy)"``: dissimilarity after randomisation
    then says nothing. Returns a DataFrame with the mean, its standard error, the upper bound,
    the noise floor (when available) and ``verdict``.

    ``z="t"`` (default): the Student-t quantile with ``N − 1`` degrees of freedom at the one-sided
    level of two normal standard errors (Φ(2) = 0.977), N the instances of each row: with a
    handful of instances the standard error is itself uncertain and 2 is too small (the quantile
    is 14.0 at N = 2, 4.5 at N = 3, 2.4 at N = 8, 2.05 at N = 50). A number: that many standard
    errors, whatever N.
    """
    import pandas as pd

    summ = summarize(table)
    if isinstance(z, str):
        if z != "t":
            raise ValueError(f"`z` must be a number or 't', got {z!r}")
    else:
        z = float(z)
        if not math.isfinite(z) or z < 0:
            raise ValueError(f"`z` must be a finite number >= 0 or 't', got {z!r}")
    if stage is None:
        cands = [s for s in table["stage"].unique() if "all random" in s]
        if not cands:
            raise ValueError("no all-random stage in `table`; pass `stage`")
        stage = cands[0]
    if metric not in SIMILARITIES:
        raise ValueError(f"`metric` must be one of {SIMILARITIES}, got {metric!r}")
    sub = summ.xs(stage, level="stage")
    out = pd.DataFrame({"stage": stage, metric: sub[metric], f"{metric} se": sub[f"{metric} se"]})
    counts = table[table["metric"] == metric].groupby(["stage", "explainer"], sort=False)["value"].count()

    def quantile(stage_):
        """The bound's multiplier at ``stage_``: ``z``, or per explainer the t quantile of its N − 1 df."""
        if z != "t":
            return z
        from scipy.stats import norm, t as student_t

        n = counts.xs(stage_, level="stage").reindex(out.index)
        return pd.Series(student_t.ppf(norm.cdf(2.0), (n - 1).clip(lower=1)), index=out.index).where(n > 1)

    q = quantile(stage)
    if z == "t":
        out["quantile"] = q
    out["upper"] = out[metric] + q * out[f"{metric} se"]
    out["verdict"] = ["passes" if u < threshold else "fails" for u in out["upper"]]
    if REPEAT in set(table["stage"]):
        rep = summ.xs(REPEAT, level="stage")
        out["noise floor"] = rep[metric].reindex(out.index)
        low = out["noise floor"] - (quantile(REPEAT) * rep[f"{metric} se"].reindex(out.index)).fillna(0.0)
        out.loc[low <= threshold, "verdict"] = "inconclusive (noisy)"
    return out


def metric_summary(result):
    """The summary table of an :class:`xailib.metrics.Evaluation` (rows: explainers)."""
    return result.summary


def metric_per_instance(result, metric: str):
    """Per-instance values of ``metric`` of an :class:`xailib.metrics.Evaluation`: instances × explainers."""
    return result.wide(metric)


class Memo:
    """An explainer that remembers its last explanation (so ``evaluate`` need not recompute maps).

    ``Memo(explainer, x, target, phi)``: returns ``phi`` when called on ``x`` itself (same values
    and target), otherwise calls ``explainer`` (e.g. on the sensitivity neighbours).
    """

    def __init__(self, explainer, x: Tensor, target, phi: Tensor):
        self.explainer = explainer
        self.kind = explainer.kind
        self.stochastic = getattr(explainer, "stochastic", False)
        self.name = getattr(explainer, "name", type(explainer).__name__)
        self._x, self._t, self._phi = x, target, phi

    def __call__(self, x, target=None, **kwargs):
        same_t = (target is None and self._t is None) or (
            target is not None and self._t is not None and torch.equal(torch.as_tensor(target).view(-1).to(self._t.device), self._t.view(-1))
        )
        if not kwargs and x.shape == self._x.shape and same_t and torch.equal(x, self._x):
            return self._phi
        return self.explainer(x, target, **kwargs)
