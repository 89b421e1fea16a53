"""The paper's printed numbers: appendix Table 4 of Yeh et al. (2019) and the MNIST row names.

* :data:`TABLE4` / :func:`table4`: appendix Table 4 as printed (MNIST, regular vs adversarially
  trained network; the OCR's dropped decimal points restored, see the book's *The paper in
  brief*, § Experiments). The paper prints no NB or Occlusion row there.
* :data:`METHODS`, :data:`SMOOTHGRAD_PAIRS`: the explainer rows of the MNIST tables and the
  SmoothGrad pairs the claims compare.

The claim statistics live in :mod:`xailib.claims`, the chapters' settings and explainer
factories in :mod:`xailib.experiments`.
"""
from __future__ import annotations

from typing import Optional

import pandas as pd

#: the explainer rows of the MNIST tables, in the paper's order (plus NB and Occlusion)
METHODS = ("Grad", "Grad-SG", "IG", "IG-SG", "GBP", "GBP-SG", "SHAP", "NB", "Square", "Occlusion")

#: SmoothGrad pairs (base, smoothed)
SMOOTHGRAD_PAIRS = (("Grad", "Grad-SG"), ("IG", "IG-SG"), ("GBP", "GBP-SG"))

#: Appendix Table 4 as printed (SENS_max and INFD, regular and adversarially trained network).
TABLE4 = pd.DataFrame(
    {
        "SENS (regular)": [2.32, 1.82, 2.05, 1.69, 2.36, 1.83, 0.35, 0.24],
        "INFD (regular)": [2.42, 1.88, 1.78, 1.77, 2.42, 1.82, 1.20, 0.46],
        "SENS (robust)": [0.21, 0.13, 0.16, 0.11, 0.21, 0.13, 0.23, 0.11],
        "INFD (robust)": [0.36, 0.35, 0.21, 0.20, 0.36, 0.35, 0.14, 0.06],
    },
    index=pd.Index(["Grad", "Grad-SG", "IG", "IG-SG", "GBP", "GBP-SG", "SHAP", "Square"], name="method"),
)


def table4(network: Optional[str] = None) -> pd.DataFrame:
    """A copy of the printed Table 4.

    ``network=None`` gives all four columns; ``"regular"`` or ``"robust"`` gives that network's
    two columns renamed ``SENS`` and ``INFD`` (the summary form :func:`xailib.claims.check_claims` accepts).
    """
    if network is None:
        return TABLE4.copy()
    if network not in ("regular", "robust"):
        raise ValueError(f"`network` must be None, 'regular' or 'robust', got {network!r}")
    out = TABLE4[[f"SENS ({network})", f"INFD ({network})"]].copy()
    out.columns = ["SENS", "INFD"]
    return out
