"""The networks of Prop. A.1 and the populations of (network, inputs) the checks run on.

:class:`~xailib.models.SoftplusNet` (``f(x) = cᵀσ(W_l … σ(W₁x))``, zero biases; defined in :mod:`xailib.models`)
is built at random by :func:`random_softplus_net`; :func:`random_instances` draws a population of
networks and inputs; a :class:`Population` describes one (given networks and inputs, or the
random draw) and replaces the keyword arguments every check used to repeat. :class:`RippleModel`
adds a small fast ripple to a model (Theorem C.1's bound is then not vacuous).
Background: the book's *The paper in brief*, § Theory; chapter ``notebooks/theory``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from .._utils import check_input, check_positive, make_generator
from ..models import SoftplusNet
from ._core import DTYPE, _f

__all__ = ["SoftplusNet", "random_softplus_net", "RippleModel", "random_instances", "Population"]


def random_softplus_net(d: int, widths: Sequence[int], scale: float = 1.0, seed=0, activation: str = "softplus",
                        dtype=DTYPE) -> SoftplusNet:
    """A random :class:`~xailib.models.SoftplusNet`: ``d`` inputs, hidden ``widths`` (depth ``l = len(widths)``).

    ``W_i`` has i.i.d. ``N(0, scale² / fan_in)`` entries (``scale = 1``: the usual "LeCun"
    variance; small ``scale``: small weight norms); ``c`` has ``N(0, 1 / width_l)`` entries.
    """
    check_positive(d, "d", integer=True)
    check_positive(scale, "scale")
    widths = [int(w) for w in widths]
    if not widths or min(widths) < 1:
        raise ValueError(f"`widths` must be a non-empty list of positive ints, got {widths!r}")
    g = make_generator(seed)
    weights, fan_in = [], d
    for w in widths:
        weights.append(scale * torch.randn(w, fan_in, generator=g, dtype=torch.float64) / math.sqrt(fan_in))
        fan_in = w
    c = torch.randn(fan_in, generator=g, dtype=torch.float64) / math.sqrt(fan_in)
    return SoftplusNet([W.to(dtype) for W in weights], c.to(dtype), activation)


class RippleModel(nn.Module):
    """``f(x) = base(x) + a · sin(ωᵀx)``: a model whose gradient is far more sensitive than its
    output when ``a`` is small and ``‖ω‖`` large (``‖∇ sin‖ ~ a‖ω‖`` while ``|Δf| ≤ 2a``); used to show
    a case where Theorem C.1's lower bound on robust infidelity is not vacuous."""

    def __init__(self, base: nn.Module, amplitude: float = 0.05, frequency: float = 20.0, seed=0, d: int = 8):
        super().__init__()
        self.base = base
        g = make_generator(seed)
        w = torch.randn(d, generator=g, dtype=DTYPE)
        self.register_buffer("omega", frequency * w / w.norm())
        self.amplitude = float(amplitude)
        self.depth = getattr(base, "depth", -1)

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(x.shape[0], -1)
        return _f(self.base, x) + self.amplitude * torch.sin(x @ self.omega)


def random_instances(n_nets: int = 8, n_inputs: int = 4, d: int = 8, depths=(1, 2, 3, 4), widths=(8, 16, 32),
                     scales=(0.5, 1.0, 2.0), seed=0, activation: str = "softplus", input_scale: float = 1.0):
    """``n_nets`` random networks (depth, width, scale drawn from the given tuples) with
    ``n_inputs`` inputs ``x ~ N(0, input_scale² Id)`` each: a list of ``(net, x, meta)``."""
    check_positive(n_nets, "n_nets", integer=True)
    check_positive(n_inputs, "n_inputs", integer=True)
    g = make_generator(seed)
    out = []
    for k in range(n_nets):
        depth = int(depths[int(torch.randint(len(depths), (1,), generator=g))])
        width = int(widths[int(torch.randint(len(widths), (1,), generator=g))])
        scale = float(scales[int(torch.randint(len(scales), (1,), generator=g))])
        net_seed = int(torch.randint(2**31 - 1, (1,), generator=g))
        net = random_softplus_net(d, [width] * depth, scale, net_seed, activation)
        x = input_scale * torch.randn(n_inputs, d, generator=g, dtype=DTYPE)
        out.append((net, x, {"net": k, "depth": depth, "width": width, "scale": scale}))
    return out


