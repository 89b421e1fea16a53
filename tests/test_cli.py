"""`python -m xailib evaluate`: values, sharding with torchrun, resuming, bad input.

The reference run is in-process (``cli.main``); torchrun runs are subprocesses (gloo, CPU).
Every check compares values: against the batched :func:`xailib.metrics.evaluate` (same seed,
same streams), between 1 and 2 processes, and between an interrupted-and-resumed run and an
uninterrupted one (byte-identical files).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from xailib import cli

ROOT = Path(__file__).resolve().parents[1]
N = 6
ARGS = ["evaluate", "--model", "mnist_cnn", "--data", "mnist", "--explainers", "Grad,Grad-SG", "--laws", "NB",
        "--n-infd", "64", "--n-sens", "2", "--n-sg", "8", "--seed", "0", "--dtype", "float64", "--threads", "1",
        "--quiet"]


def run_inprocess(out, *extra, n=N):
    threads = torch.get_num_threads()
    try:
        return cli.main(ARGS + ["--n", str(n), "--out", str(out), *extra])
    finally:
        torch.set_num_threads(threads)


def run_torchrun(out, nproc=2, *extra, n=N):
    env = dict(os.environ, OMP_NUM_THREADS="1", XAILIB_PROGRESS="0",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           "-m", "xailib", *ARGS, "--n-instances", str(n), "--out", str(out), *extra]
    r = subprocess.run(cmd, cwd=out.parent, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run.csv"
    assert run_inprocess(out) == 0
    return out


def test_rows_equal_batched_evaluate(reference):
    """Per-instance rows = the batched `metrics.evaluate` (shared draws: an instance alone = in a batch)."""
    from xailib import data, experiments, metrics, models

    rows = pd.read_csv(reference)
    assert len(rows) == N * 2 * 5 and rows["instance"].is_monotonic_increasing
    model = models.get_model("mnist_cnn", verbose=False).double()
    x, y = data.load("mnist", n=N, verbose=False)
    s = dict(experiments.mnist_settings("default"), n_sg=8)
    ex = experiments.make_explainers(model, s, names=["Grad", "Grad-SG"])
    ev = metrics.evaluate(model, ex, x.double(), y, perturbations={"NB": experiments.laws(s)["NB"]},
                          n_infd=64, n_sens=2, sens_reps=1, generator=0)
    for metric in ("SENS_max", "INFD[NB]", "INFD[NB] raw", "INFD[NB] beta", "INFD[NB] mc_se"):
        for e in ("Grad", "Grad-SG"):
            got = rows[(rows.metric == metric) & (rows.explainer == e)].sort_values("instance")["value"]
            want = torch.tensor(ev.wide(metric)[e].values, dtype=torch.float64)
            assert torch.allclose(torch.tensor(got.values), want, rtol=0, atol=1e-12), (metric, e)
    assert (rows["target"] == rows["label"]).all() and list(rows["label"][::10]) == y.tolist()
    summary = pd.read_csv(reference.with_name("run.summary.csv"), index_col=0)
    assert summary.loc["Grad-SG", "INFD[NB]"] == pytest.approx(ev.summary.loc["Grad-SG", "INFD[NB]"], rel=1e-5)
    assert json.loads(reference.with_name("run.csv.config.json").read_text())["seed"] == 0
    assert not reference.with_name("run.csv.parts").exists()


@pytest.mark.slow
def test_torchrun_two_processes_same_file(reference, tmp_path):
    out = tmp_path / "run.csv"
    run_torchrun(out, 2)
    a, b = pd.read_csv(reference), pd.read_csv(out)
    assert (a[list(cli.COLUMNS[:5])] == b[list(cli.COLUMNS[:5])]).all().all()
    assert (a["value"] - b["value"]).abs().max() <= 1e-12
    assert out.read_bytes() == reference.read_bytes()  # bitwise here: same code path per instance


@pytest.mark.slow
def test_interrupted_then_resumed_under_torchrun(reference, tmp_path, capsys):
    out = tmp_path / "run.csv"
    assert run_inprocess(out, "--stop-after", "2") == 0  # simulated interruption after 2 instances
    partial = pd.read_csv(out)
    assert sorted(partial["instance"].unique()) == [0, 1]
    assert "rerun the same command to resume" in capsys.readouterr().out
    # a kill in the middle of a write leaves a cut line: it must be ignored, not read as a value
    part = next(out.with_name("run.csv.parts").glob("*.csv"))
    part.write_text(part.read_text() + "3,3,3,Grad,SENS_max,0.12")
    r = run_torchrun(out, 2)
    assert "2 instance(s) already done" in r.stdout
    assert out.read_bytes() == reference.read_bytes()
    assert not out.with_name("run.csv.parts").exists()


def test_parse_drops_cut_line_and_incomplete_instance(tmp_path):
    P = cli.paths(str(tmp_path / "r.csv"))
    P["parts"].mkdir()
    (P["parts"] / "a.csv").write_text("0,1,1,G,m1,0.5\n0,1,1,G,m2,0.25\n1,2,2,G,m1,0.75\n1,2,2,G,m2,0.12")
    done = cli.read_done(P, per_instance=2)
    assert list(done) == [0] and sorted(r[5] for r in done[0]) == [0.25, 0.5]


def _error(capsys, *argv):
    with pytest.raises(SystemExit) as e:
        cli.main(list(argv))
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def test_bad_input_names_the_flag(tmp_path, capsys):
    base = ARGS + ["--n", "2"]
    out = str(tmp_path / "x.csv")
    msg = _error(capsys, *base, "--out", out, "--explainers", "Grad,Gradd")
    assert "--explainers" in msg and "Gradd" in msg
    msg = _error(capsys, *base, "--out", out, "--laws", "NB,Gauss")
    assert "--laws" in msg and "Gauss" in msg
    msg = _error(capsys, *[a if a != "mnist_cnn" else "no_such_net" for a in base], "--out", out)
    assert "--model" in msg and "no_such_net" in msg
    msg = _error(capsys, *[a if a != "mnist" else "svhn" for a in base], "--out", out)
    assert "--data" in msg and "svhn" in msg
    empty = tmp_path / "empty"
    empty.mkdir()
    msg = _error(capsys, *[a if a != "mnist" else str(empty) for a in base], "--out", out)
    assert "--data" in msg and "no images" in msg
    (tmp_path / "broken" / "cat").mkdir(parents=True)
    for name in ("a.png", "b.png"):
        (tmp_path / "broken" / "cat" / name).write_bytes(b"not a png")
    msg = _error(capsys, *[a if a != "mnist" else str(tmp_path / "broken") for a in base], "--out", out)
    assert "--data" in msg and "cannot read image" in msg
    msg = _error(capsys, *base, "--out", str(tmp_path / "x.txt"))
    assert "--out" in msg
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        msg = _error(capsys, *base, "--out", str(tmp_path / "x.parquet"))
        assert "--out" in msg and "pyarrow" in msg
    msg = _error(capsys, *base, "--out", out, "--split", "validation")
    assert "--split" in msg and "validation" in msg
    assert not any(p.suffix == ".csv" for p in tmp_path.iterdir())  # nothing written by refused runs


def test_other_configuration_never_overwrites(reference, tmp_path, capsys):
    out = tmp_path / "run.csv"
    for f in ("run.csv", "run.csv.config.json"):
        (tmp_path / f).write_bytes(reference.with_name(f).read_bytes())
    before = out.read_bytes()
    msg = _error(capsys, *[a if a != "0" else "1" for a in ARGS], "--n", str(N), "--out", str(out))
    assert "--out" in msg and "different configuration" in msg and "seed" in msg
    assert out.read_bytes() == before
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("a,b\n1,2\n")
    msg = _error(capsys, *ARGS, "--n", str(N), "--out", str(foreign))
    assert "--out" in msg and foreign.read_text() == "a,b\n1,2\n"


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_torchscript_model_on_image_folder(tmp_path):
    """A TorchScript file and a flat folder of PNGs, explaining the predicted class."""
    import numpy as np
    from PIL import Image

    from xailib import metrics, perturbations

    g = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 16), torch.nn.Softplus(),
                              torch.nn.Linear(16, 4))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    model_file = tmp_path / "net.pt"
    torch.jit.script(net).save(str(model_file))
    folder = tmp_path / "images"
    folder.mkdir()
    imgs = (torch.rand(3, 8, 8, 3, generator=g) * 255).to(torch.uint8).numpy()
    for k, a in enumerate(imgs):
        Image.fromarray(np.ascontiguousarray(a)).save(folder / f"img{k}.png")
    out = tmp_path / "f.csv"
    argv = ["evaluate", "--model", str(model_file), "--data", str(folder), "--image-size", "8", "--target", "pred",
            "--n", "3", "--explainers", "Grad", "--laws", "NB", "--n-infd", "32", "--n-sens", "0",
            "--dtype", "float64", "--threads", "1", "--quiet", "--out", str(out)]
    assert cli.main(argv) == 0
    rows = pd.read_csv(out)
    x = (torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255).double()  # read as float32, as the loaders
    net = net.double()
    target = net(x).argmax(1)
    assert rows["target"].tolist()[::4] == target.tolist() and (rows["label"] == -1).all()
    want = metrics.infidelity(net, torch.autograd.functional.jacobian(lambda v: net(v)[range(3), target].sum(), x),
                              x, target, perturbations.NoisyBaseline(sigma=0.2), n_samples=32, generator=0)
    got = rows[rows.metric == "INFD[NB]"]["value"].to_numpy()
    assert np.allclose(got, want.numpy(), rtol=0, atol=1e-12)
    msg_args = [a if a != "pred" else "label" for a in argv]
    with pytest.raises(SystemExit):
        cli.main(msg_args[:-1] + [str(tmp_path / "g.csv")])  # no class sub-folders: no labels


def test_torchvision_classifier_by_name_offline(tmp_path, monkeypatch):
    """--model resnet18: torchvision's weights from the hub cache; missing weights name the fix
    (no network call); the data set's own laws (ImageNet: squares of 10-30 on 2×2 superpixels)."""
    import argparse

    import torchvision

    from xailib import pretrained

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("XAILIB_DOWNLOAD", raising=False)
    with pytest.raises(cli.CliError, match="XAILIB_DOWNLOAD=1"):
        cli.load_model("resnet18", quiet=True)
    path = pretrained.imagenet_weights_file("resnet18")
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    ref = torchvision.models.resnet18(weights=None).eval()
    torch.save(ref.state_dict(), path)
    model = cli.load_model("resnet18", quiet=True)
    x = torch.rand(1, 3, 64, 64)
    from xailib.data import IMAGENET_MEAN, IMAGENET_STD

    norm = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(norm))
    args = argparse.Namespace(data="imagenet", n_infd=8, n_sens=1, radius=0.1, n_sg=2, sg_radius=0.2, ig_steps=2,
                              n_opt=8, n_shap=8)
    s = cli.settings_from(args)
    assert s["square_sizes"] == (10, 30) and s["square_groups"] == 2
    assert cli.settings_from(argparse.Namespace(**dict(vars(args), data="mnist")))["square_sizes"] == (1, 10)
