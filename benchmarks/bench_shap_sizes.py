"""KernelSHAP sampling designs at equal error on the committed MNIST CNN (G = 784 pixels, baseline 0).

Variants (all estimate the same Shapley values; all finish with the uniform efficiency shift):
  a   KernelSHAP itself (paired, ShapleyKernel sizes drawn multinomially, ridge 1e-8, shift)
  b   sizes 1 and G-1 enumerated exactly (2G forwards), paired kernel samples on sizes 2..G-2,
      moments combined by stratum weight p_ext / 1 - p_ext
  c   b with the pair sizes allocated deterministically (largest remainder) instead of multinomially
  d   "Leverage-SHAP-like": paired sizes uniform on 1..G-1, weights w(k) = P_kernel(k) / P_unif(k)
  d2  (extra) d on sizes 2..G-2 plus the exact extreme stratum of b

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_shap_sizes.py ref     # reference (two 800,000-sample runs)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_shap_sizes.py runs    # the variants x budgets x seeds
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_shap_sizes.py report  # the tables (markdown, stdout)

About 25 CPU minutes on one thread; intermediate tensors go to ``benchmarks/results/shap_sizes/``
(not committed). Results: ``benchmarks/README.md``, section *KernelSHAP's coalition sizes*.

Budgets count every forward pass on a perturbed input per explanation (the enumerated ones included);
f(x) and f(baseline), shared by all variants, are not counted (as KernelSHAP's n_samples).
"""
from __future__ import annotations

import math
import os
import sys
import time

import numpy as np
import torch

torch.set_num_threads(1)

from xailib.data import load_mnist  # noqa: E402
from xailib.explainers import KernelSHAP  # noqa: E402
from xailib.explainers._regression import add_ridge_, cholesky_factor  # noqa: E402
from xailib.models import get_model  # noqa: E402
from xailib.perturbations import ShapleyKernel  # noqa: E402
from xailib._utils import forward_batched, function_differences  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "shap_sizes")
os.makedirs(OUT, exist_ok=True)
N_DIGITS = 3
BUDGETS = [4000, 6700, 13400]
SEEDS = list(range(10))
EXTRA_BUDGET, EXTRA_SEEDS = 26800, 5  # a fourth budget, fewer seeds (slope check)
VARIANTS = ["a", "b", "c", "d", "d2"]
N_REF = int(os.environ.get("N_REF", 800_000))
RIDGE = 1e-8
BLOCK = 2048
f64 = torch.float64


class TimedModel(torch.nn.Module):
    """The model, with the CPU time spent inside its forward accumulated in ``self.t``."""

    def __init__(self, m):
        super().__init__()
        self.m = m
        self.t = 0.0
        self.calls = 0

    def forward(self, x):
        t0 = time.process_time()
        out = self.m(x)
        self.t += time.process_time() - t0
        self.calls += x.shape[0]
        return out


def setup():
    model = TimedModel(get_model("mnist_cnn", verbose=False)).eval()
    d = load_mnist("test", n=N_DIGITS, verbose=False)  # as benchmarks/bench_equal_error.py
    x, y = d.x.to(torch.float32), d.y
    return model, x, y


LAW = ShapleyKernel(baseline=0.0)


class Game:
    """Δf for the digits, f(x) − f(b), and the kernel size law."""

    def __init__(self, model, x, y):
        self.model, self.x, self.y = model, x, y
        self.G = x[0].numel()
        self.fx = forward_batched(model, x, y)
        ones = torch.ones(1, self.G)
        self.total = function_differences(model, x, y, None, 1024, self.fx, law=LAW, draws=ones).squeeze(1).to(f64)
        self.p = ShapleyKernel.size_probabilities(self.G)  # P(k), k = 1..G-1 (index k-1)

    def df(self, z):
        return function_differences(self.model, self.x, self.y, None, 1024, self.fx, law=LAW, draws=z).to(f64)

    def solve(self, M, c):
        L = cholesky_factor(add_ridge_(M, RIDGE), "M")
        phi = torch.cholesky_solve(c.t(), L).t()
        return phi - ((phi.sum(1) - self.total) / self.G).view(-1, 1)


def masks(sizes: torch.Tensor, G: int, gen) -> torch.Tensor:
    """Uniform subsets of the given sizes: the first k of a random permutation (float32, (n, G))."""
    u = torch.rand(sizes.numel(), G, generator=gen)
    idx = u.argsort(1)
    src = (torch.arange(G).view(1, -1) < sizes.view(-1, 1)).to(torch.float32)
    return torch.zeros(sizes.numel(), G).scatter_(1, idx, src)


