"""Run settings shared by every chapter: the profile, seeds, threads and plotting style.

Profiles (see ``book/intro.md``):

* ``default``: CPU-sized sample counts, every chapter in minutes on a 2-core machine;
* ``paper``: the paper's sample counts (``XAILIB_PROFILE=paper``); may need a GPU;
* ``smoke``: a handful of samples of everything (``XAILIB_PROFILE=smoke``), to run a chapter's
  whole code path in seconds in tests; its numbers mean nothing. Where a chapter gives no
  ``smoke`` value, the ``default`` one is used.
"""
from __future__ import annotations

import os
import random
import warnings
from pathlib import Path
from typing import Any

PROFILES = ("default", "paper", "smoke")


def profile() -> str:
    """The active profile, read from the ``XAILIB_PROFILE`` environment variable."""
    value = os.environ.get("XAILIB_PROFILE", "default").strip().lower() or "default"
    if value not in PROFILES:
        raise ValueError(f"XAILIB_PROFILE must be one of {PROFILES}, got {value!r}")
    return value


def pick(default: Any, paper: Any, smoke: Any = None) -> Any:
    """``default`` under the default profile, ``paper`` under ``XAILIB_PROFILE=paper``; under
    ``XAILIB_PROFILE=smoke``, ``smoke`` when given, else ``default``."""
    p = profile()
    if p == "paper":
        return paper
    if p == "smoke" and smoke is not None:
        return smoke
    return default


def device():
    """The torch device chapters use: CUDA when available (``XAILIB_DEVICE`` overrides)."""
    import torch

    name = os.environ.get("XAILIB_DEVICE")
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def setup(seed: int = 0, threads: int | None = None, deterministic: bool = True, style: bool = True) -> None:
    """Seed every generator, pin the thread count, make torch deterministic, set plot style, print
    warnings on one line without the folder of the file that raised them.

    Every chapter starts with one ``xailib.setup()`` call. ``threads`` defaults to
    ``XAILIB_THREADS`` or 2. Prints one line describing the settings and returns None (so a
    chapter's ``xailib.setup()`` cell shows that line once, not again as the cell's value).
    """
    import numpy as np
    import torch

    if threads is None:
        threads = int(os.environ.get("XAILIB_THREADS", "2"))
    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    if style:
        import matplotlib

        matplotlib.rcParams.update(
            {"figure.dpi": 80, "savefig.dpi": 80, "axes.grid": False, "image.cmap": "viridis"}
        )
        try:
            import seaborn as sns

            sns.set_theme(context="notebook", style="white")
        except ImportError:  # pragma: no cover
            pass
    warnings.formatwarning = _short_formatwarning
    line = f"xailib: profile={profile()} seed={seed} threads={threads} device={device().type}"
    print(line)


def _short_formatwarning(message, category, filename, lineno, line=None) -> str:
    """Warnings as one line, ``path:line: Category: message``, with the path of a file of this
    package relative to its parent folder (``xailib/sanity.py``), else its name: a rendered chapter
    does not print the folder it was built in. Installed by :func:`setup`."""
    path = Path(filename)
    try:
        shown = str(path.resolve().relative_to(Path(__file__).resolve().parents[1]))
    except (ValueError, OSError):
        shown = path.name
    return f"{shown}:{lineno}: {category.__name__}: {message}\n"
