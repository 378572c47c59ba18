"""Training that survives faults: atomic checkpoints, non-finite losses, preemption, safe loading.

- ``AtomicCheckpointIO``: every trainer preset writes checkpoints through it. A checkpoint goes
  to a temporary file in the same folder, is flushed to disk and renamed over the target, so a
  kill at any moment leaves the previous file or the new one, never half of one. A state_dict
  with NaN / Inf is refused, so a diverged run never overwrites its last good checkpoint.
  Loading is always ``weights_only=True``; a file carrying pickled code is refused unexecuted.
- ``NonFiniteLossGuard``: stops the run (or skips the batch) when a loss term is NaN / Inf.
- ``PreemptionCheckpoint``: SIGTERM (SLURM preemption, ``scancel``) writes ``last.ckpt`` first.
- ``check_options``: the CLIs fail on a missing or mistyped option before any work starts.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch import Tensor

from revive.models.stages import load_weights_only

log = logging.getLogger(__name__)


def nonfinite_entries(state_dict: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors of ``state_dict`` that hold NaN or Inf."""
    return [
        name
        for name, value in state_dict.items()
        if isinstance(value, Tensor)
        and value.is_floating_point()
        and not bool(torch.isfinite(value).all())
    ]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written through a temporary file and a rename; loaded ``weights_only``.

    Lightning's own writer goes through fsspec, which stages the file in the system temp folder
    and *moves* it (a copy when that is another file system), so a kill can still leave a
    truncated checkpoint, or litter the temp folder.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if "://" in str(path):  # remote storage: fsspec's transaction is the atomic unit there
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        bad = nonfinite_entries(checkpoint.get("state_dict", {}))
        if bad:
            raise ValueError(
                f"Not writing checkpoint '{path}': the weights hold NaN/Inf ({', '.join(bad[:3])}"
                f"{', ...' if len(bad) > 3 else ''}); the previous checkpoint is kept. "
                "Enable callbacks.nonfinite_guard to stop a diverging run before this happens."
            )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a process killed mid-write
            stale.unlink(missing_ok=True)

    def load_checkpoint(
        self, path: str | Path, map_location: Any = "cpu", weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Always ``weights_only=True``, whatever the caller asks for; tensors on the CPU."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"Checkpoint '{path}' does not exist.")
        return load_weights_only(path, map_location)


class NonFiniteLossError(RuntimeError):
    """Training stopped because a loss term or gradient became NaN or Inf."""


class NonFiniteLossGuard(pl.Callback):
    """Stop the run, or skip the batch, when a logged loss term or a gradient is NaN / Inf.

    Every value the model logs under ``monitor`` (``train/loss_gan``, ``train/loss``, ...) and
    every loss given to backward is checked. From the first non-finite loss of a batch on, and
    for any step whose gradients are non-finite, the optimizer step is made a no-op (its
    gradients are dropped), so NaN never reaches the weights, the optimizer state or a
    checkpoint; steps before it in the same batch used only finite values and stay applied.

    :param action: ``stop`` raises ``NonFiniteLossError`` naming the term and the step (the
        newest checkpoint on disk is the last good one); ``skip`` drops the batch and goes on.
    :param monitor: prefix of the logged values to check.
    :param max_consecutive_skips: with ``skip``, stop anyway after this many bad batches in a row.
    """

    def __init__(
        self, action: str = "stop", monitor: str = "train/", max_consecutive_skips: int = 20
    ) -> None:
        if action not in ("stop", "skip"):
            raise ValueError(f"nonfinite_guard.action='{action}' is unknown; use stop or skip.")
        self.action = action
        self.monitor = monitor
        self.max_consecutive_skips = max_consecutive_skips
        self.skipped = 0
        self._consecutive = 0
        self._logged: dict[str, Tensor | float] = {}
        self._cause: str | None = None
        self._step = 0  # global step at the start of the batch: the step the message names
        self._grad_scaler = False

    # ---- seeing the terms: wrap the module's log() for the duration of fit -------------------

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # fp16 loss scaling overflows on purpose; its scaler skips those steps by itself
        self._grad_scaler = getattr(trainer.precision_plugin, "scaler", None) is not None
        log_value = pl_module.log

        def log_and_record(name: str, value: Any, *args: Any, **kwargs: Any) -> None:
            if name.startswith(self.monitor) and isinstance(value, Tensor | float | int):
                self._logged[name] = value
            log_value(name, value, *args, **kwargs)

        pl_module.log = log_and_record  # log_dict() goes through log() too

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.__dict__.pop("log", None)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        pl_module.__dict__.pop("log", None)

    # ---- keeping NaN out of the weights -------------------------------------------------------

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._step = trainer.global_step

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor
    ) -> None:
        if self._cause is None and not bool(torch.isfinite(loss.detach()).all()):
            self._cause = f"the loss given to backward ({loss.detach().float().sum().item()})"

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]]
        grads = [g for g in grads if g is not None]
        if self._cause is None and grads and not self._grad_scaler:
            finite = torch.stack([torch.isfinite(g).all() for g in grads]).all()
            if not bool(finite):
                self._cause = "a gradient"
        if self._cause is not None:
            optimizer.zero_grad(set_to_none=True)  # no gradient: the step changes nothing

    # ---- deciding -----------------------------------------------------------------------------

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        bad = [
            f"{name}={float(value):g}"
            for name, value in self._logged.items()
            if not bool(torch.isfinite(torch.as_tensor(value).detach()).all())
        ]
        if self._cause is not None and not bad:
            bad = [self._cause]
        self._logged, self._cause = {}, None
        # every rank takes the same decision, or DDP would hang on the next collective
        if not trainer.strategy.reduce_boolean_decision(bool(bad), all=False):
            self._consecutive = 0
            return
        where = f"at step {self._step} (epoch {trainer.current_epoch}, batch {batch_idx})"
        message = f"Non-finite {', '.join(bad) or 'loss on another rank'} {where}"
        self.skipped += 1
        self._consecutive += 1
        self._report(trainer, message)
        if self.action == "skip" and self._consecutive <= self.max_consecutive_skips:
            log.warning("%s: batch skipped, weights unchanged (%d so far)", message, self.skipped)
            return
        raise NonFiniteLossError(
            f"{message}; training stopped. The weights were not updated with it; the newest "
            f"checkpoint in {checkpoint_dir(trainer)} is the last good one. Lower the learning "
            "rate or check the data, or set callbacks.nonfinite_guard.action=skip."
        )

    def _report(self, trainer: pl.Trainer, message: str) -> None:
        """The event as a metric to every logger, and as text in the W&B run summary."""
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            logger.log_metrics(
                {"train/nonfinite_batches": float(self.skipped)}, trainer.global_step
            )
            if isinstance(logger, WandbLogger):
                logger.experiment.summary["train/nonfinite_event"] = message

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = state_dict.get("skipped", 0)


