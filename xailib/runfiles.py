"""The files of a ``python -m xailib evaluate`` run: rows that can be verified, a lock, the sidecar.

For ``--out run.csv`` (see the book's page *Running at scale*):

* ``run.csv`` (or ``.parquet``): one row per (instance, explainer, metric) with the columns
  :data:`COLUMNS`. ``input`` is a hash of the instance's input tensor and label as loaded
  (:func:`input_hash`), ``check`` a hash of the row's other fields (:func:`row_check`), so a
  row changed after it was written, or scored on another input than the data now holds, is
  detected. The hashes guard against accidents (a corrupted disk, an edited file, a data
  folder that changed), not against someone who recomputes them on purpose;
* ``run.csv.config.json``: the configuration (every input that changes a value) and, under
  ``"record"``, what the run read and wrote (data description, weights, the summary's hash);
* ``run.summary.csv``: means and standard errors over instances, recomputed from verified rows;
* ``run.csv.parts/``: while the run is in progress, one append-only file per process and start
  (a name no restart repeats), merged into ``run.csv`` at the end;
* ``run.csv.lock``: held (``flock``) by the process that writes, released by the kernel when
  it dies, so a lock is never stale.
"""
from __future__ import annotations

import csv
import datetime
import hashlib
import io
import json
import math
import os
import socket
import uuid
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

#: ``input``: hash of the instance's input and label; ``check``: hash of the row's other fields
COLUMNS = ("instance", "label", "target", "explainer", "metric", "value", "input", "check")
FORMAT_VERSION = 3


class RunFileError(Exception):
    """A run file that cannot be trusted: the message names the file, the line and what to do."""


# --------------------------------------------------------------------------- paths and lock


def paths(out) -> dict:
    """The files of ``--out``: ``out``, ``config``, ``summary``, ``parts`` (a folder), ``lock``."""
    p = Path(out)
    return {
        "out": p,
        "config": p.with_name(p.name + ".config.json"),
        "summary": p.with_name(p.stem + ".summary.csv"),
        "parts": p.with_name(p.name + ".parts"),
        "lock": p.with_name(p.name + ".lock"),
    }


class Lock:
    """An exclusive ``flock`` on ``path``, taken without waiting.

    :meth:`acquire` returns None, or a one-line description of the holder (pid, host, start
    time) when another process holds it. The kernel releases the lock when its holder exits or
    is killed, so there is no stale lock to clear; the file's text only names the last holder.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.fd: Optional[int] = None

    def acquire(self) -> Optional[str]:
        """Take the lock: None, or the holder's description when another process holds it."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock (documented)
            return None
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 400).decode(errors="replace").strip() or "another process"
                os.close(fd)
                return holder
            # a finishing holder unlinks the file after we opened it: then lock the new one
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()}, started {now}\n".encode())
            self.fd = fd
            return None

    def release(self) -> None:
        """Remove the file and release the lock (a no-op when not held)."""
        if self.fd is not None:
            try:
                os.unlink(self.path)  # unlink before unlocking: a waiter then re-opens a fresh file
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None


def new_part_path(parts: Path, rank: int, world: int) -> Path:
    """A part-file name that no restart repeats (a process id can be reused; a random token is not)."""
    return parts / f"rank{rank:05d}-of-{world:05d}-{uuid.uuid4().hex[:12]}.csv"


# --------------------------------------------------------------------------- hashes


