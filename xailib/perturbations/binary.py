"""Binary perturbation laws ``I = (x − baseline) ⊙ expand(z)`` (see :mod:`xailib.perturbations`)."""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from ._base import (
    _one_hot_draws,
    GroupsLike,
    _BLOCK_ELEMENTS,
    _feature_shape,
    _spatial_shape,
    _check_n,
    _check_dtype,
    _gen,
    _randint,
    _uniform64,
    BinaryPerturbation,
)


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
            # the k smallest of G iid uniforms form a uniform subset of size k: those at or below the
            # k-th smallest (one sort; ranks by a double argsort give the same set at twice the cost)
            kth = torch.sort(u, dim=1).values.gather(1, (k[s:e] - 1).view(-1, 1))
            out[s:e] = (u <= kth).to(device=device, dtype=dtype)
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
