"""Infidelity, max-sensitivity, robust infidelity and the paired evaluation table.

Definitions (the book's *The paper in brief*, § Metrics; chapters ``notebooks/toy.ipynb``, ``notebooks/theory.ipynb``,
``notebooks/mnist.ipynb``, ``notebooks/mnist_robust.ipynb``):

* ``INFD(Φ, f, x) = E_I[(IᵀΦ − Δf)²]``, ``Δf = f(x) − f(x − I)``; optimal scaling replaces Φ by
  ``β*Φ``, ``β* = E[(IᵀΦ)Δf] / E[(IᵀΦ)²]``;
* ``SENS_max(Φ, f, x, r) = max_{‖y − x‖∞ ≤ r} ‖Φ(y) − Φ(x)‖₂`` (Monte Carlo over y);
* ``RINFD(Φ, f, x, r) = max_{‖u‖∞ ≤ r} INFD(Φ, f, x + u)`` (Def. C.1).

Every metric draws its randomness from ``generator`` (None → seed 0, an int, or a
``torch.Generator``), in the input's dtype and on its device, once for all instances, so the
results do not depend on ``batch_size``.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Dict, NamedTuple, Optional

import torch
from torch import Tensor

from . import _utils as U
from ._utils import DEFAULT_BATCH_SIZE, SeedLike, TargetLike
from .perturbations import NoisyBaseline, Perturbation, SquareRemoval, exact_support

__all__ = [
    "infidelity",
    "InfidelityDetails",
    "sensitivity_max",
    "sensitivity_noise_floor",
    "sensitivity_growth",
    "sensitivity_conventions",
    "robust_infidelity",
    "evaluate",
    "Evaluation",
    "per_instance",
]


class InfidelityDetails(NamedTuple):
    """What ``infidelity(..., return_details=True)`` returns (every field of shape ``(N,)``).

    ``infidelity``: the reported value (optimally scaled unless ``scaling=None``); ``raw``: the
    unscaled ``E[(IᵀΦ − Δf)²]``; ``beta``: ``β*`` (1 when ``scaling=None``); ``se``: Monte-Carlo
    standard error of ``infidelity`` (``std/√n`` of the per-draw squared errors at ``β*``: since
    ``β*`` minimises the sample mean, its own estimation error enters only at second order);
    ``raw_se``: the Monte-Carlo standard error of ``raw``.
    """

    infidelity: Tensor
    raw: Tensor
    beta: Tensor
    se: Tensor
    raw_se: Tensor


# --------------------------------------------------------------------------------------------
# validation helpers


def _check_batch_size(batch_size) -> int:
    return U.check_positive(batch_size, "batch_size", integer=True)


def _check_scaling(scaling):
    if scaling not in ("optimal", None):
        raise ValueError(f"`scaling` must be 'optimal' or None, got {scaling!r}")
    return scaling


def _check_law(perturbation, name="perturbation") -> Perturbation:
    if perturbation is None:
        return NoisyBaseline()
    if not isinstance(perturbation, Perturbation):
        raise TypeError(
            f"`{name}` must be an xailib.perturbations.Perturbation (e.g. NoisyBaseline(), "
            f"SquareRemoval()), got {type(perturbation).__name__}"
        )
    return perturbation


def _check_explainer(explainer, name="explainer"):
    """An explainer (``.kind``), or any callable ``f(x, target=...) -> Φ`` (e.g. Captum's
    ``Saliency(model).attribute``), wrapped as a local explanation by ``xailib.captum.explanation``."""
    if isinstance(explainer, type):
        raise TypeError(
            f"`{name}` must be an explainer instance, got the class {explainer.__name__}: "
            f"instantiate it with the model, e.g. {explainer.__name__}(model)"
        )
    if callable(explainer) and not hasattr(explainer, "kind"):
        from .captum import explanation as _wrap

        explainer = _wrap(explainer)
    if not callable(explainer):
        raise TypeError(
            f"`{name}` must be an explainer: callable as explainer(x, target) with a `.kind` "
            f"attribute ('local' or 'global'), or a function f(x, target=...) -> Φ, "
            f"got {type(explainer).__name__}"
        )
    if explainer.kind not in ("local", "global"):
        raise ValueError(f"`{name}.kind` must be 'local' or 'global', got {explainer.kind!r}")
    return explainer


def _n_draws(law: Perturbation, n_samples: int) -> int:
    return n_samples if law.n_fixed is None else min(n_samples, law.n_fixed)


def _gen(generator: SeedLike, device, stream: str) -> torch.Generator:
    return U.make_generator(generator, device, stream)


def _check_target_with_model(model, x: Tensor, t: Optional[Tensor]) -> None:
    """Fail clearly (missing/out-of-range target) before any expensive work."""
    with torch.no_grad():
        U.forward_target(model, x[:1], None if t is None else t[:1])


def _explain(explainer, x: Tensor, t: Optional[Tensor], name="explainer", generator=None) -> Tensor:
    phi = explainer(x, t) if generator is None else explainer(x, t, generator=generator)
    if not isinstance(phi, Tensor):
        raise TypeError(f"`{name}` returned {type(phi).__name__}, expected a tensor shaped like x")
    return U.check_same_shape(phi.detach(), x, f"{name}(x)")


def _resolve_explanation(explanation, x, t, kind, model=None):
    if callable(explanation) and not isinstance(explanation, type) and not hasattr(explanation, "kind"):
        from .captum import explanation as _wrap

        explanation = _wrap(explanation, kind="local" if kind is None else kind)
    if isinstance(explanation, type):
        _check_explainer(explanation, "explanation")
    if isinstance(explanation, Tensor):
        phi = U.check_same_shape(explanation.detach(), x, "explanation")
        kind = "local" if kind is None else kind
    elif callable(explanation) and hasattr(explanation, "kind"):
        ek = explanation.kind
        if kind is not None and kind != ek:
            raise ValueError(f"`kind`={kind!r} contradicts the explainer's kind {ek!r}")
        kind = ek
        if model is not None and getattr(explanation, "model", None) not in (None, model):
            warnings.warn("the explainer explains a different model than `model`", stacklevel=3)
        phi = _explain(explanation, x, t, "explanation")
    else:
        raise TypeError(
            "`explanation` must be a tensor shaped like x or an explainer (callable with `.kind`), "
            f"got {type(explanation).__name__}"
        )
    if kind not in ("local", "global"):
        raise ValueError(f"`kind` must be 'local', 'global' or None, got {kind!r}")
    return phi, kind


def _global_continuous_error(law) -> ValueError:
    return ValueError(
        f"a global explanation (A = (x − baseline) ⊙ Φ, compared with binary masks z) cannot be "
        f"evaluated under the continuous law {law!r}: use a binary law (SquareRemoval, "
        "SingleFeature, ShapleyKernel, Fixed(masks=...)) or convert it with "
        "xailib.explainers.to_local(A, x, baseline)"
    )


# --------------------------------------------------------------------------------------------
# core computations (shared by infidelity, evaluate and robust_infidelity)


def _term(law: Perturbation, x: Tensor, phi: Tensor, kind: str) -> Tensor:
    """What the projections need: ``group_sum(A)`` (N, G) for binary laws, Φ itself otherwise."""
    if law.binary:
        A = phi if kind == "global" else (x - law._baseline_like(x)) * phi
        return law.group_sum(A)
    if kind == "global":
        raise _global_continuous_error(law)
    return phi


def _project(law: Perturbation, x: Tensor, draws: Tensor, term: Tensor) -> Tensor:
    """``IᵀΦ`` (N, n): ``group_sum(A) @ zᵀ`` (B.2) for binary laws, ``law.dot`` otherwise."""
    if law.binary:
        return term @ draws.to(dtype=term.dtype).T
    return law.dot(x, draws, term)


def _function_differences(model, x, t, law, draws, batch_size, fx, desc=None) -> Tensor:
    """``Δf = f(x) − f(x − I)`` (N, n) in ``x``'s dtype: :func:`xailib._utils.function_differences`."""
    return U.function_differences(model, x, t, None, batch_size, fx.to(x.dtype), law=law, draws=draws, desc=desc)