@dataclass
class Population:
    """The networks and inputs a theory check runs on.

    Either given networks and inputs (``nets``: one model or a list; ``x``: one tensor ``(N, d)``
    shared by every network, or one per network), or, when ``nets`` is None, ``n_nets`` random
    softplus networks of :func:`random_instances` (depth, width and weight scale drawn from
    ``depths``, ``widths``, ``scales``; ``d`` inputs; ``activation="relu"`` breaks the smoothness
    hypotheses) with ``n_inputs`` inputs ``x ~ N(0, input_scale² Id)`` each. ``seed`` (None: the
    check's own seed) seeds the random draw.

    Every ``check_*`` accepts a population as its first argument, or its fields as keywords
    (``check_lipschitz_bound(n_nets=3, d=6)``); a field left out keeps the check's default.

    Example:
        >>> pop = Population(n_nets=3, n_inputs=2, d=6, depths=(1, 2))
        >>> len(pop.instances())
        3
    """

    nets: Any = None
    x: Any = None
    n_nets: int = 8
    n_inputs: int = 4
    d: int = 8
    depths: Sequence[int] = (1, 2, 3, 4)
    widths: Sequence[int] = (8, 16, 32)
    scales: Sequence[float] = (0.5, 1.0, 2.0)
    activation: str = "softplus"
    input_scale: float = 1.0
    seed: Any = None

    def instances(self, seed=0) -> list:
        """The list of ``(net, x, meta)`` (``x`` in float64) the checks loop over; ``seed`` is used
        when the population has none of its own."""
        if self.nets is None:
            s = seed if self.seed is None else self.seed
            return random_instances(self.n_nets, self.n_inputs, self.d, self.depths, self.widths, self.scales,
                                    seed=s, activation=self.activation, input_scale=self.input_scale)
        return _given_instances(self.nets, self.x)


_FIELDS = None


def _population(nets, x, population: dict, **defaults) -> Population:
    """Resolve a check's ``nets``, ``x`` and ``**population`` keywords (over the check's defaults)."""
    global _FIELDS
    if _FIELDS is None:
        _FIELDS = {f.name for f in fields(Population)} - {"nets", "x"}
    unknown = set(population) - _FIELDS
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {sorted(unknown)}; population fields: {sorted(_FIELDS)}")
    if isinstance(nets, Population):
        if x is not None or population:
            raise ValueError("pass either a Population as `nets` or `x`/population keywords, not both")
        return nets
    return Population(nets, x, **{**defaults, **population})


def _given_instances(nets, x):
    """Normalise given (nets, x) to a list of (net, x, meta)."""
    if isinstance(nets, nn.Module) or callable(nets) and not isinstance(nets, (list, tuple)):
        nets = [nets]
    if x is None:
        raise ValueError("`x` is required when `nets` is given")
    xs = list(x) if isinstance(x, (list, tuple)) else [x] * len(nets)
    if len(xs) != len(nets):
        raise ValueError("`x` must be one tensor or one tensor per network")
    out = []
    for k, (net, xx) in enumerate(zip(nets, xs)):
        check_input(xx, "x")
        meta = {"net": k, "depth": getattr(net, "depth", -1), "width": -1, "scale": float("nan")}
        if isinstance(net, SoftplusNet):
            meta["width"] = int(net.weights[0].shape[0])
        out.append((net, xx.detach().to(DTYPE), meta))
    return out


def _meta_info(meta_list, counts):
    info = {}
    for key in ("net", "depth", "width", "scale"):
        vals = []
        for m, c in zip(meta_list, counts):
            vals += [m[key]] * c
        info[key] = vals
    return info

