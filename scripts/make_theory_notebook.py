"""Generate notebooks/theory.ipynb (the paper's theory, checked numerically) from the cells below.

Run ``python scripts/make_theory_notebook.py`` and then ``make nb NB=notebooks/theory.ipynb`` to
execute it and save the outputs.
``--prose-only`` copies changed markdown cells into the already executed notebook without touching
code cells or outputs (it refuses when any code cell differs).
"""
from nbbuild import Notebook

chapter = Notebook()
md, code = chapter.md, chapter.code

md(r"""
# The theory, checked numerically

Yeh et al. (2019) back their metrics with a handful of propositions and theorems: which
explanation is optimal for which perturbation (Props. 2.1–2.4), how sensitive and how
unfaithful the gradient of a smooth network can be (Prop. A.1, Appendix A.2), why adversarial
training helps (Thm. A.1), how robust infidelity relates to sensitivity (Thm. C.1) and why
SmoothGrad lowers both metrics (Thms. 4.1, 4.2). This chapter turns every statement into a
function of `xailib.theory`, runs it on many random networks, and reports what it finds —
including two places where the statement as printed is not right.

**Conventions.** Every check returns a `CheckResult` whose per-instance `lhs` and `rhs` are
written so that the statement reads $\text{lhs} \le \text{rhs}$; `holds` says whether every
instance satisfies it, `tightness` is $\text{lhs}/\text{rhs}$. A supremum that cannot be
computed is estimated **on the safe side**: on the left from below (random restarts plus
projected gradient ascent; every candidate is a feasible point), on the right from above
(certified bounds), or — where the statement allows it — both sides are evaluated on a
shared set of candidates and shared Monte-Carlo draws, so that the inequality holds exactly
for the estimates. Either way an estimation error can hide a violation but never invent one.
Each check also has a *constructed* counterpart that breaks a hypothesis (a ReLU network, a
kernel that is too wide, a deliberately wrong bound): a check that cannot fail is no check.
""")

code(r"""
import xailib; xailib.setup()
""")

code(r"""
import math
import numpy as np
import pandas as pd
import torch
import matplotlib.pyplot as plt

from xailib import theory as T

pd.set_option("display.float_format", "{:.3g}".format)   # 3 significant digits in every table

# sizes: CPU-sized by default, larger with XAILIB_PROFILE=paper
N_NETS = xailib.pick(default=100, paper=300)      # random networks per check
N_INPUTS = xailib.pick(default=3, paper=5)       # random inputs per network
FAMILY = dict(n_nets=N_NETS, n_inputs=N_INPUTS, d=8, depths=(1, 2, 3, 4, 5, 6),
              widths=(4, 8, 16, 32, 64), scales=(0.25, 0.5, 1.0, 2.0, 3.0))
SMALL = dict(FAMILY, n_nets=max(4, N_NETS // 4))  # for the costlier checks (sup over a ball per draw)
results, expected = {}, {}                         # every check run in this chapter, for the summary


def record(label, result, should_hold=True):
    results[label], expected[label] = result, should_hold
    return result


def brief(result, cols=("lhs", "rhs", "tightness")):
    # quantiles of a check's per-instance columns, rounded for stable printing
    return result.to_frame()[list(cols)].quantile([0.0, 0.5, 1.0]).rename(index={0.0: "min", 0.5: "median", 1.0: "max"})
""")

md(r"""
## The random networks

Most checks run on networks of the class of Prop. A.1: softplus networks with zero biases,

$$
f(x) = c^\top \sigma\big(W_l\, \sigma(W_{l-1} \cdots \sigma(W_1 x))\big), \qquad \sigma(v) = \log(1 + e^v),
$$

built by `T.random_softplus_net(d, widths, scale, seed)`: $W_i$ has i.i.d. $\mathcal N(0,
\text{scale}^2/\text{fan-in})$ entries, $c$ has $\mathcal N(0, 1/\text{width})$ entries.
`T.random_instances` draws the depth (1–6), width (4–64) and weight scale (0.25–3) of each
network and standard normal inputs in $d = 8$ dimensions. Two facts about softplus are used
throughout: $0 < \sigma' < 1$ and $0 < \sigma'' = \sigma'(1 - \sigma') \le 1/4$. Everything
runs in float64. Balls are Euclidean ($\ell_2$) unless said otherwise; sensitivities are the
raw, unnormalised $\mathrm{SENS}_{\max}$ of the theory.
""")

code(r"""
inst = T.random_instances(**FAMILY)
nets = pd.DataFrame([m for _, _, m in inst])
print(f"{len(inst)} networks x {N_INPUTS} inputs")
nets[["depth", "width", "scale"]].describe().loc[["min", "50%", "max"]]
""")

