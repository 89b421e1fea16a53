"""Memory format and compiled forward passes on the two networks that wheels ship, on this machine.

For the Keras CIFAR-10 CNN (``xailib.pretrained.cifar10_cnn``, batches of 256) and EfficientNet-Lite0
(``xailib.pretrained.efficientnet_lite0``, batches of 32), milliseconds per image of

* a forward pass without gradients and a forward + backward pass (the gradient of one logit), with
  the network in the default (NCHW) memory format and in channels-last (what the loaders return);
* a forward pass of ``xailib.accelerate`` (``torch.compile``) of each, and its compilation time.

Best of 3 repetitions, inputs random in [0, 1] (the cost does not depend on them).

    .venv/bin/python benchmarks/bench_shipped.py --out benchmarks/results/shipped.json

See ``benchmarks/README.md``, section *Shipped networks*.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from xailib import accelerate, pretrained


def per_image_ms(model, x, grad=False, reps=3) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        if grad:
            xx = x.clone().requires_grad_(True)
            model(xx)[:, 0].sum().backward()
        else:
            with torch.no_grad():
                model(x)
        best = min(best, time.perf_counter() - t0)
    return 1e3 * best / x.shape[0]


def bench(name: str, batch: int) -> dict:
    load = pretrained.cifar10_cnn if name == "cifar10_cnn" else pretrained.efficientnet_lite0
    shape = (3, 32, 32) if name == "cifar10_cnn" else (3, 224, 224)
    x = torch.rand(batch, *shape, generator=torch.Generator().manual_seed(0))
    cl = load(verbose=False)  # channels-last, as loaded
    nchw = load(verbose=False).to(memory_format=torch.contiguous_format)
    out = {"batch": batch}
    for tag, m in (("nchw", nchw), ("channels_last", cl)):
        per_image_ms(m, x, reps=1)
        out[f"{tag} forward [ms]"] = per_image_ms(m, x)
        out[f"{tag} forward+backward [ms]"] = per_image_ms(m, x, grad=True)
    for tag, m in (("nchw", nchw), ("channels_last", cl)):
        fast = accelerate(m, min_batch=batch, max_batch=batch)
        t0 = time.perf_counter()
        with torch.no_grad():
            fast(x)
        out[f"compiled {tag} compile [s]"] = time.perf_counter() - t0
        out[f"compiled {tag} forward [ms]"] = per_image_ms(fast, x)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    res = {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "threads": args.threads,
           "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
           "cifar10_cnn": bench("cifar10_cnn", 256), "efficientnet_lite0": bench("efficientnet_lite0", 32)}
    text = json.dumps(res, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
