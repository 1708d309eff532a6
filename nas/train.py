"""Short, seeded training under an epoch budget, and evaluation."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from nas.data import Dataset
from nas.energy.base import BYTES_PER_ELEM, WindowWork
from nas.errors import TrialFault
from nas.models import ModelStats


@dataclass(frozen=True)
class TrainConfig:
    """How a candidate is trained: epochs, mini-batch size (inputs), Adam learning rate, seed."""

    epochs: int = 3
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0


@dataclass(frozen=True)
class TrainResult:
    """What training did: epochs run, samples seen, the last loss, whether it stopped early, time in s."""

    epochs_done: int
    samples_seen: int
    final_loss: float
    stopped_early: bool
    duration_s: float


def set_threads(threads: int) -> None:
    """Pin the number of intra-op CPU threads (deterministic results, no oversubscription)."""
    torch.set_num_threads(max(1, threads))


def train(
    model: nn.Module,
    data: Dataset,
    cfg: TrainConfig,
    device: torch.device | str = "cpu",
    on_epoch: Callable[[int, nn.Module], bool] | None = None,
) -> TrainResult:
    """Train `model` in place with Adam on the training split.

    `on_epoch(epoch, model)` runs after each epoch (1-based); returning True stops training
    before the next epoch.
    A non-finite loss raises TrialFault('nan_loss').
    """
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    x, y = data.x_train.to(device), data.y_train.to(device)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn = nn.CrossEntropyLoss()
    n = len(y)
    seen, loss_value, stopped, epochs_done = 0, float("nan"), False, 0
    for epoch in range(1, cfg.epochs + 1):
        order = torch.randperm(n, generator=gen).to(device)
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            seen += len(idx)
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise TrialFault("nan_loss", f"training loss became {loss_value} in epoch {epoch}")
        epochs_done = epoch
        if on_epoch is not None:
            stop = on_epoch(epoch, model)
            model.train()
            if stop and epoch < cfg.epochs:
                stopped = True
                break
    model.eval()
    return TrainResult(epochs_done, seen, loss_value, stopped, time.perf_counter() - t0)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Top-1 accuracy of `model` on (x, y), in [0, 1]."""
    model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    correct = 0
    for start in range(0, len(y), batch_size):
        logits = model(x[start : start + batch_size].to(device))
        correct += int((logits.argmax(1).cpu() == y[start : start + batch_size]).sum())
    return correct / max(1, len(y))


def training_work(stats: ModelStats, result: TrainResult, batch_size: int, precision: str = "fp32") -> WindowWork:
    """The work a training run did, for meters that estimate energy from work (WindowWork).

    Forward plus backward is about 3x the forward MACs per sample. Per optimiser step the weights
    are read, their gradients written and Adam's two moments read and written (about 6 passes over
    the parameters); activations are written and read in the forward pass and again in backward.
    """
    bpe = BYTES_PER_ELEM[precision]
    steps = math.ceil(result.samples_seen / batch_size) if result.samples_seen else 0
    weight_bytes = 6 * stats.params * bpe * steps
    act_bytes = 4 * (stats.activation_elems + stats.input_elems) * bpe * result.samples_seen
    return WindowWork(
        macs=3 * stats.macs * result.samples_seen,
        bytes_moved=weight_bytes + act_bytes,
        precision=precision,
    )


def add_work(a: WindowWork, b: WindowWork) -> WindowWork:
    """The work of two windows together (same precision)."""
    return replace(a, macs=a.macs + b.macs, bytes_moved=a.bytes_moved + b.bytes_moved)