# --------------------------------------------------------------------------- Props 2.1-2.4
md(r"""
## Optimal explanations

### Prop. 2.1: the optimal explanation in closed form

For a perturbation law $\mu_I$ with $\mathbb E[II^\top]$ invertible,

$$
\Phi^*(f, x) = \arg\min_\Phi \mathrm{INFD}(\Phi, f, x)
= \big(\mathbb E[II^\top]\big)^{-1} \mathbb E\big[I\,(f(x) - f(x - I))\big]
= \big(\mathbb E[II^\top]\big)^{-1} \mathbb E\big[II^\top \mathrm{IG}(f, x, I)\big].
$$

*Proof sketch.* $\mathrm{INFD}(\Phi) = \Phi^\top \mathbb E[II^\top]\Phi - 2\Phi^\top \mathbb E[I\Delta f]
+ \mathbb E[\Delta f^2]$ is a convex quadratic in $\Phi$; setting its gradient to zero gives the
normal equations. The fundamental theorem of calculus along the segment from $x - I$ to $x$
writes $\Delta f = I^\top \mathrm{IG}(f, x, I)$, the paper's form.

**Check.** `T.check_optimal_explanation`: $I \sim \mathcal N(0, 0.5^2 \mathrm{Id})$; the closed
form is `xailib.explainers.Optimal` on replayed draws; it must beat (lhs ≤ rhs) the
least-squares minimiser of the empirical infidelity (`torch.linalg.lstsq`) and random
perturbations of itself, all on the same draws, so the comparison carries no Monte-Carlo
error. The constructed failure: a large ridge $\lambda$ shrinks $\Phi^*$.
""")

code(r"""
r21 = record("Prop. 2.1", T.check_optimal_explanation(**FAMILY, n_samples=1000, n_alternatives=8))
record("Prop. 2.1, ridge = 1 (constructed)", T.check_optimal_explanation(**SMALL, n_samples=1000, n_alternatives=8, ridge=1.0), False)
print(r21)
brief(r21, ("lhs", "rhs", "rel_dist_lstsq", "heldout_infd_optimal", "heldout_infd_lstsq"))
""")

md(r"""
The closed form and the least-squares minimiser agree to ~$10^{-8}$ (the relative ridge), and
on independent draws (held out) their infidelities are the same. Every alternative is worse:
tightness is 1 (the least-squares minimiser ties) and never above.
""")

md(r"""
### Prop. 2.2: the gradient, for infinitesimal perturbations

For $I = \varepsilon e_i$ ($i$ uniform), the optimal explanation is the finite difference
$\Phi^*_{\varepsilon, i} = (f(x) - f(x - \varepsilon e_i))/\varepsilon$, which tends to
$\nabla f(x)$. Taylor's theorem makes this quantitative:

$$
\|\Phi^*_\varepsilon - \nabla f(x)\|_\infty \le \frac{\varepsilon}{2}
\sup_{\|\delta\| \le \varepsilon} \|\nabla^2 f(x + \delta)\|_2 .
$$

*Proof sketch.* $f(x - \varepsilon e_i) = f(x) - \varepsilon \partial_i f(x) + \tfrac{\varepsilon^2}{2}
\partial_{ii} f(\xi)$ for some $\xi$ on the segment, and $|\partial_{ii} f| \le \|\nabla^2 f\|_2$.

**Check.** `T.check_gradient_optimality` compares `Optimal(Infinitesimal(ε))` with
`Gradient` for $\varepsilon \in \{0.3, 0.1, 0.03, 0.01, 0.001\}$; the right-hand side uses the
certified Hessian bound `T.hessian_norm_bound` (interval bounds over the ball, it errs high)
plus a float64 round-off allowance. The constructed failure is a ReLU network: its Hessian is
0 almost everywhere, but a kink within $\varepsilon$ of $x$ separates the finite difference
from the gradient.
""")

code(r"""
r22 = record("Prop. 2.2", T.check_gradient_optimality(**FAMILY))
record("Prop. 2.2, ReLU (constructed)", T.check_gradient_optimality(**SMALL, activation="relu", eps=(0.3,)), False)
print(r22)
r22.to_frame().groupby("eps")[["lhs", "rhs", "tightness"]].median()
""")

code(r"""
T.plot_check(r22, hue="eps", lhs_label=r"$\|\Phi^*_\varepsilon - \nabla f\|_\infty$",
             rhs_label=r"$\frac{\varepsilon}{2}\,\sup\|\nabla^2 f\|$ (certified)")
plt.show()
""")

md(r"""
The error falls linearly with $\varepsilon$, as the bound says. The tightness improves as
$\varepsilon$ shrinks because the certified Hessian bound is taken over a smaller ball; what
remains is the ratio of the curvature along the worst coordinate axis to the bound on the
spectral norm.
""")

md(r"""
### Prop. 2.3: occlusion, for one feature removed at a time

For $I = e_i \odot (x - b)$ with $i$ uniform (`SingleFeature(baseline=b)`), occlusion-1,
$\Phi_i = (f(x) - f(x \text{ with } x_i = b_i))/(x_i - b_i)$, makes every term of the infidelity
vanish: $I^\top\Phi = (x_i - b_i)\Phi_i = f(x) - f(x - I)$. It has zero infidelity, hence is
optimal.

**Check.** `T.check_occlusion_optimality`: the exact infidelity (each feature once) of
`Occlusion` against `Optimal(SingleFeature)` and perturbed occlusions. Constructed failure:
occlusion with a baseline (0.5) that is not the law's (0).
""")

