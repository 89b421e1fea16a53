"""How long the CIFAR-10 chapter takes *with* the data, measured without the data.

The chapter trains its network and runs its table only when the CIFAR-10 training set is on disk,
which no package registry ships. Its cost does not depend on the images' content, so this script
writes a CIFAR-10 folder of the real size and on-disk format (five pickled training batches of
10,000 images and a test batch of 10,000, random pixels, learnable labels) into a scratch
directory, executes ``notebooks/cifar10.ipynb`` on it at the active profile (``XAILIB_DATA``
pointing there, a scratch checkpoint cache, so nothing of the user's is touched or reused), and
records the training time (from the checkpoint's sidecar) and the whole chapter's time in
``benchmarks/results/cifar10_chapter.json``, which the chapter reads and quotes.

    .venv/bin/python benchmarks/bench_cifar10_chapter.py      # default profile: ~15 min on 2 cores

The accuracy and the table of this run mean nothing (random images); only the times are kept.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "cifar10_chapter.json"


def main() -> None:
    import nbformat
    import torch
    from nbclient import NotebookClient

    sys.path.insert(0, str(ROOT / "tests"))
    from test_chapters_online import write_fake_cifar

    import xailib

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_fake_cifar(tmp / "data", n_train=10000, n_test=10000)
        env = {"XAILIB_DATA": str(tmp / "data"), "XAILIB_CACHE": str(tmp / "cache"), "XAILIB_DOWNLOAD": "0",
               "XAILIB_PROGRESS": "0"}
        os.environ.update(env)
        nb = nbformat.read(ROOT / "notebooks" / "cifar10.ipynb", as_version=4)
        t0 = time.perf_counter()
        NotebookClient(nb, timeout=7200, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
        seconds = time.perf_counter() - t0
        side = next((tmp / "cache" / "models").glob("cifar10_resnet-*.json"))
        meta = json.loads(side.read_text())
    record = {
        "what": "notebooks/cifar10 executed on a CIFAR-10 folder of the real size and format (random images)",
        "command": "python benchmarks/bench_cifar10_chapter.py",
        "profile": xailib.profile(),
        "threads": int(os.environ.get("XAILIB_THREADS", "2")),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "train_images": meta["config"]["data"]["n"],
        "epochs": meta["config"]["epochs"],
        "width": meta["config"]["arch_kwargs"]["width"],
        "train_minutes": round(meta["train_seconds"] / 60, 1),
        "chapter_minutes": round(seconds / 60, 1),
        "date": time.strftime("%Y-%m-%d"),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
