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
    assert len(rows) == N * 2 * 7 and rows["instance"].is_monotonic_increasing  # SENS_max, 5 INFD fields, rINFD
    model = models.get_model("mnist_cnn", verbose=False).double()
    x, y = data.load("mnist", n=N, verbose=False)
    s = dict(experiments.mnist_settings("default"), n_sg=8)
    ex = experiments.make_explainers(model, s, names=["Grad", "Grad-SG"])
    ev = metrics.evaluate(model, ex, x.double(), y, perturbations={"NB": experiments.laws(s)["NB"]},
                          n_infd=64, n_sens=2, sens_reps=2, generator=0, relative=True)  # --sens-reps: 2 by default
    for metric in ("SENS_max", "INFD[NB]", "INFD[NB] raw", "INFD[NB] beta", "INFD[NB] mc_se", "INFD[NB] energy",
                   "rINFD[NB]"):
        for e in ("Grad", "Grad-SG"):
            got = rows[(rows.metric == metric) & (rows.explainer == e)].sort_values("instance")["value"]
            want = torch.tensor(ev.wide(metric)[e].values, dtype=torch.float64)
            assert torch.allclose(torch.tensor(got.values), want, rtol=0, atol=1e-12), (metric, e)
    assert (rows["target"] == rows["label"]).all() and list(rows["label"][::14]) == y.tolist()
    summary = pd.read_csv(reference.with_name("run.summary.csv"), index_col=0)
    assert summary.loc["Grad-SG", "INFD[NB]"] == pytest.approx(ev.summary.loc["Grad-SG", "INFD[NB]"], rel=1e-5)
    assert summary.loc["Grad-SG", "rINFD[NB]"] == pytest.approx(ev.summary.loc["Grad-SG", "rINFD[NB]"], rel=1e-5)
    assert summary.loc["Grad", "SENS_max"] == pytest.approx(ev.summary.loc["Grad", "SENS_max"], rel=1e-5)
    # one replication is another estimator (the mean of one max, not of two): the CLI says which it ran
    one = metrics.evaluate(model, ex, x.double(), y, perturbations={"NB": experiments.laws(s)["NB"]},
                           n_infd=64, n_sens=2, sens_reps=1, generator=0)
    assert abs(one.summary.loc["Grad", "SENS_max"] - summary.loc["Grad", "SENS_max"]) > 1e-6
    assert json.loads(reference.with_name("run.csv.config.json").read_text())["settings"]["sens_reps"] == 2
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


@pytest.mark.slow
def test_torchrun_bad_flag_one_line_per_rank(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", XAILIB_PROGRESS="0",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "xailib",
           *ARGS, "--n-instances", "2", "--laws", "NB,Gauss", "--out", str(tmp_path / "run.csv")]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if "error: rank" in ln and "--laws" in ln and "Gauss" in ln]
    ranks = [ln.split("error: rank ")[1][0] for ln in lines]
    # rank 0's line always; rank 1's once at most (torchrun may stop it before it prints)
    assert "0" in ranks and len(ranks) == len(set(ranks)), r.stderr[-3000:]
    assert "xailib/cli.py" not in r.stderr and not (tmp_path / "run.csv.parts").exists()


def test_parse_drops_cut_line_and_incomplete_instance(tmp_path):
    from xailib import runfiles

    P = cli.paths(str(tmp_path / "r.csv"))
    P["parts"].mkdir()
    rows = [(0, 1, 1, "G", "m1", 0.5, "h0"), (0, 1, 1, "G", "m2", 0.25, "h0"), (1, 2, 2, "G", "m1", 0.75, "h1")]
    text = runfiles.format_rows(rows)
    cut = runfiles.format_rows([(1, 2, 2, "G", "m2", 0.125, "h1")])[:-9]  # a write cut by a kill
    (P["parts"] / "a.csv").write_text(text + cut)
    done = runfiles.read_done(P, [("G", "m1"), ("G", "m2")])
    assert list(done) == [0] and sorted(r[5] for r in done[0][1]) == [0.25, 0.5]


def _copy_run(reference, folder, stem="run"):
    """The reference run's three files, copied into ``folder`` as those of ``--out <stem>.csv``."""
    for f in ("run.csv", "run.csv.config.json", "run.summary.csv"):
        (folder / f.replace("run.", stem + ".", 1)).write_bytes(reference.with_name(f).read_bytes())


