"""Guided Back-Propagation (Springenberg et al. 2015) for ReLU networks, module **and**
functional ReLUs, and clipped ReLUs such as ReLU6 (the book's *The paper in brief*, § Explainers;
``notebooks/mnist``, ``notebooks/imagenet``)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from .._utils import DEFAULT_BATCH_SIZE
from ._base import Explainer, batched_gradients

__all__ = ["GuidedBackprop"]

#: torch-function names treated as ReLU (``F.relu``, ``torch.relu``, ``Tensor.relu``, ``nn.ReLU``
#: — which calls ``F.relu`` — and their in-place variants)
RELU_NAMES = frozenset({"relu", "relu_"})

#: other spellings of ReLU, guided when their arguments make them exactly ``max(x, 0)``:
#: ``clamp(x, min=0)``/``clip``/``clamp_min(x, 0)`` (no upper bound), ``torch.maximum(x, 0)``/
#: ``torch.max(x, zeros)``/``fmax`` (one operand an all-zero constant tensor), ``F.threshold(x, 0, 0)``
CLAMP_NAMES = frozenset({"clamp", "clamp_", "clip", "clip_"})
CLAMP_MIN_NAMES = frozenset({"clamp_min", "clamp_min_"})
MAX_NAMES = frozenset({"maximum", "max", "fmax"})
THRESHOLD_NAMES = frozenset({"threshold", "threshold_", "_threshold"})

#: clipped ReLUs ``min(max(x, 0), c)`` with ``c > 0``, guided like ReLU on their linear piece
#: (``0 < x < c``): ``F.relu6``/``nn.ReLU6`` (which calls ``F.hardtanh(x, 0, 6)``), ``F.hardtanh(x, 0, c)``,
#: ``clamp(x, 0, c)``/``clip``
RELU6_NAMES = frozenset({"relu6", "relu6_"})
HARDTANH_NAMES = frozenset({"hardtanh", "hardtanh_"})

#: element-wise nonlinear activations for which guided back-propagation has no rule
#: (refused when ``strict=True``; ``hardtanh`` only when it is not a clipped ReLU ``hardtanh(x, 0, c)``).
#: Softmax/log-softmax (output normalisation), max-pooling and
#: other piecewise-linear routing ops are allowed: their plain gradient is used.
NON_RELU_ACTIVATIONS = frozenset({
    "sigmoid", "sigmoid_", "tanh", "tanh_", "gelu", "silu", "silu_", "mish", "softplus", "elu", "elu_",
    "selu", "selu_", "celu", "celu_", "leaky_relu", "leaky_relu_", "rrelu", "rrelu_", "prelu",
    "hardtanh", "hardtanh_", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "logsigmoid",
    "softsign", "tanhshrink", "softshrink", "hardshrink", "threshold", "threshold_", "_threshold", "glu",
})


def _guided_grad(grad: Tensor, out: Tensor, hi: Optional[float] = None) -> Tensor:
    """Guided backward of ReLU (``hi=None``) or of the clipped ReLU ``min(max(x, 0), hi)``: pass
    positive gradients where the activation is on its linear piece (``0 < out``, and ``out < hi``)."""
    on = out > 0
    if hi is not None:
        on = on & (out < hi)
    return grad.clamp(min=0) * on.to(grad.dtype)


class _GuidedReLU(torch.autograd.Function):
    """``relu`` (or ``clamp(0, hi)``) forward; guided backward ``grad_in = grad_out · [0 < input (< hi)]
    · [grad_out > 0]``."""

    @staticmethod
    def forward(ctx, inp, hi=None):
        out = inp.clamp(min=0, max=hi)
        ctx.save_for_backward(out)
        ctx.hi = hi
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return _guided_grad(grad, out, ctx.hi), None


class _GuidedReLUInplace(torch.autograd.Function):
    """In-place variant (``F.relu(x, inplace=True)``, ``relu_``, ``nn.ReLU(inplace=True)``,
    ``nn.ReLU6(inplace=True)``)."""

    @staticmethod
    def forward(ctx, inp, hi=None):
        inp.clamp_(min=0, max=hi)
        ctx.mark_dirty(inp)
        ctx.save_for_backward(inp)
        ctx.hi = hi
        return inp

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return _guided_grad(grad, out, ctx.hi), None


def _is_zero(v) -> bool:
    """A constant 0: the number 0 or an all-zero tensor that carries no gradient."""
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float)):
        return v == 0
    if isinstance(v, Tensor):
        return not v.requires_grad and v.numel() > 0 and bool((v == 0).all())
    return False


def _positive(v) -> bool:
    """A positive finite number (the upper bound of a clipped ReLU)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < float("inf")


