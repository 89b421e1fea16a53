"""Perturbation laws ``μ_I`` shared by the metrics and the optimal explanations.

Every law draws its randomness **once per call and shares it across instances**:
:meth:`Perturbation.draw` returns ``n`` raw draws that do not depend on ``x`` (Gaussian noise
``(n, *F)`` for continuous laws, float 0/1 group masks ``(n, G)`` for binary laws) and
:meth:`Perturbation.apply` turns them into the perturbations ``I`` of every instance,
shape ``(N, n, *F)``. Results therefore never depend on the batch size or on chunking.
Draws are made in the dtype and on the device asked for (a float64 input gets float64 noise).

Continuous laws (``binary = False``): :class:`NoisyBaseline`, :class:`Gaussian`,
:class:`Infinitesimal`, :class:`Fixed` ``(I)``.
Removal that stays on the image manifold (continuous in form: ``I`` depends on each pixel's
neighbourhood): :class:`ImputedSquareRemoval` (squares imputed from their surroundings, ROAD).
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

See ``notebooks/toy`` (the laws on two features) and ``notebooks/mnist`` (NB and
Square on MNIST), and the book's *The paper in brief*, § Perturbation laws and optimal explanations.
"""
from ._base import (  # noqa: F401  (re-exported)
    EXACT_MAX_ATOMS,
    EXACT_MAX_BYTES,
    BinaryPerturbation,
    GroupsLike,
    Perturbation,
    exact_support,
)
from .binary import Fixed, ShapleyKernel, SingleFeature, SquareRemoval
from .continuous import Gaussian, Infinitesimal, NoisyBaseline
from .imputation import ImputedSquareRemoval, imputation_operator

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
    "ImputedSquareRemoval",
    "imputation_operator",
    "GroupsLike",
    "EXACT_MAX_ATOMS",
    "exact_support",
]