def _edit_value(path, line_no, new):
    lines = path.read_text().split("\n")
    f = lines[line_no - 1].split(",")
    f[5] = new
    lines[line_no - 1] = ",".join(f)
    path.write_text("\n".join(lines))


def test_changed_rows_are_refused_and_verify_fails(reference, tmp_path, capsys):
    """A value changed to another float or to nan, in the finished file or in a part file, is
    refused with the file and line (never trusted, never dropped from the summary)."""
    from xailib import runfiles

    assert cli.main(["verify", str(reference)]) == 0
    assert "OK" in capsys.readouterr().out
    for new in (None, "nan"):
        d = tmp_path / (new or "float")
        d.mkdir()
        _copy_run(reference, d)
        out = d / "run.csv"
        old = out.read_text().split("\n")[7].split(",")[5]
        _edit_value(out, 8, new or repr(float(old) * 1.001))
        msg = _error(capsys, *ARGS, "--n", str(N), "--out", str(out))
        assert "--out" in msg and "line 8" in msg and "checksum" in msg
        assert cli.main(["verify", str(out)]) == 1
        assert "FAILED" in capsys.readouterr().out
    # a part file: its middle line changed
    P = cli.paths(str(tmp_path / "p" / "run.csv"))
    P["parts"].mkdir(parents=True)
    part = P["parts"] / "rank00000-of-00001-x.csv"
    part.write_text(runfiles.format_rows([(0, 1, 1, "G", "m1", 0.5, "h0"), (0, 1, 1, "G", "m2", 0.25, "h0"),
                                          (1, 2, 2, "G", "m1", 0.75, "h1"), (1, 2, 2, "G", "m2", 0.1, "h1")]))
    _edit_value(part, 2, "nan")
    with pytest.raises(runfiles.RunFileError, match="line 2: checksum mismatch"):
        runfiles.read_done(P, [("G", "m1"), ("G", "m2")])
    # a row of an unknown metric (a misspelling), with a valid checksum: one line, not a KeyError
    part.write_text(runfiles.format_rows([(0, 1, 1, "G", "m1", 0.5, "h0"), (0, 1, 1, "G", "m_x", 0.25, "h0")]))
    with pytest.raises(runfiles.RunFileError, match="line 2: explainer 'G', metric 'm_x' is not one of"):
        runfiles.read_done(P, [("G", "m1"), ("G", "m2")])


def test_resume_after_cut_line_is_byte_identical(reference, tmp_path, capsys):
    out = tmp_path / "run.csv"
    assert run_inprocess(out, "--stop-after", "3") == 0
    part = next(out.with_name("run.csv.parts").glob("*.csv"))
    part.write_text(part.read_text() + "3,3,3,Grad,SENS_max,0.12")  # killed mid-write
    assert run_inprocess(out) == 0
    assert "3 instance(s) already done" in capsys.readouterr().out
    for f in ("run.csv", "run.summary.csv"):
        assert out.with_name(f).read_bytes() == reference.with_name(f).read_bytes()
    assert cli.main(["verify", str(out)]) == 0


