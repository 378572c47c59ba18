"""Test-only callbacks and data for the reliability tests; subprocess runs import them by name."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, DistributedSampler


class StallAt(pl.Callback):
    """Before the batch that starts at ``step``, write ``marker`` and wait (until SIGTERM).

    Gives a test a fixed moment to kill the run: the checkpoint of an earlier step is on disk,
    the current step is not.
    """

    def __init__(self, step: int, marker: str, seconds: float = 600.0) -> None:
        self.step, self.marker, self.seconds = step, Path(marker), seconds

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step != self.step:
            return
        self.marker.write_text(str(trainer.global_step))
        end = time.monotonic() + self.seconds
        while time.monotonic() < end and not trainer.received_sigterm:
            time.sleep(0.02)


class PoisonLoss(pl.Callback):
    """Multiply what ``pl_module.<attribute>(...)`` returns by ``value`` (NaN, Inf) for one batch.

    :param attribute: a loss function or method of the module (``loss_fn``, ``kl_term``).
    :param steps: the global steps at whose batch the result is poisoned.
    """

    def __init__(self, attribute: str, steps: list[int], value: float = float("nan")) -> None:
        self.attribute, self.steps, self.value = attribute, set(steps), value
        self._undo: dict[str, Any] | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *a) -> None:
        if self._undo is not None:  # the previous batch was poisoned: put the clean one back
            pl_module.__dict__.pop(self.attribute)
            pl_module.__dict__.update(self._undo)
            self._undo = None
        if trainer.global_step not in self.steps:
            return
        clean = getattr(pl_module, self.attribute)
        self._undo = {k: v for k, v in pl_module.__dict__.items() if k == self.attribute}

        def poisoned(*args: Any, **kwargs: Any) -> Any:
            out = clean(*args, **kwargs)
            if isinstance(out, dict):  # a dict of terms: poison the first one
                first = next(iter(out))
                return {**out, first: out[first] * self.value}
            return out * self.value

        pl_module.__dict__[self.attribute] = poisoned


def full_state(trainer: pl.Trainer) -> list[torch.Tensor]:
    """Copies of every weight and every optimizer state tensor."""
    tensors = [t.detach().clone() for t in trainer.lightning_module.state_dict().values()]
    for optimizer in trainer.optimizers:
        for state in optimizer.state_dict()["state"].values():
            tensors += [v.clone() for v in state.values() if isinstance(v, torch.Tensor)]
    return tensors


class Snapshot(pl.Callback):
    """Weights and optimizer state before and after the batches that start at ``steps``."""

    def __init__(self, steps: list[int]) -> None:
        self.steps = set(steps)
        self.before: dict[int, list[torch.Tensor]] = {}
        self.after: dict[int, list[torch.Tensor]] = {}
        self._start = -1

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self._start = trainer.global_step
        if self._start in self.steps:
            self.before[self._start] = full_state(trainer)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if self._start in self.steps:
            self.after[self._start] = full_state(trainer)


class FixedScratchData(pl.LightningDataModule):
    """Fixed gray images and masks, drawn in the order Lightning's DDP sampler draws them.

    Under DDP Lightning replaces the training sampler with a ``DistributedSampler`` (shuffled,
    seed ``PL_GLOBAL_SEED`` + epoch); rank r takes every world-th index of that permutation, so
    the ranks' batches at a step together hold the one-process batch of that step when the one
    process reads the same permutation, which it does here.
    """

    def __init__(self, length: int = 24, size: int = 32, batch_size: int = 4) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.images = torch.rand(length, 1, size, size, generator=generator) * 2 - 1
        self.masks = (torch.rand(length, 1, size, size, generator=generator) > 0.9).float()
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader:
        items = [{"image": i, "mask": m} for i, m in zip(self.images, self.masks)]
        world = self.trainer.world_size
        if world > 1:
            return DataLoader(items, batch_size=self.batch_size // world, shuffle=True)
        sampler = DistributedSampler(items, num_replicas=1, rank=0, shuffle=True, seed=0)
        return DataLoader(items, batch_size=self.batch_size, sampler=sampler)


class LossRecorder(pl.Callback):
    """The loss of every step averaged over the ranks (= the global batch's loss), and the final
    weights, written by rank 0 to ``path`` (JSON) and ``path.pt``."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.losses.append(float(pl_module.all_gather(outputs["loss"].detach()).mean()))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self.path.write_text(json.dumps(self.losses))
            torch.save(pl_module.state_dict(), self.path.with_suffix(".pt"))
