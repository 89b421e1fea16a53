"""Training: minibatch Adam with optional PGD adversarial training, and accuracy.

* :func:`train`: trains a model in place (cross-entropy, Adam, cosine or constant learning rate,
  optional random shifts, optional PGD adversarial examples with a warm-up of the radius);
* :func:`adversarial_training`: Madry-style PGD adversarial training, ``train(..., adversarial=...)``;
* :func:`evaluate_accuracy`: clean accuracy, batched.

The paper's robust MNIST network (the book's *The paper in brief*, § Experiments) is trained with
PGD at ε = 0.3 (ℓ∞), step 0.01, 40 steps, random start; Theorem A.1 (§ Theory) explains why
adversarial training makes gradient explanations less sensitive and more faithful.
Chapters: ``notebooks/mnist`` and ``notebooks/mnist_robust``. The configured, cached models
are built by :func:`xailib.models.get_model`.
"""
from __future__ import annotations

import time
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._utils import check_input, check_positive, make_generator, progress as _progress
from .attacks import pgd

__all__ = ["train", "adversarial_training", "evaluate_accuracy"]


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