def test_a_second_run_on_the_same_out_is_refused(reference, tmp_path, capsys):
    """The lock: held by a live process, a second run is refused naming it; a killed holder
    leaves nothing to clean up (the kernel releases the lock)."""
    out = tmp_path / "run.csv"
    _copy_run(reference, tmp_path)
    code = ("import sys, time; from xailib.runfiles import Lock; l = Lock(sys.argv[1]); "
            "assert l.acquire() is None; print('held', flush=True); time.sleep(120)")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    holder = subprocess.Popen([sys.executable, "-c", code, str(cli.paths(out)["lock"])], stdout=subprocess.PIPE,
                              text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        msg = _error(capsys, *ARGS, "--n", str(N), "--out", str(out))
        assert "being written by another run" in msg and f"pid {holder.pid}" in msg
    finally:
        holder.kill()
        holder.wait()
    assert run_inprocess(out) == 0  # the dead holder's lock is gone: the run proceeds
    assert out.read_bytes() == reference.read_bytes()
    assert not cli.paths(out)["lock"].exists()


def test_summaries_are_never_overwritten(reference, tmp_path, capsys):
    own = tmp_path / "run.summary.csv"
    own.write_text("my notes\n")
    msg = _error(capsys, *ARGS, "--n", "2", "--out", str(tmp_path / "run.csv"))
    assert "run.summary.csv" in msg and "not written by this run" in msg and own.read_text() == "my notes\n"
    d = tmp_path / "b"
    d.mkdir()
    _copy_run(reference, d, "x.summary")  # a finished run whose --out was x.summary.csv
    first = (d / "x.summary.csv").read_bytes()
    msg = _error(capsys, *ARGS, "--n", str(N), "--out", str(d / "x.csv"))
    assert "x.summary.csv" in msg and (d / "x.summary.csv").read_bytes() == first


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
    msg = _error(capsys, *base, "--out", out, "--sens-reps", "0")
    assert "--sens-reps" in msg and ">= 1" in msg
    msg = _error(capsys, *base, "--out", out, "--split", "validation")
    assert "--split" in msg and "validation" in msg
    (tmp_path / "afile").write_text("")
    msg = _error(capsys, *base, "--out", str(tmp_path / "afile" / "x.csv"))  # parent is a file
    assert "--out" in msg and "cannot write" in msg
    for dev in ("meta", "cuda:7", "no_such_device"):
        msg = _error(capsys, *base, "--out", out, "--device", dev)
        assert "--device" in msg and dev.split(":")[0] in msg
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
    assert rows["target"].tolist()[::6] == target.tolist() and (rows["label"] == -1).all()  # 6 metrics per instance
    want = metrics.infidelity(net, torch.autograd.functional.jacobian(lambda v: net(v)[range(3), target].sum(), x),
                              x, target, perturbations.NoisyBaseline(sigma=0.2), n_samples=32, generator=0)
    got = rows[rows.metric == "INFD[NB]"]["value"].to_numpy()
    assert np.allclose(got, want.numpy(), rtol=0, atol=1e-12)
    msg_args = [a if a != "pred" else "label" for a in argv]
    with pytest.raises(SystemExit):
        cli.main(msg_args[:-1] + [str(tmp_path / "g.csv")])  # no class sub-folders: no labels


def _script_and_images(tmp_path, net, images, name="net.pt"):
    """A TorchScript file of ``net`` and a folder ``images/cls/img<k>.png`` of uint8 arrays."""
    import numpy as np
    from PIL import Image

    model_file = tmp_path / name
    torch.jit.script(net).save(str(model_file))
    folder = tmp_path / "images" / "cls"
    folder.mkdir(parents=True, exist_ok=True)
    for k, a in enumerate(images):
        Image.fromarray(np.ascontiguousarray(a)).save(folder / f"img{k}.png")
    return model_file, folder.parent


class _NanAtBlack(torch.nn.Module):
    """NaN logits exactly for an all-black image: with a finite gradient (``where``) or, with
    ``nan_grad``, a NaN one too (logits times s/s, s the input's sum)."""

    def __init__(self, c, nan_grad: bool = False):
        super().__init__()
        self.lin = torch.nn.Linear(c * 8 * 8, 3)
        self.nan_grad = nan_grad

    def forward(self, x):
        s = x.flatten(1).sum(1, keepdim=True)
        y = self.lin(x.flatten(1))
        if self.nan_grad:
            return y * (s / s)
        return torch.where(s > 0, y, torch.full_like(y, float("nan")))


def _folder_argv(model_file, folder, out, *extra):
    return ["evaluate", "--model", str(model_file), "--data", str(folder), "--image-size", "8", "--n", "3",
            "--explainers", "Grad", "--laws", "NB", "--n-infd", "16", "--n-sens", "2", "--dtype", "float64",
            "--threads", "1", "--quiet", "--out", str(out), *extra]


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_nan_instance_makes_the_summary_nan_with_a_note(tmp_path, capsys):
    from xailib import metrics

    g = torch.Generator().manual_seed(0)
    imgs = (torch.rand(3, 8, 8, 3, generator=g) * 255).to(torch.uint8)
    imgs[1] = 0  # instance 1: the model returns NaN
    torch.manual_seed(0)
    net = _NanAtBlack(3)
    model_file, folder = _script_and_images(tmp_path, net, imgs.numpy())
    out = tmp_path / "run.csv"
    assert cli.main(_folder_argv(model_file, folder, out)) == 0
    printed = capsys.readouterr().out
    rows = pd.read_csv(out)
    infd = rows[rows.metric == "INFD[NB]"].set_index("instance")["value"]
    assert infd.isna().tolist() == [False, True, False] and rows[rows.instance != 1]["value"].notna().all()
    summary = pd.read_csv(out.with_name("run.summary.csv"), index_col=0)
    assert pd.isna(summary.loc["Grad", "INFD[NB]"]) and pd.isna(summary.loc["Grad", "INFD[NB] se"])
    assert "note: Grad × INFD[NB] is NaN: not finite at 1 of 3 instance(s) (1)" in printed
    assert cli.main(["verify", str(out)]) == 0  # NaN written by the run is a result, not a corruption
    # xailib.evaluate says the same
    x = imgs.permute(0, 3, 1, 2).double() / 255
    from xailib.explainers import Gradient

    ev = metrics.evaluate(net.double(), {"Grad": Gradient(net.double())}, x, torch.zeros(3, dtype=torch.long),
                          n_infd=16, n_sens=2, generator=0)
    assert pd.isna(ev.summary.loc["Grad", "INFD[NB]"])
    assert any("Grad × INFD[NB]: not finite at 1 of 3 instance(s) (1)" in n for n in ev.notes)
    # a NaN gradient too: every value of the instance is NaN, the others are unchanged
    net2 = _NanAtBlack(3, nan_grad=True)
    net2.load_state_dict(net.state_dict())
    model2, _ = _script_and_images(tmp_path, net2, [], name="net2.pt")
    out2 = tmp_path / "run2.csv"
    assert cli.main(_folder_argv(model2, folder, out2)) == 0
    rows2 = pd.read_csv(out2)
    assert rows2[rows2.instance == 1]["value"].isna().all()
    keep = rows.instance != 1
    assert abs(rows2[keep]["value"].to_numpy() - rows[keep]["value"].to_numpy()).max() < 1e-12


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_data_changed_between_runs_is_refused(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    g = torch.Generator().manual_seed(1)
    imgs = (torch.rand(4, 8, 8, 3, generator=g) * 255).to(torch.uint8).numpy()
    torch.manual_seed(0)
    model_file, folder = _script_and_images(tmp_path, _NanAtBlack(3), imgs[:3])
    out = tmp_path / "run.csv"
    assert cli.main(_folder_argv(model_file, folder, out, "--stop-after", "2")) == 0
    before = {p.name: p.read_bytes() for p in out.with_name("run.csv.parts").iterdir()}
    Image.fromarray(imgs[3]).save(folder / "cls" / "img0a.png")  # sorts before img1: instance 1 changes
    msg = _error(capsys, *_folder_argv(model_file, folder, out))
    assert "--data" in msg and "instance 1 is not the input it was scored on" in msg
    assert {p.name: p.read_bytes() for p in out.with_name("run.csv.parts").iterdir()} == before
    (folder / "cls" / "img0a.png").unlink()
    assert cli.main(_folder_argv(model_file, folder, out)) == 0  # restored: the run resumes and finishes
    # a finished run whose data then changed: verify names the instance
    Image.fromarray(imgs[3]).save(folder / "cls" / "img2.png")
    capsys.readouterr()
    assert cli.main(["verify", str(out)]) == 1
    assert "instance 2 is not the input" in capsys.readouterr().out
    assert cli.main(["verify", str(out), "--no-data"]) == 0


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_model_and_data_mismatch_in_one_line(tmp_path, capsys):
    """Checked by one forward pass before any work; a grayscale-only model on a folder of PNGs is
    read with one channel (--channels auto)."""
    g = torch.Generator().manual_seed(2)
    gray = (torch.rand(3, 8, 8, generator=g) * 255).to(torch.uint8).numpy()
    torch.manual_seed(0)
    model_file, folder = _script_and_images(tmp_path, _NanAtBlack(1), gray)
    out = tmp_path / "run.csv"
    assert cli.main(_folder_argv(model_file, folder, out)) == 0
    assert "with 1 channel (grayscale)" in capsys.readouterr().out
    assert json.loads(out.with_name("run.csv.config.json").read_text())["channels"] == 1
    msg = _error(capsys, *_folder_argv(model_file, folder, tmp_path / "b.csv", "--channels", "3"))
    assert "--model" in msg and "(1, 3, 8, 8)" in msg
    msg = _error(capsys, *[a if a != "8" else "10" for a in _folder_argv(model_file, folder, tmp_path / "c.csv")])
    assert "--model" in msg and "(1, 3, 10, 10)" in msg
    assert not (tmp_path / "b.csv").exists() and not (tmp_path / "c.csv.config.json").exists()
    msg = _error(capsys, *ARGS, "--n", "100000000000", "--out", str(tmp_path / "d.csv"))
    assert msg.startswith("python -m xailib evaluate: error: argument --n:")
    msg = _error(capsys, *ARGS, "--n", "1001", "--out", str(tmp_path / "d.csv"))
    assert "argument --n:" in msg


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
    args = argparse.Namespace(data="imagenet", n_infd=8, n_sens=1, sens_reps=2, radius=0.1, n_sg=2, sg_radius=0.2, ig_steps=2,
                              n_opt=8, n_shap=8)
    s = cli.settings_from(args)
    assert s["square_sizes"] == (10, 30) and s["square_groups"] == 2
    assert cli.settings_from(argparse.Namespace(**dict(vars(args), data="mnist")))["square_sizes"] == (1, 10)


def test_shipped_cifar10_network_by_name(tmp_path, capsys):
    """--model cifar10_cnn --data cifar10: the wheel's trained CNN on foolbox's real images; the rows
    equal the batched `evaluate` on the same network; an image folder of the wrong size is refused
    by the one-line probe."""
    from xailib import data, experiments, metrics, pretrained

    out = tmp_path / "run.csv"
    argv = ["evaluate", "--model", "cifar10_cnn", "--data", "cifar10", "--explainers", "Grad", "--laws", "NB",
            "--n-infd", "16", "--n-sens", "2", "--seed", "0", "--dtype", "float64", "--threads", "1", "--quiet",
            "--n", "2", "--out", str(out)]
    assert cli.main(argv) == 0
    rows = pd.read_csv(out)
    model = pretrained.cifar10_cnn(verbose=False).double()
    x, y = data.load("cifar10", n=2, verbose=False)
    s = experiments.settings("cifar10", "default")
    ev = metrics.evaluate(model, experiments.make_explainers(model, s, names=["Grad"]), x.double(), y,
                          perturbations={"NB": experiments.laws(s)["NB"]}, n_infd=16, n_sens=2, sens_reps=2, generator=0)
    got = rows[(rows.metric == "INFD[NB]") & (rows.explainer == "Grad")].sort_values("instance")["value"]
    assert torch.allclose(torch.tensor(got.values), torch.tensor(ev.wide("INFD[NB]")["Grad"].values, dtype=torch.float64),
                          rtol=0, atol=1e-12)
    assert json.loads(out.with_name("run.csv.config.json").read_text())["model"].startswith("cifar10_cnn:weights-sha256=")
    folder = tmp_path / "imgs"
    folder.mkdir()
    from PIL import Image

    Image.fromarray((torch.rand(28, 28, 3) * 255).to(torch.uint8).numpy()).save(folder / "a_3.png")
    msg = _error(capsys, "evaluate", "--model", "cifar10_cnn", "--data", str(folder), "--image-size", "28",
                 "--explainers", "Grad", "--n", "1", "--target", "pred", "--out", str(tmp_path / "b.csv"), "--quiet")
    assert "--model" in msg and "(N, 3, 32, 32)" in msg


def test_road_law_rows_equal_evaluate(tmp_path):
    """--laws ROAD: square removal with noisy linear imputation, the same values as `evaluate` with that law."""
    from xailib import data, experiments, metrics, models
    from xailib.perturbations import ImputedSquareRemoval

    out = tmp_path / "road.csv"
    assert cli.main(["evaluate", "--model", "mnist_cnn", "--data", "mnist", "--explainers", "Grad", "--laws", "ROAD",
                     "--n-infd", "16", "--n-sens", "0", "--seed", "0", "--dtype", "float64", "--threads", "1",
                     "--quiet", "--n", "2", "--out", str(out)]) == 0
    rows = pd.read_csv(out)
    model = models.get_model("mnist_cnn", verbose=False).double()
    x, y = data.load("mnist", n=2, verbose=False)
    s = experiments.mnist_settings("default")
    law = ImputedSquareRemoval(sizes=tuple(s["square_sizes"]))
    ev = metrics.evaluate(model, experiments.make_explainers(model, s, names=["Grad"]), x.double(), y,
                          perturbations={"ROAD": law}, n_infd=16, n_sens=0, generator=0, relative=True)
    for metric in ("INFD[ROAD]", "rINFD[ROAD]"):
        got = rows[rows.metric == metric].sort_values("instance")["value"].to_numpy()
        assert torch.allclose(torch.tensor(got), torch.tensor(ev.wide(metric)["Grad"].to_numpy()), rtol=0, atol=1e-12)
