"""Perturbation laws ``μ_I`` shared by the metrics and the optimal explanations.

Every law draws its randomness **once per call and shares it across instances**:
:meth:`Perturbation.draw` returns ``n`` raw draws that do not depend on ``x`` (Gaussian noise
``(n, *F)`` for continuous laws, float 0/1 group masks ``(n, G)`` for binary laws) and
:meth:`Perturbation.apply` turns them into the perturbations ``I`` of every instance,
shape ``(N, n, *F)``. Results therefore never depend on the batch size or on chunking.
Draws are made in the dtype and on the device asked for (a float64 input gets float64 noise).

Continuous laws (``binary = False``): :class:`NoisyBaseline`, :class:`Gaussian`,
:class:`Infinitesimal`, :class:`Fixed` ``(I)``.
Binary laws (``binary = True``, ``I = (x − baseline) ⊙ expand(z)``, the book's *The paper in brief*, § Perturbation laws
and optimal explanations, the B.2 form): :class:`SquareRemoval`, :class:`SingleFeature`, :class:`ShapleyKernel`,
:class:`Fixed` ``(masks=z)``.

Feature groups (binary laws): ``groups`` is

* ``None`` or ``"feature"``: every scalar feature is its own group (``G = prod(F)``);
* ``"pixel"``: one group per spatial location, all channels together. The spatial shape of a
  feature shape ``F`` is ``F`` itself when ``len(F) <= 2`` and ``F[-2:]`` otherwise
  (channels first, ``(C, H, W)``); for ``(1, 28, 28)`` pixels and features coincide;
* an ``int`` ``s``: ``s × s`` superpixels tiling the spatial grid (``s``-long segments for
  1-D features); edge superpixels are smaller when ``s`` does not divide the side;
* a ``LongTensor`` label map of shape ``F`` or of the spatial shape (then shared by all
  channels); labels are renumbered ``0 … G−1`` in sorted order.

See ``notebooks/toy.ipynb`` (the laws on two features) and ``notebooks/mnist.ipynb`` (NB and
Square on MNIST), and the book's *The paper in brief*, § Perturbation laws and optimal explanations.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from ._utils import SeedLike, check_positive, make_generator, rand_like_draw

__all__ = [
    "Perturbation",
    "BinaryPerturbation",
    "NoisyBaseline",
    "Gaussian",
    "Infinitesimal",
    "SquareRemoval",
    "SingleFeature",
    "ShapleyKernel",
    "Fixed",
    "GroupsLike",
    "EXACT_MAX_ATOMS",
    "exact_support",
]

#: ``exact="auto"`` sums a law's support exactly when it has at most this many atoms
EXACT_MAX_ATOMS = 8192
#: an exact sum whose support masks would exceed this many bytes is refused
EXACT_MAX_BYTES = 1 << 31

GroupsLike = Union[None, str, int, Tensor]

# draws of binary laws are generated in blocks of at most this many mask elements
_BLOCK_ELEMENTS = 1 << 22


def _feature_shape(feature_shape) -> Tuple[int, ...]:
    if isinstance(feature_shape, torch.Size):
        feature_shape = tuple(feature_shape)
    if isinstance(feature_shape, int):
        feature_shape = (feature_shape,)
    if not isinstance(feature_shape, tuple) or not all(isinstance(s, int) and s > 0 for s in feature_shape):
        raise TypeError(f"`feature_shape` must be a tuple of positive ints, got {feature_shape!r}")
    if len(feature_shape) == 0:
        raise ValueError("`feature_shape` must have at least one dimension")
    return feature_shape


def _spatial_shape(F: Tuple[int, ...]) -> Tuple[int, ...]:
    return F if len(F) <= 2 else F[-2:]


def _check_n(n) -> int:
    return check_positive(n, "n", integer=True)


def _check_dtype(dtype) -> torch.dtype:
    if dtype is None:
        return torch.get_default_dtype()
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"`dtype` must be a floating torch.dtype, got {dtype!r}")
    return dtype


def _gen(generator: SeedLike, device) -> torch.Generator:
    return make_generator(generator, device if device is not None else "cpu")


def _randint(high: int, size, g: torch.Generator, device) -> Tensor:
    """Integers uniform in [0, high) drawn on the generator's device, moved to ``device``."""
    return torch.randint(0, high, size, generator=g, device=g.device).to(device)


def _uniform64(size, g: torch.Generator, device) -> Tensor:
    return rand_like_draw(size, g, device, torch.float64, kind="rand")


def exact_support(law, feature_shape, exact="auto", device=None, dtype=None) -> Optional[Tuple[Tensor, Tensor]]:
    """Decide between an exact sum over ``law``'s finite support and sampling.

    ``exact="auto"``: exact when the law has a finite support of at most :data:`EXACT_MAX_ATOMS`
    (8,192) atoms (SquareRemoval on 28×28 with sides 1–10: 5,605; SingleFeature: ``G``;
    ShapleyKernel: ``2^G − 2``, i.e. ``G ≤ 13``), sampled otherwise; ``True``: exact or
    ``ValueError`` (no finite support, or support masks over 2 GiB); ``False``: sampled.
    Returns ``(draws, probs)`` (``probs`` in float64) for an exact sum, ``None`` to sample.
    Replaying laws (:class:`Fixed`) are never summed: their stored draws are used as they are.
    """
    if exact not in ("auto", True, False):
        raise ValueError(f"`exact` must be 'auto', True or False, got {exact!r}")
    if exact is False or getattr(law, "n_fixed", None) is not None:
        return None
    F = _feature_shape(feature_shape)
    K = law.support_size(F)
    if K is None:
        if exact is True:
            law.support(F)  # raises the ValueError naming `perturbation`
        return None
    if exact == "auto" and K > EXACT_MAX_ATOMS:
        return None
    G = law.n_groups(F) if law.binary else math.prod(F)
    item = torch.empty(0, dtype=_check_dtype(dtype)).element_size()
    if K * G * item > EXACT_MAX_BYTES:
        raise ValueError(
            f"`exact`=True: the support of {law!r} has {K} atoms × {G} groups, over {EXACT_MAX_BYTES >> 30} GiB "
            "of masks: sample it (exact=False)"
        )
    draws, probs = law.support(F, device, dtype)
    return draws, probs.to(torch.float64)


