"""Plots shared by the chapters: saliency grids, metric-vs-parameter curves, grouped bars.

Saliency maps are shown as in the paper's Figures 6-8 (appendix B.3): each map normalised to
zero mean and unit variance (:func:`zscore`) and drawn on a symmetric diverging colour scale,
so that maps of different explainers (and networks) are comparable at a glance.
Used by the chapters (``notebooks/mnist.ipynb``, ``notebooks/mnist_robust.ipynb``, ``notebooks/imagenet.ipynb``, ...).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np


def _to_numpy(a) -> np.ndarray:
    try:
        import torch

        if isinstance(a, torch.Tensor):
            return a.detach().cpu().double().numpy()
    except ImportError:  # pragma: no cover
        pass
    return np.asarray(a, dtype=float)


def _as_images(a, name: str) -> np.ndarray:
    """(N, C, H, W) / (N, H, W) / (H, W) -> (N, H, W) (channels summed)."""
    arr = _to_numpy(a)
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 4:
        arr = arr.sum(axis=1)
    elif arr.ndim != 3:
        raise ValueError(f"`{name}` must have shape (N, C, H, W), (N, H, W) or (H, W), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"`{name}` contains NaN or inf values")
    return arr


def _se(df, metric: str):
    """The standard-error column of ``metric`` (``"<metric> se"`` or ``"<metric>_se"``), or None."""
    for c in (f"{metric} se", f"{metric}_se"):
        if c in df.columns:
            return df[c]
    return None


def zscore(maps, eps: float = 1e-12) -> np.ndarray:
    """Normalise every map to zero mean and unit variance (over its pixels).

    ``maps``: (N, C, H, W), (N, H, W) or (H, W) tensor/array; returns float64 (N, H, W).
    A constant map becomes all zeros (no division by zero): one whose spread is at most ``eps``
    times its largest magnitude, so that a map of tiny but varying values (the gradient of a
    randomised deep network, say, of order 1e-15) is shown, not blanked.
    """
    arr = _as_images(maps, "maps")
    flat = arr.reshape(arr.shape[0], -1)
    mean = flat.mean(axis=1, keepdims=True)
    std = flat.std(axis=1, keepdims=True)
    flat_ = std <= eps * np.abs(flat).max(axis=1, keepdims=True)
    out = (flat - mean) / np.where(flat_, 1.0, std)
    out[flat_[:, 0]] = 0.0
    return out.reshape(arr.shape)


def saliency_grid(
    images,
    columns: Mapping[str, object],
    *,
    row_labels: Optional[Sequence[str]] = None,
    transpose: bool = False,
    vmax: float = 3.0,
    cmap: str = "RdBu_r",
    cell: float = 1.25,
    title: Optional[str] = None,
):
    """A grid of z-scored saliency maps with the input images first.

    Parameters
    ----------
    images
        ``(N, C, H, W)`` inputs in [0, 1], drawn in the first column (in colour when ``C = 3``,
        else in grey; maps of several channels are summed over them).
    columns
        ``{label: maps}`` with maps shaped like ``images``; one column per entry, in order.
    row_labels
        One label per instance (e.g. ``"label 7"``).
    transpose
        Instances as columns and explainers as rows instead.
    vmax
        The colour scale is ``[-vmax, vmax]`` in units of standard deviations.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (one shared colourbar, labelled).
    """
    import matplotlib.pyplot as plt

    imgs = _as_images(images, "images")
    raw = _to_numpy(images)
    rgb = raw.transpose(0, 2, 3, 1).clip(0, 1) if raw.ndim == 4 and raw.shape[1] == 3 else None
    if not isinstance(columns, Mapping) or not columns:
        raise ValueError("`columns` must be a non-empty mapping {label: maps}")
    maps = {}
    for k, v in columns.items():
        z = zscore(v)
        if z.shape != imgs.shape:
            raise ValueError(f"maps {k!r} have shape {z.shape[:1] + z.shape[1:]}, images {imgs.shape}")
        maps[k] = z
    n = imgs.shape[0]
    if row_labels is not None and len(row_labels) != n:
        raise ValueError(f"`row_labels` must have {n} entries, got {len(row_labels)}")
    labels = ["input", *maps.keys()]
    panels = [imgs, *maps.values()]
    n_rows, n_cols = (len(labels), n) if transpose else (n, len(labels))
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(cell * n_cols + 1.2, cell * n_rows + (0.6 if title else 0.3)), squeeze=False,
        layout="constrained",
    )
    im = None
    for j, (lab, arr) in enumerate(zip(labels, panels)):
        for i in range(n):
            ax = axes[j, i] if transpose else axes[i, j]
            if j == 0 and rgb is not None:
                ax.imshow(rgb[i])
            elif j == 0:
                ax.imshow(arr[i], cmap="gray", vmin=arr[i].min(), vmax=max(arr[i].max(), arr[i].min() + 1e-12))
            else:
                im = ax.imshow(arr[i], cmap=cmap, vmin=-vmax, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            top = (j == 0) if transpose else (i == 0)
            left = (i == 0) if transpose else (j == 0)
            if top:
                ax.set_title(row_labels[i] if (transpose and row_labels is not None) else ("" if transpose else lab),
                             fontsize=8)
            if left:
                ax.set_ylabel(lab if transpose else (row_labels[i] if row_labels is not None else f"#{i}"), fontsize=8)
    if im is not None:
        cb = fig.colorbar(im, ax=axes, shrink=min(1.0, 3.0 / max(n_rows, 1) + 0.3), pad=0.02)
        cb.set_label("saliency (z-score)")
    if title:
        fig.suptitle(title)
    return fig


def curve_with_errors(ax, x, mean, se, *, label=None, marker="o", **kwargs):
    """Plot ``mean`` against ``x`` with ±1 standard-error bars; returns the container."""
    x, mean, se = _to_numpy(x), _to_numpy(mean), _to_numpy(se)
    if not (x.shape == mean.shape == se.shape):
        raise ValueError(f"`x`, `mean` and `se` must have the same shape, got {x.shape}, {mean.shape}, {se.shape}")
    return ax.errorbar(x, mean, yerr=se, label=label, marker=marker, capsize=3, **kwargs)


def sweep_plot(df, x: str, metrics: Sequence[str], *, xlabel: Optional[str] = None, ylabels=None, title=None):
    """One panel per metric: ``df[metric]`` against ``df[x]`` with ``df[metric + " se"]`` error bars."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.3), squeeze=False)
    for k, m in enumerate(metrics):
        ax = axes[0, k]
        se = _se(df, m)
        se = np.zeros(len(df)) if se is None else se
        curve_with_errors(ax, df[x], df[m], se, label=m)
        ax.set_xlabel(xlabel or x)
        ax.set_ylabel(ylabels[k] if ylabels else m)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def grouped_bars(
    tables: Mapping[str, object], metric: str, *, ax=None, ylabel: Optional[str] = None, log: bool = False
):
    """Grouped bar chart: one group per explainer, one bar per table (e.g. regular / robust).

    ``tables``: ``{label: summary DataFrame}`` with index = explainers, columns ``metric`` and
    optionally ``metric + " se"`` (drawn as error bars). Explainers are those of the first table.
    """
    import matplotlib.pyplot as plt

    if not tables:
        raise ValueError("`tables` must not be empty")
    first = next(iter(tables.values()))
    names = list(first.index)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(names) * len(tables)), 3.3))
    width = 0.8 / len(tables)
    pos = np.arange(len(names))
    for k, (lab, t) in enumerate(tables.items()):
        mean = t[metric].reindex(names).to_numpy(dtype=float)
        se = _se(t, metric)
        se = None if se is None else se.reindex(names).to_numpy(dtype=float)
        ax.bar(pos + (k - (len(tables) - 1) / 2) * width, mean, width, yerr=se, capsize=2, label=lab)
    ax.set_xticks(pos)
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_ylabel(ylabel or metric)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    return ax


