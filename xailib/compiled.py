"""Compiled forward passes for the forward-only work of the metrics and explainers
(the book's *Running at scale* page, § Compiled forward passes).

KernelSHAP, Square, Occlusion, NB and every infidelity spend their time in the model's forward
pass without gradients. On a CPU, a small CNN's eager forward pass is dominated by memory traffic
between its layers (ReLU and max-pooling each write a full activation map, pooling its indices
too); :func:`accelerate` returns the same model with those passes compiled by ``torch.compile``
(inductor, weights frozen as constants, layers fused): on a 2-core CPU the MNIST CNN's forward
pass is about 4× faster, KernelSHAP and Square about 3.5× (``benchmarks/bench_compiled.py``).
Gradient passes are untouched.

``accelerate(model)`` is an ``nn.Module`` that calls

* the **model itself** when gradients are enabled (Grad, IG, Guided Backprop, SmoothGrad, attacks:
  anything that differentiates, hooks included) or when it is in training mode;
* a **compiled copy** under ``torch.no_grad()``/``torch.inference_mode()`` (every forward-only
  evaluation of the library runs there). Batches are cut into power-of-two pieces of
  ``min_batch`` to ``max_batch`` inputs (the last one padded) so that at most
  ``log2(max_batch / min_batch) + 1`` shapes are ever compiled; batches under ``min_batch`` inputs
  run eagerly.

Safety: the first output of every compiled shape is compared with the eager model's (tolerance
``rtol``, relative to the output's scale); a mismatch, or a compiler that fails (no C++ compiler,
an unsupported operation), emits one warning and the wrapper falls back to the eager model for
good. The copy is rebuilt when a parameter or buffer of the model changes (in place or replaced),
so a model trained or randomised after wrapping is never explained with stale weights.
Padding assumes what the library assumes everywhere: in eval mode each instance's output depends
on that instance only. Compiled and eager outputs differ by float rounding (≈ 1e-6 relative on the
MNIST CNN), so results are not bit-identical to the eager model's.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from typing import Optional

import torch
from torch import Tensor, nn

from ._utils import model_state_key

__all__ = ["Accelerated", "accelerate"]


def _pieces(n: int, min_batch: int, max_batch: int):
    """Split ``n`` inputs into ``(start, stop, shape)`` pieces of power-of-two shapes."""
    s = 0
    while n - s >= min_batch:
        size = min(max_batch, 1 << ((n - s).bit_length() - 1))
        yield s, s + size, size
        s += size
    if s < n:
        yield s, n, min_batch  # the rest, padded up to min_batch


@contextlib.contextmanager
def _quiet_compiler():
    """Silence torch's C++-extension logger while compiling (on a CPU-only machine it warns, at every
    first compilation, that no CUDA runtime was found: noise for a reader of a chapter)."""
    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


class Accelerated(nn.Module):
    """``model`` with its gradient-free forward passes compiled; see :mod:`xailib.compiled`.

    Parameters are the model's own (``parameters()``, ``state_dict()`` and ``train()``/``eval()``
    reach ``self.module``); the compiled copy is not a registered submodule.
    """

    def __init__(self, model: nn.Module, min_batch: int = 64, max_batch: int = 256, rtol: float = 1e-3,
                 check: bool = True):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"`model` must be an nn.Module to be compiled, got {type(model).__name__}")
        if isinstance(model, Accelerated):
            model = model.module
        for v, name in ((min_batch, "min_batch"), (max_batch, "max_batch")):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1 or v & (v - 1):
                raise ValueError(f"`{name}` must be a power of two >= 1, got {v!r}")
        if max_batch < min_batch:
            raise ValueError(f"`max_batch` ({max_batch}) must be >= `min_batch` ({min_batch})")
        if not rtol > 0:
            raise ValueError(f"`rtol` must be > 0, got {rtol!r}")
        self.module = model
        self.min_batch, self.max_batch, self.rtol, self.check = min_batch, max_batch, float(rtol), bool(check)
        self._state = self._fresh_state(failed=None)

    # ------------------------------------------------------------------ state
    def __getstate__(self):
        """Copies (``copy.deepcopy``, pickling) carry the model, not the compiled copy: theirs is
        compiled when first needed."""
        state = self.__dict__.copy()
        state["_state"] = self._fresh_state(failed=self._state["failed"])
        return state

    @staticmethod
    def _fresh_state(failed: Optional[str]) -> dict:
        """No compiled copy yet (``key``: the model state it was compiled from, ``checked``: the
        shapes whose first output was compared with the eager model's)."""
        return {"key": None, "fn": None, "checked": set(), "failed": failed, "calls": 0}

    @property
    def fallback_reason(self) -> Optional[str]:
        """Why the wrapper runs eagerly for good (None while compiled passes are in use)."""
        return self._state["failed"]

    @property
    def compiled_calls(self) -> int:
        """How many pieces have run through the compiled copy (for tests and benchmarks)."""
        return self._state["calls"]

    def _fail(self, why: str) -> None:
        self._state.update(failed=why, fn=None)
        warnings.warn(f"xailib.accelerate: {why}; using the eager model from now on", RuntimeWarning,
                      stacklevel=4)

    def _compiled(self):
        key = model_state_key(self.module)
        st = self._state
        if st["fn"] is None or st["key"] != key:
            clone = copy.deepcopy(self.module).eval()
            for p in clone.parameters():
                p.requires_grad_(False)
            st.update(key=key, fn=torch.compile(clone, dynamic=False), checked=set())
        return st["fn"]

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor) -> Tensor:
        if (torch.is_grad_enabled() or self.module.training or self._state["failed"] is not None
                or not isinstance(x, Tensor) or x.dim() == 0 or x.shape[0] < self.min_batch):
            return self.module(x)
        try:
            fn = self._compiled()
        except Exception as e:  # pragma: no cover - deepcopy of an exotic module
            self._fail(f"the model could not be copied for compilation ({type(e).__name__}: {e})")
            return self.module(x)
        outs = []
        for s, e, size in _pieces(x.shape[0], self.min_batch, self.max_batch):
            xb = x[s:e]
            if e - s < size:
                xb = torch.cat([xb, xb[:1].expand(size - (e - s), *xb.shape[1:])])
            out = self._run(fn, xb)
            if out is None:
                return self.module(x)
            outs.append(out[: e - s])
        return torch.cat(outs)

    def _run(self, fn, xb: Tensor) -> Optional[Tensor]:
        import torch._dynamo
        import torch._inductor.config as inductor_config

        st = self._state
        shape = (tuple(xb.shape), xb.dtype, xb.device.type)
        try:
            with inductor_config.patch(freezing=True), _quiet_compiler(), \
                    torch._dynamo.config.patch(cache_size_limit=max(64, torch._dynamo.config.cache_size_limit)):
                out = fn(xb)
        except Exception as e:
            self._fail(f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})")
            return None
        if self.check and shape not in st["checked"]:
            ref = self.module(xb)
            if not isinstance(out, Tensor) or out.shape != ref.shape:
                self._fail("the compiled model's output differs in type or shape from the model's")
                return None
            scale = float(ref.abs().max()) if ref.numel() else 0.0
            err = float((out - ref).abs().max()) if ref.numel() else 0.0
            if not err <= self.rtol * max(scale, 1e-12):
                self._fail(f"the compiled model's output differs from the model's by {err:.3g} "
                           f"(scale {scale:.3g}, rtol {self.rtol:g})")
                return None
            st["checked"].add(shape)
        st["calls"] += 1
        return out

    def warm_up(self, example: Tensor) -> "Accelerated":
        """Compile (and check) every shape now, from one input ``example`` (shape ``(1, *F)`` or ``F``), so
        that timings taken afterwards do not include compilation. Returns ``self``."""
        if not isinstance(example, Tensor):
            raise TypeError(f"`example` must be a tensor, got {type(example).__name__}")
        x1 = example[:1] if example.dim() >= 2 and example.shape[0] >= 1 else example.unsqueeze(0)
        size = self.min_batch
        with torch.no_grad():
            while size <= self.max_batch and self._state["failed"] is None:
                self(x1.expand(size, *x1.shape[1:]).contiguous())
                size *= 2
        return self

    def extra_repr(self) -> str:
        return f"min_batch={self.min_batch}, max_batch={self.max_batch}"


def accelerate(model: nn.Module, min_batch: int = 64, max_batch: int = 256, rtol: float = 1e-3,
               check: bool = True) -> Accelerated:
    """``model`` with its forward passes without gradients compiled (:class:`Accelerated`).

    Pass the result wherever the model goes (explainers, metrics, ``evaluate``): gradient methods
    still run the model itself, forward-only work runs the compiled copy. ``min_batch`` and
    ``max_batch`` (powers of two) bound the compiled shapes; ``rtol`` is the tolerance of the check
    of each compiled shape against the model (off with ``check=False``). Measured speed-ups:
    ``benchmarks/README.md``, section *Compiled forward passes*.

    >>> import xailib
    >>> fast = xailib.accelerate(xailib.models.get_model("mnist_cnn"))  # doctest: +SKIP
    >>> xailib.explainers.KernelSHAP(fast, n_samples=13_400)(x, target)  # doctest: +SKIP
    """
    return Accelerated(model, min_batch=min_batch, max_batch=max_batch, rtol=rtol, check=check)
