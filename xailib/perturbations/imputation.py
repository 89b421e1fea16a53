"""Removal that stays on the image manifold: squares removed and imputed from their neighbours (ROAD).

Zeroing a square (:class:`~xailib.perturbations.SquareRemoval`) moves the input off the data
distribution: a black square is something the network never saw, so part of ``f(x) − f(x − I)``
measures the network's reaction to the artefact, not to the loss of the evidence. Rong et al.
(2022, *A Consistent and Efficient Evaluation Strategy for Attribution Methods*, "ROAD") remove
pixels by **noisy linear imputation** instead; this module gives that removal as a perturbation
law, usable wherever a law is (``infidelity``, ``evaluate``, ``Optimal``).
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from ._base import Perturbation, _check_dtype, _check_n, _feature_shape, _gen
from .binary import SquareRemoval

#: the 8-neighbourhood and its weights (direct neighbours 1/6, diagonal ones 1/12, as in ROAD)
NEIGHBOURS = (((0, 1), 1 / 6), ((0, -1), 1 / 6), ((1, 0), 1 / 6), ((-1, 0), 1 / 6),
              ((1, 1), 1 / 12), ((1, -1), 1 / 12), ((-1, 1), 1 / 12), ((-1, -1), 1 / 12))


def imputation_operator(mask: Tensor, dtype=torch.float64) -> Tuple[Tensor, Tensor, Tensor]:
    """The linear imputation of the pixels ``mask`` (H, W) (True: removed) from the others.

    Every removed pixel ``i`` gets the weighted mean of its neighbours inside the image,
    ``v_i = Σ_j w_ij v_j / Σ_j w_ij`` (weights 1/6 for the four direct neighbours, 1/12 for the four
    diagonal ones, as in ROAD), where a neighbour that is kept contributes its value and a
    removed one its own imputed value: a linear system over the ``r`` removed pixels,
    ``(Id − W_RR) v = W_RK x_K`` (rows normalised), whose solution is the discrete harmonic
    interpolation of the kept pixels around them. Returns ``(idx, src, P)``: ``idx`` the ``r``
    flat indices of the removed pixels, ``src`` the flat indices of the kept pixels next to them
    (the only ones the imputation reads) and ``P`` ``(r, len(src))``, so that
    ``v = P x_flat[src]``. The system is singular only when nothing is kept: ``ValueError``.
    """
    if mask.dim() != 2:
        raise ValueError(f"`mask` must be an (H, W) boolean map, got shape {tuple(mask.shape)}")
    H, W = mask.shape
    m = mask.to(torch.bool).cpu()
    idx = m.reshape(-1).nonzero().flatten()
    r = idx.numel()
    if r == 0:
        return idx, idx.clone(), torch.zeros(0, 0, dtype=dtype)
    if r == H * W:
        raise ValueError("every pixel is removed: there is nothing to impute from")
    pos = torch.full((H * W,), -1, dtype=torch.long)
    pos[idx] = torch.arange(r)
    rows, cols = idx // W, idx % W
    A = torch.zeros(r, r, dtype=dtype)  # W_RR, then Id − W_RR
    entries = []  # (removed row, kept pixel, weight)
    total = torch.zeros(r, dtype=dtype)
    ar = torch.arange(r)
    for (dy, dx), w in NEIGHBOURS:
        yy, xx = rows + dy, cols + dx
        ok = (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
        j = (yy * W + xx)[ok]
        i = ar[ok]
        total[i] += w
        removed = pos[j] >= 0
        A[i[removed], pos[j[removed]]] += w
        entries.append((i[~removed], j[~removed], w))
    src = torch.unique(torch.cat([e[1] for e in entries]))
    col = torch.full((H * W,), -1, dtype=torch.long)
    col[src] = torch.arange(src.numel())
    B = torch.zeros(r, src.numel(), dtype=dtype)  # W_RK over the kept neighbours
    for i, j, w in entries:
        B.index_put_((i, col[j]), torch.full((i.numel(),), w, dtype=dtype), accumulate=True)
    A = torch.eye(r, dtype=dtype) - A / total.view(-1, 1)
    return idx, src, torch.linalg.solve(A, B / total.view(-1, 1))


class ImputedSquareRemoval(Perturbation):
    """Square removal with noisy linear imputation (ROAD): ``x − I`` is ``x`` with a random
    square replaced by the harmonic interpolation of the pixels around it, plus noise.

    The squares are those of :class:`~xailib.perturbations.SquareRemoval` (``sizes``,
    ``weighting``; a square covers every channel). For a draw with square ``R``, each channel's
    removed pixels get the harmonic interpolation of the pixels around them (:func:`imputation_operator`) plus ``noise · ε``, ``ε``
    standard normal, drawn once per draw and shared by all instances (ROAD's default noise is
    0.01, in the units of the pixels). So

    ``I = x − x̃``, ``I_i = x_i − v_i − noise · ε_i`` on the square, 0 elsewhere,

    which depends on ``x`` through its neighbourhood, not through ``x_i`` alone: this is not a
    binary law ``(x − b) ⊙ m`` (no B.2 form), so local explanations are scored as ``IᵀΦ`` like
    under the noisy baseline, and the optimal explanation is the continuous one. A square that
    covers the whole image has nothing to impute from: its pixels are set to ``baseline``
    (plain removal) and noise. With ``noise=0`` the law has the finite support of its squares,
    summed exactly by the metrics (``exact="auto"``).

    ``draw`` returns ``(n, 1 + C, H, W)``: channel 0 the 0/1 square, channels 1… the noise.
    Needs images (at least 2 × 2 pixels; ``(C, H, W)`` or ``(H, W)`` features).
    """

    binary = False

    def __init__(self, sizes: Tuple[int, int] = (1, 10), noise: float = 0.01, weighting: str = "sides",
                 baseline: float = 0.0):
        self._squares = SquareRemoval(sizes, baseline=0.0, groups="pixel", weighting=weighting)
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not math.isfinite(noise) or noise < 0:
            raise ValueError(f"`noise` must be a finite number >= 0, got {noise!r}")
        if isinstance(baseline, bool) or not isinstance(baseline, (int, float)) or not math.isfinite(baseline):
            raise TypeError(f"`baseline` must be a finite float, got {baseline!r}")
        self.sizes, self.weighting = self._squares.sizes, weighting
        self.noise, self.baseline = float(noise), float(baseline)
        self._ops = {}

    # ------------------------------------------------------------------ shapes
    @staticmethod
    def _image_shape(feature_shape) -> Tuple[int, int, int]:
        F = _feature_shape(feature_shape)
        if len(F) == 2:
            C, H, W = 1, *F
        elif len(F) == 3:
            C, H, W = F
        else:
            raise ValueError(f"ImputedSquareRemoval needs image features (C, H, W) or (H, W), got {F}")
        if H < 2 or W < 2:
            raise ValueError(f"ImputedSquareRemoval needs images of at least 2 x 2 pixels to impute from, got {F}")
        return C, H, W

    def _per_draw(self, F) -> Tuple[int, ...]:
        C, H, W = self._image_shape(F)
        return (1 + C, H, W)

    # ------------------------------------------------------------------ draws
    def draw(self, feature_shape, n, generator=None, device=None, dtype=None) -> Tensor:
        F, n, dtype = _feature_shape(feature_shape), _check_n(n), _check_dtype(dtype)
        C, H, W = self._image_shape(F)
        device = torch.device(device) if device is not None else torch.device("cpu")
        g = _gen(generator, device)
        z = self._squares.draw((H, W), n, g, device, dtype).view(n, 1, H, W)
        eps = torch.randn((n, C, H, W), generator=g, device=g.device, dtype=dtype).to(device)
        return torch.cat([z, eps], 1)

    def support_size(self, feature_shape) -> Optional[int]:
        """The squares' count when ``noise == 0`` (then the law is finite), else ``None``."""
        if self.noise > 0:
            return None
        C, H, W = self._image_shape(feature_shape)
        return self._squares.support_size((H, W))

    def support(self, feature_shape, device=None, dtype=None) -> Tuple[Tensor, Tensor]:
        """With ``noise == 0``: every square (noise channels 0) and its probability."""
        if self.noise > 0:
            return super().support(feature_shape, device, dtype)
        C, H, W = self._image_shape(feature_shape)
        z, p = self._squares.support((H, W), device, dtype)
        K = z.shape[0]
        return torch.cat([z.view(K, 1, H, W), z.new_zeros(K, C, H, W)], 1), p

    # ------------------------------------------------------------------ I
    def _operator(self, mask: Tensor):
        key = (tuple(mask.shape), mask.to(torch.bool).cpu().numpy().tobytes())
        if key not in self._ops:
            if len(self._ops) > 4096:
                self._ops.clear()
            try:
                self._ops[key] = imputation_operator(mask)
            except ValueError:  # the whole image removed: plain removal to the baseline
                self._ops[key] = (mask.reshape(-1).nonzero().flatten().cpu(), None, None)
        return self._ops[key]

    def imputed(self, x: Tensor, draws: Tensor) -> Tensor:
        """``x − I``: each instance with each draw's square imputed, shape ``(N, n, *F)``."""
        F = tuple(x.shape[1:])
        self._check_apply(x, draws, self._per_draw(F))
        C, H, W = self._image_shape(F)
        N, n = x.shape[0], draws.shape[0]
        xf = x.reshape(N, C, H * W)
        out = xf.unsqueeze(1).repeat(1, n, 1, 1)  # (N, n, C, HW)
        for k in range(n):
            mask = draws[k, 0] > 0.5
            idx, src, P = self._operator(mask)
            if idx.numel() == 0:
                continue
            idx = idx.to(x.device)
            if P is None:
                v = torch.full((N, C, idx.numel()), self.baseline, device=x.device, dtype=x.dtype)
            else:  # (N, C, r): the removed pixels from the kept ones around them
                v = (xf[:, :, src.to(x.device)].to(torch.float64) @ P.to(x.device).T).to(x.dtype)
            if self.noise > 0:
                v = v + self.noise * draws[k, 1:].reshape(C, H * W)[:, idx].to(x.dtype)
            out[:, k, :, idx] = v
        return out.view(N, n, *F)

    def perturbed(self, x: Tensor, draws: Tensor) -> Tensor:
        return self.imputed(x, draws)

    def apply(self, x: Tensor, draws: Tensor) -> Tensor:
        """``I = x − x̃`` (zero outside each draw's square), shape ``(N, n, *F)``."""
        return x.unsqueeze(1) - self.imputed(x, draws)

    def dot(self, x: Tensor, draws: Tensor, phi: Tensor) -> Tensor:
        """``IᵀΦ`` (N, n), built a few draws at a time (never all ``N·n`` perturbed images at once)."""
        N, d = x.shape[0], x[0].numel()
        per = max(1, (1 << 22) // max(1, N * d))
        out = x.new_empty(N, draws.shape[0])
        flat_phi = phi.reshape(N, 1, d)
        for s in range(0, draws.shape[0], per):
            I = self.apply(x, draws[s:s + per])
            out[:, s:s + per] = (I.reshape(N, I.shape[1], d) * flat_phi).sum(-1)
        return out

    def _repr_fields(self):
        f = [("sizes", self.sizes), ("noise", self.noise)]
        f += [("weighting", self.weighting)] if self.weighting != "sides" else []
        return f + ([("baseline", self.baseline)] if self.baseline != 0.0 else [])