code(r"""
r23 = record("Prop. 2.3", T.check_occlusion_optimality(**FAMILY))
record("Prop. 2.3, wrong baseline (constructed)", T.check_occlusion_optimality(**SMALL, explainer_baseline=0.5), False)
print("holds:", r23.holds, "| violations:", r23.n_violations, "of", r23.n)
print("largest |x ⊙ Φ_occlusion − A_optimal| below 1e-6:", bool(r23.info["max_abs_diff"].max() < 1e-6))
""")

md(r"""
### Prop. 2.4: SHAP, for the Shapley kernel

For $I = (x - b) \odot z$, $z \in \{0,1\}^d$ weighted by the Shapley kernel
$\pi(z) \propto \frac{d - 1}{\binom{d}{|z|}\, |z|\, (d - |z|)}$, the global optimal explanation
$(x - b) \odot \Phi^*$ is the Shapley value of $v(S) = f(x_S, b_{-S}) - f(b)$.

*Proof sketch.* The B.2 trick turns the infidelity into a weighted least-squares problem in
$A = (x - b)\odot\Phi$: $\sum_z \pi(z)\,(z^\top A - \Delta f(z))^2$. This is Lundberg and Lee's
kernel regression, whose solution is the Shapley value (Charnes et al., 1988) — **provided**
the empty and full coalitions, where $\pi$ is infinite, are read as constraints:
$A$ must satisfy efficiency, $\sum_i A_i = f(x) - f(b)$. Without it, the minimiser over the
proper coalitions is a different vector.

**Check.** `T.check_shap_optimality` enumerates all $2^d - 2$ proper coalitions ($d = 6$) for
an exact infidelity; the exact Shapley value (`T.exact_shapley`) must beat random
alternatives projected on the efficiency constraint, and the (projected) `Optimal(ShapleyKernel)`
and `KernelSHAP` estimates. The constructed failure drops the constraint.
""")

code(r"""
r24 = record("Prop. 2.4", T.check_shap_optimality(**dict(FAMILY, d=6), n_samples=2000, n_alternatives=8))
r24u = record("Prop. 2.4, no efficiency (constructed)",
              T.check_shap_optimality(**dict(SMALL, d=6), n_samples=2000, n_alternatives=8, efficiency=False), False)
print(r24)
print(r24u)
brief(r24, ("tightness", "rel_err_optimal", "rel_err_kernelshap"))
""")

md(r"""
Under the efficiency constraint nothing beats the Shapley value. Without it, the
unconstrained minimiser does (tightness above 1 for most instances): the statement needs the
infinite kernel weights. `KernelSHAP` (which imposes efficiency) is within a fraction of a
percent of the exact values with 2,000 samples; `Optimal(ShapleyKernel)` (plain regression,
no constraint) is a few percent off for the same reason — a bias, not Monte-Carlo noise: it
does not shrink with more samples.
""")

code(r"""
from xailib.explainers import KernelSHAP, Optimal
from xailib.perturbations import ShapleyKernel

net6 = T.random_softplus_net(6, [16, 16], 2.0, seed=3)
x6 = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
exact = T.exact_shapley(net6, x6)
rel = lambda A: float(((A - exact).norm(dim=1) / exact.norm(dim=1)).mean())
pd.DataFrame([{"samples": n, "Optimal(ShapleyKernel)": rel(Optimal(net6, ShapleyKernel(), n_samples=n, ridge=1e-10)(x6)),
               "KernelSHAP": rel(KernelSHAP(net6, n_samples=n)(x6))} for n in (2000, 20000, 100000)]
             ).set_index("samples").rename_axis("mean relative error vs exact Shapley", axis=1)
""")

