"""Guided Back-Propagation (Springenberg et al. 2015) for ReLU networks, module **and**
functional ReLUs (NOTES.md, "Known traps"; ``notebooks/mnist.ipynb``)."""
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

#: element-wise nonlinear activations for which guided back-propagation has no rule
#: (refused when ``strict=True``). Softmax/log-softmax (output normalisation), max-pooling and
#: other piecewise-linear routing ops are allowed: their plain gradient is used.
NON_RELU_ACTIVATIONS = frozenset({
    "sigmoid", "sigmoid_", "tanh", "tanh_", "gelu", "silu", "silu_", "mish", "softplus", "elu", "elu_",
    "selu", "selu_", "celu", "celu_", "leaky_relu", "leaky_relu_", "rrelu", "rrelu_", "prelu", "relu6",
    "hardtanh", "hardtanh_", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "logsigmoid",
    "softsign", "tanhshrink", "softshrink", "hardshrink", "threshold", "threshold_", "glu",
})


def _guided_grad(grad: Tensor, out: Tensor) -> Tensor:
    """Guided backward of ReLU: pass positive gradients where the ReLU output is positive."""
    return grad.clamp(min=0) * (out > 0).to(grad.dtype)


class _GuidedReLU(torch.autograd.Function):
    """``relu`` forward; guided backward ``grad_in = grad_out · [input > 0] · [grad_out > 0]``."""

    @staticmethod
    def forward(ctx, inp):
        out = inp.clamp(min=0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return _guided_grad(grad, out)


class _GuidedReLUInplace(torch.autograd.Function):
    """In-place variant (``F.relu(x, inplace=True)``, ``relu_``, ``nn.ReLU(inplace=True)``)."""

    @staticmethod
    def forward(ctx, inp):
        inp.clamp_(min=0)
        ctx.mark_dirty(inp)
        ctx.save_for_backward(inp)
        return inp

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return _guided_grad(grad, out)


class _GuidedMode(TorchFunctionMode):
    """Active during the forward pass: reroutes every ReLU call to :class:`_GuidedReLU`."""

    def __init__(self, strict: bool):
        super().__init__()
        self.strict = strict
        self.n_relu = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", None)
        if name in RELU_NAMES:
            inp = args[0] if args else kwargs.get("input", kwargs.get("self"))
            inplace = name == "relu_" or bool(kwargs.get("inplace", False)) or (len(args) > 1 and args[1] is True)
            if isinstance(inp, Tensor) and inp.is_floating_point():
                self.n_relu += 1
                fn = _GuidedReLUInplace if inplace else _GuidedReLU
                return fn.apply(inp)
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
    pass, so ``nn.ReLU`` modules, ``F.relu``, ``torch.relu``, ``Tensor.relu`` and their in-place
    forms are all guided (module swapping silently equals Grad on functional ReLUs: NOTES.md,
    "Known traps"). Refused loudly (``ValueError``):

    * a forward pass in which no ReLU was intercepted (GBP would silently equal Grad): ReLUs
      written as ``clamp(min=0)``/``maximum(x, 0)`` or inside compiled/scripted code are invisible;
    * with ``strict=True`` (default), any other element-wise nonlinear activation (sigmoid, tanh,
      GELU, softplus, ELU, leaky ReLU, ReLU6, …: see ``NON_RELU_ACTIVATIONS``), for which GBP has no
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
                "plain gradient. It handles nn.ReLU, F.relu, torch.relu, Tensor.relu (and in-place forms); "
                "ReLUs written as clamp(min=0) or torch.maximum, or inside TorchScript/compiled code, "
                "cannot be intercepted: rewrite them with F.relu, or use Gradient."
            )

    def _attribute(self, x: Tensor, target, generator, inst) -> Tensor:
        return batched_gradients(self.model, x, target, self.batch_size,
                                 context=lambda: _GuidedMode(self.strict), after_forward=self._after_forward)
