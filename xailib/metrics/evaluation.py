"""The paired evaluation table: :func:`evaluate` and its :class:`Evaluation`; see :mod:`xailib.metrics`."""
from __future__ import annotations

import math
import warnings
from typing import Callable, Dict, Optional

import torch
from torch import Tensor

from .. import _utils as U
from .._utils import DEFAULT_BATCH_SIZE, SeedLike, TargetLike
from ..perturbations import NoisyBaseline, Perturbation, SquareRemoval
from ._common import (  # noqa: F401
    _check_batch_size,
    _check_scaling,
    _check_law,
    _check_explainer,
    _gen,
    _explain,
    _term,
    _project,
    _function_differences,
    _infd_stats,
    _draws_or_support,
    relative_draw_terms,
)
from .sensitivity import (  # noqa: F401
    _uniform_ball,
    _check_form,
    _check_normalize,
    _sensitivity_distances,
)


class Evaluation:
    """What :func:`evaluate` returns: the summary table, the per-instance values, notes, settings.

    Attributes:
        summary: DataFrame, index = explainer names (in the order given), columns ``"SENS_max"``,
            ``"SENS_max se"`` and, for each law name ``L``, ``"INFD[L]"``, ``"INFD[L] se"``
            (means over the ``N`` instances and their standard errors ``std/√N``).
        per_instance: tidy DataFrame with columns ``explainer, instance, metric, value``; ``metric``
            is one of ``"SENS_max"``, ``"INFD[L]"``, ``"INFD[L] raw"`` (unscaled), ``"INFD[L] beta"``
            (the optimal scale β*) and ``"INFD[L] mc_se"`` (per-instance Monte-Carlo error).
        notes: list of str (e.g. why an entry is NaN).
        settings: dict of the arguments that produced the table.

    ``wide(metric)`` gives the instances × explainers view used for paired differences:
    ``d = ev.wide("INFD[NB]"); (d["Grad"] - d["Grad-SG"]).mean()`` with standard error
    ``.std() / √N`` (see the book's *The paper in brief*, § Monte-Carlo hygiene, and the chapter
    ``notebooks/mnist``). In a notebook the object displays its summary.
    """

    def __init__(self, summary, per_instance, notes=None, settings=None):
        self.summary = summary
        self.per_instance = per_instance
        self.notes = list(notes or [])
        self.settings = dict(settings or {})

    @property
    def metrics(self) -> list:
        """The metric names present in :attr:`per_instance`, in order of first appearance."""
        return list(dict.fromkeys(self.per_instance["metric"]))

    def wide(self, metric: str):
        """Per-instance values of ``metric``: DataFrame, index = instance, one column per explainer.

        Explainers without a value for ``metric`` (e.g. a global explainer under a continuous law)
        are left out. Unknown ``metric`` → ``ValueError`` listing the available ones.
        """
        pi = self.per_instance
        sel = pi[pi["metric"] == metric]
        if sel.empty:
            raise ValueError(f"`metric` must be one of {self.metrics}, got {metric!r}")
        w = sel.pivot(index="instance", columns="explainer", values="value")
        order = [e for e in self.summary.index if e in w.columns]
        w = w[order]
        w.columns.name = None
        return w

    def __repr__(self) -> str:
        s = f"Evaluation(N={self.settings.get('N', '?')})\n{self.summary!r}"
        if self.notes:
            s += "\nnotes:\n" + "\n".join(f"  - {n}" for n in self.notes)
        return s

    def _repr_html_(self) -> str:
        import html

        out = self.summary._repr_html_()
        if self.notes:
            out += "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in self.notes) + "</ul>"
        return out


def per_instance(evaluation: "Evaluation", column: str):
    """Deprecated alias of ``evaluation.wide(column)`` (see :class:`Evaluation`)."""
    warnings.warn("metrics.per_instance(ev, col) is deprecated: use ev.wide(col)", DeprecationWarning, stacklevel=2)
    if not isinstance(evaluation, Evaluation):
        raise TypeError(f"`evaluation` must be what evaluate() returns (an Evaluation), got {type(evaluation).__name__}")
    return evaluation.wide(column)


