"""Adapters for Captum users: Captum explanation functions and ``perturb_func`` in xailib's metrics.

* :func:`explanation` wraps any callable ``f(x, target=...) -> Φ`` — e.g. Captum's
  ``Saliency(model).attribute`` or ``IntegratedGradients(model).attribute`` — as an explainer
  with a ``kind`` (``"local"`` by default: Φ is compared with a perturbation as ``IᵀΦ``;
  ``"global"``: Φ is an attribution ``A = (x − baseline) ⊙ Φ`` compared with binary masks as
  ``zᵀA``, e.g. Captum's IG with ``multiply_by_inputs=True``). The metrics accept a bare callable
  too and then treat it as local.
* :func:`law_from_perturb_func` turns a Captum ``perturb_func(inputs) -> (perturbations,
  perturbed_inputs)`` into an xailib perturbation law.

Conventions are the paper's (the book's *The paper in brief*, § Metrics): a perturbation ``I``
gives the input ``x − I`` and ``Δf = f(x) − f(x − I)``, exactly as in ``captum.metrics.infidelity``.
The Captum path is described in the README ("Coming from Captum") and the book's running page.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from ._utils import SeedLike, check_input, check_target, eval_mode, make_generator
from .perturbations import Perturbation

__all__ = ["Explanation", "explanation", "PerturbFuncLaw", "law_from_perturb_func"]


def _takes_target_keyword(fn) -> bool:
    """Whether ``fn`` accepts ``target=`` (Captum's ``attribute``); otherwise it gets it positionally."""
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == "target" or p.kind is p.VAR_KEYWORD for p in params)


