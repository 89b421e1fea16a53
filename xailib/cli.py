"""Command line: ``python -m xailib evaluate``, resumable and sharded with torch.distributed.

One row per (instance, explainer, metric) is computed **one instance at a time** with
:func:`xailib.metrics.infidelity` and :func:`xailib.metrics.sensitivity_max`. Every random draw
(perturbations, sensitivity neighbours, SmoothGrad noise, the optimal explanations' samples)
depends only on ``--seed`` and is shared by all instances, so an instance's values do not depend
on which process, shard or batch computes it: a run split over ``K`` processes (``torchrun``) or
interrupted and resumed writes the same file as one uninterrupted process.

Files written for ``--out run.csv``:

* ``run.csv`` (or ``run.parquet``): the per-instance rows ``instance, label, target, explainer,
  metric, value`` sorted by instance, explainer (command-line order) and metric;
* ``run.config.json``: the configuration (every flag that changes a value); a rerun with another
  configuration is refused, never overwriting results;
* ``run.summary.csv``: mean and standard error over instances per explainer and metric;
* ``run.csv.parts/``: while running, one append-only file per process (rows flushed as each
  instance finishes); merged into ``run.csv`` and removed at the end.

See the book's page *Running at scale* (``book/scale.md``).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import hashlib
import io
import json
import math
import os
import sys
import textwrap
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .experiments import laws as _laws, make_explainers as _make_explainers, mnist_settings as _mnist_settings
from .paper import METHODS

COLUMNS = ("instance", "label", "target", "explainer", "metric", "value")
#: metrics written per law L (besides ``SENS_max``): value, raw value, optimal scale, MC standard error
INFD_FIELDS = ("", " raw", " beta", " mc_se")
FORMAT_VERSION = 1

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

explainers: Grad (gradient), IG (integrated gradients), GBP (guided backprop),
            X-SG (SmoothGrad of X), SHAP (KernelSHAP), NB and Square (the optimal
            explanations of those laws), Occlusion (remove one pixel)
laws:       NB (noisy baseline), Square (random square removed)
output:     <out> per-instance rows; <out stem>.summary.csv means and standard
            errors; <out>.config.json the configuration (a rerun must match it).
The book's page "Running at scale" explains runs on several processes and machines.
"""


class CliError(Exception):
    """A bad input: reported as ``argparse`` does (``usage`` + one line naming the flag, exit 2)."""


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
                        "torchvision ImageNet classifier (resnet50, ...: xailib.pretrained) or a TorchScript file")
    g.add_argument("--data", required=True,
                   help="mnist, cifar10, imagenet, or a folder of images (class sub-folders give labels)")
    g.add_argument("--split", default=None, help="data split (default: the held-out split, test or val)")
    g.add_argument("--n", "--n-instances", dest="n", type=int, required=True,
                   help="number of instances (the first N of the split); under torchrun write --n-instances "
                        "(torchrun's own parser reads --n as an abbreviation of its --nnodes/--nproc-per-node)")
    g.add_argument("--target", choices=("label", "pred"), default="label",
                   help="class to explain: the true label (default) or the model's prediction")
    g.add_argument("--image-size", type=int, default=224, help="side of images read from a folder (default 224)")
    g = p.add_argument_group("explainers and metrics")
    g.add_argument("--explainers", default="Grad,Grad-SG",
                   help="comma-separated explainer names (default Grad,Grad-SG)")
    g.add_argument("--laws", default="NB,Square", help="comma-separated perturbation laws for INFD (default NB,Square)")
    g.add_argument("--n-infd", type=int, default=s["n_infd"], help=f"perturbations per INFD value (default {s['n_infd']})")
    g.add_argument("--n-sens", type=int, default=s["n_sens"],
                   help=f"SENS_max neighbours; 0 skips SENS_max (default {s['n_sens']})")
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
    s.update(n_infd=args.n_infd, n_sens=args.n_sens, sens_radius=args.radius, n_sg=args.n_sg,
             sg_radius=args.sg_radius, ig_steps=args.ig_steps, n_opt=args.n_opt, n_shap=args.n_shap)
    return s