def _infd_stats(a: Tensor, b: Tensor, scaling, w: Optional[Tensor] = None) -> InfidelityDetails:
    """Infidelity statistics from projections ``a`` and differences ``b`` (N, n).

    ``w`` (n,) probabilities: an exact weighted sum over a finite support (Monte-Carlo errors 0);
    ``None``: plain means over ``n`` draws.
    """
    n = a.shape[1]
    if w is not None:
        w = w.to(device=a.device, dtype=a.dtype)

        def mean(v):
            return v @ w

        def se(v):
            return torch.zeros_like(v[:, 0])
    else:
        def mean(v):
            return v.mean(1)

        def se(v):
            return v.std(1) / math.sqrt(n) if n > 1 else torch.full_like(v[:, 0], float("nan"))

    sq = (a - b) ** 2
    raw = mean(sq)
    raw_se = se(sq)
    if scaling == "optimal":
        saa = mean(a * a)
        sab = mean(a * b)
        pos = saa > 0
        beta = torch.where(pos, sab / torch.where(pos, saa, torch.ones_like(saa)), torch.zeros_like(saa))
        e = (beta.view(-1, 1) * a - b) ** 2
        val = mean(e)
        val_se = se(e)
    else:
        beta, val, val_se = torch.ones_like(raw), raw, raw_se
    return InfidelityDetails(val, raw, beta, val_se, raw_se)


def _draws_or_support(law, F, n_samples, exact, generator, device, dtype, stream="infidelity"):
    """``(draws, probs)``: the exact support (probs float64) or ``n`` sampled draws (probs None)."""
    sup = exact_support(law, F, exact, device, dtype)
    if sup is not None:
        return sup
    n = _n_draws(law, n_samples)
    return law.draw(F, n, _gen(generator, device, stream), device, dtype), None


# --------------------------------------------------------------------------------------------
# infidelity


