"""The one projected-ascent routine of xailib.

Every maximisation over a ball in the library runs through :func:`projected_ascent`: the PGD
attack (:func:`xailib.attacks.pgd`), robust infidelity (:func:`xailib.metrics.robust_infidelity`),
and the lower estimates of the suprema in the theory checks (:mod:`xailib.theory`). The iteration is
steepest ascent for the ball's norm followed by a projection,

    z_{t+1} = Π(z_t + η_t · s(∇v(z_t))),   s(g) = sign(g) (ℓ∞)  or  g / ‖g‖₂ (ℓ₂),

keeping, per row, the best value met (every iterate is feasible, so the best value is a
**lower** estimate of the maximum). Background: the book's *The paper in brief*, § Metrics
(robust infidelity) and § Monte-Carlo hygiene (which side an estimate errs on).
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Union

import torch
from torch import Tensor

__all__ = ["NORMS", "project_ball", "ascent_step", "projected_ascent", "AscentResult"]

NORMS = ("linf", "l2")


def _check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ValueError(f"`norm` must be one of {NORMS}, got {norm!r}")
    return norm


def _rows(v: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-row vector ``(B,)`` to broadcast against ``like`` ``(B, ...)``."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def project_ball(u: Tensor, radius: float, norm: str = "l2", tiny: float = 1e-300) -> Tensor:
    """Euclidean projection of every row of ``u`` (offsets from the centre) onto the ball
    ``‖u‖ ≤ radius``: ``clamp(u, −r, r)`` for ``"linf"``, ``u · min(1, r / ‖u‖₂)`` for ``"l2"``
    (``‖u‖₂`` floored at ``tiny``)."""
    _check_norm(norm)
    if norm == "linf":
        return u.clamp(-radius, radius)
    flat = u.flatten(1)
    factor = (radius / flat.norm(dim=1).clamp_min(tiny)).clamp(max=1.0)
    return (flat * factor.unsqueeze(1)).view_as(u)


def ascent_step(grad: Tensor, eta: Union[float, Tensor], norm: str = "l2", tiny: float = 1e-300) -> Tensor:
    """The steepest-ascent step of length ``eta`` for the norm: ``η sign(g)`` (ℓ∞) or
    ``η g / ‖g‖₂`` (ℓ₂, per row, ``‖g‖₂`` floored at ``tiny``)."""
    _check_norm(norm)
    if norm == "linf":
        return eta * torch.sign(grad)
    return eta * grad / _rows(grad.flatten(1).norm(dim=1).clamp_min(tiny), grad)


class AscentResult(NamedTuple):
    """What :func:`projected_ascent` returns: ``value`` (best value per row, or None when not
    tracked), ``argmax`` (the iterate that reached it) and ``last`` (the final iterate)."""

    value: Optional[Tensor]
    argmax: Optional[Tensor]
    last: Tensor


def projected_ascent(
    value_and_grad: Callable[[Tensor, bool], tuple],
    z0: Tensor,
    steps: int,
    step_size: Union[float, Callable[[int], float]],
    project: Callable[[Tensor], Tensor],
    norm: str = "l2",
    keep_best: bool = True,
    tiny: float = 1e-300,
) -> AscentResult:
    """Projected steepest ascent from ``z0`` (rows = independent problems).

    Args:
        value_and_grad: ``(z, need_grad) -> (value (B,), grad like z or None)``; a ``None``
            gradient stops the iteration (e.g. a piecewise-constant objective).
        z0: the feasible starting points ``(B, ...)``.
        steps: number of ascent steps (``steps + 1`` evaluations when ``keep_best``).
        step_size: ``η``, a number or a function of the step index ``t``.
        project: the projection onto the feasible set (e.g. :func:`project_ball` of the offset).
        norm: ``"linf"`` (sign steps) or ``"l2"`` (normalised-gradient steps), see :func:`ascent_step`.
        keep_best: track the best value met and its iterate (otherwise the last iterate is not
            evaluated and ``value``/``argmax`` are None, as in a PGD attack).
        tiny: floor of the ℓ₂ norm of the gradient.

    Returns:
        :class:`AscentResult`. With ``keep_best`` the value is a lower estimate of the maximum
        over the feasible set (every iterate is feasible).
    """
    _check_norm(norm)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"`steps` must be an int >= 0, got {steps!r}")
    z = z0
    best = best_z = None
    for t in range(steps + 1):
        need = t < steps
        if not need and not keep_best:
            break
        val, grad = value_and_grad(z, need)
        if keep_best:
            val = val.detach()
            if best is None:
                best = torch.full_like(val, -float("inf"))
                best_z = z.detach().clone()
            better = val > best
            best = torch.where(better, val, best)
            best_z = torch.where(_rows(better, z), z.detach(), best_z)
        if not need or grad is None:
            break
        eta = step_size(t) if callable(step_size) else step_size
        with torch.no_grad():
            z = project(z.detach() + ascent_step(grad, eta, norm, tiny))
    return AscentResult(best, best_z, z.detach())
