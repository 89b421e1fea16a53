"""The paper's propositions and theorems as numerical checks (chapter ``notebooks/theory``).

One function per statement, grouped by section of the paper (the book's *The paper in brief*,
§ Theory and § Perturbation laws and optimal explanations, states each one):

* ``xailib.theory.networks``: the softplus networks of Prop. A.1 (:class:`~xailib.models.SoftplusNet`) and the :class:`Population`
  of (network, inputs) the checks run on;
* ``xailib.theory.bounds``: bounds on gradients and Hessians (Prop. A.1, appendix A.2,
  Theorem A.1);
* ``xailib.theory.smoothgrad``: the SmoothGrad theorems (Theorems 4.1 and 4.2);
* ``xailib.theory.robust``: robust infidelity (Theorem C.1);
* ``xailib.theory.optimality``: optimality of explanations (Props. 2.1 to 2.4);
* ``xailib.theory.result``: the result record :class:`CheckResult`, :func:`summarize`,
  :func:`plot_check`.

Each check returns a :class:`CheckResult` with per-instance ``lhs`` and ``rhs`` written so that the
statement reads **lhs ≤ rhs** for every instance, ``holds`` (all instances), ``tightness``
(lhs / rhs) and the ``settings`` used. No check asserts: a violation is reported, not raised.

Estimation sides. The two sides of a check are estimated **independently** (their own maximisers,
their own Monte-Carlo draws), so that a false statement or a wrong implementation can show as a
violation; each check has a planted error (a ``plant=`` argument, a broken hypothesis or a shrunk
bound) that it reports. A sup that cannot be computed exactly is an attained value (random
restarts + projected gradient ascent, every candidate feasible: it **errs low**) or a certified
bound (interval bounds on the Hessian of a softplus network: it **errs high**); each docstring
says which way each estimate errs, and where Monte-Carlo error enters both sides ``holds``
allows a few standard errors. Where a check can only confirm an identity (occlusion's zero
infidelity, Prop. 2.3), its docstring says it is a consistency check, not a test.
Computations run in float64. Balls are Euclidean (ℓ₂) unless a ``norm`` argument says otherwise.

Everything listed here is importable from ``xailib.theory`` directly.
"""
from ._core import (
    DTYPE,
    hessian_spectral_norm,
    hessian_vector_product,
    max_gradient_change,
    model_gradient,
)
from .bounds import (
    PAPER_READINGS,
    _hessian_sup_estimate,
    a1_counterexample,
    check_adversarial_risk_bound,
    check_hessian_bounds,
    check_lipschitz_bound,
    hessian_norm_bound,
    lipschitz_bound,
    paper_readings_table,
    pgd_logistic,
    rescore_lipschitz,
)
from .networks import Population, RippleModel, SoftplusNet, random_instances, random_softplus_net
from .optimality import (
    check_gradient_optimality,
    check_occlusion_optimality,
    check_optimal_explanation,
    check_shap_optimality,
    exact_shapley,
)
from .result import CheckResult, plot_check, summarize
from .robust import check_robust_infidelity_lower_bound
from .smoothgrad import check_smoothgrad_infidelity, check_smoothgrad_sensitivity

__all__ = [
    # the networks and populations
    "Population",
    "random_softplus_net",
    "random_instances",
    "RippleModel",
    "SoftplusNet",
    # autograd helpers
    "model_gradient",
    "hessian_vector_product",
    "hessian_spectral_norm",
    "max_gradient_change",
    # bounds on gradients and Hessians
    "lipschitz_bound",
    "PAPER_READINGS",
    "paper_readings_table",
    "rescore_lipschitz",
    "a1_counterexample",
    "hessian_norm_bound",
    "pgd_logistic",
    "check_lipschitz_bound",
    "check_hessian_bounds",
    "check_adversarial_risk_bound",
    # SmoothGrad
    "check_smoothgrad_sensitivity",
    "check_smoothgrad_infidelity",
    # robust infidelity
    "check_robust_infidelity_lower_bound",
    # optimality of explanations
    "exact_shapley",
    "check_optimal_explanation",
    "check_gradient_optimality",
    "check_occlusion_optimality",
    "check_shap_optimality",
    # the result record
    "CheckResult",
    "summarize",
    "plot_check",
    "ALL_CHECKS",
]

#: every check, keyed by the statement it checks
ALL_CHECKS = {
    "Prop. 2.1": check_optimal_explanation,
    "Prop. 2.2": check_gradient_optimality,
    "Prop. 2.3": check_occlusion_optimality,
    "Prop. 2.4": check_shap_optimality,
    "Prop. A.1": check_lipschitz_bound,
    "A.2": check_hessian_bounds,
    "Thm. A.1": check_adversarial_risk_bound,
    "Thm. C.1": check_robust_infidelity_lower_bound,
    "Thm. 4.1": check_smoothgrad_sensitivity,
    "Thm. 4.2": check_smoothgrad_infidelity,
}