@U.in_eval_mode("model", "explanation")
def infidelity(
    model: Callable[[Tensor], Tensor],
    explanation,
    x: Tensor,
    target: TargetLike = None,
    perturbation: Optional[Perturbation] = None,
    n_samples: int = 1000,
    scaling: Optional[str] = "optimal",
    kind: Optional[str] = None,
    generator: SeedLike = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    return_details: bool = False,
    exact="auto",
):
    """Infidelity of an explanation, one value per instance (the book's *The paper in brief*, § Metrics, Def. 2.1).

    ``INFD(Φ, f, x) = E_I[(IᵀΦ − (f(x) − f(x − I)))²]``, estimated with ``n_samples`` draws of
    ``perturbation`` (default :class:`~xailib.perturbations.NoisyBaseline`), the same draws for
    every instance. ``scaling="optimal"`` (the paper's reported value) uses
    ``β* = E[(IᵀΦ)Δf] / E[(IᵀΦ)²]`` (``β* = 0`` when ``E[(IᵀΦ)²] = 0``), i.e.
    ``E[(β* IᵀΦ − Δf)²]``, invariant to ``Φ → cΦ``; ``scaling=None`` the raw value.

    ``explanation``: a tensor shaped like ``x`` (its kind from ``kind``, default ``"local"``) or an
    explainer (called as ``explainer(x, target)``, kind from its ``.kind``). Binary laws use the
    Appendix B.2 form ``IᵀΦ = zᵀ group_sum(A)`` with ``A = (x − baseline) ⊙ Φ`` (local) or
    ``A = Φ`` (global): ``I`` is never divided by ``x`` (zero pixels with baseline 0 are fine).
    A global explanation under a continuous law is a ``ValueError`` (convert it with
    ``xailib.explainers.to_local``). A :class:`~xailib.perturbations.Fixed` law replays its first
    ``min(n_samples, n_fixed)`` draws.

    ``exact``: laws with a finite support (SquareRemoval, SingleFeature, ShapleyKernel) are summed
    exactly over their atoms, ``E[h(I)] = Σ_k p_k h(I_k)``, when ``exact="auto"`` and the support
    has at most ``xailib.perturbations.EXACT_MAX_ATOMS`` atoms (``True`` forces it, ``False``
    samples): the result is then seed-independent and its Monte-Carlo errors are 0
    (see :func:`xailib.perturbations.exact_support`).

    Cost: ``N · n_samples`` forward passes (``N · K`` for an exact sum over ``K`` atoms) in chunks
    of at most ``batch_size``.
    Returns ``(N,)``, or an :class:`InfidelityDetails` (value, raw, β, MC standard errors) when
    ``return_details=True``. Chapters: ``notebooks/toy.ipynb``, ``notebooks/mnist.ipynb``.
    """
    U.check_model(model)
    x = U.check_input(x, "x")
    U.check_model_input(model, x)
    t = U.check_target(target, x.shape[0], x.device)
    law = _check_law(perturbation)
    n_samples = U.check_positive(n_samples, "n_samples", integer=True)
    batch_size = _check_batch_size(batch_size)
    scaling = _check_scaling(scaling)
    fx = U.forward_batched(model, x, t, batch_size).to(x.dtype)  # also validates `target`
    phi, kind = _resolve_explanation(explanation, x, t, kind, model)
    term = _term(law, x, phi, kind)
    draws, probs = _draws_or_support(law, tuple(x.shape[1:]), n_samples, exact, generator, x.device, x.dtype)
    a = _project(law, x, draws, term)
    b = _function_differences(model, x, t, law, draws, batch_size, fx, desc="infidelity")
    det = _infd_stats(a, b, scaling, probs)
    return det if return_details else det.infidelity


# --------------------------------------------------------------------------------------------
# sensitivity


def _uniform_ball(feature_shape, n, radius, generator, device, dtype) -> Tensor:
    g = _gen(generator, device, "sensitivity")
    u = U.rand_like_draw((n, *feature_shape), g, device, dtype, kind="rand")
    return (2 * u - 1) * radius


def _normalizer(phi_x: Tensor) -> Tensor:
    nrm = phi_x.reshape(phi_x.shape[0], -1).norm(dim=1)
    return torch.where(nrm > 0, nrm, torch.ones_like(nrm))


#: the sensitivity conventions: how explanations are compared (forms) and normalised
SENS_FORMS = ("local", "global")
SENS_NORMALIZATIONS = ("raw", "relative", "unit")


def _check_form(form, name="form") -> str:
    if form not in SENS_FORMS:
        raise ValueError(f"`{name}` must be 'local' or 'global', got {form!r}")
    return form


def _check_normalize(normalize, name="normalize") -> str:
    """``True`` → ``"relative"``, ``False``/``None`` → ``"raw"``, or one of :data:`SENS_NORMALIZATIONS`."""
    if normalize is True:
        return "relative"
    if normalize is False or normalize is None:
        return "raw"
    if isinstance(normalize, str) and normalize in SENS_NORMALIZATIONS:
        return normalize
    raise ValueError(f"`{name}` must be True, False, 'raw', 'relative' or 'unit', got {normalize!r}")


def _as_form(explainer, z: Tensor, phi: Tensor, form: str, baseline) -> Tensor:
    """The compared map: ``Φ`` (``form="local"``, or an explainer whose output is already global)
    or ``(z − baseline) ⊙ Φ`` (``form="global"``, local explainers)."""
    if form == "global" and getattr(explainer, "kind", "local") != "global":
        from .explainers import to_global

        return to_global(phi, z, baseline)
    return phi