def check_args(args) -> None:
    """Validate what needs no model or data; raises :class:`CliError` naming the flag."""
    for flag, v, lo in (("--n", args.n, 1), ("--n-infd", args.n_infd, 1), ("--n-sens", args.n_sens, 0),
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
    valid_laws = list(_laws(settings_from(args)))
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
    """``xailib.models.get_model(name)``, ``xailib.pretrained.imagenet_model(name)`` for a torchvision
    classifier name, or ``torch.jit.load(name)`` for an existing file."""
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

        if name in pretrained._classifiers():
            try:
                with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
                    return pretrained.imagenet_model(name, verbose=True)
            except FileNotFoundError as e:
                raise CliError(f"argument --model: {str(e).splitlines()[0]}") from None
        valid = ", ".join(getattr(models, "MODEL_NAMES", ("mnist_cnn", "mnist_cnn_robust")))
        raise CliError(f"argument --model: {name!r} is neither a model name ({valid}), a torchvision "
                       "ImageNet classifier (resnet50, ...) nor a TorchScript file") from None
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


def _read_image(path: Path, size: int):
    import numpy as np
    import torch
    from PIL import Image

    try:
        with Image.open(path) as im:
            a = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.uint8).copy()
    except Exception as e:
        raise CliError(f"argument --data: cannot read image {str(path)!r}: {type(e).__name__}: {e}") from None
    return torch.from_numpy(a).permute(2, 0, 1).float().div_(255.0)


def check_data(args) -> None:
    """Cheap checks of ``--data`` before any work (every process runs them)."""
    from . import data

    if os.path.isdir(args.data):
        items = _folder_items(Path(args.data), args.n)
        if args.target == "label" and items[0][1] < 0:
            raise CliError("argument --data: the folder has no class sub-folders (no labels); use --target pred")
        _read_image(items[0][0], args.image_size)
        return
    name = args.data.lower().replace("-", "")
    if name not in data.DATASETS:
        raise CliError(f"argument --data: {args.data!r} is neither a data set ({', '.join(data.DATASETS)}) "
                       "nor an existing folder of images")
    if args.split is not None and args.split not in data.SPLITS[name]:
        raise CliError(f"argument --split: {args.data} has splits {', '.join(data.SPLITS[name])}, got {args.split!r}")


def load_data(args, indices: Sequence[int]):
    """``(x, y, description)``: instances ``indices`` (of the first ``--n``) of ``--data``.

    A folder is read image by image, so a process holds only its own instances; the data sets of
    :func:`xailib.data.load` are loaded (first ``--n``) and then subset.
    """
    import torch
    from . import data

    if os.path.isdir(args.data):
        items = _folder_items(Path(args.data), args.n)
        xs = [_read_image(items[i][0], args.image_size) for i in indices]
        x = torch.stack(xs) if xs else torch.zeros(0, 3, args.image_size, args.image_size)
        y = torch.tensor([items[i][1] for i in indices], dtype=torch.long)
        return x, y, f"{args.n} images from folder {args.data}"
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            ds = data.load(args.data, args.split, n=args.n)
    except ValueError as e:
        flag = "--split" if "split" in str(e) else "--data"
        raise CliError(f"argument {flag}: {e}") from None
    except Exception as e:
        raise CliError(f"argument --data: cannot load {args.data!r}: {type(e).__name__}: {e}") from None
    if len(ds) < args.n:
        raise CliError(f"argument --n: {args.data!r} ({ds.split}) has only {len(ds)} instances, asked for {args.n}")
    idx = torch.tensor(list(indices), dtype=torch.long)
    return ds.x[idx].clone(), ds.y[idx].clone(), ds.description.removeprefix("xailib.data: ")


def _split_of(args) -> Optional[str]:
    """The split actually read (``--split``, else the data set's held-out split; None for a folder)."""
    from .data import SPLITS

    name = args.data.lower().replace("-", "")
    if os.path.isdir(args.data) or name not in SPLITS:
        return None
    return args.split or SPLITS[name][-1]