def input_hash(x, label: int) -> str:
    """Hash of one instance as loaded (float32 values, shape) and its label: 16 hex digits."""
    import torch

    t = x.detach().to("cpu", torch.float32).contiguous()
    h = hashlib.sha256(f"{tuple(t.shape)}|{int(label)}|".encode())
    h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def weights_hash(model) -> str:
    """Hash of a model's parameters and buffers (names, shapes, dtypes, values in logical order, so
    the memory format does not matter: a channels-last copy hashes the same): 16 hex digits."""
    import torch

    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        if isinstance(v, torch.Tensor):
            t = v.detach().to("cpu")
            h.update(f"{k}|{tuple(t.shape)}|{t.dtype}|".encode())
            h.update(t.flatten().contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def file_hash(path) -> str:
    """SHA-256 of a file's bytes (64 hex digits)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def value_text(v: float) -> str:
    """A value as written: the shortest text that reads back to the same float."""
    return repr(float(v))


def row_check(i: int, label: int, target: int, explainer: str, metric: str, value: str, inp: str) -> str:
    """Hash of a row's fields (``value`` as written, and the format version): 16 hex digits."""
    s = f"{FORMAT_VERSION}|{i}|{label}|{target}|{explainer}|{metric}|{value}|{inp}"
    return hashlib.sha256(s.encode()).hexdigest()[:16]


def format_rows(rows: Iterable[tuple]) -> str:
    """CSV text of rows ``(instance, label, target, explainer, metric, value, input)``, checksummed."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for i, lab, tg, e, m, v, inp in rows:
        vt = value_text(v)
        w.writerow((i, lab, tg, e, m, vt, inp, row_check(i, lab, tg, e, m, vt, inp)))
    return buf.getvalue()


# --------------------------------------------------------------------------- reading and verifying

_FIX = "delete that line (its instance is then recomputed) or choose another --out"


def _parse_record(rec: List[str], where: str) -> tuple:
    if len(rec) != len(COLUMNS):
        raise RunFileError(f"{where}: {len(rec)} fields, expected {len(COLUMNS)} ({','.join(COLUMNS)}); {_FIX}")
    try:
        i, lab, tg = int(rec[0]), int(rec[1]), int(rec[2])
        v = float(rec[5])
    except ValueError:
        raise RunFileError(f"{where}: not a number where one is expected; {_FIX}") from None
    if rec[7] != row_check(i, lab, tg, rec[3], rec[4], rec[5], rec[6]):
        raise RunFileError(f"{where}: checksum mismatch (the row was changed after it was written); {_FIX}")
    return (i, lab, tg, rec[3], rec[4], v, rec[6])


def parse_rows(path: Path, part: bool) -> List[Tuple[int, tuple]]:
    """``[(line number, row)]`` of a result or part file, every row verified.

    In a part file, the text after the last newline is a line cut by an interruption and is
    dropped; any other line that does not verify raises :class:`RunFileError` naming the file
    and the line.
    """
    if path.suffix.lower() == ".parquet" and not part:
        import pandas as pd

        try:
            df = pd.read_parquet(path)
            recs = [[str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), value_text(r[5]), str(r[6]), str(r[7])]
                    for r in df[list(COLUMNS)].itertuples(index=False, name=None)]
        except Exception as e:
            raise RunFileError(f"{path}: unreadable as a result file ({type(e).__name__}); choose another --out") \
                from None
        return [(k + 2, _parse_record(rec, f"{path} row {k + 1}")) for k, rec in enumerate(recs)]
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text.rpartition("\n")[0]:
        raise RunFileError(f"{path}: not text (NUL or undecodable bytes before its last line); "
                           f"remove the damaged lines or choose another --out")
    lines = text.split("\n")
    tail = lines.pop()
    if tail and not part:
        raise RunFileError(f"{path} line {len(lines) + 1}: cut (no newline) in a finished file; {_FIX}")
    out = []
    header = ",".join(COLUMNS)
    for k, line in enumerate(lines, 1):
        if not part and k == 1:
            if line != header:
                old = line.split(",")[:6] == list(COLUMNS[:6])
                raise RunFileError(f"{path} line 1: " + ("written by an older xailib, without row checksums"
                                   if old else f"header is not {header}") + "; choose another --out")
            continue
        try:
            rec = next(csv.reader([line]))
        except (csv.Error, StopIteration):
            rec = []
        out.append((k, _parse_record(rec, f"{path} line {k}")))
    return out


def read_done(P: dict, keys: Sequence[Tuple[str, str]]) -> Dict[int, Tuple[str, List[tuple]]]:
    """``{instance: (where, its rows)}`` for every instance complete in ``--out`` or a part file.

    ``keys``: the (explainer, metric) pairs of the configuration. Every row is verified
    (:func:`parse_rows`) and must name a pair of ``keys``. An instance is complete in a file when
    that file holds exactly one row for each pair, with one label, target and input; rows of an
    instance left incomplete by an interruption are ignored (it is recomputed). The first
    complete block is kept (``--out`` first, then the part files in name order).
    """
    want = set(keys)
    files = []
    if P["out"].is_file():
        files.append((P["out"], False))
    if P["parts"].is_dir():
        files += [(f, True) for f in sorted(P["parts"].glob("*.csv"))]
    done: Dict[int, Tuple[str, List[tuple]]] = {}
    for path, part in files:
        blocks: Dict[int, Dict[tuple, Tuple[int, tuple]]] = {}
        for k, r in parse_rows(path, part):
            where = f"{path} line {k}"
            if (r[3], r[4]) not in want:
                raise RunFileError(f"{where}: explainer {r[3]!r}, metric {r[4]!r} is not one of this "
                                   f"configuration's; {_FIX}")
            b = blocks.setdefault(r[0], {})
            if (r[3], r[4]) in b:
                raise RunFileError(f"{where}: a second row for instance {r[0]}, {r[3]}, {r[4]}; {_FIX}")
            b[(r[3], r[4])] = (k, r)
        for i, b in blocks.items():
            rows = [r for _, r in b.values()]
            if len({(r[1], r[2], r[6]) for r in rows}) != 1:
                k = max(k for k, _ in b.values())
                raise RunFileError(f"{path} line {k}: the rows of instance {i} disagree on its label, target "
                                   f"or input; {_FIX}")
            if len(b) != len(want):
                if not part:
                    raise RunFileError(f"{path}: instance {i} has {len(b)} of {len(want)} rows in a finished "
                                       "file; delete its rows (it is then recomputed) or choose another --out")
                continue
            if i not in done:
                done[i] = (str(path), rows)
    return done


def write_final(P: dict, rows: List[tuple]) -> None:
    """Write the verified rows to ``--out`` atomically (a temporary file, then a rename)."""
    out = P["out"]
    tmp = out.with_name(out.name + f".tmp{uuid.uuid4().hex[:8]}")
    if out.suffix.lower() == ".parquet":
        import pandas as pd

        recs = [(i, lab, tg, e, m, v, inp, row_check(i, lab, tg, e, m, value_text(v), inp))
                for i, lab, tg, e, m, v, inp in rows]
        pd.DataFrame(recs, columns=list(COLUMNS)).to_parquet(tmp, index=False)
    else:
        with open(tmp, "w", newline="") as fh:
            fh.write(",".join(COLUMNS) + "\n")
            fh.write(format_rows(rows))
    os.replace(tmp, out)


# --------------------------------------------------------------------------- summary


def summarize(rows: List[tuple], explainers: Sequence[str], metrics: Sequence[str], undefined=()):
    """``(table, notes)``: mean and standard error (``std/√N``) over instances per explainer and metric.

    A mean over instances of which one is NaN is NaN, never a mean of the others; ``notes``
    names the instances (except for the pairs ``(explainer, metric)`` in ``undefined``, NaN by
    definition, which the caller explains). The table's ``n`` column counts the instances.
    """
    import pandas as pd

    table = pd.DataFrame(index=pd.Index(list(explainers), name="explainer"))
    by: Dict[tuple, List[tuple]] = {}
    for r in rows:
        by.setdefault((r[3], r[4]), []).append((r[0], r[5]))
    notes = []
    instances = sorted({r[0] for r in rows})
    for m in metrics:
        means, ses = [], []
        for e in explainers:
            vals = sorted(by.get((e, m), []))
            v = [x for _, x in vals]
            bad = [i for i, x in vals if not math.isfinite(x)]
            if bad and (e, m) not in set(undefined):
                shown = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
                notes.append(f"{e} × {m} is NaN: not finite at {len(bad)} of {len(vals)} instance(s) ({shown})")
            n = len(v)
            mean = sum(v) / n if n and not bad else float("nan")
            if n > 1 and not bad:
                se = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1) / n)
            else:
                se = float("nan")
            means.append(mean)
            ses.append(se)
        table[m] = means
        table[m + " se"] = ses
    table["n"] = len(instances)
    return table, notes


def summary_text(table) -> str:
    """The summary file's text (6 significant digits), as written and as :func:`summarize` recomputes it."""
    return table.to_csv(float_format="%.6g")


# --------------------------------------------------------------------------- sidecar


def read_sidecar(P: dict) -> Optional[dict]:
    """The sidecar's JSON, None when missing; :class:`RunFileError` when unreadable."""
    if not P["config"].is_file():
        return None
    try:
        d = json.loads(P["config"].read_text())
        if not isinstance(d, dict):
            raise ValueError
        return d
    except (OSError, ValueError):
        raise RunFileError(f"{P['config']} is unreadable") from None


def write_sidecar(P: dict, config: dict, record: Optional[dict] = None) -> None:
    """Write the configuration and the record atomically."""
    d = dict(config)
    if record:
        d["record"] = record
    tmp = P["config"].with_name(P["config"].name + f".tmp{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(d, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, P["config"])


def has_results(P: dict) -> bool:
    """Whether ``--out`` or a part file holds anything (a start that crashed before its first row does not)."""
    if P["out"].exists():
        return True
    return P["parts"].is_dir() and any(f.stat().st_size > 0 for f in P["parts"].iterdir() if f.is_file())