# --------------------------------------------------------------------------- A.1
md(r"""
## Sensitivity of the gradient of a softplus network (Prop. A.1)

**Statement.** For the softplus networks above and $\Phi = \nabla f$, the gradient map is
Lipschitz, so

$$
\mathrm{SENS}_{\max}(\nabla f, x, r) = \max_{\|y - x\|_2 \le r} \|\nabla f(y) - \nabla f(x)\|_2 \le L\, r .
$$

The OCR of the paper's constant is unreadable; its proof sketch bounds the Lipschitz constant
by a product over layers of squared Frobenius norms. We derive a valid constant step by step.

**Derivation.** Write $z_i = W_i h_{i-1}$, $h_i = \sigma(z_i)$, $h_0 = x$, $g_i = \partial f/\partial h_i$
(so $g_l = c$ and $g_{i-1} = W_i^\top D_i g_i$ with $D_i = \operatorname{diag}\sigma'(z_i)$), and
$M_i = \partial z_i / \partial x = W_i D_{i-1} W_{i-1} \cdots D_1 W_1$.

1. Only the activations are curved, so the Hessian is a sum over layers:
   $\nabla^2 f(x) = \sum_{i=1}^{l} M_i^\top \operatorname{diag}\big(\sigma''(z_i) \odot g_i\big) M_i$.
2. $\|D_j\|_2 \le 1$ (as $\sigma' < 1$), hence $\|M_i\|_2 \le P_i := \prod_{j \le i}\|W_j\|_2$ and
   $\|g_i\|_2 \le \|c\|_2 \prod_{j > i}\|W_j\|_2$.
3. $\|\operatorname{diag}(\sigma''(z_i) \odot g_i)\|_2 = \max_k |\sigma''(z_{ik}) g_{ik}| \le \tfrac14\|g_i\|_\infty \le \tfrac14 \|g_i\|_2$.
4. Hence, for every $x$,
   $\|\nabla^2 f(x)\|_2 \le \sum_i P_i^2 \cdot \tfrac14 \|c\|_2 \prod_{j>i}\|W_j\|_2$, that is

$$
L_{\text{derived}} = \frac{\|c\|_2}{4}\, \prod_{j=1}^{l}\|W_j\|_2\, \sum_{i=1}^{l} \prod_{j \le i}\|W_j\|_2 ,
$$

   and the mean-value inequality on the segment from $x$ to $y$ gives
   $\|\nabla f(y) - \nabla f(x)\|_2 \le L_{\text{derived}} \|y - x\|_2$.

The paper's product form reads $L_{\text{paper}} = \prod_{i=1}^{l}\|W_i\|_F^2$ (times $\|c\|_2$,
the only factor consistent with $f$ being linear in $c$; if the fraction the OCR garbles divides
each factor by 4, the form is smaller still and fails more often). It has the right flavour — two
factors per layer — but the derived bound shows why it cannot be right in general: the
curvature of layer $i$ is multiplied by *one* factor $\|W_j\|$ for the layers after it, not two.
With weight norms below one, squares are smaller than first powers, and a deep network with
small weights can beat the product form.

Also implemented: `bound="local"`, the certified bound on $\sup_{\|\delta\| \le r}\|\nabla^2 f(x+\delta)\|_2$
by interval bounds over the ball (`T.hessian_norm_bound`; valid and much tighter).
The left-hand side is estimated from below by random restarts on the sphere plus projected
gradient ascent of $\|\nabla f(y) - \nabla f(x)\|$ (its gradient is a Hessian-vector product),
and by `xailib.metrics.sensitivity_max(normalize=False)` on the inscribed $\ell_\infty$ ball.
""")

code(r"""
rA1 = record("Prop. A.1, derived L", T.check_lipschitz_bound(**FAMILY, bound="derived", mc_samples=50))
rA1l = record("Prop. A.1, local L", T.check_lipschitz_bound(**FAMILY, bound="local"))
rA1p = record("Prop. A.1, paper L (random nets)", T.check_lipschitz_bound(**FAMILY, bound="paper"))
for r in (rA1, rA1l, rA1p):
    print(r)
print("gradient ascent / Monte-Carlo estimate of SENS_max, median:",
      f"{float((rA1.info['sens_ascent'] / rA1.info['sens_mc']).median()):.3g}")
""")

code(r"""
fig, axes = plt.subplots(2, 2, figsize=(10, 8))
T.plot_check(rA1, hue="depth", axes=axes[0], title="derived L", lhs_label=r"SENS$_{\max}$ (ascent)", rhs_label=r"$L_{derived}\, r$")
T.plot_check(rA1l, hue="depth", axes=axes[1], title="local certified L", lhs_label=r"SENS$_{\max}$ (ascent)", rhs_label=r"$L_{local}\, r$")
plt.show()
""")

md(r"""
Both valid bounds hold on every network; the global one is loose by orders of magnitude for
deep networks (it multiplies worst cases over all inputs), the local one is much closer (median
tightness 0.07, up to 0.96). Gradient ascent finds gradient changes about twice as large (median)
as the 50 Monte-Carlo points of `sensitivity_max` (which sample the inscribed $\ell_\infty$ ball,
smaller than the $\ell_2$ ball).
On these random networks the paper's product form also holds. Deep *narrow* networks with
small weights break it:
""")

code(r"""
NARROW = dict(n_nets=max(6, N_NETS // 3), n_inputs=N_INPUTS, d=8, depths=(4, 6, 8), widths=(1, 2), scales=(0.3, 0.5))
rA1np = record("Prop. A.1, paper L (deep narrow nets)", T.check_lipschitz_bound(**NARROW, bound="paper", radius=1.0), False)
rA1nd = record("Prop. A.1, derived L (deep narrow nets)", T.check_lipschitz_bound(**NARROW, bound="derived", radius=1.0))
print(rA1np)
print(rA1nd)
rA1np.to_frame().groupby(["depth", "width"])[["tightness"]].max().rename(columns={"tightness": "max SENS / (L_paper r)"})
""")

code(r"""
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
T.plot_check(rA1np, hue="depth", axes=axes, title="paper's product form, deep narrow nets",
             lhs_label=r"SENS$_{\max}$ (ascent, a lower estimate)", rhs_label=r"$\|c\|\prod_i \|W_i\|_F^2\; r$")
plt.show()
""")

