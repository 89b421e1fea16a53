"""The result record of a theory check: :class:`CheckResult`, its table (:func:`summarize`) and
its plot (:func:`plot_check`).

Every check is written so that the statement reads **lhs ≤ rhs** per instance; see the book's
*The paper in brief*, § Theory, and the chapter ``notebooks/theory``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from torch import Tensor

from ._core import DTYPE

__all__ = ["CheckResult", "summarize", "plot_check"]


@dataclass
class CheckResult:
    """Outcome of one numerical check: the statement reads ``lhs ≤ rhs`` per instance.

    ``lhs``, ``rhs``, ``tightness`` (= lhs / rhs) and ``holds_each`` are tensors of shape
    ``(n_instances,)``; ``holds`` is True when every instance satisfies
    ``lhs ≤ rhs · (1 + rtol) + atol`` (and its hypothesis, when the statement has one:
    ``hypothesis`` is then a boolean tensor; an instance whose hypothesis fails does not hold).
    ``info`` holds per-instance extras (tensors or lists of length n_instances: network depth,
    part of the statement, auxiliary estimates); ``notes`` say which side each estimate errs on.
    """

    name: str
    statement: str
    lhs: Tensor
    rhs: Tensor
    holds: bool
    tightness: Tensor
    holds_each: Tensor
    settings: dict
    info: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    hypothesis: Optional[Tensor] = None

    @property
    def n(self) -> int:
        return int(self.lhs.numel())

    @property
    def n_violations(self) -> int:
        return int((~self.holds_each).sum())

    def to_frame(self):
        """A pandas DataFrame, one row per instance: lhs, rhs, tightness, holds and ``info``."""
        import pandas as pd

        cols = {
            "lhs": self.lhs.detach().cpu().numpy(),
            "rhs": self.rhs.detach().cpu().numpy(),
            "tightness": self.tightness.detach().cpu().numpy(),
            "holds": self.holds_each.cpu().numpy(),
        }
        if self.hypothesis is not None:
            cols["hypothesis"] = self.hypothesis.cpu().numpy()
        for k, v in self.info.items():
            if isinstance(v, Tensor):
                v = v.detach().cpu().numpy()
            if len(v) == self.n:
                cols[k] = v
        return pd.DataFrame(cols)

    def summary(self) -> dict:
        """One row for :func:`summarize`: counts and the range of the tightness."""
        t = self.tightness[torch.isfinite(self.tightness)]
        q = (lambda p: float(torch.quantile(t, p))) if t.numel() else (lambda p: float("nan"))
        return {
            "check": self.name,
            "statement": self.statement,
            "instances": self.n,
            "violations": self.n_violations,
            "holds": self.holds,
            "tightness min": q(0.0),
            "tightness median": q(0.5),
            "tightness max": q(1.0),
        }

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"CheckResult({self.name}: holds={self.holds}, {s['violations']}/{s['instances']} violations, "
            f"tightness {s['tightness min']:.3g}..{s['tightness max']:.3g} (median {s['tightness median']:.3g}))"
        )


def _result(name, statement, lhs, rhs, settings, info=None, notes=None, rtol=1e-6, atol=0.0,
            hypothesis=None) -> CheckResult:
    lhs = lhs.detach().to(DTYPE).reshape(-1)
    rhs = rhs.detach().to(DTYPE).reshape(-1)
    atol_t = torch.as_tensor(atol, dtype=DTYPE).expand_as(rhs) if not isinstance(atol, Tensor) else atol.to(DTYPE)
    ok = lhs <= rhs * (1 + rtol) + atol_t
    if hypothesis is not None:
        hypothesis = hypothesis.reshape(-1).bool()
        ok = ok & hypothesis
    with torch.no_grad():
        tight = torch.where(rhs != 0, lhs / rhs, torch.where(lhs == 0, torch.zeros_like(lhs), torch.full_like(lhs, math.inf)))
    settings = dict(settings)
    settings.setdefault("rtol", rtol)
    return CheckResult(
        name=name, statement=statement, lhs=lhs, rhs=rhs, holds=bool(ok.all()), tightness=tight,
        holds_each=ok, settings=settings, info=dict(info or {}), notes=list(notes or []), hypothesis=hypothesis,
    )


def summarize(results: Sequence[CheckResult]):
    """Summary table (pandas DataFrame) of several checks, one row each."""
    import pandas as pd

    return pd.DataFrame([r.summary() for r in results])


def plot_check(result: CheckResult, hue: Optional[str] = None, title: Optional[str] = None, log: bool = True,
               lhs_label: str = "lhs", rhs_label: str = "rhs", axes=None):
    """Scatter of lhs against rhs with the line y = x (points above it violate the statement),
    and the distribution of the tightness lhs / rhs. ``hue``: an ``info`` column to colour by.
    Zeros (and infinities) cannot sit on log axes: they are left out and counted in the title."""
    import matplotlib.pyplot as plt
    import numpy as np

    df = result.to_frame()
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    else:
        fig = axes[0].figure
    ax, ax2 = axes
    ok = np.isfinite(df.lhs) & np.isfinite(df.rhs)
    if log:
        ok &= (df.lhs > 0) & (df.rhs > 0)
    d = df[ok]
    groups = [(None, d)] if hue is None else list(d.groupby(hue))
    for key, g in groups:
        ax.scatter(g.rhs, g.lhs, s=14, alpha=0.7, label=None if key is None else f"{hue}={key}")
    if len(d):
        lo = min(d.lhs.min(), d.rhs.min())
        hi = max(d.lhs.max(), d.rhs.max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel(rhs_label)
    ax.set_ylabel(lhs_label)
    left_out = int((~ok).sum())
    ax.set_title((title or result.name) + (f" ({left_out} points at 0/inf not shown)" if left_out else ""),
                 fontsize=10)
    ax.legend(fontsize=8)
    tt = df[np.isfinite(df.tightness) & (df.tightness > 0)]
    if len(tt):
        t = tt.tightness
        wide = log and t.max() / t.min() > 100
        vals = np.log10(t) if wide else t
        bins = np.histogram_bin_edges(vals, bins=30)
        if hue is None:
            ax2.hist(vals, bins=bins)
        else:
            keys, parts = zip(*[(k, (np.log10(g.tightness) if wide else g.tightness)) for k, g in tt.groupby(hue)])
            ax2.hist(list(parts), bins=bins, stacked=True, label=[f"{hue}={k}" for k in keys])
            ax2.legend(fontsize=8)
        ax2.axvline(0.0 if wide else 1.0, color="k", ls="--", lw=1)
        ax2.set_xlabel("log10 tightness (lhs / rhs)" if wide else "tightness (lhs / rhs)")
    ax2.set_ylabel("instances")
    ax2.set_title(f"holds: {result.holds}  ({result.n_violations}/{result.n} violations)", fontsize=10)
    fig.tight_layout()
    return fig


