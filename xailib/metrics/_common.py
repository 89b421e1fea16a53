"""Shared argument checks and infidelity internals of :mod:`xailib.metrics`."""
from __future__ import annotations

import math
import warnings
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from .. import _utils as U
from .._utils import SeedLike
from ..perturbations import NoisyBaseline, Perturbation, exact_support


class InfidelityDetails(NamedTuple):
    """What ``infidelity(..., return_details=True)`` returns (every field of shape ``(N,)``).

    ``infidelity``: the reported value (optimally scaled unless ``scaling=None``); ``raw``: the
    unscaled ``E[(IᵀΦ − Δf)²]``; ``beta``: ``β*`` (1 when ``scaling=None``); ``se``: Monte-Carlo
    standard error of ``infidelity`` (``std/√n`` of the per-draw squared errors at ``β*``: since
    ``β*`` minimises the sample mean, its own estimation error enters only at second order);
    ``raw_se``: the Monte-Carlo standard error of ``raw``; ``energy``: ``E[Δf²]``, the mean square
    of the function differences (what ``Φ = 0`` leaves unexplained: the infidelity of the zero
    map, in the units of f²); ``relative``: ``infidelity / energy`` (rINFD, the fraction of the
    response left unexplained: scale-free, so comparable across models; in [0, 1] with optimal
    scaling; NaN where the energy is 0); ``relative_se``: its Monte-Carlo standard error (delta
    method on the ratio of two means over the same draws, ``β*`` held).
    """

    infidelity: Tensor
    raw: Tensor
    beta: Tensor
    se: Tensor
    raw_se: Tensor
    energy: Tensor
    relative: Tensor
    relative_se: Tensor


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
        from ..captum import explanation as _wrap

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
        from ..captum import explanation as _wrap

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
        e = sq
    energy = mean(b * b)
    pos = energy > 0
    rel = torch.where(pos, val / torch.where(pos, energy, torch.ones_like(energy)), torch.full_like(val, float("nan")))
    rel_se = torch.where(pos, se(relative_draw_terms(e, b, energy, rel)), torch.full_like(val, float("nan")))
    return InfidelityDetails(val, raw, beta, val_se, raw_se, energy, rel, rel_se)


def relative_draw_terms(e: Tensor, b: Tensor, energy: Tensor, relative: Tensor) -> Tensor:
    """The delta-method terms of rINFD = ē / b̄²: per instance and draw ``(e_ij − r_i b_ij²) / E_i``
    (``e`` the squared errors at β*, ``b`` the function differences (N, n); ``energy`` E_i = b̄²_i and
    ``relative`` r_i (N,)). Their mean over the draws is 0 and their spread is rINFD's Monte-Carlo
    error: per instance (:class:`InfidelityDetails`), and through their mean over the instances of a
    draw for the table mean (:func:`xailib.metrics.evaluate`)."""
    E = energy.view(-1, 1)
    return (e - relative.nan_to_num().view(-1, 1) * b * b) / torch.where(E > 0, E, torch.ones_like(E))


def _draws_or_support(law, F, n_samples, exact, generator, device, dtype, stream="infidelity"):
    """``(draws, probs)``: the exact support (probs float64) or ``n`` sampled draws (probs None)."""
    sup = exact_support(law, F, exact, device, dtype)
    if sup is not None:
        return sup
    n = _n_draws(law, n_samples)
    return law.draw(F, n, _gen(generator, device, stream), device, dtype), None


#: the sensitivity conventions: how explanations are compared (forms) and normalised
SENS_FORMS = ("local", "global")


SENS_NORMALIZATIONS = ("raw", "relative", "unit")