class _Groups:
    """Feature → group map for one feature shape (cached by the law)."""

    def __init__(self, spec: GroupsLike, F: Tuple[int, ...], device):
        self.F = F
        self.d = math.prod(F)
        S = _spatial_shape(F)
        self.S = S
        self.n_channels = self.d // math.prod(S)
        self.mode = "general"
        if spec is None or (isinstance(spec, str) and spec == "feature"):
            self.mode, self.G, labels = "feature", self.d, None
        elif isinstance(spec, str) and spec == "pixel":
            if self.n_channels == 1:
                self.mode, self.G, labels = "feature", self.d, None
            else:
                self.mode, self.G, labels = "pixel", math.prod(S), None
        elif isinstance(spec, int) and not isinstance(spec, bool):
            if spec < 1:
                raise ValueError(f"`groups` (superpixel side) must be >= 1, got {spec}")
            grids = [torch.arange(s, device=device) // spec for s in S]
            n_cells = [-(-s // spec) for s in S]
            if len(S) == 1:
                lab_s = grids[0]
            else:
                lab_s = grids[0].view(-1, 1) * n_cells[1] + grids[1].view(1, -1)
            labels = lab_s.expand(*F) if len(F) > len(S) else lab_s
            self.G = math.prod(n_cells)
            if spec == 1:
                self.mode, labels = ("feature" if self.n_channels == 1 else "pixel"), None
        elif isinstance(spec, Tensor):
            if spec.dtype.is_floating_point or spec.dtype == torch.bool:
                raise TypeError(f"`groups` label map must be an integer tensor, got dtype {spec.dtype}")
            if tuple(spec.shape) == F:
                lab = spec
            elif tuple(spec.shape) == S:
                lab = spec.expand(*F)
            else:
                raise ValueError(
                    f"`groups` label map must have the feature shape {F} or the spatial shape {S}, "
                    f"got {tuple(spec.shape)}"
                )
            uniq, inv = torch.unique(lab.reshape(-1).to(device), return_inverse=True)
            labels = inv.view(F)
            self.G = int(uniq.numel())
        else:
            raise TypeError(
                f"`groups` must be None, 'feature', 'pixel', an int superpixel side or a LongTensor "
                f"label map, got {spec!r}"
            )
        if self.mode == "general":
            self.labels = labels.reshape(-1).to(device=device, dtype=torch.long).contiguous()
            self.counts = torch.bincount(self.labels, minlength=self.G)
        else:
            self.labels = None
            self.counts = None

    # z (n, G) -> feature masks (n, *F)
    def expand(self, z: Tensor) -> Tensor:
        n = z.shape[0]
        if self.mode == "feature":
            return z.reshape(n, *self.F)
        if self.mode == "pixel":
            return z.reshape(n, *([1] * (len(self.F) - len(self.S))), *self.S).expand(n, *self.F)
        return z.index_select(1, self.labels.to(z.device)).view(n, *self.F)

    # A (N, *F) -> (N, G)
    def group_sum(self, A: Tensor) -> Tensor:
        N = A.shape[0]
        flat = A.reshape(N, -1)
        if self.mode == "feature":
            return flat
        if self.mode == "pixel":
            return A.reshape(N, self.n_channels, -1).sum(1)
        out = torch.zeros(N, self.G, device=A.device, dtype=A.dtype)
        return out.index_add_(1, self.labels.to(A.device), flat)

    # g (N, G) -> (N, *F), value of each group spread evenly over its features
    def spread(self, g: Tensor) -> Tensor:
        N = g.shape[0]
        if self.mode == "feature":
            return g.reshape(N, *self.F)
        if self.mode == "pixel":
            return (g / self.n_channels).reshape(N, *([1] * (len(self.F) - len(self.S))), *self.S).expand(
                N, *self.F
            ).contiguous()
        lab = self.labels.to(g.device)
        per = g / self.counts.to(device=g.device, dtype=g.dtype)
        return per.index_select(1, lab).view(N, *self.F)

    # pixel masks (n, *S) -> group masks (n, G): a group is on when >= half its features are covered
    def from_spatial(self, m: Tensor) -> Tensor:
        n = m.shape[0]
        if self.mode in ("feature", "pixel") and (self.mode == "pixel" or self.n_channels == 1):
            return m.reshape(n, -1)
        feat = m.reshape(n, *([1] * (len(self.F) - len(self.S))), *self.S).expand(n, *self.F).reshape(n, -1)
        if self.mode == "feature":
            return feat
        cover = torch.zeros(n, self.G, device=m.device, dtype=m.dtype).index_add_(1, self.labels.to(m.device), feat)
        return (2 * cover >= self.counts.to(device=m.device, dtype=m.dtype)).to(m.dtype)


class Perturbation:
    """A perturbation law ``μ_I`` (the book's *The paper in brief*, § Perturbation laws and optimal explanations).

    Subclasses implement :meth:`draw` (raw draws shared by all instances) and :meth:`apply`
    (``I`` for every instance, shape ``(N, n, *F)``). ``sample(x, n, generator)`` is
    ``apply(x, draw(x.shape[1:], n, generator, x.device, x.dtype))``.
    """

    binary: bool = False
    baseline: float = 0.0
    #: number of stored draws for replaying laws (:class:`Fixed`), None for random laws
    n_fixed: Optional[int] = None

    def draw(self, feature_shape, n: int, generator: SeedLike = None, device=None, dtype=None) -> Tensor:
        """``n`` draws of the law for inputs of feature shape ``feature_shape`` (implemented by each law)."""
        raise NotImplementedError

    def apply(self, x: Tensor, draws: Tensor) -> Tensor:
        """The perturbations ``I`` of every instance of ``x`` for ``draws``, shape ``(N, n, *F)``."""
        raise NotImplementedError

    def support_size(self, feature_shape) -> Optional[int]:
        """Number of atoms of the law's finite support for ``feature_shape``, or ``None`` when the
        law has no finite support (continuous laws; :class:`Fixed` replays its draws instead)."""
        return None

    def support(self, feature_shape, device=None, dtype=None) -> Tuple[Tensor, Tensor]:
        """The finite support: ``(draws (K, ...), probs (K,))`` with ``Σ probs = 1``, so that
        ``E_I[h(I)] = Σ_k probs_k h(I_k)`` exactly (binary laws: ``draws`` are 0/1 group masks
        ``(K, G)``). Used for exact sums by :func:`xailib.metrics.infidelity`,
        :func:`xailib.metrics.evaluate` and :class:`xailib.explainers.Optimal` (``exact=``).
        A law without finite support → ``ValueError``."""
        raise ValueError(
            f"`perturbation` {self!r} has no finite support: it can only be sampled (use exact=False)"
        )

    def sample(self, x: Tensor, n: int, generator: SeedLike = None) -> Tensor:
        """``I`` of shape ``(N, n, *F)`` for the instances ``x`` (``(N, *F)``)."""
        from ._utils import check_input

        check_input(x, "x")
        return self.apply(x, self.draw(tuple(x.shape[1:]), n, generator, x.device, x.dtype))

    def perturbed(self, x: Tensor, draws: Tensor) -> Tensor:
        """``x − I`` for every draw, shape ``(N, n, *F)`` (the inputs the model is evaluated at)."""
        return x.unsqueeze(1) - self.apply(x, draws)

    def dot(self, x: Tensor, draws: Tensor, phi: Tensor) -> Tensor:
        """``IᵀΦ`` for every instance and draw, shape ``(N, n)`` (``phi`` a local explanation ``(N, *F)``).

        Laws override it with closed forms that never build ``I`` (``(N, n, *F)``) in memory.
        """
        I = self.apply(x, draws)
        return torch.einsum("nmd,nd->nm", I.reshape(I.shape[0], I.shape[1], -1), phi.reshape(phi.shape[0], -1))

    def _check_apply(self, x: Tensor, draws: Tensor, per_draw_shape) -> None:
        if not isinstance(x, Tensor) or x.dim() < 2:
            raise ValueError("`x` must be a batched tensor (N, *F)")
        if tuple(draws.shape[1:]) != tuple(per_draw_shape):
            raise ValueError(
                f"`draws` do not fit the feature shape {tuple(x.shape[1:])}: expected (n, "
                f"{', '.join(map(str, per_draw_shape))}), got {tuple(draws.shape)}"
            )

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self._repr_fields())
        return f"{type(self).__name__}({fields})"

    def _repr_fields(self):
        return []


class BinaryPerturbation(Perturbation):
    """Binary law ``I = (x − baseline) ⊙ expand(z)``, ``z ∈ {0,1}^G`` a mask over feature groups.

    By the Appendix B.2 form, ``IᵀΦ = zᵀ group_sum((x − baseline) ⊙ Φ)``, so the metrics
    and optimal explanations work with ``z`` and never divide by ``x − baseline``.
    ``draw`` returns float 0/1 masks ``(n, G)`` in the requested dtype.
    """

    binary = True

    def __init__(self, baseline: float = 0.0, groups: GroupsLike = None):
        if isinstance(baseline, Tensor):
            if not torch.is_floating_point(baseline) or not torch.isfinite(baseline).all():
                raise TypeError("`baseline` must be a finite float or floating tensor")
        elif isinstance(baseline, bool) or not isinstance(baseline, (int, float)) or not math.isfinite(baseline):
            raise TypeError(f"`baseline` must be a finite float, got {baseline!r}")
        else:
            baseline = float(baseline)
        self.baseline = baseline
        self.groups = groups
        if not (groups is None or isinstance(groups, (str, int, Tensor))) or isinstance(groups, bool):
            raise TypeError(f"`groups` must be None, 'feature', 'pixel', an int or a LongTensor, got {groups!r}")
        if isinstance(groups, str) and groups not in ("feature", "pixel"):
            raise ValueError(f"`groups` must be 'feature' or 'pixel' when a string, got {groups!r}")
        self._cache = {}

    def _groups(self, feature_shape, device=None) -> _Groups:
        F = _feature_shape(feature_shape)
        dev = torch.device(device) if device is not None else torch.device("cpu")
        key = (F, str(dev))
        if key not in self._cache:
            self._cache[key] = _Groups(self.groups, F, dev)
        return self._cache[key]

    def n_groups(self, feature_shape) -> int:
        """``G``, the number of feature groups for feature shape ``F``."""
        return self._groups(feature_shape).G

    def expand(self, z: Tensor, feature_shape) -> Tensor:
        """Group masks ``z`` ``(n, G)`` → feature masks ``(n, *F)`` (0/1, dtype of ``z``)."""
        g = self._groups(feature_shape, z.device)
        if z.dim() != 2 or z.shape[1] != g.G:
            raise ValueError(f"`z` must have shape (n, {g.G}), got {tuple(z.shape)}")
        return g.expand(z)

    def group_sum(self, A: Tensor, feature_shape=None) -> Tensor:
        """``(N, *F)`` → ``(N, G)``: the sum of ``A`` over each group (so ``zᵀ group_sum(A) = expand(z)·A``)."""
        F = tuple(A.shape[1:]) if feature_shape is None else feature_shape
        return self._groups(F, A.device).group_sum(A)

    def spread(self, g: Tensor, feature_shape) -> Tensor:
        """``(N, G)`` → ``(N, *F)``: each group's value divided evenly over its features."""
        grp = self._groups(feature_shape, g.device)
        if g.dim() != 2 or g.shape[1] != grp.G:
            raise ValueError(f"`g` must have shape (N, {grp.G}), got {tuple(g.shape)}")
        return grp.spread(g)

    def apply(self, x: Tensor, draws: Tensor) -> Tensor:
        """``I = (x − baseline) ⊙ expand(z)``, shape ``(N, n, *F)``."""
        F = tuple(x.shape[1:])
        self._check_apply(x, draws, (self.n_groups(F),))
        m = self.expand(draws.to(device=x.device, dtype=x.dtype), F)
        return (x - self._baseline_like(x)).unsqueeze(1) * m.unsqueeze(0)

    def perturbed(self, x: Tensor, draws: Tensor) -> Tensor:
        """``x − I = x ⊙ (1 − m) + baseline ⊙ m``, shape ``(N, n, *F)``."""
        F = tuple(x.shape[1:])
        self._check_apply(x, draws, (self.n_groups(F),))
        m = self.expand(draws.to(device=x.device, dtype=x.dtype), F).unsqueeze(0)
        b = self._baseline_like(x)
        if isinstance(b, Tensor):
            b = b.unsqueeze(0).unsqueeze(0)
        return x.unsqueeze(1) * (1 - m) + b * m

    def dot(self, x: Tensor, draws: Tensor, phi: Tensor) -> Tensor:
        """``IᵀΦ = zᵀ group_sum((x − baseline) ⊙ Φ)`` (B.2 form, no division by ``x``), shape ``(N, n)``."""
        F = tuple(x.shape[1:])
        self._check_apply(x, draws, (self.n_groups(F),))
        A = (x - self._baseline_like(x)) * phi
        return self.group_sum(A) @ draws.to(device=x.device, dtype=x.dtype).T

    def _baseline_like(self, x: Tensor):
        b = self.baseline
        if isinstance(b, Tensor):
            b = b.to(device=x.device, dtype=x.dtype)
            if b.shape != x.shape[1:] and b.dim() > 0:
                try:
                    b = b.expand(x.shape[1:])
                except RuntimeError:
                    raise ValueError(f"`baseline` of shape {tuple(b.shape)} does not fit features {tuple(x.shape[1:])}")
        return b

    def _repr_fields(self):
        return [("baseline", self.baseline), ("groups", self.groups)]


# --------------------------------------------------------------------------------------------
# continuous laws


class NoisyBaseline(Perturbation):
    """Noisy baseline (the book's *The paper in brief*, § Perturbation laws and optimal explanations): ``I = x − clip(baseline + σ ε)``, ``ε ~ N(0, Id)``.

    The authors' setting is ``baseline = 0``, ``σ = 0.2``, clip to ``[0, 1]`` (``clip=None``: no
    clipping). ``draw`` returns the Gaussian ``ε`` ``(n, *F)``, shared by all instances (every
    instance is compared with the same noisy baselines ``x₀``).
    """

    binary = False

    def __init__(self, sigma: float = 0.2, baseline: float = 0.0, clip: Optional[Tuple[float, float]] = (0.0, 1.0)):
        self.sigma = float(check_positive(sigma, "sigma"))
        if isinstance(baseline, bool) or not isinstance(baseline, (int, float)):
            raise TypeError(f"`baseline` must be a float, got {baseline!r}")
        self.baseline = float(baseline)
        if clip is not None:
            if not (isinstance(clip, (tuple, list)) and len(clip) == 2 and clip[0] < clip[1]):
                raise ValueError(f"`clip` must be None or a pair (low, high) with low < high, got {clip!r}")
            clip = (float(clip[0]), float(clip[1]))
        self.clip = clip

    def draw(self, feature_shape, n, generator=None, device=None, dtype=None) -> Tensor:
        F, n, dtype = _feature_shape(feature_shape), _check_n(n), _check_dtype(dtype)
        device = torch.device(device) if device is not None else torch.device("cpu")
        return rand_like_draw((n, *F), _gen(generator, device), device, dtype, kind="randn")

    def baselines(self, draws: Tensor) -> Tensor:
        """The noisy baselines ``x₀ = clip(baseline + σ ε)``, shape ``(n, *F)``."""
        x0 = self.baseline + self.sigma * draws
        if self.clip is not None:
            x0 = x0.clamp(self.clip[0], self.clip[1])
        return x0

    def apply(self, x, draws):
        self._check_apply(x, draws, x.shape[1:])
        return x.unsqueeze(1) - self.baselines(draws.to(device=x.device, dtype=x.dtype)).unsqueeze(0)

    def perturbed(self, x, draws):
        self._check_apply(x, draws, x.shape[1:])
        x0 = self.baselines(draws.to(device=x.device, dtype=x.dtype))
        return x0.unsqueeze(0).expand(x.shape[0], *x0.shape)

    def dot(self, x, draws, phi):
        """``IᵀΦ = xᵀΦ − x₀ᵀΦ`` without building ``I``."""
        self._check_apply(x, draws, x.shape[1:])
        N = x.shape[0]
        x0 = self.baselines(draws.to(device=x.device, dtype=x.dtype)).reshape(draws.shape[0], -1)
        pf = phi.reshape(N, -1)
        return (x.reshape(N, -1) * pf).sum(1, keepdim=True) - pf @ x0.T

    def _repr_fields(self):
        return [("sigma", self.sigma), ("baseline", self.baseline), ("clip", self.clip)]


class Gaussian(Perturbation):
    """Gaussian perturbation ``I = σ ε``, ``ε ~ N(0, Id)``, the same draws for every instance.

    Its optimal explanation tends to the gradient as ``σ → 0`` (Prop. 2.1/2.2;
    ``notebooks/toy.ipynb``, ``notebooks/theory.ipynb``).
    """

    binary = False

    def __init__(self, sigma: float):
        self.sigma = float(check_positive(sigma, "sigma"))

    def draw(self, feature_shape, n, generator=None, device=None, dtype=None) -> Tensor:
        F, n, dtype = _feature_shape(feature_shape), _check_n(n), _check_dtype(dtype)
        device = torch.device(device) if device is not None else torch.device("cpu")
        return rand_like_draw((n, *F), _gen(generator, device), device, dtype, kind="randn")

    def apply(self, x, draws):
        self._check_apply(x, draws, x.shape[1:])
        I = self.sigma * draws.to(device=x.device, dtype=x.dtype)
        return I.unsqueeze(0).expand(x.shape[0], *I.shape)

    def dot(self, x, draws, phi):
        """``IᵀΦ`` with ``I`` shared by all instances: ``Φ @ Iᵀ``."""
        self._check_apply(x, draws, x.shape[1:])
        I = self.sigma * draws.to(device=x.device, dtype=x.dtype).reshape(draws.shape[0], -1)
        return phi.reshape(phi.shape[0], -1) @ I.T

    def _repr_fields(self):
        return [("sigma", self.sigma)]


class Infinitesimal(Perturbation):
    """``I = ε e_i``, ``i`` uniform over the ``d`` features (Prop. 2.2: its optimal explanation → ∇f).

    A continuous law (``IᵀΦ = ε Φ_i``). ``draw`` returns the perturbations ``ε e_i`` ``(n, *F)``.
    ``stratified=True`` (default) draws the indices in blocks that are random permutations of
    ``0 … d−1`` (each draw is still marginally uniform; with ``n`` a multiple of ``d`` every
    feature appears equally often, which removes the sampling noise of the index).
    Use float64 inputs: ``f(x) − f(x − ε e_i)`` with ``ε = 1e−4`` loses ~4 digits.
    """

    binary = False

    def __init__(self, eps: float = 1e-4, stratified: bool = True):
        self.eps = float(check_positive(eps, "eps"))
        self.stratified = bool(stratified)

    def draw(self, feature_shape, n, generator=None, device=None, dtype=None) -> Tensor:
        F, n, dtype = _feature_shape(feature_shape), _check_n(n), _check_dtype(dtype)
        device = torch.device(device) if device is not None else torch.device("cpu")
        return self.eps * _one_hot_draws(math.prod(F), n, generator, device, dtype, self.stratified).view(n, *F)

    def apply(self, x, draws):
        self._check_apply(x, draws, x.shape[1:])
        I = draws.to(device=x.device, dtype=x.dtype)
        return I.unsqueeze(0).expand(x.shape[0], *I.shape)

    def dot(self, x, draws, phi):
        """``IᵀΦ`` with ``I`` shared by all instances: ``Φ @ Iᵀ``."""
        self._check_apply(x, draws, x.shape[1:])
        I = draws.to(device=x.device, dtype=x.dtype).reshape(draws.shape[0], -1)
        return phi.reshape(phi.shape[0], -1) @ I.T

    def _repr_fields(self):
        return [("eps", self.eps), ("stratified", self.stratified)]


def _indices(G: int, n: int, g: torch.Generator, device, stratified: bool) -> Tensor:
    if not stratified:
        return _randint(G, (n,), g, device)
    blocks = -(-n // G)
    perms = torch.argsort(torch.rand(blocks, G, generator=g, device=g.device, dtype=torch.float64), dim=1)
    return perms.reshape(-1)[:n].to(device)


def _one_hot_draws(G: int, n: int, generator, device, dtype, stratified: bool) -> Tensor:
    """``n`` one-hot rows of length ``G`` (a uniform index each; stratified: permutation blocks)."""
    idx = _indices(G, n, _gen(generator, device), device, stratified)
    out = torch.zeros(n, G, device=device, dtype=dtype)
    out[torch.arange(n, device=device), idx] = 1
    return out


# --------------------------------------------------------------------------------------------
# binary laws


class SquareRemoval(BinaryPerturbation):
    """Square removal (the book's *The paper in brief*, § Perturbation laws and optimal explanations): ``I = (x − baseline) ⊙ m``, ``m`` a random square.

    Each draw picks a side ``k`` uniform on the integers ``sizes[0] … sizes[1]`` and a position
    uniform among those that keep the whole ``k × k`` square inside the image; the square covers
    all channels (1-D features: a segment of length ``k``). **Sides larger than the image**: the
    range of sides is clamped to ``min(H, W)`` before drawing, i.e. ``k`` is uniform on
    ``min(sizes[0], m) … min(sizes[1], m)`` with ``m = min(H, W)`` (a side above ``m`` covers the
    whole shorter dimension).

    **Distribution over squares** (the paper does not say which): ``weighting="sides"``
    (default, the sampler used so far) draws the side uniformly, then the position uniformly, so
    a square of side ``k`` has probability ``1 / (n_sides · n_pos(k))``, ``n_pos(k) = Π_j (S_j − k + 1)``
    (small squares are individually rarer: there are more of them); ``weighting="squares"`` is
    uniform over all ``K = Σ_k n_pos(k)`` squares (probability ``1/K`` each, so large squares are
    rarer). The support is finite: :meth:`support` lists the ``K`` squares and their
    probabilities (28×28, sides 1–10: ``K = Σ (29 − k)² = 5,605``), which the metrics and
    :class:`~xailib.explainers.Optimal` sum exactly.

    Groups (``groups=``, default ``"pixel"``): ``z`` lives on the groups, so ``E[zzᵀ]`` is
    ``G × G``. With superpixels (int side or label map) a group is removed when the square
    covers at least half of its features, so ``I`` stays exactly ``(x − b) ⊙ expand(z)``.
    """

    def __init__(self, sizes: Tuple[int, int] = (1, 10), baseline: float = 0.0, groups: GroupsLike = "pixel",
                 weighting: str = "sides"):
        super().__init__(baseline, groups)
        if weighting not in ("sides", "squares"):
            raise ValueError(f"`weighting` must be 'sides' or 'squares', got {weighting!r}")
        self.weighting = weighting
        if (
            not isinstance(sizes, (tuple, list))
            or len(sizes) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in sizes)
        ):
            raise TypeError(f"`sizes` must be a pair of ints (min_side, max_side), got {sizes!r}")
        if not 1 <= sizes[0] <= sizes[1]:
            raise ValueError(f"`sizes` must satisfy 1 <= sizes[0] <= sizes[1], got {sizes!r}")
        self.sizes = (int(sizes[0]), int(sizes[1]))

    def side_range(self, feature_shape) -> Tuple[int, int]:
        """The range of sides actually drawn for ``feature_shape`` (clamped to the image)."""
        S = _spatial_shape(_feature_shape(feature_shape))
        m = min(S)
        return min(self.sizes[0], m), min(self.sizes[1], m)

    def _positions(self, F) -> Tuple[list, list]:
        """Sides ``lo … hi`` and, for each, the number of positions ``n_pos(k)``."""
        S = _spatial_shape(F)
        lo, hi = self.side_range(F)
        sides = list(range(lo, hi + 1))
        return sides, [math.prod(s_ - k + 1 for s_ in S) for k in sides]

    def _side_probabilities(self, F) -> Tensor:
        sides, npos = self._positions(F)
        w = torch.tensor(npos if self.weighting == "squares" else [1] * len(sides), dtype=torch.float64)
        return w / w.sum()

    @staticmethod
    def _masks(grp, k: Tensor, pos: Tensor, device, dtype) -> Tensor:
        """Group masks (n, G) of the squares of sides ``k`` (n,) at corners ``pos`` (n, dims)."""
        S = grp.S
        n = k.shape[0]
        out = torch.empty(n, grp.G, device=device, dtype=dtype)
        block = max(1, _BLOCK_ELEMENTS // max(1, grp.d))
        ar = [torch.arange(sz, device=device).view(1, -1) for sz in S]
        for s in range(0, n, block):
            e = min(n, s + block)
            kk, pp = k[s:e].view(-1, 1), pos[s:e]
            in_dims = [(ar[j] >= pp[:, j : j + 1]) & (ar[j] < pp[:, j : j + 1] + kk) for j in range(len(S))]
            if len(S) == 1:
                m = in_dims[0]
            else:
                m = in_dims[0].unsqueeze(2) & in_dims[1].unsqueeze(1)
            out[s:e] = grp.from_spatial(m.to(dtype))
        return out

    def draw(self, feature_shape, n, generator=None, device=None, dtype=None) -> Tensor:
        F, n, dtype = _feature_shape(feature_shape), _check_n(n), _check_dtype(dtype)
        device = torch.device(device) if device is not None else torch.device("cpu")
        g = _gen(generator, device)
        grp = self._groups(F, device)
        S = grp.S
        lo, hi = self.side_range(F)
        if self.weighting == "sides":
            k = (_randint(hi - lo + 1, (n,), g, device) + lo)  # sides
        else:  # P(side k) ∝ n_pos(k): uniform over all squares
            p = self._side_probabilities(F).to(g.device)
            k = (torch.multinomial(p, n, replacement=True, generator=g) + lo).to(device)
        # positions uniform on 0 … S_j − k
        u = _uniform64((n, len(S)), g, device)
        room = torch.stack([(s - k + 1) for s in S], dim=1).to(torch.float64)
        pos = torch.minimum((u * room).floor().long(), room.long() - 1)
        return self._masks(grp, k, pos, device, dtype)

    def support_size(self, feature_shape) -> int:
        """``K = Σ_k n_pos(k)`` squares (28×28, sides 1–10: 5,605)."""
        return sum(self._positions(_feature_shape(feature_shape))[1])

    def support(self, feature_shape, device=None, dtype=None) -> Tuple[Tensor, Tensor]:
        """All ``K`` squares as group masks ``(K, G)`` and their probabilities under ``weighting``
        (squares ordered by side, then position; with superpixels two squares may give the same
        mask: they stay separate atoms)."""
        F, dtype = _feature_shape(feature_shape), _check_dtype(dtype)
        device = torch.device(device) if device is not None else torch.device("cpu")
        grp = self._groups(F, device)
        S = grp.S
        sides, npos = self._positions(F)
        ps = self._side_probabilities(F)
        ks, poss, probs = [], [], []
        for k, npk, pk in zip(sides, npos, ps.tolist()):
            grids = torch.meshgrid(*[torch.arange(s_ - k + 1, device=device) for s_ in S], indexing="ij")
            poss.append(torch.stack([gr.reshape(-1) for gr in grids], dim=1))
            ks.append(torch.full((npk,), k, device=device, dtype=torch.long))
            probs.append(torch.full((npk,), pk / npk, dtype=torch.float64))
        k = torch.cat(ks)
        masks = self._masks(grp, k, torch.cat(poss), device, dtype)
        return masks, torch.cat(probs).to(device=device, dtype=dtype)

    def _repr_fields(self):
        f = [("sizes", self.sizes), ("baseline", self.baseline), ("groups", self.groups)]
        return f + ([("weighting", self.weighting)] if self.weighting != "sides" else [])


class SingleFeature(BinaryPerturbation):
    """Occlusion law (Prop. 2.3): ``z = e_g``, one group ``g`` at a time, uniform over groups.

    Its optimal explanation is occlusion-1: ``Φ_g = (f(x) − f(x with group g at baseline))``
    spread over the group (global form). ``stratified=True`` (default) draws the groups in
    blocks that are random permutations of ``0 … G−1`` (marginally uniform; with ``n`` a
    multiple of ``G`` each group appears equally often and ``E[zzᵀ] = Id/G`` exactly).
    """

    def __init__(self, baseline: float = 0.0, groups: GroupsLike = None, stratified: bool = True):
        super().__init__(baseline, groups)
        self.stratified = bool(stratified)

    def draw(self, feature_shape, n, generator=None, device=None, dtype=None) -> Tensor:
        F, n, dtype = _feature_shape(feature_shape), _check_n(n), _check_dtype(dtype)
        device = torch.device(device) if device is not None else torch.device("cpu")
        return _one_hot_draws(self.n_groups(F), n, generator, device, dtype, self.stratified)

    def support_size(self, feature_shape) -> int:
        """``G`` atoms, one per group."""
        return self.n_groups(feature_shape)

    def support(self, feature_shape, device=None, dtype=None) -> Tuple[Tensor, Tensor]:
        """The ``G`` one-hot masks (identity), each of probability ``1/G``."""
        F, dtype = _feature_shape(feature_shape), _check_dtype(dtype)
        device = torch.device(device) if device is not None else torch.device("cpu")
        G = self.n_groups(F)
        return torch.eye(G, device=device, dtype=dtype), torch.full((G,), 1.0 / G, device=device, dtype=dtype)

    def _repr_fields(self):
        return [("baseline", self.baseline), ("groups", self.groups), ("stratified", self.stratified)]


class ShapleyKernel(BinaryPerturbation):
    """Shapley-kernel law (Prop. 2.4): ``|z| = k`` with probability ∝ ``C(G,k) π_k``, then a uniform
    subset of size ``k``.

    ``π_k = (G − 1) / (C(G, k) k (G − k))`` is the Shapley kernel weight of one subset of size
    ``k``, so ``P(|z| = k) ∝ (G − 1) / (k (G − k))`` for ``k = 1 … G − 1``. The empty and the
    full coalitions have **infinite** weight: they are not drawn; as in Lundberg & Lee's Theorem 2 (which the paper's proof cites), they act as the
    constraints ``v(∅) = 0`` and efficiency ``Σ A = f(x) − f(b)``. Prop. 2.4 is therefore right as
    stated: the Shapley value is the minimiser of the infidelity under this law, infinite weights
    included. :class:`xailib.explainers.Optimal` and :class:`xailib.explainers.KernelSHAP` both
    impose efficiency and converge to the exact Shapley values (exactly for ``G ≤ 13``, where
    :meth:`support` enumerates the ``2^G − 2`` coalitions). Needs ``G >= 2``. See the chapter
    ``notebooks/theory`` (Prop. 2.4) and ``theory.check_shap_optimality``.
    """

    def __init__(self, baseline: float = 0.0, groups: GroupsLike = None):
        super().__init__(baseline, groups)

    @staticmethod
    def size_probabilities(G: int, dtype=torch.float64) -> Tensor:
        """``P(|z| = k)`` for ``k = 1 … G − 1`` (a tensor of length ``G − 1``)."""
        if G < 2:
            raise ValueError(f"ShapleyKernel needs at least 2 feature groups, got {G}")
        k = torch.arange(1, G, dtype=torch.float64)
        w = (G - 1) / (k * (G - k))
        return (w / w.sum()).to(dtype)

    def draw(self, feature_shape, n, generator=None, device=None, dtype=None) -> Tensor:
        F, n, dtype = _feature_shape(feature_shape), _check_n(n), _check_dtype(dtype)
        device = torch.device(device) if device is not None else torch.device("cpu")
        G = self.n_groups(F)
        p = self.size_probabilities(G)
        g = _gen(generator, device)
        k = torch.multinomial(p.to(g.device), n, replacement=True, generator=g) + 1  # (n,)
        out = torch.empty(n, G, device=device, dtype=dtype)
        block = max(1, _BLOCK_ELEMENTS // G)
        for s in range(0, n, block):
            e = min(n, s + block)
            u = torch.rand(e - s, G, generator=g, device=g.device, dtype=torch.float64)
            # the k smallest of G iid uniforms form a uniform subset of size k
            ranks = torch.argsort(torch.argsort(u, dim=1), dim=1)
            out[s:e] = (ranks < k[s:e].view(-1, 1)).to(device=device, dtype=dtype)
        return out

    #: ``support`` is refused above this many groups (2^G − 2 atoms)
    MAX_SUPPORT_GROUPS = 24

    def support_size(self, feature_shape) -> int:
        """``2^G − 2`` coalitions (all but the empty and the full one)."""
        return 2 ** self.n_groups(feature_shape) - 2

    def support(self, feature_shape, device=None, dtype=None) -> Tuple[Tensor, Tensor]:
        """All ``2^G − 2`` proper non-empty coalitions ``(K, G)``; a coalition of size ``k`` has
        probability ``P(|z| = k) / C(G, k)``. ``G > 24`` → ``ValueError``."""
        F, dtype = _feature_shape(feature_shape), _check_dtype(dtype)
        device = torch.device(device) if device is not None else torch.device("cpu")
        G = self.n_groups(F)
        if G > self.MAX_SUPPORT_GROUPS:
            raise ValueError(
                f"`perturbation` ShapleyKernel on {G} groups has 2^{G} − 2 atoms, too many to enumerate "
                f"(at most {self.MAX_SUPPORT_GROUPS} groups): sample it (exact=False)"
            )
        codes = torch.arange(1, 2 ** G - 1, device=device)
        bits = (codes.view(-1, 1) >> torch.arange(G, device=device).view(1, -1)) & 1
        sizes = bits.sum(1)
        pk = self.size_probabilities(G)  # k = 1 … G − 1
        binom = torch.tensor([math.comb(G, k) for k in range(1, G)], dtype=torch.float64)
        probs = (pk / binom).to(device)[sizes - 1]
        return bits.to(dtype), probs.to(dtype)


class Fixed(BinaryPerturbation):
    """Replays given draws: ``Fixed(I)`` (continuous, ``I`` of shape ``(n, *F)``, the same for every
    instance) or ``Fixed(masks=z, baseline=..., groups=...)`` (binary; ``z`` ``(n, G)`` 0/1 group
    masks, or ``(n, *F)`` feature masks when ``groups`` is None).

    Use it to compare explainers, or xailib with Captum, on identical draws (the book's *The paper in brief*, § Monte-Carlo
    hygiene, paired comparisons; ``benchmarks/bench_metrics.py``). ``draw(F, n)`` returns
    the first ``n`` stored draws (``n`` larger than the number stored is an error); the metrics
    use ``min(n_samples, n_fixed)`` draws. The generator is ignored.
    """

    def __init__(self, I: Optional[Tensor] = None, *, masks: Optional[Tensor] = None, baseline: float = 0.0,
                 groups: GroupsLike = None):
        if (I is None) == (masks is None):
            raise ValueError("Fixed needs exactly one of `I` (continuous draws) or `masks=` (binary draws)")
        if I is not None:
            if not isinstance(I, Tensor) or not torch.is_floating_point(I):
                raise TypeError("`I` must be a floating-point tensor of shape (n, *F)")
            if I.dim() < 2:
                raise ValueError(f"`I` must have shape (n, *F), got {tuple(I.shape)}")
            if not torch.isfinite(I).all():
                raise ValueError("`I` contains NaN or inf values")
            self.binary = False
            self.baseline = 0.0
            self.groups = None
            self._cache = {}
            self.I = I.detach()
            self.masks = None
            self.n_fixed = I.shape[0]
        else:
            super().__init__(baseline, groups)
            if not isinstance(masks, Tensor):
                raise TypeError("`masks` must be a tensor of 0/1 values of shape (n, G) or (n, *F)")
            if masks.dim() < 2:
                raise ValueError(f"`masks` must have shape (n, G) or (n, *F), got {tuple(masks.shape)}")
            mf = masks.detach().to(torch.float64)
            if not ((mf == 0) | (mf == 1)).all():
                raise ValueError("`masks` must contain only 0 and 1")
            self.binary = True
            self.I = None
            self.masks = masks.detach()
            self.n_fixed = masks.shape[0]

    def _masks_for(self, F) -> Tensor:
        G = self.n_groups(F)
        m = self.masks
        if m.dim() == 2 and m.shape[1] == G:
            return m
        if tuple(m.shape[1:]) == tuple(F) and self.groups is None:
            return m.reshape(m.shape[0], -1)
        raise ValueError(f"`masks` of shape {tuple(m.shape)} do not fit features {tuple(F)} with {G} groups")

    def _take(self, n):
        if n is None:
            return self.n_fixed
        n = _check_n(n)
        if n > self.n_fixed:
            raise ValueError(f"Fixed holds {self.n_fixed} draws, asked for n={n}")
        return n

    def draw(self, feature_shape, n=None, generator=None, device=None, dtype=None) -> Tensor:
        F = _feature_shape(feature_shape)
        stored = self.masks if self.binary else self.I
        dtype = _check_dtype(dtype) if dtype is not None else (
            stored.dtype if stored.dtype.is_floating_point else torch.get_default_dtype())
        n = self._take(n)
        device = torch.device(device) if device is not None else torch.device("cpu")
        if self.binary:
            return self._masks_for(F)[:n].to(device=device, dtype=dtype)
        if tuple(self.I.shape[1:]) != F:
            raise ValueError(f"stored `I` has features {tuple(self.I.shape[1:])}, expected {F}")
        return self.I[:n].to(device=device, dtype=dtype)

    def apply(self, x, draws):
        if self.binary:
            return super().apply(x, draws)
        self._check_apply(x, draws, x.shape[1:])
        I = draws.to(device=x.device, dtype=x.dtype)
        return I.unsqueeze(0).expand(x.shape[0], *I.shape)

    def dot(self, x, draws, phi):
        if self.binary:
            return super().dot(x, draws, phi)
        self._check_apply(x, draws, x.shape[1:])
        I = draws.to(device=x.device, dtype=x.dtype).reshape(draws.shape[0], -1)
        return phi.reshape(phi.shape[0], -1) @ I.T

    def perturbed(self, x, draws):
        if self.binary:
            return super().perturbed(x, draws)
        return x.unsqueeze(1) - self.apply(x, draws)

    def _repr_fields(self):
        if self.binary:
            return [("masks", f"<{tuple(self.masks.shape)}>"), ("baseline", self.baseline), ("groups", self.groups)]
        return [("I", f"<{tuple(self.I.shape)}>")]