def _arg(args, kwargs, i, key, default=None):
    return args[i] if len(args) > i else kwargs.get(key, default)


def _relu_spelling(name, args, kwargs):
    """``(input, inplace, hi)`` when the call ``name(*args, **kwargs)`` is a ReLU (``hi=None``) or a
    clipped ReLU ``min(max(x, 0), hi)`` with ``hi > 0`` (ReLU6: ``hi=6``), else None."""
    if name in RELU_NAMES:
        inp = args[0] if args else kwargs.get("input", kwargs.get("self"))
        inplace = name == "relu_" or bool(kwargs.get("inplace", False)) or (len(args) > 1 and args[1] is True)
        return inp, inplace, None
    if name in CLAMP_NAMES:
        inp = _arg(args, kwargs, 0, "input", kwargs.get("self"))
        lo, hi = _arg(args, kwargs, 1, "min"), _arg(args, kwargs, 2, "max")
        if _is_zero(lo) and (hi is None or _positive(hi)):
            return inp, name.endswith("_"), None if hi is None else float(hi)
        return None
    if name in CLAMP_MIN_NAMES:
        inp = _arg(args, kwargs, 0, "input", kwargs.get("self"))
        if _is_zero(_arg(args, kwargs, 1, "min")):
            return inp, name.endswith("_"), None
        return None
    if name in MAX_NAMES:
        a, b = _arg(args, kwargs, 0, "input", kwargs.get("self")), _arg(args, kwargs, 1, "other")
        if not (isinstance(a, Tensor) and isinstance(b, Tensor)) or kwargs.get("out") is not None:
            return None
        for inp, other in ((a, b), (b, a)):
            if _is_zero(other) and not _is_zero(inp) and torch.broadcast_shapes(inp.shape, other.shape) == inp.shape:
                return inp, False, None
        return None
    if name in THRESHOLD_NAMES:
        inp = _arg(args, kwargs, 0, "input")
        if _is_zero(_arg(args, kwargs, 1, "threshold")) and _is_zero(_arg(args, kwargs, 2, "value")):
            return inp, name == "threshold_" or bool(kwargs.get("inplace", False)), None
        return None
    if name in RELU6_NAMES:
        inp = args[0] if args else kwargs.get("input")
        inplace = name == "relu6_" or bool(kwargs.get("inplace", False)) or (len(args) > 1 and args[1] is True)
        return inp, inplace, 6.0
    if name in HARDTANH_NAMES:
        inp = _arg(args, kwargs, 0, "input")
        lo, hi = _arg(args, kwargs, 1, "min_val", -1.0), _arg(args, kwargs, 2, "max_val", 1.0)
        if _is_zero(lo) and _positive(hi):
            inplace = name == "hardtanh_" or bool(_arg(args, kwargs, 3, "inplace", False))
            return inp, inplace, float(hi)
        return None
    return None