class Explanation:
    """An explanation function ``fn(x, target=...) -> Φ`` with the explainer attributes the metrics use.

    Called as ``expl(x, target=None)``; ``target`` (normalised to a LongTensor ``(N,)`` or None) is
    passed **by keyword** when ``fn`` has a parameter named ``target`` (``fn(x, target=t)``: Captum's
    ``attribute`` methods, whose second positional argument may be a baseline), else positionally. The result must be a tensor shaped like
    ``x``. ``kind``: ``"local"`` (default) or ``"global"``; ``name``: the table label;
    ``stochastic`` is False (a function drawing from torch's global RNG is re-seeded by nothing:
    seed it yourself, ``torch.manual_seed``, before each metric call). ``model``: the model behind
    ``fn`` when it can be found (``fn.__self__.forward_func`` for Captum methods), else None.
    """

    stochastic = False

    def __init__(self, fn: Callable, kind: str = "local", name: Optional[str] = None):
        if isinstance(fn, type):
            raise TypeError(f"`fn` must be a function or a bound method, got the class {fn.__name__}")
        if not callable(fn):
            raise TypeError(f"`fn` must be callable as fn(x, target=...), got {type(fn).__name__}")
        if kind not in ("local", "global"):
            raise ValueError(f"`kind` must be 'local' or 'global', got {kind!r}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"`name` must be a str, got {type(name).__name__}")
        self.fn = fn
        self.kind = kind
        self._target_kw = _takes_target_keyword(fn)
        owner = getattr(fn, "__self__", None)
        self.model = getattr(owner, "forward_func", None) or getattr(owner, "model", None)
        self.name = name or (type(owner).__name__ if owner is not None else getattr(fn, "__name__", "explanation"))

    def __call__(self, x: Tensor, target=None, *, generator: SeedLike = None) -> Tensor:
        x = check_input(x)
        t = check_target(target, x.shape[0], x.device)
        with eval_mode(self.fn):
            phi = self.fn(x, target=t) if self._target_kw else self.fn(x, t)
        if isinstance(phi, tuple) and len(phi) == 1:
            phi = phi[0]
        if not isinstance(phi, Tensor):
            raise TypeError(f"`{self.name}` returned {type(phi).__name__}, expected a tensor shaped like x")
        return phi.detach()

    def __repr__(self) -> str:
        return f"Explanation({self.name}, kind={self.kind!r})"


def explanation(fn: Callable, kind: str = "local", name: Optional[str] = None) -> Explanation:
    """Wrap ``fn(x, target=...) -> Φ`` (e.g. ``captum.attr.Saliency(model).attribute``) as an explainer.

    >>> from captum.attr import IntegratedGradients as CaptumIG
    >>> ig = xailib.captum.explanation(CaptumIG(model).attribute, kind="global")  # IG attributions
    >>> xailib.metrics.infidelity(model, ig, x, target=y, perturbation=SquareRemoval())
    """
    if isinstance(fn, Explanation):
        return fn if fn.kind == kind and name is None else Explanation(fn.fn, kind, name or fn.name)
    return Explanation(fn, kind, name)


class PerturbFuncLaw(Perturbation):
    """A continuous perturbation law given by a Captum ``perturb_func(inputs) -> (I, inputs − I)``.

    Captum calls ``perturb_func`` on the instances repeated ``n`` times
    (``x.repeat_interleave(n, 0)``) and draws from torch's **global** RNG; so does this law. Its
    draws are rows ``(seed, k, n)``: ``apply(x, draws)`` runs ``perturb_func(x.repeat_interleave(n,
    0))`` once with the global RNG seeded with ``seed`` (inside ``torch.random.fork_rng``, so the
    caller's RNG state is untouched) and returns the perturbations of draws ``k``. Hence

    * the metrics' ``generator`` (or seed) picks ``seed`` (``seed=`` fixes it for every call): the
      same seed gives the same perturbations, and chunking the draws changes nothing;
    * with ``seed=s``, ``infidelity(model, phi, x, target, law, n_samples=n)`` uses the very
      perturbations of ``torch.manual_seed(s); captum.metrics.infidelity(model, perturb_func, x,
      phi, target=target, n_perturb_samples=n)`` (Captum's default, one batch);
    * unlike xailib's own laws, perturbations are not shared across instances (each row of the
      repeated batch gets its own draw, as in Captum), and they depend on the whole batch ``x``.

    Memory: the ``N·n`` perturbations are built at once, as Captum does with
    ``max_examples_per_batch=None``, and the last batch stays cached in the law (so that the
    metrics' chunked passes reuse it); :meth:`clear` frees it.
    """

    binary = False
    baseline = 0.0

    def __init__(self, perturb_func: Callable, seed: Optional[int] = None):
        if not callable(perturb_func) or isinstance(perturb_func, type):
            raise TypeError(f"`perturb_func` must be a function inputs -> (perturbations, perturbed_inputs), "
                            f"got {perturb_func!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 31):
            raise ValueError(f"`seed` must be None or an int in [0, 2**31), got {seed!r}")
        self.perturb_func = perturb_func
        self.seed = seed
        self._cache = None

    def draw(self, feature_shape, n: int, generator: SeedLike = None, device=None, dtype=None) -> Tensor:
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"`n` must be a positive int, got {n!r}")
        if self.seed is not None:
            seed = self.seed
        else:
            g = make_generator(generator, "cpu", "perturb_func") if not isinstance(generator, torch.Generator) \
                else generator
            seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=g, device=g.device))
        d = torch.empty(n, 3, dtype=torch.float64, device=device)
        d[:, 0] = seed
        d[:, 1] = torch.arange(n, dtype=torch.float64, device=device)
        d[:, 2] = n
        return d

    def _run(self, x: Tensor, draws: Tensor):
        if draws.dim() != 2 or draws.shape[1] != 3:
            raise ValueError(f"`draws` must come from {type(self).__name__}.draw (shape (n, 3)), got "
                             f"{tuple(draws.shape)}")
        seed, n = int(draws[0, 0]), int(draws[0, 2])
        key = (seed, n, x.data_ptr(), tuple(x.shape), x.dtype, x._version, x.requires_grad)
        if self._cache is None or self._cache[0] != key:
            devices = [x.device] if x.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                out = self.perturb_func(x.repeat_interleave(n, 0))
            if not (isinstance(out, (tuple, list)) and len(out) == 2 and all(isinstance(o, Tensor) for o in out)):
                raise TypeError("`perturb_func` must return a pair of tensors (perturbations, perturbed_inputs)")
            N = x.shape[0]
            shape = (N * n, *x.shape[1:])
            if tuple(out[0].shape) != shape or tuple(out[1].shape) != shape:
                raise ValueError(f"`perturb_func` must return two tensors of shape {shape} (the repeated "
                                 f"inputs' shape), got {tuple(out[0].shape)} and {tuple(out[1].shape)}")
            I = out[0].to(x.dtype).view(N, n, *x.shape[1:])
            P = out[1].to(x.dtype).view(N, n, *x.shape[1:])
            self._cache = (key, I, P)
        k = draws[:, 1].long().to(x.device)
        return self._cache[1][:, k], self._cache[2][:, k]

    def clear(self) -> None:
        """Free the cached perturbations of the last batch."""
        self._cache = None

    def apply(self, x: Tensor, draws: Tensor) -> Tensor:
        return self._run(x, draws)[0]

    def perturbed(self, x: Tensor, draws: Tensor) -> Tensor:
        """The ``perturbed_inputs`` returned by ``perturb_func`` (Captum evaluates the model there)."""
        return self._run(x, draws)[1]

    def _repr_fields(self):
        return [("perturb_func", getattr(self.perturb_func, "__name__", "<fn>")), ("seed", self.seed)]


def law_from_perturb_func(perturb_func: Callable, seed: Optional[int] = None) -> PerturbFuncLaw:
    """``PerturbFuncLaw(perturb_func, seed)``: a Captum ``perturb_func`` as an xailib law (one line).

    >>> law = xailib.captum.law_from_perturb_func(my_perturb_func)
    >>> xailib.metrics.infidelity(model, Saliency(model).attribute, x, y, perturbation=law)

    See :class:`PerturbFuncLaw` for the seeding (torch's global RNG, seeded per call).
    """
    return PerturbFuncLaw(perturb_func, seed)
