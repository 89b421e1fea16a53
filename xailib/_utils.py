"""Shared validation and plumbing used by explainers, metrics and theory checks.

Everything public-facing validates its arguments through these helpers so that bad
input fails with a ``ValueError``/``TypeError`` naming the argument, never with a shape
error from deep inside torch.
"""
from __future__ import annotations

import hashlib
import os
import sys
from typing import Callable, Iterator, Optional, Union

import torch
from torch import Tensor, nn

SeedLike = Union[None, int, torch.Generator]
TargetLike = Union[None, int, Tensor]

#: default bound on the number of model evaluations done in one forward pass
DEFAULT_BATCH_SIZE = 1024


def check_input(x, name: str = "x", min_dim: int = 2) -> Tensor:
    """Validate a batched floating-point input tensor (first dimension = instances)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise TypeError(
            f"`{name}` must be a floating-point tensor (float32/float64), got dtype {x.dtype}; "
            f"convert it with {name}.float()"
        )
    if x.dim() < min_dim:
        raise ValueError(
            f"`{name}` must be batched with shape (N, ...) and at least {min_dim} dimensions, "
            f"got shape {tuple(x.shape)}; add a batch dimension with {name}.unsqueeze(0)"
        )
    if x.shape[0] == 0:
        raise ValueError(f"`{name}` is empty (batch dimension 0)")
    if not torch.isfinite(x).all():
        raise ValueError(f"`{name}` contains NaN or inf values")
    return x


def check_positive(value, name: str, integer: bool = False):
    """Validate a strictly positive number (``int`` when ``integer``)."""
    if integer:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"`{name}` must be a positive int, got {value!r}")
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a positive number, got {value!r}")
    if not value > 0:
        raise ValueError(f"`{name}` must be > 0, got {value!r}")
    return value


def check_same_shape(explanation: Tensor, x: Tensor, name: str = "explanation") -> Tensor:
    if not isinstance(explanation, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor or an explainer, got {type(explanation).__name__}")
    if explanation.shape != x.shape:
        raise ValueError(
            f"`{name}` must have the shape of `x` {tuple(x.shape)}, got {tuple(explanation.shape)}"
        )
    if not torch.isfinite(explanation).all():
        raise ValueError(f"`{name}` contains NaN or inf values")
    return explanation.to(device=x.device, dtype=x.dtype)


def make_generator(seed: SeedLike, device: torch.device | str = "cpu", stream: Optional[str] = None) -> torch.Generator:
    """A ``torch.Generator`` on ``device``: ``seed`` may be None (seed 0), an int or a generator.

    A generator passed in is returned as is (its draws advance); an int or None gives a fresh
    generator, so a call with the same seed draws the same numbers every time (common random
    numbers).

    ``stream`` names what the draws are for (``"infidelity"``, ``"sensitivity"``, an explainer's
    class name, ...): the same int seed then gives independent streams for different purposes,
    so an explainer fitted with seed 0 is never scored on its own draws by a metric with seed 0
    (an in-sample trap), and SmoothGrad's noise never coincides with the sensitivity neighbours.
    """
    if isinstance(seed, torch.Generator):
        return seed
    if seed is None:
        seed = 0
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"`generator` must be None, an int seed or a torch.Generator, got {seed!r}")
    if stream:
        digest = hashlib.sha256(f"{seed}/{stream}".encode()).hexdigest()
        seed = int(digest[:15], 16)
    device = torch.device(device)
    g = torch.Generator(device=device if device.type != "mps" else "cpu")
    g.manual_seed(seed)
    return g


def rand_like_draw(shape, generator: torch.Generator, device, dtype, kind: str = "randn") -> Tensor:
    """Draw on the generator's device, then move to ``device``/``dtype`` (dtype-preserving).

    Draws are made in ``dtype`` when the generator lives on ``device`` (no float32 noise for
    float64 inputs); otherwise they are made in float64 on the generator's device and cast.
    """
    gdev = generator.device
    draw_dtype = dtype if gdev == torch.device(device) or gdev.type == torch.device(device).type else torch.float64
    fn = {"randn": torch.randn, "rand": torch.rand}[kind]
    out = fn(shape, generator=generator, device=gdev, dtype=draw_dtype)
    return out.to(device=device, dtype=dtype)


def check_target(target: TargetLike, n: int, device) -> Optional[Tensor]:
    """Normalise ``target`` to a LongTensor of shape (N,) (or None)."""
    if target is None:
        return None
    if isinstance(target, bool):
        raise TypeError("`target` must be an int or a LongTensor of shape (N,), got a bool")
    if isinstance(target, int):
        return torch.full((n,), target, dtype=torch.long, device=device)
    if isinstance(target, Tensor):
        if target.dtype.is_floating_point or target.dtype == torch.bool:
            raise TypeError(f"`target` must hold integer class indices, got dtype {target.dtype}")
        if target.dim() == 0:
            return torch.full((n,), int(target), dtype=torch.long, device=device)
        if target.shape != (n,):
            raise ValueError(f"`target` must be an int or have shape ({n},), got shape {tuple(target.shape)}")
        return target.to(device=device, dtype=torch.long)
    raise TypeError(f"`target` must be an int or a LongTensor of shape (N,), got {type(target).__name__}")


def select_output(out: Tensor, target: Optional[Tensor], name: str = "model") -> Tensor:
    """Reduce a model output of shape (B,), (B, 1) or (B, C) to the explained scalar (B,)."""
    if out.dim() == 1:
        return out
    if out.dim() == 2 and out.shape[1] == 1 and target is None:
        return out[:, 0]
    if out.dim() != 2:
        raise ValueError(f"`{name}` must return shape (N,) or (N, C), got {tuple(out.shape)}")
    if target is None:
        raise ValueError(
            f"`target` is required: `{name}` returns {out.shape[1]} outputs per instance; "
            "pass the class index to explain (an int or a LongTensor of shape (N,))"
        )
    if target.max() >= out.shape[1] or target.min() < 0:
        raise ValueError(f"`target` must lie in [0, {out.shape[1] - 1}], got values up to {int(target.max())}")
    return out.gather(1, target.view(-1, 1)).squeeze(1)


def forward_target(model: Callable[[Tensor], Tensor], x: Tensor, target: Optional[Tensor]) -> Tensor:
    """``f(x)``: the model output selected by ``target`` (already normalised), shape (B,)."""
    return select_output(model(x), target)


def forward_batched(
    model: Callable[[Tensor], Tensor],
    x: Tensor,
    target: Optional[Tensor],
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Tensor:
    """``f`` over a large stack of inputs in chunks of at most ``batch_size`` (no grad)."""
    outs = []
    with torch.no_grad():
        for s in range(0, x.shape[0], batch_size):
            t = None if target is None else target[s : s + batch_size]
            outs.append(forward_target(model, x[s : s + batch_size], t))
    return torch.cat(outs)


def chunks(n: int, size: int) -> Iterator[slice]:
    for s in range(0, n, size):
        yield slice(s, min(s + size, n))


def progress(iterable=None, total=None, desc=None, disable=None):
    """tqdm progress bar, off when not interactive (or when ``XAILIB_PROGRESS=0``)."""
    from tqdm.auto import tqdm

    if disable is None:
        env = os.environ.get("XAILIB_PROGRESS")
        if env is not None:
            disable = env in ("0", "false", "False", "")
        else:
            disable = not (sys.stderr.isatty() or "ipykernel" in sys.modules)
    return tqdm(iterable, total=total, desc=desc, disable=disable, leave=False)


def check_differentiable(model: nn.Module | Callable, x: Tensor, target: Optional[Tensor], who: str) -> None:
    """Raise a TypeError when ``model``'s output has no gradient with respect to its input."""
    xx = x[:1].detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = forward_target(model, xx, None if target is None else target[:1])
    if not out.requires_grad:
        raise TypeError(
            f"`model` is not differentiable with respect to its input: {who} needs gradients "
            "(is the forward pass under torch.no_grad(), or does it detach/round its input?)"
        )