@U.in_eval_mode("model", "explainers")
def evaluate(
    model: Callable[[Tensor], Tensor],
    explainers: Dict[str, Callable],
    x: Tensor,
    target: TargetLike = None,
    perturbations: Optional[Dict[str, Perturbation]] = None,
    n_infd: int = 1000,
    n_sens: int = 50,
    radius: float = 0.1,
    scaling: Optional[str] = "optimal",
    generator: SeedLike = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    normalize: bool = True,
    exact="auto",
    sens_reps: int = 3,
    sens_form="local",
    sens_baseline=0.0,
    relative: bool = False,
):
    """The paper's Table 1 for any set of explainers: SENS_max and INFD per law, paired.

    One row per explainer (row names = the dict keys, in order); columns ``"SENS_max"``,
    ``"SENS_max se"`` and, for each law name ``L``, ``"INFD[L]"``, ``"INFD[L] se"``: means over
    the ``N`` instances and their standard errors (``std/√N``). Default laws:
    ``{"NB": NoisyBaseline(), "Square": SquareRemoval()}``.

    Paired by construction: every law is drawn **once** (``n_infd`` draws) and ``f(x − I)`` is
    evaluated once per draw for all explainers (``N · n_infd`` forward passes per law, whatever
    the number of explainers); every explainer sees the same sensitivity neighbours
    (``n_sens`` uniform draws in the L∞ ball of ``radius``; ``n_sens=0`` skips SENS). With an
    int/None ``generator`` each component uses a fresh generator with that seed, so every entry
    equals the stand-alone :func:`infidelity` / :func:`sensitivity_max` call with the same seed.
    Global explainers under a continuous law get NaN (explained in ``.notes``).
    ``normalize`` is passed to the sensitivity (relative SENS by default; ``"unit"``: both maps
    unit-normalised, see :func:`sensitivity_max`); stochastic explainers use common random numbers
    there (compare with :func:`sensitivity_noise_floor`).

    ``sens_form``: ``"local"`` (default) or ``"global"`` (compare ``(x − b) ⊙ Φ``, ``b =
    sens_baseline``, as :func:`sensitivity_max`'s ``form``; Table 4's SENS is the global one),
    giving the column ``"SENS_max"``; or a dict ``{column: (form, normalize)}`` for several
    conventions computed on the **same** neighbours and explanations (one column, with its
    ``se``/``mc se``/``total se``, per entry; e.g. ``{"SENS_max": ("local", True),
    "SENS_max[global]": ("global", "unit")}``), at the cost of one.

    ``exact``: laws with a small finite support (SquareRemoval on MNIST, SingleFeature,
    ShapleyKernel on few groups) are summed exactly over their atoms (see :func:`infidelity`).

    ``relative=True``: also the scale-free ``"rINFD[L]"`` = INFD / E[Δf²] per law (with ``se``,
    ``mc se``, ``total se``; per instance also ``"INFD[L] energy"``, the E[Δf²]), on the same
    draws at no extra forward pass. **Which one compares across models:** INFD is in the units of
    f², so two networks (a regular and a robust one, or one with its logits scaled) are compared on
    rINFD; within one table both give the same paired ranking of explainers per instance.

    **Monte-Carlo errors.** Each mean ``c`` of the summary also gets ``"c mc se"`` (the
    Monte-Carlo standard error of the table mean, over the metric's own random draws, for the
    fixed instances and explanations) and ``"c total se"`` = ``√(se² + mc_se²)`` (instances and
    draws; slightly conservative: each instance's own Monte-Carlo noise is in both terms, an
    excess of order ``mc_var / N``).

    * INFD: the draws are shared by all instances, so the per-instance errors are correlated and
      may not be combined as independent. With ``β*`` held at its estimate (its error is second
      order) the table mean is ``(1/n) Σ_j ē_j``, ``ē_j = (1/N) Σ_i (β*_i a_ij − b_ij)²``, a mean
      of ``n`` iid terms (one per draw): ``mc se = sd_j(ē_j) / √n``. Exact sums: 0.
    * SENS: a maximum is not a mean of draws, so its error comes from ``sens_reps`` independent
      replications of the whole estimate, each with its own ``n_sens`` neighbours (replication 0
      is the stand-alone :func:`sensitivity_max` with the same seed; replication ``r`` uses the
      stream ``"sensitivity/r"``). The reported per-instance value is the mean over replications
      of ``max_{j ≤ n_sens}``: its expectation is that of one replication (the max over
      ``n_sens`` neighbours, biased low, see :func:`sensitivity_growth`), its variance ``R`` times
      smaller; ``mc se = sd_r(T_r) / √R``, ``T_r`` the table mean of replication ``r``.
      ``sens_reps=1``: no Monte-Carlo error (NaN). Cost: ``sens_reps · n_sens`` explanations per
      instance and explainer.

    Returns an :class:`Evaluation`: ``.summary`` (the table above), ``.per_instance`` (tidy:
    ``explainer, instance, metric, value``, also for ``"INFD[L] raw"``, ``"INFD[L] beta"``,
    ``"INFD[L] mc_se"``), ``.wide(metric)`` (instances × explainers, for paired differences),
    ``.notes``, ``.settings``. Chapter: ``notebooks/mnist`` (the book's *The paper in brief*,
    § Experiments, Table 1).
    """
    import pandas as pd

    U.check_model(model)
    x = U.check_input(x, "x")
    U.check_model_input(model, x)
    N, F = x.shape[0], tuple(x.shape[1:])
    t = U.check_target(target, N, x.device)
    if not isinstance(explainers, dict) or not explainers:
        raise TypeError("`explainers` must be a non-empty dict {name: explainer}")
    explainers = {name: _check_explainer(e, f"explainers[{name!r}]") for name, e in explainers.items()}
    if perturbations is None:
        perturbations = {"NB": NoisyBaseline(), "Square": SquareRemoval()}
    if not isinstance(perturbations, dict):
        raise TypeError("`perturbations` must be a dict {name: Perturbation} or None")
    for name, law in perturbations.items():
        _check_law(law, f"perturbations[{name!r}]")
    n_infd = U.check_positive(n_infd, "n_infd", integer=True)
    if isinstance(n_sens, bool) or not isinstance(n_sens, int) or n_sens < 0:
        raise ValueError(f"`n_sens` must be an int >= 0, got {n_sens!r}")
    sens_reps = U.check_positive(sens_reps, "sens_reps", integer=True)
    if exact not in ("auto", True, False):
        raise ValueError(f"`exact` must be 'auto', True or False, got {exact!r}")
    if n_sens == 0 and not perturbations:
        raise ValueError(
            "nothing to compute: `n_sens=0` skips the sensitivity and `perturbations` is empty; "
            "pass n_sens > 0 or at least one perturbation law"
        )
    if not isinstance(relative, bool):
        raise TypeError(f"`relative` must be True or False, got {relative!r}")
    radius = U.check_positive(radius, "radius")
    scaling = _check_scaling(scaling)
    batch_size = _check_batch_size(batch_size)
    if isinstance(sens_form, str):
        sens_cols = {"SENS_max": (_check_form(sens_form, "sens_form"), _check_normalize(normalize))}
    elif isinstance(sens_form, dict) and sens_form:
        sens_cols = {}
        for col, conv in sens_form.items():
            if not (isinstance(col, str) and isinstance(conv, (tuple, list)) and len(conv) == 2):
                raise ValueError(f"`sens_form` must map column names to (form, normalize) pairs, got {col!r}: {conv!r}")
            sens_cols[col] = (_check_form(conv[0], f"sens_form[{col!r}][0]"),
                              _check_normalize(conv[1], f"sens_form[{col!r}][1]"))
    else:
        raise ValueError(f"`sens_form` must be 'local', 'global' or a non-empty dict {{column: (form, normalize)}}, "
                         f"got {sens_form!r}")
    fx = U.forward_batched(model, x, t, batch_size).to(x.dtype)  # validates target

    def sub_gen(stream):
        return generator if isinstance(generator, torch.Generator) else _gen(generator, x.device, stream)

    names = list(explainers)
    phis = {}
    for name in U.progress(names, desc="explain x"):
        phis[name] = _explain(explainers[name], x, t, f"explainers[{name!r}]")
    records = []  # (explainer, instance, metric, value)
    rows = {name: {} for name in names}
    notes = []

    def put(col, name, vals: Tensor, headline=True):
        v = vals.detach().double().cpu()
        records.extend((name, i, col, float(val)) for i, val in enumerate(v.tolist()))
        bad = (~torch.isfinite(v)).nonzero().flatten().tolist()
        if bad and headline:  # the mean is then NaN (or inf): say where, never average the others
            shown = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
            notes.append(f"{name} × {col}: not finite at {len(bad)} of {N} instance(s) ({shown}), so its "
                         "mean is not finite")
        mean = float(v.mean())
        se = float(v.std() / math.sqrt(N)) if N > 1 else float("nan")
        return mean, se

    exact_laws = []

    def put_mc(col, name, mc_se):
        r = rows[name]
        r[col + " mc se"] = float(mc_se)
        r[col + " total se"] = math.sqrt(r[col + " se"] ** 2 + float(mc_se) ** 2) if N > 1 else float("nan")

    if n_sens > 0:
        noises = [_uniform_ball(F, n_sens, radius, sub_gen("sensitivity" if r == 0 else f"sensitivity/{r}"),
                                x.device, x.dtype) for r in range(sens_reps)]
        convs = list(sens_cols.values())
        for name in U.progress(names, desc="sensitivity"):
            reps = []  # per replication: one (N,) max per convention
            for noise in noises:
                Ds = _sensitivity_distances(explainers[name], x, t, phis[name], noise, batch_size, convs,
                                            sens_baseline)
                reps.append([D.max(1).values for D in Ds])
            for k, col in enumerate(sens_cols):
                R = torch.stack([r[k] for r in reps], 1).double()  # (N, R)
                m, s_ = put(col, name, R.mean(1))
                rows[name][col], rows[name][col + " se"] = m, s_
                mc = R.mean(0).std() / math.sqrt(sens_reps) if sens_reps > 1 else float("nan")
                put_mc(col, name, mc)
    for lname, law in perturbations.items():
        col = f"INFD[{lname}]"
        draws, probs = _draws_or_support(law, F, n_infd, exact, sub_gen("infidelity"), x.device, x.dtype)
        n = draws.shape[0]
        if probs is not None:
            exact_laws.append(lname)
        b = _function_differences(model, x, t, law, draws, batch_size, fx, desc=f"INFD[{lname}]")
        for name in names:
            kind = explainers[name].kind
            if kind == "global" and not law.binary:
                for c in ("", " se", " mc se", " total se"):
                    rows[name][col + c] = float("nan")
                    if relative:
                        rows[name]["r" + col + c] = float("nan")
                notes.append(
                    f"{name} × {lname}: NaN, a global explanation cannot be evaluated under the "
                    f"continuous law {law!r} (use a binary law or xailib.explainers.to_local)"
                )
                continue
            a = _project(law, x, draws, _term(law, x, phis[name], kind))
            det = _infd_stats(a, b, scaling, probs)
            rows[name][col], rows[name][col + " se"] = put(col, name, det.infidelity)
            put(col + " raw", name, det.raw, headline=False)
            put(col + " beta", name, det.beta, headline=False)
            put(col + " mc_se", name, det.se, headline=False)
            e = (det.beta.view(-1, 1) * a - b) ** 2  # (N, n) squared errors at β*
            if probs is not None:
                mc = 0.0
            elif n > 1:
                ebar = e.double().mean(0)  # (n,) one term per draw
                mc = float(ebar.std() / math.sqrt(n))
            else:
                mc = float("nan")
            put_mc(col, name, mc)
            if relative:
                rcol = "r" + col
                rows[name][rcol], rows[name][rcol + " se"] = put(rcol, name, det.relative)
                put(col + " energy", name, det.energy, headline=False)
                if probs is not None:
                    rmc = 0.0
                elif n > 1:
                    rbar = relative_draw_terms(e, b, det.energy, det.relative).double().mean(0)  # (n,) per draw
                    rmc = float(rbar.std() / math.sqrt(n))
                else:
                    rmc = float("nan")
                put_mc(rcol, name, rmc)
    cols = []
    infd_cols = [f"INFD[{k}]" for k in perturbations]
    if relative:
        infd_cols = [c for k in infd_cols for c in (k, "r" + k)]
    for c in (list(sens_cols) if n_sens > 0 else []) + infd_cols:
        cols += [c, c + " se"]
    cols += [c + suf for c in cols[::2] for suf in (" mc se", " total se")]
    summary = pd.DataFrame([[rows[nm][c] for c in cols] for nm in names], index=names, columns=cols, dtype=float)
    tidy = pd.DataFrame.from_records(records, columns=["explainer", "instance", "metric", "value"])
    settings = {
        "N": N,
        "n_infd": n_infd,
        "n_sens": n_sens,
        "sens_reps": sens_reps,
        "exact": exact,
        "exact_laws": exact_laws,
        "radius": radius,
        "scaling": scaling,
        "normalize": normalize,
        "sens_form": {c: list(v) for c, v in sens_cols.items()},
        "sens_baseline": sens_baseline,
        "relative": relative,
        "perturbations": {k: repr(v) for k, v in perturbations.items()},
        "dtype": str(x.dtype),
    }
    return Evaluation(summary, tidy, notes, settings)