def _sensitivity_distances(explainer, x, t, phi_x, noise, batch_size, conventions, baseline=0.0,
                           desc=None) -> list:
    """One ``(N, n)`` tensor of distances per ``(form, normalization)`` in ``conventions``.

    ``Φ(x_i + u_j)`` is computed once for all conventions (same neighbours, same explanations):
    raw ``‖T(y) − T(x)‖``, relative ``‖T(y) − T(x)‖ / ‖T(x)‖`` and unit
    ``‖T(y)/‖T(y)‖ − T(x)/‖T(x)‖‖`` (a zero map stays zero), ``T`` the form (see :func:`_as_form`).
    """
    N, n = x.shape[0], noise.shape[0]
    total = N * n
    outs = [torch.empty(total, device=x.device, dtype=x.dtype) for _ in conventions]
    forms = sorted({f for f, _ in conventions})
    tx = {f: _as_form(explainer, x, phi_x, f, baseline).reshape(N, -1) for f in forms}
    nx = {f: _normalizer(tx[f]) for f in forms}
    bar = U.progress(total=total, desc=desc) if desc else None
    for sl in U.chunks(total, batch_size):
        idx = torch.arange(sl.start, sl.stop, device=x.device)
        inst, j = idx // n, idx % n
        y = x.index_select(0, inst) + noise.index_select(0, j)
        ty = None if t is None else t.index_select(0, inst)
        py = _explain(explainer, y, ty, "explainer")
        for f in forms:
            a = _as_form(explainer, y, py, f, baseline).reshape(len(idx), -1)
            b, nb = tx[f].index_select(0, inst), nx[f].index_select(0, inst)
            for k, (fk, norm) in enumerate(conventions):
                if fk != f:
                    continue
                if norm == "unit":
                    d = (a / _normalizer(a).view(-1, 1) - b / nb.view(-1, 1)).norm(dim=1)
                else:
                    d = (a - b).norm(dim=1)
                    if norm == "relative":
                        d = d / nb
                outs[k][sl] = d
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()
    return [o.view(N, n) for o in outs]


def _sensitivities(explainer, x, t, phi_x, noise, batch_size, desc=None) -> Tensor:
    """``‖Φ(x_i + u_j) − Φ(x_i)‖₂`` for all (i, j), shape (N, n), explainer called in chunks."""
    return _sensitivity_distances(explainer, x, t, phi_x, noise, batch_size, [("local", "raw")], desc=desc)[0]


@U.in_eval_mode("explainer")
def sensitivity_max(
    explainer,
    x: Tensor,
    target: TargetLike = None,
    radius: float = 0.1,
    n_samples: int = 50,
    normalize=True,
    generator: SeedLike = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    form: str = "local",
    baseline=0.0,
) -> Tensor:
    """Max-sensitivity (the book's *The paper in brief*, § Metrics, Def. 3.1), Monte-Carlo estimate, shape ``(N,)``.

    Computes ``max_{j ≤ n} ‖Φ(x + u_j) − Φ(x)‖₂`` with ``u_j`` uniform in the L∞ ball
    ``‖u‖∞ ≤ radius`` (``n = n_samples`` draws from ``generator``, in ``x``'s dtype/device, the
    same ``u_j`` for every instance). A lower estimate of the true maximum (errs low).

    * ``normalize=False``: the raw ``SENS_max`` of the theory (Prop. A.1/A.2, Thm. 4.1, C.1).
    * ``normalize=True`` (default): the *relative* sensitivity
      ``max_j ‖Φ(x + u_j) − Φ(x)‖₂ / ‖Φ(x)‖₂`` (Captum's ``sensitivity_max`` and the common reading
      of the paper's "explanations normalised to unit norm"). It is the raw value for ``Φ/‖Φ(x)‖``,
      i.e. ``Φ`` rescaled by the norm **at x** (not ``Φ(y)/‖Φ(y)‖`` at every y, which would also
      discard changes of magnitude). Where ``‖Φ(x)‖ = 0`` the raw value is returned (as Captum).
    * ``normalize="unit"``: both maps normalised to unit norm,
      ``max_j ‖Φ(y_j)/‖Φ(y_j)‖ − Φ(x)/‖Φ(x)‖‖₂`` (appendix B.1's "explanations normalised to unit
      norm" read literally; at most 2, blind to changes of magnitude). ``"raw"``/``"relative"``
      are synonyms of ``False``/``True``.

    ``form="local"`` (default) compares the explainer's outputs as returned (``Φ`` for a local
    explainer; a global explainer's ``A`` is already global). ``form="global"`` compares the
    global explanations ``(x − b) ⊙ Φ(x)`` and ``(y − b) ⊙ Φ(y)`` (``b = baseline``), the form of
    Table 4 ("for global explanation"); global explainers are compared as returned. For the
    gradient of ``f = wᵀx`` the local SENS is 0 and the raw global one ``max_j ‖w ⊙ u_j‖₂ ≤
    radius·‖w‖₂`` (reached at the corners of the ball); relative: divided by ``‖w ⊙ (x − b)‖₂``.

    The neighbours of all instances are stacked into ``(N · n)`` inputs and explained in batched
    calls of at most ``batch_size`` neighbours. A stochastic explainer is called with its own
    fixed seed every call, so ``Φ(x)`` and every ``Φ(y)`` share the same noise (common random
    numbers); :func:`sensitivity_noise_floor` gives the noise level with independent draws.
    Chapters: ``notebooks/toy.ipynb``, ``notebooks/theory.ipynb``, ``notebooks/mnist.ipynb``.
    """
    explainer = _check_explainer(explainer)
    x = U.check_input(x, "x")
    t = U.check_target(target, x.shape[0], x.device)
    radius = U.check_positive(radius, "radius")
    n_samples = U.check_positive(n_samples, "n_samples", integer=True)
    batch_size = _check_batch_size(batch_size)
    norm = _check_normalize(normalize)
    form = _check_form(form)
    if hasattr(explainer, "model") and callable(explainer.model):
        _check_target_with_model(explainer.model, x, t)
    phi_x = _explain(explainer, x, t)
    noise = _uniform_ball(tuple(x.shape[1:]), n_samples, radius, generator, x.device, x.dtype)
    D = _sensitivity_distances(explainer, x, t, phi_x, noise, batch_size, [(form, norm)], baseline,
                               desc="sensitivity")[0]
    return D.max(1).values