def checkpoint_dir(trainer: pl.Trainer) -> Path:
    """Where this run's checkpoints go: the ModelCheckpoint's folder, else ``<root>/checkpoints``."""
    callback = trainer.checkpoint_callback
    dirpath = getattr(callback, "dirpath", None)
    return Path(dirpath) if dirpath else Path(trainer.default_root_dir) / "checkpoints"


class PreemptionCheckpoint(pl.Callback):
    """On SIGTERM, write ``last.ckpt`` before the process exits, so ``ckpt_path=last`` resumes.

    Lightning turns SIGTERM into an exception after the running batch; this callback saves the
    state at that point. (SLURM's auto-requeue signal is handled by ``revive.utils.cluster``.)

    :param filename: checkpoint name in the run's checkpoint folder.
    """

    def __init__(self, filename: str = "last.ckpt") -> None:
        self.filename = filename

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.global_step == 0:
            return
        path = checkpoint_dir(trainer) / self.filename
        log.warning("SIGTERM: saving %s at step %d before exit", path, trainer.global_step)
        trainer.save_checkpoint(path, weights_only=False)
        # Lightning's exit carries no code (0): a script or scheduler would take the run as done
        exception.code = 128 + signal.SIGTERM


class OptionError(ValueError):
    """A command-line option that is missing or has the wrong type."""


_KINDS = {int: "an integer", bool: "true or false", float: "a number", str: "a string"}


def _has_kind(value: Any, kind: type) -> bool:
    if isinstance(value, bool):  # bool is an int in Python, never in a config
        return kind is bool
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


def check_options(cfg: DictConfig, types: Mapping[str, type] | None = None) -> None:
    """Fail before any work when an option marked ``???`` is not given or has the wrong type."""
    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if not k.startswith("hydra."))
    if missing:
        raise OptionError(
            f"Missing required option {', '.join(missing)}: give it on the command line, "
            f"e.g. {missing[0]}=..."
        )
    for key, kind in (types or {}).items():
        value = cfg.get(key)
        if value is not None and not _has_kind(value, kind):
            raise OptionError(f"Option {key}={value!r} must be {_KINDS[kind]}; fix {key}=.")