def configuration(args, model_id: str) -> dict:
    """Every input that changes a value (not ``--n``, ``--out``, ``--device``, ``--batch-size``, ``--threads``,
    ``--compile``)."""
    return {
        "format": FORMAT_VERSION,
        "model": model_id,
        "data": os.path.abspath(args.data) if os.path.isdir(args.data) else args.data.lower(),
        "split": _split_of(args),
        "target": args.target,
        "image_size": args.image_size if os.path.isdir(args.data) else None,
        "explainers": _split_names(args.explainers),
        "laws": _split_names(args.laws),
        "settings": settings_from(args),
        "seed": args.seed,
        "dtype": args.dtype,
    }


def _model_id(name: str) -> str:
    if os.path.isfile(name):
        h = hashlib.sha256(Path(name).read_bytes()).hexdigest()[:16]
        return f"torchscript:{os.path.abspath(name)}:sha256={h}"
    return name


# --------------------------------------------------------------------------- output files


def paths(out: str) -> dict:
    p = Path(out)
    return {
        "out": p,
        "config": p.with_name(p.name + ".config.json"),
        "summary": p.with_name(p.stem + ".summary.csv"),
        "parts": p.with_name(p.name + ".parts"),
    }


def check_config(P: dict, config: dict) -> None:
    """Refuse an output of another configuration (or of unknown origin); never overwrite it."""
    cfg_path, out = P["config"], P["out"]
    normal = json.loads(json.dumps(config))
    if cfg_path.is_file():
        try:
            old = json.loads(cfg_path.read_text())
        except (OSError, ValueError):
            raise CliError(f"argument --out: {str(cfg_path)!r} is unreadable; choose another --out") from None
        if old != normal:
            diff = sorted(k for k in set(old) | set(normal) if old.get(k) != normal.get(k))
            raise CliError(f"argument --out: {str(out)!r} holds results of a different configuration "
                           f"(differs in: {', '.join(diff)}); choose another --out or delete it")
    elif out.exists() or P["parts"].exists():
        raise CliError(f"argument --out: {str(out)!r} exists without {cfg_path.name} (not a resumable run "
                       "of this command); choose another --out or delete it")


def write_config(P: dict, config: dict) -> None:
    if not P["config"].is_file():
        P["config"].parent.mkdir(parents=True, exist_ok=True)
        tmp = P["config"].with_name(P["config"].name + f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, P["config"])


def _fmt(v: float) -> str:
    return repr(float(v))  # shortest text that reads back to the same float


def _parse_lines(text: str) -> List[tuple]:
    """Rows of a part file; a last line cut by an interruption (no newline) is dropped."""
    lines = text.split("\n")[:-1]  # the piece after the last newline is incomplete (or empty)
    rows = []
    for rec in csv.reader(lines):
        if len(rec) != len(COLUMNS) or rec[0] == "instance":
            continue
        try:
            rows.append((int(rec[0]), int(rec[1]), int(rec[2]), rec[3], rec[4], float(rec[5])))
        except ValueError:
            continue
    return rows


def read_done(P: dict, per_instance: int) -> Dict[int, List[tuple]]:
    """``{instance: its rows}`` for every instance complete in ``--out`` or in the part files."""
    rows: List[tuple] = []
    out = P["out"]
    if out.is_file():
        if out.suffix.lower() == ".parquet":
            import pandas as pd

            df = pd.read_parquet(out)
            rows += [tuple(r) for r in df[list(COLUMNS)].itertuples(index=False, name=None)]
        else:
            rows += _parse_lines(out.read_text())
    if P["parts"].is_dir():
        for f in sorted(P["parts"].glob("*.csv")):
            rows += _parse_lines(f.read_text())
    by: Dict[int, Dict[tuple, tuple]] = {}
    for r in rows:
        by.setdefault(r[0], {})[(r[3], r[4])] = r
    return {i: list(d.values()) for i, d in by.items() if len(d) == per_instance}


