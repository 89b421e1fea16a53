"""The perturbation-law base classes, feature groups and exact supports (see :mod:`xailib.perturbations`)."""
from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from .._utils import SeedLike, check_positive, make_generator, rand_like_draw


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

    ``exact="auto"``: exact when the law has a finite support of at most ``EXACT_MAX_ATOMS``
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
    #: True when ``x − I`` does not depend on ``x`` (every instance is compared with the same
    #: points, as under :class:`~xailib.perturbations.NoisyBaseline`): ``f(x − I)`` is then
    #: evaluated once per draw for all instances
    shared_points: bool = False
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
        from .._utils import check_input

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
