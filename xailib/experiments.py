"""Settings and factories of the MNIST chapters (``notebooks/mnist``, ``notebooks/mnist_robust``).

* :data:`MNIST_SETTINGS`, :func:`mnist_settings`, :func:`settings_table`: the sample counts of
  appendix B.1 under the ``default`` and ``paper`` profiles (the book's *The paper in brief*,
  § Experiments);
* :func:`laws`, :func:`make_explainers`: the two perturbation laws and the ten explainers of the
  MNIST tables;
* :func:`load_networks`, :func:`networks_table`: the regular and the adversarially trained
  network, with their clean and PGD accuracies;
* :func:`sample_ratios`, :func:`project_time`: the paper profile's run time projected from a
  measured default run.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import pandas as pd

from .paper import METHODS


#: the MNIST experiments' settings (appendix B.1): ``name: (default profile, paper profile, meaning)``.
#: Estimators (the book's *The paper in brief*, § Monte-Carlo hygiene; ``benchmarks/README.md``):
#: IG-SG samples (noise, path position) jointly (``n_igsg`` gradients per explanation, not
#: ``n_sg × ig_steps``); Square is the exact sum over the law's 5,605 squares (``n_opt`` is NB's
#: count only); NB's ridge is chosen by leave-one-out cross-validation; KernelSHAP draws paired
#: coalitions and imposes efficiency by a shift.
MNIST_SETTINGS = {
    "n_instances": (20, 50, "test instances (targets: their labels)"),
    "n_infd": (500, 1000, "perturbations per INFD estimate (NB law; Square: exact sum)"),
    "n_sens": (10, 50, "SENS_max samples, uniform in the L∞ ball (the max is biased low: see the chapter)"),
    "sens_reps": (2, 2, "independent SENS_max replications (their spread is SENS's Monte-Carlo error)"),
    "sens_radius": (0.1, 0.1, "SENS_max radius (L∞)"),
    "sg_radius": (0.2, 0.2, "SmoothGrad radius (uniform L∞ kernel)"),
    "n_sg": (30, 200, "SmoothGrad samples of Grad-SG and GBP-SG"),
    "n_igsg": (480, 400, "IG-SG joint (noise, path position) samples, one gradient each"),
    "ig_steps": (16, 50, "Integrated Gradients steps (baseline 0)"),
    "n_opt": (1000, 20000, "NB samples (cross-validated ridge); Square is exact (5,605 squares)"),
    "n_shap": (1000, 13400, "KernelSHAP samples (paired, efficiency by shift)"),
    "nb_sigma": (0.2, 0.2, "noisy baseline: x0 = clip(0 + σε, 0, 1)"),
    "square_sizes": ((1, 10), (1, 10), "square removal: side range (pixels)"),
    "square_weighting": ("sides", "sides", "square removal: uniform over sides, then positions"),
}

#: defaults of settings added after a settings dict may have been built by older code
_LATER = {"n_igsg": None, "square_weighting": "sides", "sens_reps": 2}


def _get(s: Mapping, key: str):
    """``s[key]``, falling back for settings added later (``n_igsg``: ``n_sg × ig_steps``)."""
    if key in s:
        return s[key]
    if key == "n_igsg":
        return s["n_sg"] * s["ig_steps"]
    return _LATER[key]


def mnist_settings(profile: Optional[str] = None) -> dict:
    """The active MNIST settings (``xailib.pick`` of :data:`MNIST_SETTINGS`), or those of ``profile``."""
    from .config import pick

    if profile is None:
        return {k: pick(default=d, paper=p) for k, (d, p, _) in MNIST_SETTINGS.items()}
    if profile not in ("default", "paper"):
        raise ValueError(f"`profile` must be None, 'default' or 'paper', got {profile!r}")
    return {k: (d if profile == "default" else p) for k, (d, p, _) in MNIST_SETTINGS.items()}


def settings_table() -> pd.DataFrame:
    """The settings as a table: meaning, default profile, paper profile, this run."""
    active = mnist_settings()
    rows = [
        {"setting": k, "meaning": m, "default": str(d), "paper": str(p), "this run": str(active[k])}
        for k, (d, p, m) in MNIST_SETTINGS.items()
    ]
    return pd.DataFrame(rows).set_index("setting")


def laws(settings: Optional[Mapping] = None) -> dict:
    """The two perturbation laws of the MNIST tables: ``{"NB": NoisyBaseline, "Square": SquareRemoval}``.

    Square removal draws a side uniformly in ``square_sizes``, then a position uniformly
    (``weighting="sides"``): every side gets the same weight, as when the paper "randomly
    samples" a square size; ``weighting="squares"`` (uniform over all squares) would give most
    weight to the large number of small squares.
    """
    from .perturbations import NoisyBaseline, SquareRemoval

    s = mnist_settings() if settings is None else settings
    return {"NB": NoisyBaseline(sigma=s["nb_sigma"]),
            "Square": SquareRemoval(sizes=tuple(s["square_sizes"]), weighting=_get(s, "square_weighting"))}


def make_explainers(model, settings: Optional[Mapping] = None, sg_radius: Optional[float] = None,
               names: Optional[Sequence[str]] = None) -> dict:
    """The explainers of the MNIST tables, keyed by the row names of :data:`METHODS`.

    Grad, IG (baseline 0, local), GBP, each also SmoothGrad-ed (uniform L∞ kernel of radius
    ``sg_radius``, default ``settings["sg_radius"]``; IG-SG by joint sampling with ``n_igsg``
    samples, the others with ``n_sg``), KernelSHAP, NB and Square (the optimal explanations of
    :func:`laws`: NB from ``n_opt`` draws with a cross-validated ridge, Square summed exactly
    over its support) and Occlusion-1 (Prop. 2.3). ``names`` keeps some of them.
    """
    from .explainers import Gradient, GuidedBackprop, IntegratedGradients, KernelSHAP, Occlusion, Optimal, SmoothGrad

    s = mnist_settings() if settings is None else settings
    r = s["sg_radius"] if sg_radius is None else sg_radius
    keep = list(METHODS) if names is None else list(names)
    unknown = [n for n in keep if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown explainer names {unknown}; valid: {METHODS}")
    law = laws(s)

    def sg(base):
        return SmoothGrad(base, radius=r, n_samples=s["n_sg"])

    build = {
        "Grad": lambda: Gradient(model),
        "Grad-SG": lambda: sg(Gradient(model)),
        "IG": lambda: IntegratedGradients(model, steps=s["ig_steps"]),
        "IG-SG": lambda: SmoothGrad(IntegratedGradients(model, steps=s["ig_steps"]), radius=r,
                                    n_samples=_get(s, "n_igsg"), sampling="joint"),
        "GBP": lambda: GuidedBackprop(model),
        "GBP-SG": lambda: sg(GuidedBackprop(model)),
        "SHAP": lambda: KernelSHAP(model, n_samples=s["n_shap"]),
        "NB": lambda: Optimal(model, law["NB"], n_samples=s["n_opt"]),
        "Square": lambda: Optimal(model, law["Square"], n_samples=s["n_opt"]),
        "Occlusion": lambda: Occlusion(model),
    }
    return {n: build[n]() for n in keep}


def sample_ratios(default: Mapping, paper: Mapping) -> dict:
    """How much more one explanation costs under ``paper`` than under ``default`` settings.

    Linear in the sample counts: Grad-SG, GBP-SG ``n_sg``; IG ``ig_steps``; IG-SG ``n_igsg``
    (joint sampling: one gradient per sample, whatever ``ig_steps``); SHAP ``n_shap``; NB
    ``n_opt``; Square 1 (the exact sum over its support costs the same under both profiles).
    NB's cross-validation and the d×d solves are fixed costs this ratio ignores: measure NB at
    the paper's count when it matters (``paper_seconds`` of :func:`project_time`).
    """
    sg = paper["n_sg"] / default["n_sg"]
    ig = paper["ig_steps"] / default["ig_steps"]
    igsg = _get(paper, "n_igsg") / _get(default, "n_igsg")
    opt = paper["n_opt"] / default["n_opt"]
    shap = paper["n_shap"] / default["n_shap"]
    return {"Grad": 1.0, "Grad-SG": sg, "IG": ig, "IG-SG": igsg, "GBP": 1.0, "GBP-SG": sg,
            "SHAP": shap, "NB": opt, "Square": 1.0, "Occlusion": 1.0}


def project_time(seconds_per_explanation: Mapping[str, float], seconds_per_forward: float,
                 default: Optional[Mapping] = None, paper: Optional[Mapping] = None,
                 paper_seconds: Optional[Mapping[str, float]] = None,
                 exact_laws: Sequence[str] = ("Square",)) -> pd.DataFrame:
    """Project a table's run time from measured costs, for the default and the paper profile.

    ``seconds_per_explanation[name]``: measured seconds to explain **one** instance once with
    the ``default`` settings; ``paper_seconds[name]`` (optional): the same measured with the
    ``paper`` settings, used instead of the :func:`sample_ratios` scaling (for NB, whose
    cross-validation does not scale with the count); ``seconds_per_forward``: seconds per model
    evaluation. A table costs, per explainer, ``N · (1 + sens_reps · n_sens)`` explanations (at x
    and at every neighbour of every replication), plus, per law, ``N · n_infd`` forward passes (``N · 5,605`` for the exact
    Square law, ``exact_laws``), shared by the explainers. Returns minutes per explainer (and
    the INFD row) under both profiles; a linear model of the cost otherwise.
    """
    d = mnist_settings("default") if default is None else default
    p = mnist_settings("paper") if paper is None else paper
    ratio = sample_ratios(d, p)
    paper_seconds = {} if paper_seconds is None else paper_seconds
    rows = {}
    for name, sec in seconds_per_explanation.items():
        per = float(sec)
        per_paper = float(paper_seconds[name]) if name in paper_seconds else per * ratio.get(name, 1.0)
        rows[name] = {
            "s per explanation (default)": per,
            "default [min]": d["n_instances"] * (1 + _get(d, "sens_reps") * d["n_sens"]) * per / 60,
            "paper [min]": p["n_instances"] * (1 + _get(p, "sens_reps") * p["n_sens"]) * per_paper / 60,
        }

    def n_forward(s):
        from .perturbations import SquareRemoval

        n = 0
        for name, law in laws(s).items():
            if name in exact_laws and isinstance(law, SquareRemoval):
                n += law.support_size((1, 28, 28))
            else:
                n += s["n_infd"]
        return n

    rows["INFD (both laws)"] = {
        "s per explanation (default)": float("nan"),
        "default [min]": d["n_instances"] * n_forward(d) * seconds_per_forward / 60,
        "paper [min]": p["n_instances"] * n_forward(p) * seconds_per_forward / 60,
    }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.loc["total"] = [float("nan"), out["default [min]"].sum(), out["paper [min]"].sum()]
    return out


#: the two networks of the MNIST chapters: ``{network: model name of xailib.models.get_model}``
NETWORKS = {"regular": "mnist_cnn", "robust": "mnist_cnn_robust"}


def load_networks(retrain: bool = False, device=None) -> dict:
    """The regular and the adversarially trained MNIST networks, ``{"regular": ..., "robust": ...}``.

    Committed weights unless ``retrain`` (:func:`xailib.models.get_model`).
    """
    from . import models

    return {net: models.get_model(name, retrain=retrain, device=device, verbose=False) for net, name in NETWORKS.items()}


def networks_table(nets: Mapping, x, y, n_pgd: int) -> pd.DataFrame:
    """Clean accuracy on ``(x, y)`` and PGD accuracy on its first ``n_pgd`` digits, per network.

    The attack is the paper's PGD (:data:`xailib.attacks.PAPER_PGD`); the accuracies recorded
    with the weights (sidecar) are shown beside the measured ones.
    """
    from . import attacks, models

    if not (isinstance(n_pgd, int) and n_pgd > 0):
        raise ValueError(f"`n_pgd` must be a positive int, got {n_pgd!r}")
    rows = {}
    for net, m in nets.items():
        info = m.xailib_info
        side = info.get("sidecar") or {}
        rows[net] = {
            "weights": info["source"],
            "clean acc.": models.evaluate_accuracy(m, x, y),
            f"PGD acc. (first {n_pgd})": attacks.robust_accuracy(m, x[:n_pgd], y[:n_pgd], **attacks.PAPER_PGD),
            "clean acc. (sidecar)": side.get("clean_test_accuracy", float("nan")),
            f"PGD acc. (sidecar, all {len(x):,})": side.get("pgd_test_accuracy", float("nan")),
        }
    return pd.DataFrame(rows).T


def evaluation_settings(settings: Optional[Mapping] = None, seed: int = 1) -> dict:
    """Keyword arguments of :func:`xailib.metrics.evaluate` for the MNIST tables.

    ``n_infd``, ``n_sens``, ``sens_reps`` and ``radius`` from ``settings`` (default:
    :func:`mnist_settings`), ``generator=seed`` (the evaluation draws; the explainers draw with
    their own seed).
    """
    s = mnist_settings() if settings is None else settings
    return dict(n_infd=s["n_infd"], n_sens=s["n_sens"], sens_reps=_get(s, "sens_reps"), radius=s["sens_radius"],
                generator=seed)


# --------------------------------------------------------------------------- numbers in the chapters' prose
def as_words(names: Sequence[str], none: str = "none") -> str:
    """``["Grad", "IG", "GBP"]`` -> ``"Grad, IG and GBP"`` (``none`` when empty), for glued prose."""
    names = [str(n) for n in names]
    if not names:
        return none
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def glue_values(values: Mapping[str, object]) -> None:
    """Glue every ``{name: value}`` for the prose (MyST-NB ``{glue:text}`name``` roles), silently.

    Values are glued as given (format numbers before gluing, e.g. ``f"{v:.2f}"``, so that the
    stored text is stable from run to run); nothing is displayed (``display=False``).
    """
    from myst_nb import glue

    for name, value in values.items():
        glue(name, value, display=False)