def function_differences(
    model: Callable[[Tensor], Tensor],
    x: Tensor,
    target: Optional[Tensor],
    I: Optional[Tensor] = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    fx: Optional[Tensor] = None,
    *,
    law=None,
    draws: Optional[Tensor] = None,
    desc: Optional[str] = None,
) -> Tensor:
    """``Δf = f(x) − f(x − I)`` for every instance and draw, shape (N, n), without gradients.

    The one f(x − I) evaluation loop of the library (metrics, optimal explanations, KernelSHAP,
    occlusion and the theory checks all use it). Two ways to give the perturbations:

    * ``I``: (N, n, *F) explicit perturbations; the N·n inputs ``x − I`` run in chunks of at most
      ``batch_size`` inputs;
    * ``law`` and ``draws``: a perturbation law and its draws (n, ...) shared by all instances;
      the inputs ``law.perturbed(x, draws)`` are built ``max(1, batch_size // N)`` draws at a
      time (never all N·n at once) and run in chunks of at most ``batch_size``.

    ``x``: (N, *F); ``target``: normalised LongTensor (N,) or None; ``fx`` (N,) may be passed when
    ``f(x)`` is already known. The result has ``x``'s dtype in the ``law`` form. ``desc``: show a
    progress bar with this title.
    """
    n_inst = x.shape[0]
    if fx is None:
        fx = forward_batched(model, x, target, batch_size)
    if law is None:
        if I is None:
            raise TypeError("function_differences needs `I` or (`law`, `draws`)")
        n = I.shape[1]
        flat = (x.unsqueeze(1) - I).reshape(n_inst * n, *x.shape[1:])
        t = None if target is None else target.repeat_interleave(n)
        f_pert = forward_batched(model, flat, t, batch_size).view(n_inst, n)
        return fx.view(-1, 1) - f_pert
    if draws is None or I is not None:
        raise TypeError("function_differences: give either `I` or both `law` and `draws`")
    n = draws.shape[0]
    out = x.new_empty(n_inst, n)
    per = max(1, batch_size // n_inst)
    bar = progress(total=n, desc=desc) if desc else None
    for sl in chunks(n, per):
        pts = law.perturbed(x, draws[sl])  # (N, m, *F)
        m = pts.shape[1]
        t = None if target is None else target.repeat_interleave(m)
        out[:, sl] = forward_batched(model, pts.reshape(n_inst * m, *x.shape[1:]), t, batch_size).view(n_inst, m)
        if bar is not None:
            bar.update(m)
    if bar is not None:
        bar.close()
    return fx.view(-1, 1) - out
