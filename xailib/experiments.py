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


#: the MNIST experiments' settings (appendix B.1): ``name: (default profile, paper profile, meaning)``
MNIST_SETTINGS = {
    "n_instances": (20, 50, "test instances (targets: their labels)"),
    "n_infd": (500, 1000, "perturbations per INFD estimate"),
    "n_sens": (5, 50, "SENS_max samples, uniform in the L∞ ball"),
    "sens_radius": (0.1, 0.1, "SENS_max radius (L∞)"),
    "sg_radius": (0.2, 0.2, "SmoothGrad radius (uniform L∞ kernel)"),
    "n_sg": (30, 200, "SmoothGrad samples"),
    "ig_steps": (16, 50, "Integrated Gradients steps (baseline 0)"),
    "n_opt": (1000, 20000, "samples of NB and Square (optimal explanations)"),
    "n_shap": (1000, 20000, "KernelSHAP samples"),
    "nb_sigma": (0.2, 0.2, "noisy baseline: x0 = clip(0 + σε, 0, 1)"),
    "square_sizes": ((1, 10), (1, 10), "square removal: side range (pixels)"),
}


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
    """The two perturbation laws of the MNIST tables: ``{"NB": NoisyBaseline, "Square": SquareRemoval}``."""
    from .perturbations import NoisyBaseline, SquareRemoval

    s = mnist_settings() if settings is None else settings
    return {"NB": NoisyBaseline(sigma=s["nb_sigma"]), "Square": SquareRemoval(sizes=tuple(s["square_sizes"]))}


def make_explainers(model, settings: Optional[Mapping] = None, sg_radius: Optional[float] = None,
               names: Optional[Sequence[str]] = None) -> dict:
    """The explainers of the MNIST tables, keyed by the row names of :data:`METHODS`.

    Grad, IG (baseline 0, local), GBP, each also SmoothGrad-ed (uniform L∞ kernel of radius
    ``sg_radius``, default ``settings["sg_radius"]``), KernelSHAP, NB and Square (the optimal
    explanations of :func:`laws`) and Occlusion-1 (Prop. 2.3). ``names`` keeps some of them.
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
        "IG-SG": lambda: sg(IntegratedGradients(model, steps=s["ig_steps"])),
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

    Linear in the sample counts (SmoothGrad samples × IG steps, NB/Square/SHAP samples); used to
    project the paper profile's run time from a measured default run.
    """
    sg = paper["n_sg"] / default["n_sg"]
    ig = paper["ig_steps"] / default["ig_steps"]
    opt = paper["n_opt"] / default["n_opt"]
    shap = paper["n_shap"] / default["n_shap"]
    return {"Grad": 1.0, "Grad-SG": sg, "IG": ig, "IG-SG": sg * ig, "GBP": 1.0, "GBP-SG": sg,
            "SHAP": shap, "NB": opt, "Square": opt, "Occlusion": 1.0}


def project_time(seconds_per_explanation: Mapping[str, float], seconds_per_forward: float,
                 default: Optional[Mapping] = None, paper: Optional[Mapping] = None) -> pd.DataFrame:
    """Project a table's run time from measured costs, for the default and the paper profile.

    ``seconds_per_explanation[name]``: measured seconds to explain **one** instance once with
    the ``default`` settings; ``seconds_per_forward``: seconds per model evaluation. A table costs,
    per explainer, ``N · (1 + n_sens)`` explanations (at x and at every neighbour), plus
    ``N · n_infd`` forward passes per law (shared by the explainers). Returns minutes per
    explainer (and the INFD row) under both profiles; a linear model of the cost (it ignores
    fixed overheads such as the d×d solves of NB/Square/SHAP).
    """
    d = mnist_settings("default") if default is None else default
    p = mnist_settings("paper") if paper is None else paper
    ratio = sample_ratios(d, p)
    rows = {}
    for name, sec in seconds_per_explanation.items():
        per = float(sec)
        rows[name] = {
            "s per explanation (default)": per,
            "default [min]": d["n_instances"] * (1 + d["n_sens"]) * per / 60,
            "paper [min]": p["n_instances"] * (1 + p["n_sens"]) * per * ratio.get(name, 1.0) / 60,
        }
    n_laws = 2
    rows["INFD (both laws)"] = {
        "s per explanation (default)": float("nan"),
        "default [min]": d["n_instances"] * d["n_infd"] * n_laws * seconds_per_forward / 60,
        "paper [min]": p["n_instances"] * p["n_infd"] * n_laws * seconds_per_forward / 60,
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

    ``n_infd``, ``n_sens`` and ``radius`` from ``settings`` (default: :func:`mnist_settings`),
    ``generator=seed`` (the evaluation draws; the explainers draw with their own seed).
    """
    s = mnist_settings() if settings is None else settings
    return dict(n_infd=s["n_infd"], n_sens=s["n_sens"], radius=s["sens_radius"], generator=seed)


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