def row_order(explainers: Sequence[str], metrics: Sequence[str]):
    ex = {n: k for k, n in enumerate(explainers)}
    me = {n: k for k, n in enumerate(metrics)}
    return lambda r: (r[0], ex[r[3]], me[r[4]])


def write_final(P: dict, rows: List[tuple]) -> None:
    out = P["out"]
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    if out.suffix.lower() == ".parquet":
        import pandas as pd

        pd.DataFrame(rows, columns=list(COLUMNS)).to_parquet(tmp, index=False)
    else:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(COLUMNS)
            for r in rows:
                w.writerow((r[0], r[1], r[2], r[3], r[4], _fmt(r[5])))
    os.replace(tmp, out)


def summarize(rows: List[tuple], explainers: Sequence[str], metrics: Sequence[str]):
    """Mean and standard error (``std/√N``) over instances: explainers × ``metric``, ``metric se``."""
    import pandas as pd

    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df = df[df["metric"].isin(metrics)]
    g = df.groupby(["explainer", "metric"], sort=False)["value"]
    mean, std, n = g.mean(), g.std(), g.count()
    se = std / n.pow(0.5)
    table = pd.DataFrame(index=pd.Index(list(explainers), name="explainer"))
    for m in metrics:
        table[m] = [mean.get((e, m), float("nan")) for e in explainers]
        table[m + " se"] = [se.get((e, m), float("nan")) for e in explainers]
    return table


# --------------------------------------------------------------------------- distributed


