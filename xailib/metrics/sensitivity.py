"""Max-sensitivity (Def. 3.1): estimates, noise floor, growth with the sample count; see :mod:`xailib.metrics`."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import _utils as U
from .._utils import DEFAULT_BATCH_SIZE, SeedLike, TargetLike
from ._common import (  # noqa: F401
    _check_batch_size,
    _check_explainer,
    _gen,
    _check_target_with_model,
    _explain,
    SENS_FORMS,
    SENS_NORMALIZATIONS,
)


def _uniform_ball(feature_shape, n, radius, generator, device, dtype) -> Tensor:
    g = _gen(generator, device, "sensitivity")
    u = U.rand_like_draw((n, *feature_shape), g, device, dtype, kind="rand")
    return (2 * u - 1) * radius


def _normalizer(phi_x: Tensor) -> Tensor:
    nrm = phi_x.reshape(phi_x.shape[0], -1).norm(dim=1)
    return torch.where(nrm > 0, nrm, torch.ones_like(nrm))


def _check_form(form, name="form") -> str:
    if form not in SENS_FORMS:
        raise ValueError(f"`{name}` must be 'local' or 'global', got {form!r}")
    return form


def _check_normalize(normalize, name="normalize") -> str:
    """``True`` → ``"relative"``, ``False``/``None`` → ``"raw"``, or one of :data:`SENS_NORMALIZATIONS`."""
    if normalize is True:
        return "relative"
    if normalize is False or normalize is None:
        return "raw"
    if isinstance(normalize, str) and normalize in SENS_NORMALIZATIONS:
        return normalize
    raise ValueError(f"`{name}` must be True, False, 'raw', 'relative' or 'unit', got {normalize!r}")


def _as_form(explainer, z: Tensor, phi: Tensor, form: str, baseline) -> Tensor:
    """The compared map: ``Φ`` (``form="local"``, or an explainer whose output is already global)
    or ``(z − baseline) ⊙ Φ`` (``form="global"``, local explainers)."""
    if form == "global" and getattr(explainer, "kind", "local") != "global":
        from ..explainers import to_global

        return to_global(phi, z, baseline)
    return phi


def _sensitivity_distances(explainer, x, t, phi_x, noise, batch_size, conventions, baseline=0.0,
                           desc=None) -> list:
    """One ``(N, n)`` tensor of distances per ``(form, normalization)`` in ``conventions``.

    ``Φ(x_i + u_j)`` is computed once for all conventions (same neighbours, same explanations):
    raw ``‖T(y) − T(x)‖``, relative ``‖T(y) − T(x)‖ / ‖T(x)‖`` and unit
    ``‖T(y)/‖T(y)‖ − T(x)/‖T(x)‖‖`` (a zero map stays zero), ``T`` the form (see :func:`_as_form`).
    """
    N, n = x.shape[0], noise.shape[0]
    total = N * n
    outs = [torch.empty(total, device=x.device, dtype=x.dtype) for _ in conventions]
    forms = sorted({f for f, _ in conventions})
    tx = {f: _as_form(explainer, x, phi_x, f, baseline).reshape(N, -1) for f in forms}
    nx = {f: _normalizer(tx[f]) for f in forms}
    bar = U.progress(total=total, desc=desc) if desc else None
    for sl in U.chunks(total, batch_size):
        idx = torch.arange(sl.start, sl.stop, device=x.device)
        inst, j = idx // n, idx % n
        y = x.index_select(0, inst) + noise.index_select(0, j)
        ty = None if t is None else t.index_select(0, inst)
        py = _explain(explainer, y, ty, "explainer")
        for f in forms:
            a = _as_form(explainer, y, py, f, baseline).reshape(len(idx), -1)
            b, nb = tx[f].index_select(0, inst), nx[f].index_select(0, inst)
            for k, (fk, norm) in enumerate(conventions):
                if fk != f:
                    continue
                if norm == "unit":
                    d = (a / _normalizer(a).view(-1, 1) - b / nb.view(-1, 1)).norm(dim=1)
                else:
                    d = (a - b).norm(dim=1)
                    if norm == "relative":
                        d = d / nb
                outs[k][sl] = d
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()
    return [o.view(N, n) for o in outs]


def _sensitivities(explainer, x, t, phi_x, noise, batch_size, desc=None) -> Tensor:
    """``‖Φ(x_i + u_j) − Φ(x_i)‖₂`` for all (i, j), shape (N, n), explainer called in chunks."""
    return _sensitivity_distances(explainer, x, t, phi_x, noise, batch_size, [("local", "raw")], desc=desc)[0]


@U.in_eval_mode("explainer")
def sensitivity_max(
    explainer,
    x: Tensor,
    target: TargetLike = None,
    radius: float = 0.1,
    n_samples: int = 50,
    normalize=True,
    generator: SeedLike = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    form: str = "local",
    baseline=0.0,
) -> Tensor:
    """Max-sensitivity (the book's *The paper in brief*, § Metrics, Def. 3.1), Monte-Carlo estimate, shape ``(N,)``.

    Computes ``max_{j ≤ n} ‖Φ(x + u_j) − Φ(x)‖₂`` with ``u_j`` uniform in the L∞ ball
    ``‖u‖∞ ≤ radius`` (``n = n_samples`` draws from ``generator``, in ``x``'s dtype/device, the
    same ``u_j`` for every instance). A lower estimate of the true maximum (errs low).

    * ``normalize=False``: the raw ``SENS_max`` of the theory (Prop. A.1/A.2, Thm. 4.1, C.1).
    * ``normalize=True`` (default): the *relative* sensitivity
      ``max_j ‖Φ(x + u_j) − Φ(x)‖₂ / ‖Φ(x)‖₂`` (Captum's ``sensitivity_max`` and the common reading
      of the paper's "explanations normalised to unit norm"). It is the raw value for ``Φ/‖Φ(x)‖``,
      i.e. ``Φ`` rescaled by the norm **at x** (not ``Φ(y)/‖Φ(y)‖`` at every y, which would also
      discard changes of magnitude). Where ``‖Φ(x)‖ = 0`` the raw value is returned (as Captum).
    * ``normalize="unit"``: both maps normalised to unit norm,
      ``max_j ‖Φ(y_j)/‖Φ(y_j)‖ − Φ(x)/‖Φ(x)‖‖₂`` (appendix B.1's "explanations normalised to unit
      norm" read literally; at most 2, blind to changes of magnitude). ``"raw"``/``"relative"``
      are synonyms of ``False``/``True``.

    ``form="local"`` (default) compares the explainer's outputs as returned (``Φ`` for a local
    explainer; a global explainer's ``A`` is already global). ``form="global"`` compares the
    global explanations ``(x − b) ⊙ Φ(x)`` and ``(y − b) ⊙ Φ(y)`` (``b = baseline``), the form of
    Table 4 ("for global explanation"); global explainers are compared as returned. For the
    gradient of ``f = wᵀx`` the local SENS is 0 and the raw global one ``max_j ‖w ⊙ u_j‖₂ ≤
    radius·‖w‖₂`` (reached at the corners of the ball); relative: divided by ``‖w ⊙ (x − b)‖₂``.

    The neighbours of all instances are stacked into ``(N · n)`` inputs and explained in batched
    calls of at most ``batch_size`` neighbours. A stochastic explainer is called with its own
    fixed seed every call, so ``Φ(x)`` and every ``Φ(y)`` share the same noise (common random
    numbers); :func:`sensitivity_noise_floor` gives the noise level with independent draws.
    Chapters: ``notebooks/toy.ipynb``, ``notebooks/theory.ipynb``, ``notebooks/mnist.ipynb``.
    """
    explainer = _check_explainer(explainer)
    x = U.check_input(x, "x")
    t = U.check_target(target, x.shape[0], x.device)
    radius = U.check_positive(radius, "radius")
    n_samples = U.check_positive(n_samples, "n_samples", integer=True)
    batch_size = _check_batch_size(batch_size)
    norm = _check_normalize(normalize)
    form = _check_form(form)
    if hasattr(explainer, "model") and callable(explainer.model):
        _check_target_with_model(explainer.model, x, t)
    phi_x = _explain(explainer, x, t)
    noise = _uniform_ball(tuple(x.shape[1:]), n_samples, radius, generator, x.device, x.dtype)
    D = _sensitivity_distances(explainer, x, t, phi_x, noise, batch_size, [(form, norm)], baseline,
                               desc="sensitivity")[0]
    return D.max(1).values


@U.in_eval_mode("explainer")
def sensitivity_noise_floor(
    explainer,
    x: Tensor,
    target: TargetLike = None,
    n_repeats: int = 10,
    normalize: bool = True,
    reduce: str = "mean",
    generator: SeedLike = None,
) -> Tensor:
    """Monte-Carlo noise floor of a stochastic explainer at ``y = x`` (the book's *The paper in brief*, § Monte-Carlo hygiene).

    ``‖Φ(x; seed a) − Φ(x; seed b_k)‖₂`` (divided by ``‖Φ(x; seed a)‖₂`` when ``normalize``, as in
    :func:`sensitivity_max`), ``a`` the explainer's own seed (``generator=None``, the draws
    ``sensitivity_max`` uses) and ``b_1 … b_{n_repeats}`` independent seeds (drawn from
    ``generator``). ``reduce="mean"``: the typical noise; ``reduce="max"``: what a SENS_max
    estimate with independent draws at ``n_repeats`` neighbours would report even at y = x.
    Deterministic explainers (``.stochastic`` false) give zeros. Shape ``(N,)``.
    """
    explainer = _check_explainer(explainer)
    x = U.check_input(x, "x")
    t = U.check_target(target, x.shape[0], x.device)
    n_repeats = U.check_positive(n_repeats, "n_repeats", integer=True)
    if reduce not in ("mean", "max"):
        raise ValueError(f"`reduce` must be 'mean' or 'max', got {reduce!r}")
    if not getattr(explainer, "stochastic", True):
        return torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
    phi_a = _explain(explainer, x, t)
    g = _gen(generator, "cpu", "noise_floor")
    seeds = torch.randint(1, 2**62, (n_repeats,), generator=g).tolist()
    nrm = _normalizer(phi_a) if normalize else torch.ones(x.shape[0], device=x.device, dtype=x.dtype)
    vals = torch.stack(
        [
            (_explain(explainer, x, t, generator=int(s)) - phi_a).reshape(x.shape[0], -1).norm(dim=1) / nrm
            for s in seeds
        ],
        dim=1,
    )
    return vals.mean(1) if reduce == "mean" else vals.max(1).values


def sensitivity_growth(
    explainer,
    x: Tensor,
    target: TargetLike = None,
    radius: float = 0.1,
    n_values=(5, 10, 20, 50, 100, 200),
    n_reps: int = 4,
    normalize: bool = True,
    generator: SeedLike = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
):
    """How the Monte-Carlo max-sensitivity grows with the number of neighbours ``n``.

    ``max_{j ≤ n} ‖Φ(x + u_j) − Φ(x)‖`` is a lower estimate of the supremum over the ball and
    grows with ``n`` (biased low, the bias shrinking slowly). For each of ``n_reps`` independent
    replications, ``max(n_values)`` neighbours are drawn once and the running maximum over the
    first ``n`` gives the estimate for every ``n`` (nested, so the curve is monotone within a
    replication); replication 0 equals :func:`sensitivity_max` with the same seed and
    ``n_samples = max(n_values)``. Returns a DataFrame indexed by ``n`` with columns
    ``"SENS_max"`` (mean over instances and replications), ``"se"`` (over instances, of the
    replication means), ``"mc se"`` (over replications), ``"rel. to max n"`` (the ratio to the
    estimate at the largest ``n``). Cost: ``n_reps · max(n_values)`` explanations per instance.
    Chapter: ``notebooks/mnist`` (the bias of SENS).
    """
    import pandas as pd

    _check_explainer(explainer)
    x = U.check_input(x, "x")
    t = U.check_target(target, x.shape[0], x.device)
    radius = U.check_positive(radius, "radius")
    n_reps = U.check_positive(n_reps, "n_reps", integer=True)
    try:
        ns = sorted({int(U.check_positive(v, "n_values", integer=True)) for v in n_values})
    except TypeError:
        raise TypeError(f"`n_values` must be an iterable of positive ints, got {n_values!r}") from None
    if not ns:
        raise ValueError("`n_values` must not be empty")
    batch_size = _check_batch_size(batch_size)
    if hasattr(explainer, "model") and callable(explainer.model):
        _check_target_with_model(explainer.model, x, t)
    phi_x = _explain(explainer, x, t)
    N, F = x.shape[0], tuple(x.shape[1:])
    idx = torch.tensor([v - 1 for v in ns])
    out = []  # (R, N, len(ns))
    for r in range(n_reps):
        g = generator if isinstance(generator, torch.Generator) else \
            _gen(generator, x.device, "sensitivity" if r == 0 else f"sensitivity/{r}")
        noise = _uniform_ball(F, ns[-1], radius, g, x.device, x.dtype)
        D = _sensitivities(explainer, x, t, phi_x, noise, batch_size, desc=f"sensitivity growth {r + 1}/{n_reps}")
        if normalize:
            D = D / _normalizer(phi_x).view(-1, 1)
        out.append(D.double().cummax(1).values[:, idx].cpu())
    V = torch.stack(out)  # (R, N, k)
    per_inst = V.mean(0)  # (N, k)
    mean = per_inst.mean(0)
    se = per_inst.std(0) / math.sqrt(N) if N > 1 else torch.full_like(mean, float("nan"))
    mc = V.mean(1).std(0) / math.sqrt(n_reps) if n_reps > 1 else torch.full_like(mean, float("nan"))
    df = pd.DataFrame({"SENS_max": mean.numpy(), "se": se.numpy(), "mc se": mc.numpy(),
                       "rel. to max n": (mean / mean[-1]).numpy()}, index=pd.Index(ns, name="n"))
    return df


@U.in_eval_mode("explainer")
def sensitivity_conventions(
    explainer,
    x: Tensor,
    target: TargetLike = None,
    radii=(0.1, 0.2),
    forms=SENS_FORMS,
    normalizations=SENS_NORMALIZATIONS,
    n_samples: int = 50,
    reps: int = 3,
    baseline=0.0,
    generator: SeedLike = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
):
    """Max-sensitivity of one explainer under every convention: form × normalisation × radius.

    For each radius ``r`` and replication ``k < reps``, ``n_samples`` neighbours ``y_j = x + u_j``
    (``u_j`` uniform in ``‖u‖∞ ≤ r``) are explained once and compared under every ``form``
    (``"local"``: ``Φ``; ``"global"``: ``(x − baseline) ⊙ Φ``) and normalisation (``"raw"``:
    ``‖T(y) − T(x)‖``; ``"relative"``: divided by ``‖T(x)‖``; ``"unit"``: ``‖T(y)/‖T(y)‖ −
    T(x)/‖T(x)‖‖ ≤ 2``), as in :func:`sensitivity_max`; replication ``k`` draws from the stream
    ``"sensitivity"`` (``k = 0``, the stand-alone :func:`sensitivity_max` with the same seed and
    radius) or ``"sensitivity/k"``, so the radii share their directions (common random numbers).
    The per-instance value is the mean over replications of ``max_{j ≤ n_samples}`` (as
    :func:`evaluate`).

    Returns a DataFrame indexed by ``(form, normalization, radius)`` with columns ``"SENS_max"``
    (mean over instances), ``"se"`` (over instances), ``"mc se"`` (over replications,
    ``sd_k(T_k)/√reps``; NaN for ``reps=1``) and ``"total se"`` = ``√(se² + mc se²)``. Cost:
    ``len(radii) · reps · n_samples`` explanations per instance. Chapter: ``notebooks/mnist_robust``
    (the sensitivity gap); the book's *The paper in brief*, § Metrics.
    """
    import pandas as pd

    explainer = _check_explainer(explainer)
    x = U.check_input(x, "x")
    t = U.check_target(target, x.shape[0], x.device)
    n_samples = U.check_positive(n_samples, "n_samples", integer=True)
    reps = U.check_positive(reps, "reps", integer=True)
    batch_size = _check_batch_size(batch_size)
    try:
        radii = [float(U.check_positive(r, "radii")) for r in radii]
        forms = [_check_form(f, "forms") for f in forms]
        norms = [_check_normalize(v, "normalizations") for v in normalizations]
    except TypeError:
        raise TypeError("`radii`, `forms` and `normalizations` must be iterables") from None
    if not (radii and forms and norms):
        raise ValueError("`radii`, `forms` and `normalizations` must not be empty")
    if hasattr(explainer, "model") and callable(explainer.model):
        _check_target_with_model(explainer.model, x, t)
    N, F = x.shape[0], tuple(x.shape[1:])
    phi_x = _explain(explainer, x, t)
    convs = [(f, v) for f in forms for v in norms]
    rows = []
    for r in radii:
        per_rep = []  # reps × (len(convs), N)
        for k in range(reps):
            g = generator if isinstance(generator, torch.Generator) else \
                _gen(generator, x.device, "sensitivity" if k == 0 else f"sensitivity/{k}")
            noise = _uniform_ball(F, n_samples, r, g, x.device, x.dtype)
            Ds = _sensitivity_distances(explainer, x, t, phi_x, noise, batch_size, convs, baseline,
                                        desc=f"sensitivity r={r:g} {k + 1}/{reps}")
            per_rep.append(torch.stack([D.max(1).values for D in Ds]).double().cpu())
        V = torch.stack(per_rep)  # (R, C, N)
        for c, (f, v) in enumerate(convs):
            per_inst = V[:, c, :].mean(0)
            mean = float(per_inst.mean())
            se = float(per_inst.std() / math.sqrt(N)) if N > 1 else float("nan")
            mc = float(V[:, c, :].mean(1).std() / math.sqrt(reps)) if reps > 1 else float("nan")
            rows.append({"form": f, "normalization": v, "radius": r, "SENS_max": mean, "se": se, "mc se": mc,
                         "total se": math.sqrt(se**2 + mc**2)})
    return pd.DataFrame(rows).set_index(["form", "normalization", "radius"])