md(r"""
Points above the diagonal are networks whose gradient provably changes more (the left side
is a *lower* estimate: an attained value) than the paper's product form allows — by orders
of magnitude for the deepest, narrowest ones. The derived bound holds on the same networks. **The
product form of the paper is not a valid bound**; the derived one is.
""")

# --------------------------------------------------------------------------- A.2
md(r"""
## Bounds through the Hessian (Appendix A.2)

**Statement.** If $\sup_{\|\delta\| \le r}\|\nabla^2 f(x + \delta)\|_2 \le L$, then

$$
\mathrm{SENS}_{\max}(\nabla f, x, r) \le L\, r,
\qquad
\mathrm{INFD}(\nabla f, f, x) \le \frac{L^2}{4}\, \mathbb E\|I\|^4
\quad \text{(for } \|I\| \le r\text{)} .
$$

*Proof sketch.* $\nabla f(x+\delta) - \nabla f(x) = \int_0^1 \nabla^2 f(x + t\delta)\,\delta\, dt$
gives the first. For the second, Taylor with a mean-value remainder,
$f(x - I) = f(x) - I^\top\nabla f(x) + \tfrac12 I^\top \nabla^2 f(\xi) I$, so each term of the
infidelity is $\big(\tfrac12 I^\top\nabla^2 f(\xi) I\big)^2 \le \tfrac{L^2}{4}\|I\|^4$.

**Check.** `T.check_hessian_bounds`, two rows per input (`part` = `sens` / `infd`);
$I \sim \mathcal N(0, 0.1^2\mathrm{Id})$, 256 replayed draws, with $L$ taken over the ball of
radius $\max\|I\|$ so every draw is within it (the bound then holds draw by draw, hence for
the Monte-Carlo average). $L$ is either certified (`hessian="certified"`, errs high: the
safe side) or estimated by power iteration on Hessian-vector products at the input and at
random points of the ball (`hessian="estimate"`, errs **low**: not a safe side).
""")

code(r"""
rA2 = record("A.2, certified L", T.check_hessian_bounds(**FAMILY))
rA2e = record("A.2, estimated L (errs low)", T.check_hessian_bounds(**FAMILY, hessian="estimate"), None)
record("A.2, ReLU (constructed)", T.check_hessian_bounds(**SMALL, activation="relu", radius=0.1), False)
print(rA2)
print(rA2e)
rA2.to_frame().groupby("part")[["tightness"]].describe()[[("tightness", "min"), ("tightness", "50%"), ("tightness", "max")]]
""")

code(r"""
fig, axes = plt.subplots(2, 2, figsize=(10, 8))
T.plot_check(rA2, hue="part", axes=axes[0], title="certified L", lhs_label="SENS / INFD", rhs_label=r"$L r$ / $L^2 E\|I\|^4/4$")
T.plot_check(rA2e, hue="part", axes=axes[1], title="estimated L (errs low)", lhs_label="SENS / INFD", rhs_label=r"$L r$ / $L^2 E\|I\|^4/4$")
plt.show()
""")

md(r"""
With the certified $L$ both bounds hold everywhere. With the estimated $L$ the sensitivity
bound becomes nearly tight (tightness close to 1: the maximal gradient change is close to
$r$ times the largest curvature met), and where it exceeds 1 it is the estimate of $L$ that
is too low, not the theorem that fails — the reason the library's default is the certified
bound. The infidelity bound stays loose by one to three orders of magnitude even with the
estimated $L$ (and by far more with the certified one): it replaces
$\big(\tfrac12 I^\top \nabla^2 f\, I\big)^2$ by $\tfrac14\|\nabla^2 f\|^2 \|I\|^4$, and a random $I$ is far from
the top eigenvector. A ReLU network (Hessian 0 almost everywhere, so "$L = 0$") violates both.
""")

# --------------------------------------------------------------------------- Thm A.1
md(r"""
## Adversarial training smooths the gradient (Theorem A.1)

**Statement.** For $y \in \{0, 1\}$, the logistic loss $\ell(f, y) = \log(1 + e^{f}) - y f$,
$f$ twice differentiable and $\varepsilon > 0$,

$$
\mathbb E\Big[\sup_{\|\delta\| \le \varepsilon} \ell(f(x + \delta), y)\Big]
\le \mathbb E[\ell(f(x), y)] + \varepsilon\, \mathbb E\|\nabla f(x)\|_*
+ \frac{\varepsilon^2}{2}\, \mathbb E\Big[\sup_{\|\delta\| \le \varepsilon}\|\nabla^2 f(x + \delta)\|\Big],
$$

$\|\cdot\|_*$ the dual norm. The adversarial risk therefore dominates a gradient- and
Hessian-penalised risk; lowering it lowers the quantities that bound the sensitivity and the
infidelity of the gradient (A.2).

*Proof sketch.* Taylor to second order:
$|f(x + \delta) - f(x)| \le \varepsilon\|\nabla f(x)\|_* + \tfrac{\varepsilon^2}{2}\sup\|\nabla^2 f\| =: u(x)$,
and $\ell$ is 1-Lipschitz in $f$, so $\ell(f(x+\delta), y) \le \ell(f(x), y) + u(x)$. The
inequality holds instance by instance; we check it per instance.

**Check.** `T.check_adversarial_risk_bound`, random labels. Left: PGD with restarts (errs
low). Right: exact dual norms, and the Hessian supremum certified (errs high); for the
$\ell_\infty$ ball the Hessian term is $\sup_{\|v\|_\infty \le 1}|v^\top H v| \le d\,\|H\|_2$. The
power-iteration estimate (errs low) is reported beside it.
""")