class _GuidedMode(TorchFunctionMode):
    """Active during the forward pass: reroutes every ReLU call to :class:`_GuidedReLU`."""

    def __init__(self, strict: bool):
        super().__init__()
        self.strict = strict
        self.n_relu = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", None)
        relu = _relu_spelling(name, args, kwargs)
        if relu is not None:
            inp, inplace, hi = relu
            if isinstance(inp, Tensor) and inp.is_floating_point():
                self.n_relu += 1
                fn = _GuidedReLUInplace if inplace else _GuidedReLU
                return fn.apply(inp, hi)
        elif self.strict and name in NON_RELU_ACTIVATIONS:
            raise ValueError(
                f"GuidedBackprop: the model applies the activation `{name}`, for which guided "
                "back-propagation has no rule (it is defined for ReLU networks only). Pass "
                "strict=False to back-propagate the plain gradient through it (Captum's behaviour), "
                "knowing that the result is then not the paper's GBP."
            )
        return func(*args, **kwargs)


class GuidedBackprop(Explainer):
    """Guided Back-Propagation: the gradient of ``f`` in which every ReLU passes back only
    positive signal, ``R_in = R_out · [a > 0] · [R_out > 0]`` (``a`` the ReLU's input), local.

    ReLUs are intercepted with a ``torch.overrides.TorchFunctionMode`` active during the forward
    pass, so ``nn.ReLU`` modules, ``F.relu``, ``torch.relu``, ``Tensor.relu``, their in-place
    forms, and the other spellings of ``max(x, 0)`` — ``clamp(min=0)``/``clip(min=0)``/
    ``clamp_min(0)`` (no upper bound), ``torch.maximum(x, 0)``/``torch.max(x, zeros)``/``fmax``
    with an all-zero constant operand, ``F.threshold(x, 0, 0)`` — are all guided, and so are clipped
    ReLUs ``min(max(x, 0), c)``, ``c > 0`` (``nn.ReLU6``/``F.relu6``, ``F.hardtanh(x, 0, c)``,
    ``clamp(x, 0, c)``: piecewise linear, guided on their linear piece ``0 < x < c``, so that
    MobileNet/EfficientNet-Lite networks get the paper's GBP) (module swapping
    silently equals Grad on functional ReLUs: the book's *The paper in brief*, § Explainers).
    Refused loudly (``ValueError``):

    * a forward pass in which no ReLU was intercepted (GBP would silently equal Grad): ReLUs
      written as ``torch.where(x > 0, x, 0)``/``x * (x > 0)`` or inside compiled/scripted code are
      invisible;
    * with ``strict=True`` (default), any other element-wise nonlinear activation (sigmoid, tanh,
      GELU, softplus, ELU, leaky ReLU, hard-swish, …: see ``NON_RELU_ACTIVATIONS``), for which GBP has no
      rule; ``strict=False`` back-propagates their ordinary gradient, as Captum does.

    Paper: Table 1 and ``notebooks/mnist.ipynb``.
    """

    kind = "local"
    stochastic = False
    name = "GBP"
    needs_gradients = True

    def __init__(self, model, strict: bool = True, batch_size: int = DEFAULT_BATCH_SIZE,
                 name: Optional[str] = None):
        super().__init__(model, batch_size, name)
        if not isinstance(strict, bool):
            raise TypeError(f"`strict` must be a bool, got {strict!r}")
        self.strict = strict

    def _params(self) -> str:
        return f"strict={self.strict}"

    def _after_forward(self, mode: _GuidedMode) -> None:
        if mode.n_relu == 0:
            raise ValueError(
                "GuidedBackprop intercepted no ReLU in the model's forward pass, so it would equal the "
                "plain gradient. It handles nn.ReLU, F.relu, torch.relu, Tensor.relu (and in-place forms), "
                "clamp(min=0), clamp_min(0), torch.maximum(x, 0) and F.threshold(x, 0, 0); ReLUs written "
                "as torch.where or x * (x > 0), or inside TorchScript/compiled code, cannot be "
                "intercepted: rewrite them with F.relu, or use Gradient."
            )

    def _attribute(self, x: Tensor, target, generator, inst) -> Tensor:
        return batched_gradients(self.model, x, target, self.batch_size,
                                 context=lambda: _GuidedMode(self.strict), after_forward=self._after_forward)
