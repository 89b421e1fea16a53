"""Projected gradient descent attacks (Madry et al., 2018) and robust accuracy.

The paper's robust MNIST network (appendix B.4, Table 4; the book's *The paper in brief*,
§ Experiments) is trained with PGD at ε = 0.3 (ℓ∞), step 0.01, 40 steps, random start, by
:func:`xailib.training.adversarial_training` (also importable from here). Theorem A.1
(§ Theory) explains why: adversarial training penalises the gradient and Hessian norms of the
model, so gradient explanations become less sensitive and more faithful. The ascent is
:func:`xailib._ascent.projected_ascent`, the library's one projected-ascent routine.
See ``notebooks/mnist_robust``.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._ascent import NORMS, project_ball, projected_ascent
from ._utils import SeedLike, check_input, check_positive, make_generator

__all__ = ["pgd", "robust_accuracy", "attack_battery", "ATTACK_BATTERY", "PAPER_PGD", "NORMS"]


def __getattr__(name):
    # adversarial_training lives in xailib.training (which imports this module): re-exported lazily
    if name == "adversarial_training":
        from .training import adversarial_training

        return adversarial_training
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: the paper's attack / adversarial-training settings (Madry et al. MNIST)
PAPER_PGD = dict(eps=0.3, step=0.01, steps=40, random_start=True)


def _check_eps(eps) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise TypeError(f"`eps` must be a non-negative number, got {eps!r}")
    if not eps >= 0:
        raise ValueError(f"`eps` must be >= 0, got {eps!r}")
    return float(eps)


def _check_clamp(clamp, x: Tensor):
    if clamp is None:
        return None
    try:
        lo, hi = (float(v) for v in clamp)
    except Exception as e:
        raise ValueError(f"`clamp` must be None or a pair (low, high), got {clamp!r}") from e
    if not lo < hi:
        raise ValueError(f"`clamp` must satisfy low < high, got {clamp!r}")
    if x.min() < lo or x.max() > hi:
        raise ValueError(
            f"`x` must lie in the clamp range [{lo}, {hi}], got values in "
            f"[{float(x.min()):.4g}, {float(x.max()):.4g}]"
        )
    return lo, hi


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float = 0.3,
    step: float = 0.01,
    steps: int = 40,
    random_start: bool = True,
    norm: str = "linf",
    clamp: Optional[Tuple[float, float]] = (0.0, 1.0),
    generator: SeedLike = None,
    loss: str = "ce",
) -> Tensor:
    """Projected gradient ascent on the cross-entropy loss (Madry et al.); returns ``x_adv``.

    The iteration is :func:`xailib._ascent.projected_ascent` (the last iterate is returned).

    ``x_{t+1} = Π_{B(x, ε) ∩ [clamp]}(x_t + step · sign(∇ℓ(x_t)))`` for ``norm="linf"``
    (``step · ∇ℓ / ‖∇ℓ‖₂`` for ``"l2"``), from a uniform random start in the ball when
    ``random_start``. The result stays in the ε-ball around ``x`` and in ``clamp`` (default
    [0, 1]; ``x`` itself must lie there). Parameters get no gradient; the model's train/eval
    mode is left as is. ``eps=0`` returns ``x`` (a copy). ``generator``: None (seed 0), an int
    or a ``torch.Generator`` for the random start. See ``notebooks/mnist_robust.ipynb``.
    """
    x = check_input(x, "x")
    if not isinstance(y, Tensor) or y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError("`y` must be an integer tensor of class labels with shape (N,)")
    if y.shape != (x.shape[0],):
        raise ValueError(f"`y` must have shape ({x.shape[0]},), got {tuple(y.shape)}")
    eps = _check_eps(eps)
    check_positive(step, "step")
    check_positive(steps, "steps", integer=True)
    if norm not in NORMS:
        raise ValueError(f"`norm` must be one of {NORMS}, got {norm!r}")
    if loss not in ("ce", "margin"):
        raise ValueError(f"`loss` must be 'ce' or 'margin', got {loss!r}")
    bounds = _check_clamp(clamp, x)
    x = x.detach()
    y = y.to(device=x.device, dtype=torch.long)
    if eps == 0:
        return x.clone()

    def project(xa: Tensor) -> Tensor:
        xa = x + project_ball(xa - x, eps, norm, tiny=1e-12)
        if bounds is not None:
            xa = xa.clamp(*bounds)
        return xa

    if random_start:
        g = make_generator(generator, x.device)
        if norm == "linf":
            noise = torch.rand(x.shape, generator=g, device=g.device, dtype=x.dtype).to(x.device) * 2 - 1
            delta = eps * noise
        else:
            d = torch.randn(x.shape, generator=g, device=g.device, dtype=x.dtype).to(x.device).flatten(1)
            d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-12)
            r = torch.rand(x.shape[0], 1, generator=g, device=g.device, dtype=x.dtype).to(x.device)
            delta = (d * r.pow(1.0 / d.shape[1]) * eps).view_as(x)
        xa = project(x + delta)
    else:
        xa = x.clone()

    def value_and_grad(xa: Tensor, need: bool):
        xa = xa.detach().requires_grad_(True)
        with torch.enable_grad():
            out = model(xa)
            if loss == "ce":
                obj = F.cross_entropy(out, y, reduction="sum")
            else:  # Carlini-Wagner margin: best other logit minus true logit
                true = out.gather(1, y.view(-1, 1)).squeeze(1)
                other = out.clone()
                other.scatter_(1, y.view(-1, 1), float("-inf"))
                obj = (other.max(1).values - true).sum()
            (grad,) = torch.autograd.grad(obj, xa)
        return None, grad

    xa = projected_ascent(value_and_grad, xa, steps, step, project, norm, keep_best=False, tiny=1e-12).last
    return xa.detach()


def robust_accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    batch_size: int = 500,
    **pgd_kwargs,
) -> float:
    """Accuracy on ``pgd(model, x, y, **pgd_kwargs)`` (paper attack by default:
    ε = 0.3, step 0.01, 40 steps, random start), computed in batches."""
    kw = dict(PAPER_PGD)
    kw.update(pgd_kwargs)
    check_positive(batch_size, "batch_size", integer=True)
    correct = 0
    gen = make_generator(kw.pop("generator", None), x.device)
    for s in range(0, x.shape[0], batch_size):
        xa = pgd(model, x[s : s + batch_size], y[s : s + batch_size], generator=gen, **kw)
        with torch.no_grad():
            correct += int((model(xa).argmax(1) == y[s : s + batch_size].to(xa.device)).sum())
    return correct / x.shape[0]


#: Stronger attacks than the paper's PGD-40 (all L∞, ε given by the call), with more steps, random
#: restarts, and the Carlini-Wagner margin loss besides the cross-entropy.
ATTACK_BATTERY = {
    "PGD-40 (paper)": dict(step=0.01, steps=40, loss="ce", restarts=1),
    "PGD-100, CE, 5 restarts": dict(step=0.01, steps=100, loss="ce", restarts=5),
    "PGD-100, margin, 5 restarts": dict(step=0.01, steps=100, loss="margin", restarts=5),
}


def attack_battery(model, x: Tensor, y: Tensor, eps: float = 0.3, battery=None, batch_size: int = 500,
                   generator: SeedLike = 0) -> Dict[str, float]:
    """Accuracy under each attack of ``battery`` and the per-digit worst case over all of them.

    A digit counts as robust in ``"worst case"`` only if no attack (no restart of any attack)
    changes its prediction; each restart runs only on the digits that survived the previous
    restarts, so restarts cost little on a network that is easy to break. Keys: ``"clean"``, one per
    attack (its own accuracy on all digits), ``"worst case"``. Default battery:
    :data:`ATTACK_BATTERY`. See ``notebooks/mnist_robust``.
    """
    battery = ATTACK_BATTERY if battery is None else battery
    check_positive(batch_size, "batch_size", integer=True)
    gen = make_generator(generator, x.device)

    def correct(xa, yb):
        with torch.no_grad():
            return model(xa).argmax(1) == yb.to(xa.device)

    out: Dict[str, float] = {}
    clean = torch.cat([correct(x[s : s + batch_size], y[s : s + batch_size])
                       for s in range(0, x.shape[0], batch_size)])
    out["clean"] = float(clean.double().mean())
    alive = clean.clone()
    for name, spec in battery.items():
        spec = dict(spec)
        restarts = int(spec.pop("restarts", 1))
        ok = clean.clone()
        for s in range(0, x.shape[0], batch_size):
            xb, yb = x[s : s + batch_size], y[s : s + batch_size]
            keep = ok[s : s + batch_size].clone()
            for _ in range(restarts):
                idx = keep.nonzero().flatten()
                if idx.numel() == 0:
                    break
                xa = pgd(model, xb[idx], yb[idx], eps=eps, random_start=True, generator=gen, **spec)
                keep[idx] = correct(xa, yb[idx])
            ok[s : s + batch_size] = keep
        out[name] = float(ok.double().mean())
        alive &= ok
    out["worst case"] = float(alive.double().mean())
    return out