@U.in_eval_mode("explainer")
def sensitivity_noise_floor(
    explainer,
    x: Tensor,
    target: TargetLike = None,
    n_repeats: int = 10,
    normalize: bool = True,
    reduce: str = "mean",
    generator: SeedLike = None,
) -> Tensor:
    """Monte-Carlo noise floor of a stochastic explainer at ``y = x`` (the book's *The paper in brief*, § Monte-Carlo hygiene).

    ``‖Φ(x; seed a) − Φ(x; seed b_k)‖₂`` (divided by ``‖Φ(x; seed a)‖₂`` when ``normalize``, as in
    :func:`sensitivity_max`), ``a`` the explainer's own seed (``generator=None``, the draws
    ``sensitivity_max`` uses) and ``b_1 … b_{n_repeats}`` independent seeds (drawn from
    ``generator``). ``reduce="mean"``: the typical noise; ``reduce="max"``: what a SENS_max
    estimate with independent draws at ``n_repeats`` neighbours would report even at y = x.
    Deterministic explainers (``.stochastic`` false) give zeros. Shape ``(N,)``.
    """
    explainer = _check_explainer(explainer)
    x = U.check_input(x, "x")
    t = U.check_target(target, x.shape[0], x.device)
    n_repeats = U.check_positive(n_repeats, "n_repeats", integer=True)
    if reduce not in ("mean", "max"):
        raise ValueError(f"`reduce` must be 'mean' or 'max', got {reduce!r}")
    if not getattr(explainer, "stochastic", True):
        return torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
    phi_a = _explain(explainer, x, t)
    g = _gen(generator, "cpu", "noise_floor")
    seeds = torch.randint(1, 2**62, (n_repeats,), generator=g).tolist()
    nrm = _normalizer(phi_a) if normalize else torch.ones(x.shape[0], device=x.device, dtype=x.dtype)
    vals = torch.stack(
        [
            (_explain(explainer, x, t, generator=int(s)) - phi_a).reshape(x.shape[0], -1).norm(dim=1) / nrm
            for s in seeds
        ],
        dim=1,
    )
    return vals.mean(1) if reduce == "mean" else vals.max(1).values


def sensitivity_growth(
    explainer,
    x: Tensor,
    target: TargetLike = None,
    radius: float = 0.1,
    n_values=(5, 10, 20, 50, 100, 200),
    n_reps: int = 4,
    normalize: bool = True,
    generator: SeedLike = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
):
    """How the Monte-Carlo max-sensitivity grows with the number of neighbours ``n``.

    ``max_{j ≤ n} ‖Φ(x + u_j) − Φ(x)‖`` is a lower estimate of the supremum over the ball and
    grows with ``n`` (biased low, the bias shrinking slowly). For each of ``n_reps`` independent
    replications, ``max(n_values)`` neighbours are drawn once and the running maximum over the
    first ``n`` gives the estimate for every ``n`` (nested, so the curve is monotone within a
    replication); replication 0 equals :func:`sensitivity_max` with the same seed and
    ``n_samples = max(n_values)``. Returns a DataFrame indexed by ``n`` with columns
    ``"SENS_max"`` (mean over instances and replications), ``"se"`` (over instances, of the
    replication means), ``"mc se"`` (over replications), ``"rel. to max n"`` (the ratio to the
    estimate at the largest ``n``). Cost: ``n_reps · max(n_values)`` explanations per instance.
    Chapter: ``notebooks/mnist`` (the bias of SENS).
    """
    import pandas as pd

    _check_explainer(explainer)
    x = U.check_input(x, "x")
    t = U.check_target(target, x.shape[0], x.device)
    radius = U.check_positive(radius, "radius")
    n_reps = U.check_positive(n_reps, "n_reps", integer=True)
    try:
        ns = sorted({int(U.check_positive(v, "n_values", integer=True)) for v in n_values})
    except TypeError:
        raise TypeError(f"`n_values` must be an iterable of positive ints, got {n_values!r}") from None
    if not ns:
        raise ValueError("`n_values` must not be empty")
    batch_size = _check_batch_size(batch_size)
    if hasattr(explainer, "model") and callable(explainer.model):
        _check_target_with_model(explainer.model, x, t)
    phi_x = _explain(explainer, x, t)
    N, F = x.shape[0], tuple(x.shape[1:])
    idx = torch.tensor([v - 1 for v in ns])
    out = []  # (R, N, len(ns))
    for r in range(n_reps):
        g = generator if isinstance(generator, torch.Generator) else \
            _gen(generator, x.device, "sensitivity" if r == 0 else f"sensitivity/{r}")
        noise = _uniform_ball(F, ns[-1], radius, g, x.device, x.dtype)
        D = _sensitivities(explainer, x, t, phi_x, noise, batch_size, desc=f"sensitivity growth {r + 1}/{n_reps}")
        if normalize:
            D = D / _normalizer(phi_x).view(-1, 1)
        out.append(D.double().cummax(1).values[:, idx].cpu())
    V = torch.stack(out)  # (R, N, k)
    per_inst = V.mean(0)  # (N, k)
    mean = per_inst.mean(0)
    se = per_inst.std(0) / math.sqrt(N) if N > 1 else torch.full_like(mean, float("nan"))
    mc = V.mean(1).std(0) / math.sqrt(n_reps) if n_reps > 1 else torch.full_like(mean, float("nan"))
    df = pd.DataFrame({"SENS_max": mean.numpy(), "se": se.numpy(), "mc se": mc.numpy(),
                       "rel. to max n": (mean / mean[-1]).numpy()}, index=pd.Index(ns, name="n"))
    return df


