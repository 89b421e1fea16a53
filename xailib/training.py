"""Training: minibatch Adam or SGD with optional PGD adversarial training, and accuracy.

* :func:`train`: trains a model in place (cross-entropy with optional label smoothing; Adam, or
  SGD with momentum / Nesterov; cosine, constant or one-cycle learning rate; optional random
  shifts, or reflect-padded random crops and horizontal flips; optional PGD adversarial examples
  with a warm-up of the radius);
* :func:`adversarial_training`: Madry-style PGD adversarial training, ``train(..., adversarial=...)``;
* :func:`evaluate_accuracy`: clean accuracy, batched;
* :func:`onecycle_lr`, :func:`random_crop`, :func:`random_flip`: the one-cycle schedule and the
  CIFAR-10 augmentations of ``notebooks/cifar10`` (the DAWNBench ResNet-9 recipe).

The paper's robust MNIST network (the book's *The paper in brief*, § Experiments) is trained with
PGD at ε = 0.3 (ℓ∞), step 0.01, 40 steps, random start; Theorem A.1 (§ Theory) explains why
adversarial training makes gradient explanations less sensitive and more faithful.
Chapters: ``notebooks/mnist``, ``notebooks/mnist_robust`` and ``notebooks/cifar10``. The configured,
cached models are built by :func:`xailib.models.get_model`.
"""
from __future__ import annotations

import time
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._utils import check_input, check_positive, make_generator, progress as _progress
from .attacks import pgd

__all__ = ["train", "adversarial_training", "evaluate_accuracy", "onecycle_lr", "random_crop", "random_flip"]

#: fraction of the steps over which the one-cycle schedule warms up linearly to the peak rate
ONECYCLE_WARMUP = 0.25


def _model_device(model: nn.Module, default) -> torch.device:
    """The device of the model's first parameter or buffer (``default`` when it has none)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device(default)


def _batched_predictions(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    preds = []
    device = _model_device(model, x.device)
    with torch.no_grad():
        for s in range(0, x.shape[0], batch_size):
            preds.append(model(x[s : s + batch_size].to(device)).argmax(1))
    return torch.cat(preds)


def evaluate_accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000) -> float:
    """Fraction of ``x`` whose arg-max logit equals ``y`` (no gradients, batched).

    The model is put in eval mode for the call and restored afterwards. Each batch is moved to
    the model's device (``x`` may stay on the CPU).
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


