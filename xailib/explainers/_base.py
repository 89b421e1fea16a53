"""Common machinery of the explainers (see ``CONTRIBUTING.md``, section ``xailib.explainers``).

* :class:`Explainer`: the base class. Public call ``explainer(x, target=None, *, generator=None)``
  validates its arguments once, then runs ``_attribute`` on the validated batch.
* :func:`to_global` / :func:`to_local`: the two conventions of the book's *The paper in brief*, § B.2 trick:
  a *local* explanation Φ is compared with a perturbation as ``IᵀΦ``; a *global* one
  ``A = (x − baseline) ⊙ Φ`` is compared with a binary mask as ``zᵀA``.
* batched gradients, baselines and the row bookkeeping shared by the explainers.
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Callable, Optional, Tuple, Union

import torch
from torch import Tensor

from .._utils import (
    DEFAULT_BATCH_SIZE,
    SeedLike,
    TargetLike,
    check_differentiable,
    check_input,
    check_model,
    check_model_input,
    check_positive,
    check_target,
    chunks,
    eval_mode,
    forward_target,
    make_generator,
)

BaselineLike = Union[float, int, Tensor]

__all__ = ["Explainer", "to_global", "to_local", "BaselineLike"]


# --------------------------------------------------------------------------- baselines
def check_baseline(baseline, name: str = "baseline"):
    """Constructor-time check of a baseline: a finite number or a finite floating tensor.

    A tensor baseline is either shared by all instances (shape broadcastable to the feature
    shape ``F``) or per instance (shape ``(N, *F)``, same number of dimensions as ``x``).
    """
    if isinstance(baseline, bool):
        raise TypeError(f"`{name}` must be a number or a tensor, got a bool")
    if isinstance(baseline, (int, float)):
        if not math.isfinite(baseline):
            raise ValueError(f"`{name}` must be finite, got {baseline!r}")
        return float(baseline)
    if isinstance(baseline, Tensor):
        if not torch.is_floating_point(baseline):
            baseline = baseline.to(torch.get_default_dtype())
        if not torch.isfinite(baseline).all():
            raise ValueError(f"`{name}` contains NaN or inf values")
        return baseline.detach()
    raise TypeError(f"`{name}` must be a number or a torch.Tensor, got {type(baseline).__name__}")


def resolve_baseline(baseline, x: Tensor, inst: Optional[Tensor] = None, name: str = "baseline") -> Tensor:
    """The baseline as a tensor on ``x``'s device/dtype that broadcasts against ``x`` (B, *F).

    A number gives a 0-dim tensor; a tensor broadcastable to ``F`` is shared by all rows; a
    per-instance tensor ``(N, *F)`` is expanded to ``x`` — or, when ``x`` is a stack of rows
    whose instance indices are ``inst`` (SmoothGrad), indexed as ``baseline[inst]`` (its shape
    was then checked against the original batch).
    """
    if isinstance(baseline, float):
        return torch.tensor(baseline, dtype=x.dtype, device=x.device)
    b = baseline.to(device=x.device, dtype=x.dtype)
    feat = tuple(x.shape[1:])
    try:
        if b.dim() < x.dim():
            if torch.broadcast_shapes(b.shape, feat) != feat:
                raise RuntimeError
            return b
        if b.dim() == x.dim():
            if torch.broadcast_shapes(b.shape[1:], feat) != feat:
                raise RuntimeError
            if b.shape[0] == 1:
                return b[0]
            if inst is not None:
                return b[inst].expand_as(x)
            if b.shape[0] == x.shape[0]:
                return b.expand_as(x)
    except RuntimeError:
        pass
    raise ValueError(
        f"`{name}` of shape {tuple(b.shape)} does not fit `x` of shape {tuple(x.shape)}: use a "
        f"number, a tensor broadcastable to the feature shape {feat}, or one of shape {tuple(x.shape)}"
    )


# --------------------------------------------------------------------------- local / global
def to_global(phi: Tensor, x: Tensor, baseline: BaselineLike = 0.0) -> Tensor:
    """Global explanation ``A = (x − baseline) ⊙ Φ`` of a local explanation Φ.

    ``zᵀA`` then predicts ``Δf`` for the binary perturbation ``I = (x − baseline) ⊙ z``
    (the book's *The paper in brief*, § B.2 trick; ``notebooks/theory``).
    """
    x = check_input(x)
    if not isinstance(phi, Tensor) or phi.shape != x.shape:
        raise ValueError(f"`phi` must be a tensor of the shape of `x` {tuple(x.shape)}")
    b = resolve_baseline(check_baseline(baseline), x)
    return (x - b) * phi.to(device=x.device, dtype=x.dtype)


def to_local(A: Tensor, x: Tensor, baseline: BaselineLike = 0.0) -> Tensor:
    """Local explanation ``Φ_i = A_i / (x_i − baseline_i)`` where ``x_i ≠ baseline_i``, **0 elsewhere**.

    Where ``x_i`` equals the baseline, every binary perturbation leaves feature ``i`` unchanged
    (``I_i = 0``), so any value of ``Φ_i`` is equally faithful: 0 is returned rather than
    dividing by an arbitrary 1 (a trap of published code).
    """
    x = check_input(x)
    if not isinstance(A, Tensor) or A.shape != x.shape:
        raise ValueError(f"`A` must be a tensor of the shape of `x` {tuple(x.shape)}")
    b = resolve_baseline(check_baseline(baseline), x)
    diff = x - b
    nz = diff != 0
    A = A.to(device=x.device, dtype=x.dtype)
    return torch.where(nz, A / torch.where(nz, diff, torch.ones_like(diff)), torch.zeros_like(A))


# --------------------------------------------------------------------------- gradients
def batched_gradients(
    model: Callable[[Tensor], Tensor],
    x: Tensor,
    target: Optional[Tensor],
    batch_size: int,
    context: Optional[Callable[[], object]] = None,
    after_forward: Optional[Callable[[object], None]] = None,
) -> Tensor:
    """``∂f/∂x`` for every row of ``x`` (B, *F), at most ``batch_size`` rows per forward pass.

    One backward per chunk on the **sum** of the selected outputs: rows must not interact in
    the model (no batch-norm in training mode), as for any batched gradient.
    ``context`` (a factory) wraps the forward pass (Guided Backprop's function mode);
    ``after_forward(ctx)`` may inspect it before the backward.
    """
    out = torch.empty_like(x)
    for sl in chunks(x.shape[0], batch_size):
        xx = x[sl].detach().clone().requires_grad_(True)
        t = None if target is None else target[sl]
        ctx = context() if context is not None else nullcontext()
        with torch.enable_grad():
            with ctx:
                y = forward_target(model, xx, t)
            if after_forward is not None:
                after_forward(ctx)
            if not y.requires_grad:
                raise TypeError("`model` is not differentiable with respect to its input")
            (g,) = torch.autograd.grad(y.sum(), xx)
        out[sl] = g
    return out


def add_rows(out: Tensor, start: int, vals: Tensor, per: int) -> None:
    """``out[i] += Σ_k vals[i·per + k]`` for the rows ``start … start + len(vals) − 1`` of an
    instance-major stack of ``N·per`` rows (deterministic, no scatter/index_add)."""
    i0, i1 = start // per, (start + vals.shape[0] - 1) // per
    buf = vals.new_zeros(((i1 - i0 + 1) * per,) + tuple(vals.shape[1:]))
    off = start - i0 * per
    buf[off : off + vals.shape[0]] = vals
    out[i0 : i1 + 1] += buf.view(i1 - i0 + 1, per, *vals.shape[1:]).sum(1)


# --------------------------------------------------------------------------- base class
class Explainer:
    """Base class: ``explainer(x, target=None, *, generator=None) -> Tensor`` shaped like ``x``.

    Attributes (``CONTRIBUTING.md``): ``kind`` — ``"local"`` (Φ, compared with a perturbation as
    ``IᵀΦ``) or ``"global"`` (``A = (x − baseline) ⊙ Φ``, compared with a mask as ``zᵀA``);
    ``stochastic`` — whether the result depends on random draws (then ``seed`` in the
    constructor, overridden by the call's ``generator``); ``name`` — the label used in tables.
    ``batch_size`` bounds the number of model evaluations in one forward pass.

    ``x`` is batched ``(N, *F)``; ``target`` is ``None`` (scalar-output model), an int or a
    LongTensor ``(N,)``. The output keeps ``x``'s device and dtype. Subclasses implement
    ``_attribute(x, target, generator, inst)`` on already validated arguments (``inst``: the
    instance index of each row when called on a stack of rows, e.g. by :class:`SmoothGrad`).
    """

    kind: str = "local"
    stochastic: bool = False
    name: str = "Explainer"
    #: gradient-based explainers check that the model is differentiable
    needs_gradients: bool = False

    def __init__(self, model: Callable[[Tensor], Tensor], batch_size: int = DEFAULT_BATCH_SIZE,
                 name: Optional[str] = None):
        self.model = check_model(model)
        self.batch_size = check_positive(batch_size, "batch_size", integer=True)
        if name is not None:
            if not isinstance(name, str):
                raise TypeError(f"`name` must be a str, got {type(name).__name__}")
            self.name = name

    # -- public call -----------------------------------------------------------------
    def __call__(self, x: Tensor, target: TargetLike = None, *, generator: SeedLike = None) -> Tensor:
        """Explain ``x`` (N, *F). A model in training mode is explained in eval mode (one-time
        warning) and its mode restored: ``xailib._utils.eval_mode``."""
        x = check_input(x)
        t = check_target(target, x.shape[0], x.device)
        gen = self._make_generator(generator, x.device)
        check_model_input(self.model, x)
        with eval_mode(self.model):
            self._check(x, t)
            out = self._attribute(x.detach(), t, gen, None)
        return out.detach().to(device=x.device, dtype=x.dtype)

    def attribute(self, x: Tensor, target: TargetLike = None, *, generator: SeedLike = None) -> Tensor:
        """Alias of the call (Captum style)."""
        return self(x, target, generator=generator)

    # -- hooks -----------------------------------------------------------------------
    def _make_generator(self, generator: SeedLike, device) -> Optional[torch.Generator]:
        if not self.stochastic:
            if generator is not None:
                make_generator(generator, device)  # type check only
            return None
        return make_generator(self.seed if generator is None else generator, device, type(self).__name__)

    def _check(self, x: Tensor, target: Optional[Tensor]) -> None:
        if self.needs_gradients:
            check_differentiable(self.model, x, target, self.name)

    def _attribute(self, x: Tensor, target: Optional[Tensor], generator: Optional[torch.Generator],
                   inst: Optional[Tensor]) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _params(self) -> str:
        return ""

    def __repr__(self) -> str:
        p = self._params()
        return f"{type(self).__name__}({p})" if p else f"{type(self).__name__}()"


def check_seed(seed, name: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"`{name}` must be an int, got {seed!r}")
    return seed


def check_choice(value, name: str, choices: Tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}, got {value!r}")
    return value