code(r"""
rTA = record("Thm. A.1 (l2, eps = 0.3)", T.check_adversarial_risk_bound(**FAMILY, eps=0.3))
rTAi = record("Thm. A.1 (linf, eps = 0.1)", T.check_adversarial_risk_bound(**FAMILY, norm="linf", eps=0.1))
record("Thm. A.1, rhs x 0.5 (constructed)", T.check_adversarial_risk_bound(**SMALL, rhs_scale=0.5), False)
print(rTA)
print(rTAi)
df = rTA.to_frame()
print("certified / estimated Hessian sup, median:", f"{float((df.hessian_certified / df.hessian_estimate).median()):.3g}")
brief(rTA, ("lhs", "loss", "gradient_term", "rhs", "tightness"))
""")

code(r"""
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
T.plot_check(rTA, hue="depth", axes=axes, lhs_label=r"$\sup_\delta \ell(f(x+\delta), y)$ (PGD)",
             rhs_label=r"$\ell(f(x),y) + \varepsilon\|\nabla f\|_* + \frac{\varepsilon^2}{2}\sup\|\nabla^2 f\|$")
plt.show()
""")

md(r"""
The bound holds and is often nearly tight: most of the adversarial loss increase is the
first-order term $\varepsilon\|\nabla f\|_*$ (PGD moves along the gradient), and the curvature
term is a small correction even though its certified value overestimates the sampled
curvature. The far outliers are overconfident inputs of deep, large-weight networks
($|f| \approx 100$ with the right label): there the loss is exponentially flat, and a bound that
is linear in the logit change is loose by many orders of magnitude.
""")

# --------------------------------------------------------------------------- Thm C.1
md(r"""
## Robust infidelity and sensitivity (Theorem C.1)

**Statement.** With $\mathrm{RINFD}(\Phi, f, x) = \max_{\|u\| \le r}\mathrm{INFD}(\Phi, f, x + u)$,
$A(x) = \max_{\|u\| \le r}\mathbb E_I|I^\top\Phi(x+u) - I^\top\Phi(x)|$,
$B(x) = \max_{\|u\| \le r}|f(x+u) - f(x)|$ and
$B' = \mathbb E_I\big[\max_{\|u\|\le r}|f(x - I + u) - f(x - I)|\big]$,

$$
\mathrm{RINFD}(x) \ge \frac{\big(A(x) - B(x) - B'\big)_+^2}{4},
\qquad
A(x) \le \mathbb E\|I\| \cdot \mathrm{SENS}_{\max}(\Phi, f, x, r) .
$$

*Proof sketch.* With $T(y) = I^\top\Phi(y) - (f(y) - f(y - I))$ and $u_1$ the maximiser of $A$, the
triangle inequality gives $\mathbb E|T(x+u_1)| + \mathbb E|T(x)| \ge A - B - B'$; then
$\mathrm{RINFD} \ge \tfrac12(\mathbb E T(x+u_1)^2 + \mathbb E T(x)^2) \ge \tfrac14(\mathbb E|T(x+u_1)| + \mathbb E|T(x)|)^2$
(Jensen, then AM–QM). Cauchy–Schwarz, $|I^\top\Delta\Phi| \le \|I\|\,\|\Delta\Phi\|$, gives the second.

Two corrections to the printed statement: the last step squares a lower bound, which is only
valid when $A - B - B' \ge 0$, so the positive part is needed (the paper prints
$(A - B - B')^2$); and $B(x - I)$ must sit inside the expectation over $I$.

**Check.** `T.check_robust_infidelity_lower_bound` with $\Phi = \nabla f$, $I \sim \mathcal N(0, 0.3^2\mathrm{Id})$,
$r = 0.3$. All maxima are estimated from below on a *shared* candidate set: $\hat u$ maximises
$A$ by gradient ascent, and the estimates of $B$, $B'$, $\mathrm{SENS}_{\max}$ and $\mathrm{RINFD}$
are maxima over candidates that include $\hat u$ (plus their own ascents), on the same draws
of $I$. The proof's chain at $\hat u$ then makes the checked inequality exact for the estimates.
""")

code(r"""
rC1 = record("Thm. C.1 (random nets)", T.check_robust_infidelity_lower_bound(**SMALL))
df = rC1.to_frame()
print(rC1)
print("share of inputs where the lower bound is not vacuous (A > B + B'):", f"{float((df[df.part == 'rinfd'].lhs > 0).mean()):.2f}")
df[df.part == "rinfd"][["A", "B", "B_prime", "rhs"]].median().rename({"rhs": "RINFD"}).to_frame("median")
""")