def random_crop(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """Random crop with reflect padding: each image of ``x`` (N, C, H, W) is padded by ``k`` pixels
    on every side (``F.pad(..., mode="reflect")``) and an (H, W) window at a uniform random offset
    in ``{0, ..., 2k}²`` is kept. ``k = 0`` returns ``x``. Offsets are drawn from ``generator``
    (a CPU generator; the crop itself runs on ``x``'s device, as one gather)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"`k` must be an int >= 0, got {k!r}")
    if k == 0:
        return x
    n, c, h, w = x.shape
    if k >= h or k >= w:
        raise ValueError(f"reflect padding needs `k` < image size, got k={k} for {h}x{w} images")
    padded = F.pad(x, (k, k, k, k), mode="reflect")
    offs = torch.randint(0, 2 * k + 1, (n, 2), generator=generator).to(x.device)
    rows = (offs[:, 0:1] + torch.arange(h, device=x.device)).view(n, 1, h, 1)
    cols = (offs[:, 1:2] + torch.arange(w, device=x.device)).view(n, 1, 1, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    chan = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[batch, chan, rows, cols]


def random_flip(x: Tensor, generator: torch.Generator) -> Tensor:
    """Mirror each image of ``x`` (N, C, H, W) left-right with probability 1/2 (one Bernoulli draw
    per image from the CPU ``generator``)."""
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(flip.view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)


def onecycle_lr(step: int, total_steps: int, lr: float, warmup: float = ONECYCLE_WARMUP) -> float:
    """Learning rate of update ``step`` (0-based) of ``total_steps`` under the one-cycle schedule.

    With ``W = max(1, round(warmup · total_steps))`` warm-up steps: ``lr · (step + 1) / W`` for
    ``step < W`` (rising linearly, the peak ``lr`` reached at update ``W - 1``), then
    ``lr · (total_steps - step) / (total_steps - W)`` (falling linearly; update ``W`` is also at
    ``lr``, the last update at ``lr / (total_steps - W)``, the next one would be at 0). No update
    has a zero rate. The DAWNBench ResNet-9 recipe (``notebooks/cifar10``) peaks at ``lr = 0.4``.
    """
    if not 0 <= step < total_steps:
        raise ValueError(f"`step` must be in [0, {total_steps}), got {step!r}")
    if not 0 < warmup < 1:
        raise ValueError(f"`warmup` must be in (0, 1), got {warmup!r}")
    w = min(max(1, round(warmup * total_steps)), total_steps)
    if step < w:
        return lr * (step + 1) / w
    return lr * (total_steps - step) / (total_steps - w)


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
    optimizer: str = "adam",
    momentum: float = 0.9,
    nesterov: bool = False,
    label_smoothing: float = 0.0,
    augment_crop: int = 0,
    augment_flip: bool = False,
) -> Dict[str, list]:
    """Train ``model`` in place on ``(x, y)`` with cross-entropy; returns the history.

    The model is left in eval mode (it is in train mode during the steps, so BatchNorm uses batch
    statistics). Training runs on the model's device: ``x`` and ``y`` may stay on the CPU, each
    minibatch is moved.

    ``optimizer``: ``"adam"`` (default) or ``"sgd"`` (with ``momentum`` and ``nesterov``);
    ``weight_decay`` is the optimiser's L2 term on the mean loss. The learning rate follows
    ``lr_schedule``: ``"cosine"`` (to 0 over all steps), ``"constant"`` or ``"onecycle"``
    (per step, linear warm-up to ``lr`` over the first quarter of the steps, then linear decay:
    :func:`xailib.training.onecycle_lr`). ``label_smoothing``: cross-entropy against ``(1 - s)·onehot + s/K``.
    Minibatches are drawn from a generator seeded with ``seed`` (reproducible), and so are the
    augmentations, applied in this order: ``augment_shift=k`` translates each image by a random
    integer offset in [-k, k]² (zero fill); ``augment_crop=k`` takes a random crop of the
    ``k``-pixel reflect-padded image (:func:`xailib.training.random_crop`); ``augment_flip=True`` mirrors each
    image with probability 1/2 (:func:`xailib.training.random_flip`).
    ``adversarial=dict(eps, step, steps, random_start=True, warmup_epochs=0, norm="linf")``
    replaces every (augmented) minibatch by its PGD adversarial example (Madry et al.; paper
    setting ε = 0.3, step 0.01, 40 steps), the radius ramping linearly to ``eps`` over
    ``warmup_epochs``. ``progress``: tqdm bar (default: on when interactive).
    History: ``epoch``, ``loss``, ``train_acc`` (on the batches seen, adversarial when
    adversarial training), ``eps``, ``seconds`` and ``val_acc`` when ``x_val`` is given.
    See ``notebooks/mnist.ipynb``, ``notebooks/mnist_robust.ipynb`` and ``notebooks/cifar10``.
    """
    x = check_input(x, "x")
    if not isinstance(y, Tensor) or y.shape != (x.shape[0],):
        raise ValueError(f"`y` must be a label tensor of shape ({x.shape[0]},)")
    check_positive(epochs, "epochs", integer=True)
    check_positive(batch_size, "batch_size", integer=True)
    check_positive(lr, "lr")
    for name, k in (("augment_shift", augment_shift), ("augment_crop", augment_crop)):
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"`{name}` must be an int >= 0, got {k!r}")
    if not isinstance(augment_flip, bool):
        raise ValueError(f"`augment_flip` must be a bool, got {augment_flip!r}")
    if lr_schedule not in ("cosine", "constant", "onecycle"):
        raise ValueError(f"`lr_schedule` must be 'cosine', 'constant' or 'onecycle', got {lr_schedule!r}")
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"`optimizer` must be 'adam' or 'sgd', got {optimizer!r}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"`label_smoothing` must be in [0, 1), got {label_smoothing!r}")
    adv = _check_adversarial(adversarial)
    device = _model_device(model, x.device)
    y = y.to(device=x.device, dtype=torch.long)
    gen = make_generator(int(seed), "cpu")
    atk_gen = make_generator(int(seed) + 1, device)
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov,
                              weight_decay=weight_decay)
    n = x.shape[0]
    n_batches = (n + batch_size - 1) // batch_size
    total_steps = epochs * n_batches
    sched = None
    if lr_schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    elif lr_schedule == "onecycle":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: onecycle_lr(min(s, total_steps - 1), total_steps, 1.0))
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
                xb, yb = x[idx].to(device), y[idx].to(device)
                if augment_shift:
                    xb = _random_shift(xb, augment_shift, gen)
                if augment_crop:
                    xb = random_crop(xb, augment_crop, gen)
                if augment_flip:
                    xb = random_flip(xb, gen)
                if adv is not None and eps_e > 0:
                    model.eval()
                    xb = pgd(
                        model, xb, yb, eps=eps_e, step=adv["step"], steps=adv["steps"],
                        random_start=adv["random_start"], norm=adv["norm"], generator=atk_gen,
                    )
                    model.train()
                out = model(xb)
                if label_smoothing:
                    loss = F.cross_entropy(out, yb, label_smoothing=label_smoothing)
                else:
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


def adversarial_training(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float = 0.3,
    step: float = 0.01,
    steps: int = 40,
    random_start: bool = True,
    warmup_epochs: int = 0,
    **train_kwargs,
):
    """Madry-style PGD adversarial training: ``train(model, x, y, adversarial=...)``.

    Each minibatch is replaced by ``pgd(model, xb, yb, eps_e, step, steps)``; with
    ``warmup_epochs > 0`` the radius ramps linearly up to ``eps`` over those epochs (a
    curriculum that helps small networks on CPU budgets). Other keyword arguments go to
    :func:`train`; returns its history. See ``notebooks/mnist_robust.ipynb``.
    """
    adv = dict(eps=eps, step=step, steps=steps, random_start=random_start, warmup_epochs=warmup_epochs)
    return train(model, x, y, adversarial=adv, **train_kwargs)