def dist_env() -> tuple:
    """``(rank, world_size, local_rank, local_world_size)`` from torchrun's environment (else one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    return rank, world, local, local_world


def resolve_device(name: str, local_rank: int):
    import torch

    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise CliError(f"argument --device: {name!r} is not a torch device (cpu, cuda, cuda:0, ...)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CliError("argument --device: CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    return dev


# --------------------------------------------------------------------------- the run


def explain_instance(model, explainers: dict, laws: dict, x, t, args, batch_size) -> List[tuple]:
    """Rows ``(explainer, metric, value)`` of one instance ``x`` (shape ``(1, *F)``), target ``t``.

    ``SENS_max = max_j ‖Φ(x + u_j) − Φ(x)‖ / ‖Φ(x)‖`` (``--n-sens`` draws ``u_j`` uniform in the L∞
    ball of ``--radius``) and, per law, ``INFD = E[(β* IᵀΦ − (f(x) − f(x − I)))²]`` with its raw
    value, ``β*`` and Monte-Carlo standard error (``--n-infd`` draws); see the book's *The paper in
    brief*, § Metrics. A global explanation under a continuous law has no INFD: NaN rows.
    """
    from .metrics import infidelity, sensitivity_max

    out = []
    for name, e in explainers.items():
        phi = e(x, t)
        if args.n_sens > 0:
            s = sensitivity_max(e, x, t, radius=args.radius, n_samples=args.n_sens, generator=args.seed,
                                batch_size=batch_size)
            out.append((name, "SENS_max", float(s[0])))
        for lname, law in laws.items():
            col = f"INFD[{lname}]"
            if e.kind == "global" and not law.binary:
                vals = [float("nan")] * len(INFD_FIELDS)  # undefined: global explanation, continuous law
            else:
                d = infidelity(model, phi, x, t, perturbation=law, n_samples=args.n_infd, kind=e.kind,
                               generator=args.seed, batch_size=batch_size, return_details=True)
                vals = [float(d.infidelity[0]), float(d.raw[0]), float(d.beta[0]), float(d.se[0])]
            out += [(name, col + suf, v) for suf, v in zip(INFD_FIELDS, vals)]
    return out


def run_evaluate(args) -> int:
    import torch

    rank, world, local_rank, local_world = dist_env()
    check_args(args)
    quiet_io = rank != 0
    explainer_names, law_names = _split_names(args.explainers), _split_names(args.laws)
    metrics = (["SENS_max"] if args.n_sens > 0 else []) + [f"INFD[{l}]{s}" for l in law_names for s in INFD_FIELDS]
    per_instance = len(explainer_names) * len(metrics)
    config = configuration(args, _model_id(args.model))
    P = paths(args.out)
    check_config(P, config)  # every rank checks before any writes: all refuse together
    check_data(args)
    device = resolve_device(args.device, local_rank)
    threads = args.threads or int(os.environ.get("XAILIB_THREADS", "0")) or max(1, (os.cpu_count() or 1) // local_world)
    torch.set_num_threads(threads)
    dtype = getattr(torch, args.dtype)

    model = load_model(args.model, quiet=quiet_io).to(device=device, dtype=dtype).eval()
    for p in model.parameters():
        p.requires_grad_(False)
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
    all_laws = _laws(s)
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
        done = read_done(P, per_instance)
        todo = [i for i in range(args.n) if i not in done and i % world == rank]
        x_mine, y_mine, described = load_data(args, todo)  # only this process's instances
        x_mine, y_mine = x_mine.to(device=device, dtype=dtype), y_mine.to(device)
        if pg:
            dist.barrier()  # every process has its data: nothing is written before that
        if rank == 0:
            write_config(P, config)
            P["parts"].mkdir(parents=True, exist_ok=True)
        if pg:
            dist.barrier()
        if rank == 0:
            print(f"xailib evaluate: {described}; {len(explainer_names)} explainer(s) × {len(metrics)} metric(s); "
                  f"{len(done)} instance(s) already done, {args.n - len([i for i in done if i < args.n])} to do "
                  f"on {world} process(es), device {device.type}, {threads} thread(s) each", flush=True)
        part = P["parts"] / f"rank{rank:05d}-of-{world:05d}-pid{os.getpid()}.csv"
        from ._utils import progress

        finished = 0
        with open(part, "a", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
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
                buf = io.StringIO()
                csv.writer(buf, lineterminator="\n").writerows(
                    (i, lab, tg, n, m, _fmt(v)) for n, m, v in rows)
                fh.write(buf.getvalue())
                fh.flush()
                os.fsync(fh.fileno())
                finished += 1
        if not part.stat().st_size:
            part.unlink()
        if pg:
            dist.barrier()
        if rank != 0:
            return 0
        done = read_done(P, per_instance)
        missing = [i for i in range(args.n) if i not in done]
        rows = [r for i in sorted(done) for r in done[i]]
        rows.sort(key=row_order(explainer_names, metrics))
        write_final(P, rows)
        if not missing:
            for f in P["parts"].glob("*.csv"):
                f.unlink()
            with contextlib.suppress(OSError):
                P["parts"].rmdir()
        n_done = len([i for i in done if i < args.n])
        if missing:
            print(f"xailib evaluate: stopped with {n_done}/{args.n} instances in {P['out']}; "
                  "rerun the same command to resume", flush=True)
            return 0
        table = summarize([r for r in rows if r[0] < args.n], explainer_names,
                          ["SENS_max"] * (args.n_sens > 0) + [f"INFD[{l}]" for l in law_names])
        table.to_csv(P["summary"], float_format="%.6g")
        if not args.quiet:
            import pandas as pd

            with pd.option_context("display.width", 160, "display.max_columns", 20):
                print(table.to_string(float_format=lambda v: f"{v:.4g}"))
        for name, e in explainers.items():
            for lname, law in laws.items():
                if e.kind == "global" and not law.binary:
                    print(f"note: {name} × {lname} is NaN: a global explanation has no infidelity under the "
                          f"continuous law {lname} (use a binary law such as Square)")
        print(f"xailib evaluate: {n_done} instances in {P['out']}; summary in {P['summary']}", flush=True)
        return 0
    finally:
        if pg:
            dist.destroy_process_group()


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CliError as e:
        args.subparser.error(str(e))  # prints usage and the one-line message, exits with status 2
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