md(r"""
On smooth random networks the gradient is *less* sensitive than the function ($A < B + B'$)
and the lower bound is vacuous. It bites when the explanation is far more sensitive than the
model: `T.RippleModel` adds a small, fast ripple $a\sin(\omega^\top x)$ ($a = 0.02$, $\|\omega\| = 50$)
that barely changes $f$ but swings $\nabla f$ by $a\|\omega\|$. The constructed failure is the
literal squared form on a linear model, where $A = 0$ and $\mathrm{RINFD} = 0$ but
$(A - B - B')^2 > 0$.
""")

code(r"""
base = T.random_instances(**dict(SMALL, depths=(1, 2), scales=(1.0,)), seed=1)
ripples = [T.RippleModel(net, 0.02, 50.0, seed=i, d=8) for i, (net, _, _) in enumerate(base)]
rC1r = record("Thm. C.1 (ripple models)", T.check_robust_infidelity_lower_bound(ripples, [x for _, x, _ in base]))
torch.manual_seed(0)
lin = torch.nn.Linear(8, 1, bias=False).double()
xl = torch.randn(N_INPUTS, 8, dtype=torch.float64)
record("Thm. C.1, linear model, squared form (constructed)", T.check_robust_infidelity_lower_bound(lin, xl, positive_part=False), False)
record("Thm. C.1, linear model, positive part", T.check_robust_infidelity_lower_bound(lin, xl))
print(rC1r)
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
T.plot_check(rC1r, hue="part", axes=axes, title="ripple models", lhs_label=r"$(A-B-B')_+^2/4$  /  $A$",
             rhs_label=r"RINFD  /  $E\|I\|\,$SENS$_{\max}$")
plt.show()
""")

# --------------------------------------------------------------------------- Thms 4.1 / 4.2
md(r"""
## SmoothGrad lowers sensitivity (Theorem 4.1)

**Statement.** For a kernel $k$ and $\Phi_k(f, x) = \int \Phi(f, z)\, k(x, z)\, dz$ (SmoothGrad: $k$ the
uniform density of an $\ell_\infty$ ball around $x$, translation invariant),

$$
\mathrm{SENS}_{\max}(\Phi_k, f, x, r) \le \int \mathrm{SENS}_{\max}(\Phi, f, z, r)\, k(x, z)\, dz .
$$

*Proof sketch.* $\Phi_k(x + u) - \Phi_k(x) = \int [\Phi(z + u) - \Phi(z)]\, k(x, z)\, dz$ by translation
invariance; the norm of an integral is at most the integral of the norm, and
$\|\Phi(z + u) - \Phi(z)\| \le \mathrm{SENS}_{\max}(\Phi, z, r)$ for each $z$.

**Check.** `T.check_smoothgrad_sensitivity`: Grad-SG is `xailib.explainers.SmoothGrad(Gradient)`
(32 samples, radius 0.3); the kernel is the empirical measure of its noise draws, for which the
theorem holds exactly, provided the same draws are used at $x$ and at $x + u$ (common random
numbers). Left: ascent over $u$ (errs low); right: per-draw ascents that share the left's
maximiser. The constructed failure is the naive implementation that draws fresh noise at
every point: its "sensitivity" includes Monte-Carlo noise, and the inequality breaks.
""")

code(r"""
r41 = record("Thm. 4.1", T.check_smoothgrad_sensitivity(**SMALL))
r41n = record("Thm. 4.1, independent noise (constructed)", T.check_smoothgrad_sensitivity(**SMALL, common_noise=False), False)
print(r41)
print(r41n)
df = r41.to_frame()
print("SENS(Grad-SG) / SENS(Grad) at x, median:", f"{float((df.lhs / df.sens_base_at_x).median()):.3g}")
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
T.plot_check(r41, hue="depth", axes=axes, lhs_label=r"SENS$_{\max}$(Grad-SG, x)", rhs_label=r"$\int$ SENS$_{\max}$(Grad, z) k(x,z) dz")
plt.show()
""")

md(r"""
The inequality is tight (tightness close to 1) whenever the worst direction $u$ is the same for
most $z$ in the kernel's support, as it is for smooth networks at this radius; smoothing helps
most where the gradient's worst direction varies within the kernel.
""")

