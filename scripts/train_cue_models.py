"""Train the ground-truth chapter's cue networks and write xailib/weights/cue_<kind>.{pt,json}.

Usage: python scripts/train_cue_models.py   (about 40 s on a 2-core CPU)
"""
import json
import time

import torch

import xailib
from xailib import groundtruth as G
from xailib.models import evaluate_accuracy, weights_dir


def main():
    xailib.setup()
    for kind in ("patch", "text"):
        cfg = G.cue_config(kind)
        t0 = time.perf_counter()
        model, hist = G.train_cue_model(cfg, progress=False)
        secs = time.perf_counter() - t0
        te = G.make_cue_dataset(kind, "test", n=1000, position=cfg["position"], seed=cfg["seed"])
        path = weights_dir() / f"cue_{kind}.pt"
        torch.save(model.state_dict(), path)
        meta = {
            "name": f"cue_{kind}",
            "command": "python scripts/train_cue_models.py",
            "config": cfg,
            "train_seconds": round(secs, 1),
            "history": hist,
            "test_accuracy": round(evaluate_accuracy(model, te.x, te.y), 4),
            "test_accuracy_cue_removed": round(evaluate_accuracy(model, G.remove_cue(te), te.y), 4),
        }
        path.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
        print(kind, meta["test_accuracy"], meta["test_accuracy_cue_removed"], f"{secs:.1f} s")


if __name__ == "__main__":
    main()