def cascade_curves(summary, stages: Sequence[str], explainers: Sequence[str], *, metrics=None,
                   xlabel: str = "units randomised (cascade, output down)", title: Optional[str] = None):
    """The sanity check's similarity curves: one panel per similarity score, one line per explainer.

    ``summary``: :func:`xailib.sanity.summarize`'s table (index (stage, explainer), columns
    ``<metric>`` and ``<metric> se``); ``stages``: the cascade stages in order (``"trained"`` first:
    x = 0, 1, ...). Error bars are two standard errors over the instances. Returns the figure.
    """
    import matplotlib.pyplot as plt

    metrics = list(metrics) if metrics is not None else [m for m in ("spearman |phi|", "spearman phi", "ssim")
                                                          if m in summary.columns]
    missing = [(s, e) for s in stages for e in explainers if (s, e) not in summary.index]
    if missing:
        raise ValueError(f"`summary` has no row for (stage, explainer) {missing[:3]}{' ...' if len(missing) > 3 else ''}")
    for m in metrics:
        if m not in summary.columns or f"{m} se" not in summary.columns:
            raise ValueError(f"`summary` must have columns {m!r} and '{m} se'; it has {list(summary.columns)}")
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.3 * len(metrics), 3.8), sharey=True, layout="constrained",
                             squeeze=False)
    k = np.arange(len(stages))
    for ax, metric in zip(axes[0], metrics):
        for name in explainers:
            mean = [summary.loc[(st, name), metric] for st in stages]
            err = [2 * summary.loc[(st, name), f"{metric} se"] for st in stages]
            ax.errorbar(k, mean, yerr=np.nan_to_num(np.asarray(err, dtype=float)), marker="o", ms=3, capsize=2,
                        label=name)
        ax.set_xticks(k)
        ax.set_xticklabels([str(i) for i in k])
        ax.set_xlabel(xlabel)
        ax.set_title(metric)
        ax.axhline(0, color="grey", lw=0.5)
    axes[0][0].set_ylabel("similarity to the trained network's map")
    axes[0][-1].legend(fontsize=7, ncol=2)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