@U.in_eval_mode("explainer")
def sensitivity_conventions(
    explainer,
    x: Tensor,
    target: TargetLike = None,
    radii=(0.1, 0.2),
    forms=SENS_FORMS,
    normalizations=SENS_NORMALIZATIONS,
    n_samples: int = 50,
    reps: int = 3,
    baseline=0.0,
    generator: SeedLike = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
):
    """Max-sensitivity of one explainer under every convention: form × normalisation × radius.

    For each radius ``r`` and replication ``k < reps``, ``n_samples`` neighbours ``y_j = x + u_j``
    (``u_j`` uniform in ``‖u‖∞ ≤ r``) are explained once and compared under every ``form``
    (``"local"``: ``Φ``; ``"global"``: ``(x − baseline) ⊙ Φ``) and normalisation (``"raw"``:
    ``‖T(y) − T(x)‖``; ``"relative"``: divided by ``‖T(x)‖``; ``"unit"``: ``‖T(y)/‖T(y)‖ −
    T(x)/‖T(x)‖‖ ≤ 2``), as in :func:`sensitivity_max`; replication ``k`` draws from the stream
    ``"sensitivity"`` (``k = 0``, the stand-alone :func:`sensitivity_max` with the same seed and
    radius) or ``"sensitivity/k"``, so the radii share their directions (common random numbers).
    The per-instance value is the mean over replications of ``max_{j ≤ n_samples}`` (as
    :func:`evaluate`).

    Returns a DataFrame indexed by ``(form, normalization, radius)`` with columns ``"SENS_max"``
    (mean over instances), ``"se"`` (over instances), ``"mc se"`` (over replications,
    ``sd_k(T_k)/√reps``; NaN for ``reps=1``) and ``"total se"`` = ``√(se² + mc se²)``. Cost:
    ``len(radii) · reps · n_samples`` explanations per instance. Chapter: ``notebooks/mnist_robust``
    (the sensitivity gap); the book's *The paper in brief*, § Metrics.
    """
    import pandas as pd

    explainer = _check_explainer(explainer)
    x = U.check_input(x, "x")
    t = U.check_target(target, x.shape[0], x.device)
    n_samples = U.check_positive(n_samples, "n_samples", integer=True)
    reps = U.check_positive(reps, "reps", integer=True)
    batch_size = _check_batch_size(batch_size)
    try:
        radii = [float(U.check_positive(r, "radii")) for r in radii]
        forms = [_check_form(f, "forms") for f in forms]
        norms = [_check_normalize(v, "normalizations") for v in normalizations]
    except TypeError:
        raise TypeError("`radii`, `forms` and `normalizations` must be iterables") from None
    if not (radii and forms and norms):
        raise ValueError("`radii`, `forms` and `normalizations` must not be empty")
    if hasattr(explainer, "model") and callable(explainer.model):
        _check_target_with_model(explainer.model, x, t)
    N, F = x.shape[0], tuple(x.shape[1:])
    phi_x = _explain(explainer, x, t)
    convs = [(f, v) for f in forms for v in norms]
    rows = []
    for r in radii:
        per_rep = []  # reps × (len(convs), N)
        for k in range(reps):
            g = generator if isinstance(generator, torch.Generator) else \
                _gen(generator, x.device, "sensitivity" if k == 0 else f"sensitivity/{k}")
            noise = _uniform_ball(F, n_samples, r, g, x.device, x.dtype)
            Ds = _sensitivity_distances(explainer, x, t, phi_x, noise, batch_size, convs, baseline,
                                        desc=f"sensitivity r={r:g} {k + 1}/{reps}")
            per_rep.append(torch.stack([D.max(1).values for D in Ds]).double().cpu())
        V = torch.stack(per_rep)  # (R, C, N)
        for c, (f, v) in enumerate(convs):
            per_inst = V[:, c, :].mean(0)
            mean = float(per_inst.mean())
            se = float(per_inst.std() / math.sqrt(N)) if N > 1 else float("nan")
            mc = float(V[:, c, :].mean(1).std() / math.sqrt(reps)) if reps > 1 else float("nan")
            rows.append({"form": f, "normalization": v, "radius": r, "SENS_max": mean, "se": se, "mc se": mc,
                         "total se": math.sqrt(se**2 + mc**2)})
    return pd.DataFrame(rows).set_index(["form", "normalization", "radius"])


