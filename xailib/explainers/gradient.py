"""Grad: the signed gradient ``Φ = ∂f/∂x`` (``notebooks/toy``; the book's *The paper in brief*, Prop. 2.2)."""
from __future__ import annotations

from typing import Optional

from torch import Tensor

from .._utils import DEFAULT_BATCH_SIZE
from ._base import Explainer, batched_gradients

__all__ = ["Gradient"]


class Gradient(Explainer):
    """Grad: the **signed** gradient ``Φ(f, x) = ∇ₓ f(x)`` (local explanation).

    Not ``|∇f|`` (the "saliency map" of some libraries is the absolute value; the paper's Grad
    is signed; returning ``|∇f|`` is a trap of published code). By Prop. 2.2 it is the optimal
    explanation for the infinitesimal perturbation ``I = ε eᵢ``, ``ε → 0`` (``notebooks/theory.ipynb``).

    Computed in chunks of ``batch_size`` rows: one backward on the sum of the selected outputs.

    >>> Gradient(model)(x, target=3)        # (N, *F)
    """

    kind = "local"
    stochastic = False
    name = "Grad"
    needs_gradients = True

    def __init__(self, model, batch_size: int = DEFAULT_BATCH_SIZE, name: Optional[str] = None):
        super().__init__(model, batch_size, name)

    def _attribute(self, x: Tensor, target, generator, inst) -> Tensor:
        return batched_gradients(self.model, x, target, self.batch_size)