md(r"""
## SmoothGrad and infidelity (Theorem 4.2)

**Statement.** With $T(z) = f(z) - f(z - I)$ and constants defined (appendix D.7, at $u = 0$) as

$$
C_1 = \frac{\iint |T(z) - T(x)|^2\, k(x,z)\, dz\, d\mu_I}{\iint |I^\top\Phi(z) - T(x)|^2\, k(x,z)\, dz\, d\mu_I},
\qquad
C_2 = \frac{\int \big|\int I^\top\Phi(z)\,k(x,z)\,dz - T(x)\big|^2 d\mu_I}{\iint |I^\top\Phi(z) - T(x)|^2\, k(x,z)\, dz\, d\mu_I},
$$

if $C_1 < 1/4$ then

$$
\mathrm{INFD}(\Phi_k, f, x) \le \frac{C_2}{1 - 2\sqrt{C_1}} \int \mathrm{INFD}(\Phi, f, z)\, k(x, z)\, dz .
$$

*Proof sketch.* $C_2 \le 1$ by Jensen, and the numerator of $C_2$ is $\mathrm{INFD}(\Phi_k)$. Write
$X = \iint|I^\top\Phi(z) - T(x)|^2 k$ and $Y = \iint|I^\top\Phi(z) - T(z)|^2 k = \int \mathrm{INFD}(\Phi, z) k$.
Expanding $|a - c|^2 \le |a - b|^2 + 2|a - c||b - c|$ (with $a = I^\top\Phi(z)$, $b = T(z)$,
$c = T(x)$) and Cauchy–Schwarz on the cross term give $X \le Y + 2\sqrt{C_1}\,X$, so
$X \le Y/(1 - 2\sqrt{C_1})$ when $C_1 < 1/4$, and $\mathrm{INFD}(\Phi_k) = C_2 X$.

$C_1$ compares how much the function differences move within the kernel with how
unfaithful the explanation is; it is small when the kernel is narrow relative to the
perturbations. **Check.** `T.check_smoothgrad_infidelity`: $C_1, C_2$ computed on the empirical
measures (SmoothGrad's noise draws, replayed draws of $I \sim \mathcal N(0, 0.5^2\mathrm{Id})$); no
supremum is involved. An instance with $C_1 \ge 1/4$ violates the hypothesis and is reported as
not holding.
""")

code(r"""
r42 = record("Thm. 4.2 (SG radius 0.05, sigma 0.5)", T.check_smoothgrad_infidelity(**FAMILY))
r42w = record("Thm. 4.2, wide kernel (constructed: C1 >= 1/4)", T.check_smoothgrad_infidelity(**SMALL, sg_radius=1.0, sigma=0.1), False)
print(r42)
print(r42w)
brief(r42, ("C1", "C2", "tightness"))
""")

code(r"""
rows = []
for rho in (0.02, 0.05, 0.1, 0.2, 0.5, 1.0):
    r = T.check_smoothgrad_infidelity(**SMALL, sg_radius=rho, sigma=0.3)
    df = r.to_frame()
    rows.append({"SG radius": rho, "median C1": df.C1.median(), "share C1 < 1/4": (df.C1 < 0.25).mean(),
                 "median INFD(Grad-SG) / INFD(Grad)": (df.lhs / df.infd_grad_at_x).median()})
scan = pd.DataFrame(rows)
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.plot(scan["SG radius"], scan["median C1"], "o-")
ax.axhline(0.25, color="k", ls="--", lw=1, label="C1 = 1/4")
ax.set_xscale("log"); ax.set_yscale("log"); ax.set_xlabel("SmoothGrad radius"); ax.set_ylabel("median $C_1$")
ax.legend(); plt.show()
scan
""")

md(r"""
For kernels narrow relative to the perturbations ($C_1 \ll 1/4$) the bound holds and is
nearly tight ($C_2 \approx 1$, and averaging the infidelity over the kernel changes little).
As the kernel widens $C_1$ crosses 1/4 and the theorem stops applying — exactly in the regime
(SmoothGrad radius comparable to the perturbation size) where smoothing changes the
infidelity the most.
""")

# --------------------------------------------------------------------------- summary
md(r"""
## Summary

Every check run in this chapter; `expected` is whether the statement should hold (False: a
constructed case that breaks a hypothesis, or the paper's product form; `None`: an estimate
on the unsafe side). Tightness values below $10^{-9}$ are shown as 0, values above $10^6$ (a
right-hand side that is zero up to round-off) as inf.
""")

code(r"""
summary = T.summarize(list(results.values()))
summary.insert(0, "label", list(results.keys()))
summary.insert(1, "expected", [expected[k] for k in results])
for c in ("tightness min", "tightness median", "tightness max"):
    summary[c] = summary[c].where(summary[c].abs() >= 1e-9, 0.0).where(summary[c] <= 1e6, np.inf)
pd.set_option("display.max_colwidth", 60)
summary.drop(columns=["check", "statement"]).set_index("label")
""")

code(r"""
ok = all((expected[k] is None) or (r.holds == expected[k]) for k, r in results.items())
print("every check behaves as the theory predicts:", ok)
""")

md(r"""
**Findings.** All statements hold where their hypotheses hold, with two corrections to the
paper: the product-of-squared-Frobenius-norms constant of Prop. A.1 is not a valid Lipschitz
bound (deep narrow networks with small weights violate it; the derived constant above is
valid), and Theorem C.1 needs the positive part $(A - B - B')_+$ (and $B(x - I)$ inside the
expectation). Prop. 2.4 needs the efficiency constraint that the infinite Shapley-kernel
weights impose. The Hessian bounds of A.2 are tight for sensitivity and loose for infidelity;
Theorem A.1 is nearly tight because its first-order term dominates; Theorem C.1's lower
bound is vacuous on smooth networks and informative only when the explanation is much more
sensitive than the model; Theorem 4.2 applies only to kernels narrow relative to the
perturbations ($C_1 < 1/4$).
""")

chapter.save("theory.ipynb")
