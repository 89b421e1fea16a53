"""Shared validation and plumbing used by explainers, metrics and theory checks.

Everything public-facing validates its arguments through these helpers so that bad
input fails with a ``ValueError``/``TypeError`` naming the argument, never with a shape
error from deep inside torch.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import math
import os
import sys
import warnings
import weakref
from typing import Callable, Iterator, List, Optional, Union

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


def check_positive(value, name: str, integer: bool = False, finite: bool = True):
    """Validate a strictly positive number (``int`` when ``integer``), finite unless ``finite=False``."""
    if integer:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"`{name}` must be a positive int, got {value!r}")
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a positive number, got {value!r}")
    if not value > 0:
        raise ValueError(f"`{name}` must be > 0, got {value!r}")
    if finite and not integer and not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}")
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
        if target < 0:
            raise ValueError(f"`target` must be a class index >= 0, got the negative value {target}")
        return torch.full((n,), target, dtype=torch.long, device=device)
    if isinstance(target, Tensor):
        if target.dtype.is_floating_point or target.dtype == torch.bool:
            raise TypeError(f"`target` must hold integer class indices, got dtype {target.dtype}")
        if target.dim() == 0:
            return check_target(int(target), n, device)
        if target.shape != (n,):
            raise ValueError(f"`target` must be an int or have shape ({n},), got shape {tuple(target.shape)}")
        if target.numel() and int(target.min()) < 0:
            raise ValueError(
                f"`target` must hold class indices >= 0, got negative values (min {int(target.min())})"
            )
        return target.to(device=device, dtype=torch.long)
    raise TypeError(f"`target` must be an int or a LongTensor of shape (N,), got {type(target).__name__}")


def select_output(out: Tensor, target: Optional[Tensor], name: str = "model") -> Tensor:
    """Reduce a model output of shape (B,), (B, 1) or (B, C) to the explained scalar (B,)."""
    if not isinstance(out, Tensor):
        raise TypeError(
            f"`{name}` must return a tensor of shape (N,) or (N, C), got a {type(out).__name__}"
            + (": wrap it to select the output to explain, e.g. lambda x: model(x)[0]"
               if isinstance(out, (tuple, list)) else "")
        )
    if out.dim() == 1:
        if target is not None:
            raise ValueError(
                f"`target` must be None: `{name}` returns one value per instance (shape (N,)), "
                "there is no class to select"
            )
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
    if target.min() < 0:
        raise ValueError(
            f"`target` must lie in [0, {out.shape[1] - 1}], got negative values (min {int(target.min())})"
        )
    if target.max() >= out.shape[1]:
        raise ValueError(f"`target` must lie in [0, {out.shape[1] - 1}], got values up to {int(target.max())}")
    return out.gather(1, target.view(-1, 1)).squeeze(1)


def forward_target(model: Callable[[Tensor], Tensor], x: Tensor, target: Optional[Tensor]) -> Tensor:
    """``f(x)``: the model output selected by ``target`` (already normalised), shape (B,)."""
    out = call_model(model, x)
    if isinstance(out, Tensor) and (out.dim() == 0 or out.shape[0] != x.shape[0]):
        raise ValueError(
            f"`model` returned shape {tuple(out.shape)} for `x` of shape {tuple(x.shape)}: one output row per "
            "instance is expected. Is `x` batched, (N, *F)? (add a batch dimension with x.unsqueeze(0))"
        )
    return select_output(out, target)


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


def outputs_batched(model: Callable[[Tensor], Tensor], x: Tensor, batch_size: int = DEFAULT_BATCH_SIZE) -> Tensor:
    """Every output of ``f`` over a stack of inputs ``x`` (k, *F), shape (k,) or (k, C), in chunks
    of at most ``batch_size`` (no grad): for inputs shared by all instances, whose targets differ."""
    with torch.no_grad():
        out = torch.cat([call_model(model, x[sl]) for sl in chunks(x.shape[0], batch_size)])
    if out.dim() not in (1, 2) or out.shape[0] != x.shape[0]:
        forward_target(model, x[:1], None)  # raises, naming the shape
        select_output(out, None)
    return out


def select_shared(out: Tensor, target: Optional[Tensor], n_inst: int) -> Tensor:
    """``f_{t_i}(p_j)`` (N, k) from the outputs ``out`` (k,) or (k, C) of points ``p_j`` shared by
    ``n_inst`` instances with targets ``target`` (N,) (or None): the same checks as one forward
    pass per instance and point."""
    select_output(out[:1].expand(n_inst, *out.shape[1:]), target)  # missing, extra or out-of-range target
    if out.dim() == 1 or target is None:
        return (out if out.dim() == 1 else out[:, 0]).unsqueeze(0).expand(n_inst, out.shape[0])
    return out[:, target.to(out.device)].T


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
      time (never all N·n at once) and run in chunks of at most ``batch_size``. A law whose
      perturbed inputs do not depend on ``x`` (``law.shared_points``: the noisy baseline,
      ``x − I = x₀``) has its n inputs evaluated once, for all instances (N times fewer passes).

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
    shared = bool(getattr(law, "shared_points", False)) and n_inst > 1
    per = batch_size if shared else max(1, batch_size // n_inst)
    bar = progress(total=n, desc=desc) if desc else None
    for sl in chunks(n, per):
        if shared:  # the same m inputs for every instance: one pass, then each instance's target
            pts = law.perturbed(x[:1], draws[sl])[0]  # (m, *F)
            m = pts.shape[0]
            out[:, sl] = select_shared(outputs_batched(model, pts, batch_size), target, n_inst)
        else:
            pts = law.perturbed(x, draws[sl])  # (N, m, *F)
            m = pts.shape[1]
            t = None if target is None else target.repeat_interleave(m)
            out[:, sl] = forward_batched(model, pts.reshape(n_inst * m, *x.shape[1:]), t,
                                         batch_size).view(n_inst, m)
        if bar is not None:
            bar.update(m)
    if bar is not None:
        bar.close()
    return fx.view(-1, 1) - out


# --------------------------------------------------------------------------- models
def model_state_key(model: nn.Module) -> tuple:
    """A key that changes when any parameter or buffer of ``model`` is replaced or modified in
    place (its identity, storage, version counter, device and dtype): what caches of model outputs
    are keyed on (:class:`xailib.compiled.Accelerated`, the NB moments of ``Optimal``)."""
    return tuple((id(t), t.data_ptr(), t._version, t.device.type, t.dtype)
                 for t in (*model.parameters(), *model.buffers()))


def check_model(model, name: str = "model"):
    """Validate a model: a callable ``f(x) -> (N,) | (N, C)`` (an ``nn.Module`` or a function)."""
    if model is None:
        raise TypeError(f"`{name}` is None: pass the model to explain (an nn.Module or a function of x)")
    if isinstance(model, type):
        raise TypeError(
            f"`{name}` must be a model instance, got the class {model.__name__}: instantiate it first"
        )
    if not callable(model):
        raise TypeError(f"`{name}` must be callable (an nn.Module or a function), got {type(model).__name__}")
    return model


def _first_leaf(model: nn.Module) -> Optional[nn.Module]:
    """The layer that sees ``x`` first, when that is certain: the first leaf of an ``nn.Sequential``
    (nested Sequentials allowed); None for any other module (its forward may reshape or cast ``x``)."""
    m = model
    while isinstance(m, nn.Sequential) and len(m) > 0:
        m = m[0]
    if m is model or isinstance(m, nn.Sequential) or next(iter(m.children()), None) is not None:
        return None
    return m


def _param_dtype(model) -> Optional[torch.dtype]:
    if isinstance(model, nn.Module):
        for p in model.parameters():
            if p.is_floating_point():
                return p.dtype
    return None


_CONV_DIMS = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}


def check_model_input(model, x: Tensor, name: str = "x") -> None:
    """Catch, before any forward pass, the two input mistakes that torch reports obscurely, where
    they are certain (``model`` an ``nn.Sequential``, so its first layer sees ``x`` as is):

    * ``x`` without its batch dimension: the first layer is a ``ConvNd`` and ``x`` has ``n + 1``
      dimensions (an unbatched image);
    * ``x``'s floating dtype differs from the first layer's parameters (a float16/float64 input
      for a float32 model).

    Other models are checked when they run (:func:`call_model` translates torch's errors).
    """
    first = _first_leaf(model) if isinstance(model, nn.Module) else None
    if first is None:
        return
    nd = _CONV_DIMS.get(type(first))
    if nd is not None and x.dim() == nd + 1:
        raise ValueError(
            f"`{name}` has shape {tuple(x.shape)} but the model's first layer {first} expects batched "
            f"inputs (N, C, ...) with {nd + 2} dimensions: `{name}` must be (N, *F); add the batch "
            f"dimension with {name}.unsqueeze(0)"
        )
    pd = _param_dtype(first)
    if pd is not None and x.dtype != pd:
        raise TypeError(
            f"`{name}` has dtype {x.dtype} but the model's parameters are {pd}: convert the input "
            f"({name}.to({pd})) or the model (model.to({x.dtype}))"
        )


_SHAPE_ERRORS = ("shapes cannot be multiplied", "size mismatch", "Expected 3D", "Expected 4D", "Expected 2D",
                 "Expected 5D", "expected input", "Given groups", "must match the size", "input.size(-1) must be",
                 "Expected input batch_size", "is invalid for input of size", "Expected more than 1 value")
_DTYPE_ERRORS = ("same dtype", "expected scalar type", "Input type", "dtype", "should be the same")


def call_model(model: Callable[[Tensor], Tensor], x: Tensor, name: str = "model") -> Tensor:
    """``model(x)``, re-raising torch's shape/dtype errors as ``ValueError``/``TypeError`` naming ``x``.

    A ``RuntimeError`` whose message looks like a dtype mismatch becomes a ``TypeError``, one that
    looks like a shape mismatch a ``ValueError`` saying that ``x`` must be ``(N, *F)``; other
    errors propagate unchanged.
    """
    try:
        return model(x)
    except RuntimeError as e:
        msg = str(e)
        if any(k in msg for k in _DTYPE_ERRORS) and "shape" not in msg:
            pd = _param_dtype(model)
            raise TypeError(
                f"`x` has dtype {x.dtype}, which `{name}` cannot take"
                + (f" (its parameters are {pd}; convert x with x.to({pd}))" if pd is not None else "")
                + f". torch said: {msg}"
            ) from e
        if any(k in msg for k in _SHAPE_ERRORS):
            raise ValueError(
                f"`{name}` failed on `x` of shape {tuple(x.shape)}: `x` must be batched, (N, *F) with F "
                f"the model's input shape (add a batch dimension with x.unsqueeze(0) for one instance). "
                f"torch said: {msg}"
            ) from e
        raise


def _modules_in(obj, depth: int = 0) -> List[nn.Module]:
    """The ``nn.Module`` objects behind a model/explainer/explanation callable (best effort)."""
    if obj is None or depth > 3 or isinstance(obj, (Tensor, type)):
        return []
    if isinstance(obj, nn.Module):
        return [obj]
    out: List[nn.Module] = []
    if inspect.ismethod(obj):
        out += _modules_in(obj.__self__, depth + 1)
    elif isinstance(obj, dict):
        for v in obj.values():
            out += _modules_in(v, depth + 1)
    else:
        for attr in ("model", "forward_func", "base", "fn", "func"):
            v = getattr(obj, attr, None)
            if v is not None and v is not obj:
                out += _modules_in(v, depth + 1)
    return out


_WARNED_TRAINING = weakref.WeakSet()


def _mode_dependent(m: nn.Module) -> bool:
    """Whether ``m`` computes differently in training mode (dropout, batch/instance norm, RNN dropout)."""
    from torch.nn.modules.batchnorm import _NormBase
    from torch.nn.modules.dropout import _DropoutNd

    return isinstance(m, (_DropoutNd, _NormBase, nn.RNNBase))


@contextlib.contextmanager
def eval_mode(*objs):
    """Run the body with every ``nn.Module`` behind ``objs`` in eval mode, then restore each submodule's
    ``training`` flag exactly.

    A model in training mode gives silently wrong explanations and metrics (Dropout redraws its mask
    at every call, BatchNorm mixes the rows of a batch and updates ``running_mean``/``running_var``),
    so every public entry point of xailib (:class:`~xailib.explainers.Explainer` calls and the
    functions of :mod:`xailib.metrics`) explains the model in eval mode, with a one-time warning
    per model when it holds a mode-dependent layer (dropout, batch/instance norm, RNN). The
    caller's mode and buffers are unchanged afterwards.
    """
    saved = []
    seen = set()
    for obj in objs:
        for m in _modules_in(obj):
            if id(m) in seen:
                continue
            seen.add(id(m))
            flags = [(sub, sub.training) for sub in m.modules()]
            if any(f for _, f in flags):
                if m not in _WARNED_TRAINING and any(f and _mode_dependent(sub) for sub, f in flags):
                    _WARNED_TRAINING.add(m)
                    warnings.warn(
                        f"xailib: the model {type(m).__name__} is in training mode; it is explained in eval "
                        "mode (as after model.eval()) and its mode is restored afterwards. Call "
                        "model.eval() yourself to silence this warning.",
                        UserWarning,
                        stacklevel=3,
                    )
                saved.append(flags)
                m.eval()
    try:
        yield
    finally:
        for flags in saved:
            for sub, f in flags:
                sub.training = f


def in_eval_mode(*arg_names: str):
    """Decorator: run the function inside :func:`eval_mode` of the arguments named ``arg_names``."""

    def deco(fn):
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                bound = sig.bind_partial(*args, **kwargs)
            except TypeError:
                return fn(*args, **kwargs)
            objs = [bound.arguments.get(a) for a in arg_names]
            with eval_mode(*objs):
                return fn(*args, **kwargs)

        return wrapper

    return deco