def accumulate(game, sizes_fn, n_pairs, gen, weight_fn=None):
    """Sum of w zzᵀ and w z Δf over n_pairs pairs (z, 1 − z); sizes_fn(m) gives m pair sizes
    (or a full tensor when it is a tensor). Returns (M_sum, c_sum, count)."""
    G = game.G
    M = torch.zeros(G, G, dtype=f64)
    c = torch.zeros(game.x.shape[0], G, dtype=f64)
    done = 0
    while done < n_pairs:
        m = min(BLOCK // 2, n_pairs - done)
        k = sizes_fn(done, m)
        z = masks(k, G, gen)
        for zz, kk in ((z, k), (1 - z, G - k)):
            z64 = zz.to(f64)
            w = torch.ones(m, dtype=f64) if weight_fn is None else weight_fn(kk)
            M.addmm_((z64 * w.view(-1, 1)).t(), z64)
            c.addmm_(game.df(zz) * w.view(1, -1), z64)
        done += m
    return M, c, 2 * n_pairs


def ext_moments(game):
    """Exact mean of zzᵀ and zΔf over the stratum {|z| = 1, G − 1} under the kernel (both sizes equally
    likely, P(1) = P(G−1)); 2G forwards."""
    G = game.G
    E = torch.eye(G)
    Mx = torch.zeros(G, G, dtype=f64)
    cx = torch.zeros(game.x.shape[0], G, dtype=f64)
    for Z in (E, 1 - E):
        Z64 = Z.to(f64)
        Mx += 0.5 * (Z64.t() @ Z64) / G
        cx += 0.5 * (game.df(Z) @ Z64) / G
    return Mx, cx


def sampler_multinomial(p, offset, gen):
    """Pair sizes drawn from the (unnormalised) probabilities p over sizes offset, offset+1, ..."""
    return lambda done, m: torch.multinomial(p, m, replacement=True, generator=gen) + offset


def estimate(game, variant: str, n: int, seed: int):
    """φ (N, G) of one variant at a budget of n forwards per explanation."""
    G, p = game.G, game.p
    gen = torch.Generator().manual_seed(1000 * seed + 17 * VARIANTS.index(variant) + 7)
    if variant == "a":
        phi = KernelSHAP(game.model, n_samples=n, seed=seed, cache=False, ridge=RIDGE)(game.x, game.y)
        return phi.reshape(phi.shape[0], -1).to(f64)
    if variant == "d":
        assert n % 2 == 0
        w_of = lambda k: p[k - 1] * (G - 1)  # P_kernel(k) / P_unif(k)
        sizes = lambda done, m: torch.randint(1, G, (m,), generator=gen)
        M, c, cnt = accumulate(game, sizes, n // 2, gen, w_of)
        return game.solve(M / cnt, c / cnt)
    # stratified: exact extremes + sizes 2..G-2
    p_ext = float(p[0] + p[G - 2])
    p_rest = p[1 : G - 2]  # k = 2..G-2
    n_rest = n - 2 * G
    assert n_rest > 0 and n_rest % 2 == 0
    Mx, cx = ext_moments(game)
    if variant == "b":
        M, c, cnt = accumulate(game, sampler_multinomial(p_rest, 2, gen), n_rest // 2, gen)
    elif variant == "c":
        # pair classes {k, G-k}, k = 2..G/2: probability P(k) + P(G-k) (P(G/2) once when G is even)
        ks = torch.arange(2, G // 2 + 1)
        q = p[ks - 1] + p[G - ks - 1]
        if G % 2 == 0:
            q[-1] = p[G // 2 - 1]
        q = q / q.sum()
        n_pairs = n_rest // 2
        exact = q * n_pairs
        alloc = exact.floor().long()
        rem = n_pairs - int(alloc.sum())
        alloc[torch.argsort(exact - alloc, descending=True)[:rem]] += 1
        # each pair: a uniform subset of size k and its complement; orientation random (k or G-k first)
        sizes_all = torch.repeat_interleave(ks, alloc)
        flip = torch.rand(sizes_all.numel(), generator=gen) < 0.5
        sizes_all = torch.where(flip, G - sizes_all, sizes_all)
        M, c, cnt = accumulate(game, lambda done, m: sizes_all[done : done + m], n_pairs, gen)
    elif variant == "d2":
        pr = p_rest / p_rest.sum()
        w_of = lambda k: pr[k - 2] * (G - 3)  # P_kernel(k | rest) / P_unif(k on 2..G-2)
        sizes = lambda done, m: torch.randint(2, G - 1, (m,), generator=gen)
        M, c, cnt = accumulate(game, sizes, n_rest // 2, gen, w_of)
    else:
        raise ValueError(variant)
    M = p_ext * Mx + (1 - p_ext) * M / cnt
    c = p_ext * cx + (1 - p_ext) * c / cnt
    return game.solve(M, c)


def timed_estimate(game, variant, n, seed):
    game.model.t, game.model.calls = 0.0, 0
    t0 = time.process_time()
    phi = estimate(game, variant, n, seed)
    t = time.process_time() - t0
    N = game.x.shape[0]
    # KernelSHAP also evaluates f(x) and f(b) (2 per digit, shared by all variants, not counted)
    assert game.model.calls == n * N + (2 * N if variant == "a" else 0), (variant, n, game.model.calls)
    return phi, t / N, game.model.t / N


def stage_ref():
    model, x, y = setup()
    game = Game(model, x, y)
    for name, variant, seed in (("r1", "a", 10_000), ("r2", "b", 20_000)):
        path = f"{OUT}/ref_{name}.pt"
        if os.path.exists(path):
            continue
        n = N_REF if variant == "a" else N_REF  # both count their forwards the same way
        phi, t, tm = timed_estimate(game, variant, n, seed)
        torch.save({"phi": phi, "variant": variant, "n": n, "seed": seed, "cpu": t, "model": tm}, path)
        print(f"ref {name}: variant {variant}, n={n}, {t:.1f} s CPU/expl ({tm:.1f} model)", flush=True)


def stage_runs():
    model, x, y = setup()
    game = Game(model, x, y)
    path = f"{OUT}/runs.pt"
    res = torch.load(path) if os.path.exists(path) else {}
    for seed in SEEDS:
        for variant in VARIANTS:
            for n in BUDGETS + ([EXTRA_BUDGET] if seed < EXTRA_SEEDS else []):
                key = (variant, n, seed)
                if key in res:
                    continue
                phi, t, tm = timed_estimate(game, variant, n, seed)
                res[key] = {"phi": phi, "cpu": t, "model": tm}
                torch.save(res, path)
                print(f"{variant} n={n} seed={seed}: {t:.2f} s CPU/expl ({tm:.2f} model)", flush=True)


def equal_error_cost(costs, errs, target):
    """Cost at which the error curve reaches target: log-log interpolation, else the fitted slope."""
    lc, le = np.log(np.asarray(costs, float)), np.log(np.asarray(errs, float))
    order = np.argsort(le)
    if math.log(target) < le.min() or math.log(target) > le.max():
        slope, icpt = np.polyfit(lc, le, 1)
        return float(np.exp((math.log(target) - icpt) / slope)), True
    return float(np.exp(np.interp(math.log(target), le[order], lc[order]))), False


def stage_report():
    r1, r2 = torch.load(f"{OUT}/ref_r1.pt"), torch.load(f"{OUT}/ref_r2.pt")
    ref = (r1["phi"] + r2["phi"]) / 2
    rn = ref.norm(dim=1)
    ref_err = (r1["phi"] - r2["phi"]).norm(dim=1) / (2 * rn)  # per digit
    print(f"reference: mean of r1 = (a) at {r1['n']:,} (seed {r1['seed']}) and r2 = (b) at {r2['n']:,} (seed {r2['seed']})")
    print("per-digit reference relative error ‖r1 − r2‖/(2‖ref‖):", " / ".join(f"{v:.4f}" for v in ref_err.tolist()),
          f"(mean {float(ref_err.mean()):.4f}); ‖r1 − r2‖/‖ref‖:",
          " / ".join(f"{v:.4f}" for v in ((r1['phi'] - r2['phi']).norm(dim=1) / rn).tolist()))
    print(f"ref CPU: r1 {r1['cpu']:.1f} s/expl ({r1['model']:.1f} model), r2 {r2['cpu']:.1f} ({r2['model']:.1f})")
    res = torch.load(f"{OUT}/runs.pt")
    budgets = sorted({n for (_, n, _) in res})
    E, EC, CPU, MOD, PHI = {}, {}, {}, {}, {}
    for (v, n, s) in sorted(res):
        r = res[(v, n, s)]
        e = (r["phi"] - ref).norm(dim=1) / rn
        E.setdefault((v, n), []).append(e)
        EC.setdefault((v, n), []).append((e**2 - ref_err**2).clamp_min(0).sqrt())
        CPU.setdefault((v, n), []).append(r["cpu"])
        MOD.setdefault((v, n), []).append(r["model"])
        PHI.setdefault((v, n), []).append(r["phi"])
    E = {k: torch.stack(v).numpy() for k, v in E.items()}  # (seeds, digits)
    EC = {k: torch.stack(v).numpy() for k, v in EC.items()}
    print("\nerrors: relative L2 vs reference, mean over digits × seeds; se = sd/√(digits·seeds) (as asked, includes "
          "the between-digit spread); se_w = within-digit (seed-noise) se, the one that matters for comparisons on the "
          "same digits; 'corr.' = reference noise removed in quadrature per digit")
    print("\n| variant | budget | seeds | rel. error raw ± se | corr. ± se (± se_w) | per digit (corr.) | "
          "bias/‖ref‖ (per digit) | CPU s/expl | model | non-model |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for v in VARIANTS:
        for n in budgets:
            if (v, n) not in E:
                continue
            e, ec = E[(v, n)], EC[(v, n)]
            S, D = e.shape
            se = e.std(ddof=1) / math.sqrt(e.size)
            sec = ec.std(ddof=1) / math.sqrt(ec.size)
            sew = math.sqrt(ec.var(0, ddof=1).mean() / ec.size)
            P = torch.stack(PHI[(v, n)])  # (S, D, G)
            mean = P.mean(0)
            spread = ((P - mean) ** 2).sum(2).sum(0) / (S - 1)  # per digit Var sum
            b2 = ((mean - ref) ** 2).sum(1) - spread / S - (ref_err * rn) ** 2
            bias = (b2.clamp_min(0).sqrt() / rn).tolist()
            cpu, mod = np.mean(CPU[(v, n)]), np.mean(MOD[(v, n)])
            print(f"| {v} | {n:,} | {S} | {e.mean():.4f} ± {se:.4f} | {ec.mean():.4f} ± {sec:.4f} (± {sew:.4f}) | "
                  f"{' / '.join(f'{t:.3f}' for t in ec.mean(0))} | {' / '.join(f'{t:.3f}' for t in bias)} | "
                  f"{cpu:.2f} | {mod:.2f} | {cpu - mod:.2f} |")
    # slopes of log error vs log n
    print("\nlog-log slope of the corrected error vs budget (all budgets):",
          ", ".join(f"{v}: {np.polyfit(np.log(budgets), np.log([EC[(v, n)].mean() for n in budgets]), 1)[0]:.2f}"
                    for v in VARIANTS if all((v, n) in EC for n in budgets)))
    # equal-error budgets, with a bootstrap over seeds (digits fixed)
    rng = np.random.default_rng(0)
    B = 2000
    for which, tab in (("raw", E), ("corrected", EC)):
        target = tab[("a", 13400)].mean()
        print(f"\nequal-error budgets ({which}; target = (a) at 13,400: {target:.4f}); 90 % interval: bootstrap over "
              "seeds (digits fixed), target resampled too:")
        print("| variant | budget at (a)'s 13,400 error | cost ratio vs (a) | 90 % interval | "
              "(err_v/err_a)² at 13,400, per digit |")
        print("|---|---|---|---|---|")
        for v in VARIANTS:
            if v == "a":
                print("| a | 13,400 | 1 (by definition) | – | 1 |")
                continue
            errs = [tab[(v, n)].mean() for n in budgets]
            n_eq, extrap = equal_error_cost(budgets, errs, target)
            boots = []
            for _ in range(B):
                def rs(a):
                    return a[rng.integers(0, a.shape[0], a.shape[0])].mean()
                t_b = rs(tab[("a", 13400)])
                boots.append(equal_error_cost(budgets, [rs(tab[(v, n)]) for n in budgets], t_b)[0] / 13400)
            lo, hi = np.percentile(boots, [5, 95])
            pd = (tab[(v, 13400)].mean(0) / tab[("a", 13400)].mean(0)) ** 2
            print(f"| {v} | {n_eq:,.0f}{' (extrap.)' if extrap else ''} | {n_eq / 13400:.3f} | {lo:.2f} – {hi:.2f} | "
                  f"{' / '.join(f'{t:.2f}' for t in pd)} |")


if __name__ == "__main__":
    stage = sys.argv[1] if len(sys.argv) > 1 else "report"
    {"ref": stage_ref, "runs": stage_runs, "report": stage_report}[stage]()