# --------------------------------------------------------------------------------------------
# robust infidelity


def _is_plain_gradient(explainer) -> bool:
    return type(explainer).__name__ == "Gradient" and getattr(explainer, "kind", "local") == "local"


def _infd_value_and_grad(model, explainer, xu, t, law, draws, kind, scaling, batch_size, need_grad, double):
    N = xu.shape[0]
    n = draws.shape[0]
    if not need_grad:
        phi = _explain(explainer, xu, t)
        term = _term(law, xu, phi, kind)
        fx = U.forward_batched(model, xu, t, batch_size).to(xu.dtype)
        a = _project(law, xu, draws, term)
        b = _function_differences(model, xu, t, law, draws, batch_size, fx)
        return _infd_stats(a, b, scaling).infidelity, None
    leaf = xu.detach().requires_grad_(True)
    with torch.enable_grad():
        fx = U.forward_target(model, leaf, t)
        if double:
            (phi,) = torch.autograd.grad(fx.sum(), leaf, create_graph=True)
        else:
            phi = _explain(explainer, xu.detach(), t)
        term = _term(law, leaf, phi, kind)
    # pass 1: value and β at this point
    with torch.no_grad():
        a = _project(law, xu, draws, term.detach())
        b = _function_differences(model, xu, t, law, draws, batch_size, fx.detach().to(xu.dtype))
    det = _infd_stats(a, b, scaling)
    beta = det.beta.detach().view(-1, 1)
    # pass 2: gradient of mean((β a − b)²) with β held fixed (∂INFD/∂β = 0 at β*), chunked
    term_l = term.detach().requires_grad_(True)
    fx_l = fx.detach().requires_grad_(True)
    gx = torch.zeros_like(xu)
    g_term = torch.zeros_like(term_l)
    g_fx = torch.zeros_like(fx_l)
    m = max(1, batch_size // N)
    for sl in U.chunks(n, m):
        xc = xu.detach().requires_grad_(True)
        with torch.enable_grad():
            ac = law.dot(xc, draws[sl], term_l) if not law.binary else term_l @ draws[sl].T
            pert = law.perturbed(xc, draws[sl])
            k = pert.shape[1]
            tt = None if t is None else t.repeat_interleave(k)
            fp = U.forward_target(model, pert.reshape(N * k, *xu.shape[1:]), tt).view(N, k)
            bc = fx_l.view(-1, 1) - fp
            loss = ((beta * ac - bc) ** 2).sum() / n
            gs = torch.autograd.grad(loss, [xc, term_l, fx_l], allow_unused=True)
        for acc, gi in zip((gx, g_term, g_fx), gs):
            if gi is not None:
                acc += gi
    with torch.enable_grad():
        outs, grads = [fx], [g_fx]
        if term.requires_grad:
            outs.append(term)
            grads.append(g_term)
        (g_shared,) = torch.autograd.grad(outs, leaf, grad_outputs=grads, allow_unused=True)
    if g_shared is not None:
        gx = gx + g_shared
    return det.infidelity, gx


@U.in_eval_mode("model", "explainer")
def robust_infidelity(
    model: Callable[[Tensor], Tensor],
    explainer,
    x: Tensor,
    target: TargetLike = None,
    perturbation: Optional[Perturbation] = None,
    radius: float = 0.1,
    n_samples: int = 200,
    n_restarts: int = 4,
    steps: int = 10,
    step_size: Optional[float] = None,
    scaling: Optional[str] = "optimal",
    generator: SeedLike = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    explainer_grad: str = "auto",
    return_details: bool = False,
):
    """Robust infidelity (Def. C.1): ``RINFD = max_{‖u‖∞ ≤ r} INFD(Φ, f, x + u)``; the book's
    *The paper in brief*, § Metrics.

    Estimated by search over ``u``: the start ``u = 0`` plus ``n_restarts`` starts uniform in the
    L∞ ball (the same starts for every instance), each followed by ``steps`` steps of projected
    sign-gradient ascent ``u ← clip(u + α sign(∇_u INFD), −r, r)`` (:func:`xailib._ascent.projected_ascent`),
    ``α = step_size`` (default
    ``2.5 r / steps``). INFD at every point uses the **same** ``n_samples`` perturbation draws
    (common random numbers) and ``scaling`` as :func:`infidelity`; the best value seen is kept.

    Gradients: through ``f(x + u)``, ``f(x + u − I)`` and (binary laws) the factor ``x + u − b``
    by autograd; through ``Φ(x + u)`` by double back-propagation (``create_graph``) when the
    explainer is plain ``Gradient`` (``explainer_grad="auto"``; checked numerically against the
    explainer at the first point); for any other explainer ``Φ(x + u)`` is recomputed at every
    step but treated as a constant in the gradient (a heuristic ascent direction; every value
    is still an exact INFD evaluation). ``explainer_grad="none"`` forces that mode, ``steps=0``
    gives pure random search.

    The result is a **lower bound** of RINFD up to Monte-Carlo error: the search may miss the
    maximiser, so the estimate errs low (it is always ≥ INFD at ``u = 0`` with the same draws).
    ``x + u`` is not clipped to the data range (Def. C.1 constrains only ``‖u‖``).
    Cost: ``(1 + n_restarts) · N · n_samples`` forward passes per step, plus backward passes.
    Returns ``(N,)``, or ``(value, u_best, infd_at_x)`` when ``return_details``.
    Chapter: ``notebooks/mnist_robust.ipynb``.
    """
    from ._ascent import projected_ascent

    U.check_model(model)
    explainer = _check_explainer(explainer)
    x = U.check_input(x, "x")
    U.check_model_input(model, x)
    N, F = x.shape[0], tuple(x.shape[1:])
    t = U.check_target(target, N, x.device)
    law = _check_law(perturbation)
    radius = U.check_positive(radius, "radius")
    n_samples = U.check_positive(n_samples, "n_samples", integer=True)
    for name, v in (("n_restarts", n_restarts), ("steps", steps)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"`{name}` must be an int >= 0, got {v!r}")
    if step_size is not None:
        step_size = U.check_positive(step_size, "step_size")
    scaling = _check_scaling(scaling)
    batch_size = _check_batch_size(batch_size)
    if explainer_grad not in ("auto", "none"):
        raise ValueError(f"`explainer_grad` must be 'auto' or 'none', got {explainer_grad!r}")
    _check_target_with_model(model, x, t)
    kind = explainer.kind
    if kind == "global" and not law.binary:
        raise _global_continuous_error(law)
    g = _gen(generator, x.device, "infidelity")
    n = _n_draws(law, n_samples)
    draws = law.draw(F, n, g, x.device, x.dtype)
    starts = _uniform_ball(F, n_restarts, radius, g, x.device, x.dtype) if n_restarts else x.new_zeros((0, *F))
    Ustart = torch.cat([x.new_zeros((1, *F)), starts])  # (R, *F)
    R = Ustart.shape[0]
    x_rep = x.repeat_interleave(R, 0)
    t_rep = None if t is None else t.repeat_interleave(R)
    u = Ustart.repeat(N, *([1] * len(F)))
    double = False
    if explainer_grad == "auto" and _is_plain_gradient(explainer) and steps > 0:
        leaf = x[:2].detach().requires_grad_(True)
        with torch.enable_grad():
            (gr,) = torch.autograd.grad(U.forward_target(model, leaf, None if t is None else t[:2]).sum(), leaf)
        ref = _explain(explainer, x[:2], None if t is None else t[:2])
        tol = 1e-4 if x.dtype == torch.float32 else 1e-8
        double = torch.allclose(gr, ref, rtol=tol, atol=tol * float(ref.abs().max().clamp_min(1e-30)))
        if not double:
            warnings.warn("Gradient explainer differs from ∇f; Φ(x+u) treated as constant in the ascent")
    alpha = step_size if step_size is not None else 2.5 * radius / max(steps, 1)
    first = []
    bar = U.progress(total=steps + 1, desc="robust infidelity")

    def value_and_grad(uu, need):
        val, gx = _infd_value_and_grad(model, explainer, x_rep + uu, t_rep, law, draws, kind, scaling,
                                       batch_size, need, double)
        if not first:
            first.append(val.view(N, R)[:, 0].clone())
        bar.update(1)
        return val, gx

    best, best_u, _ = projected_ascent(value_and_grad, u, steps, alpha, lambda v: v.clamp(-radius, radius), "linf")
    bar.close()
    infd0 = first[0]
    bv = best.view(N, R)
    value, arg = bv.max(1)
    if return_details:
        ub = best_u.view(N, R, *F)[torch.arange(N, device=x.device), arg]
        return value, ub, infd0
    return value


# --------------------------------------------------------------------------------------------
# the paired evaluation table


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

    def put(col, name, vals: Tensor):
        v = vals.detach().double().cpu()
        records.extend((name, i, col, float(val)) for i, val in enumerate(v.tolist()))
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
                notes.append(
                    f"{name} × {lname}: NaN, a global explanation cannot be evaluated under the "
                    f"continuous law {law!r} (use a binary law or xailib.explainers.to_local)"
                )
                continue
            a = _project(law, x, draws, _term(law, x, phis[name], kind))
            det = _infd_stats(a, b, scaling, probs)
            rows[name][col], rows[name][col + " se"] = put(col, name, det.infidelity)
            put(col + " raw", name, det.raw)
            put(col + " beta", name, det.beta)
            put(col + " mc_se", name, det.se)
            if probs is not None:
                mc = 0.0
            elif n > 1:
                ebar = ((det.beta.view(-1, 1) * a - b) ** 2).double().mean(0)  # (n,) one term per draw
                mc = float(ebar.std() / math.sqrt(n))
            else:
                mc = float("nan")
            put_mc(col, name, mc)
    cols = []
    for c in (list(sens_cols) if n_sens > 0 else []) + [f"INFD[{k}]" for k in perturbations]:
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
        "perturbations": {k: repr(v) for k, v in perturbations.items()},
        "dtype": str(x.dtype),
    }
    return Evaluation(summary, tidy, notes, settings)
