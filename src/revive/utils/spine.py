"""The training spine's helpers: instantiation, config printing, hyperparameter logging, W&B."""

from __future__ import annotations

import csv
import functools
import io
import logging
import os
import re
import socket
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only

log = logging.getLogger(__name__)

PRINT_ORDER = ("data", "model", "callbacks", "logger", "trainer", "paths", "extras")


def instantiate_group(cfg: DictConfig | None, kind: str) -> list[Any]:
    """Instantiate every child of a callbacks/logger group that has a ``_target_``."""
    if not cfg:
        log.info("No %s configured", kind)
        return []
    if not isinstance(cfg, DictConfig):
        raise TypeError(f"The {kind} config must be a mapping of name -> {{_target_: ...}}.")
    objects = []
    for name, child in cfg.items():
        if isinstance(child, DictConfig) and "_target_" in child:
            log.info("Instantiating %s <%s> (%s)", kind, child._target_, name)
            objects.append(hydra.utils.instantiate(child))
    return objects


def wandb_should_be_offline(base_url: str = "https://api.wandb.ai", timeout: float = 2.0) -> bool:
    """Offline unless the user is logged in and the W&B server answers within ``timeout``.

    A logged-in run on a node without network would otherwise block ~100 s in ``wandb.init``.
    """
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return True
    try:
        import wandb

        logged_in = bool(wandb.api.api_key)
    except Exception:  # noqa: BLE001 - any failure to read the key means not logged in
        logged_in = False
    if not logged_in:
        return True
    host = urlparse(base_url).hostname or "api.wandb.ai"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        log.warning(
            "W&B: logged in but %s is unreachable; logging offline (wandb sync later)", host
        )
        return True
    return False


def wandb_logger(offline: bool | None = None, **kwargs: Any) -> WandbLogger:
    """A WandbLogger that is offline unless the user is logged in and online (``offline=null``)."""
    if offline is None:
        offline = wandb_should_be_offline()
    log.info("W&B logging %s", "offline (sync later with `wandb sync`)" if offline else "online")
    if offline:
        # Lightning says offline through WANDB_MODE, which wandb ignores once its settings exist
        # (reading wandb.api above creates them): without an explicit mode it asks for a login
        kwargs.setdefault("mode", "offline")
    return WandbLogger(offline=offline, **kwargs)


WANDB_RUN_DIR = re.compile(r"(?:offline-)?run-(\d{8}_\d{6})-(\w+)")


def continue_wandb_run(cfg: DictConfig) -> None:
    """Give the W&B logger the id of the newest run in its save dir, so a resume continues it."""
    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    # an experiment's W&B group alone (logger=csv) leaves a wandb node without a logger
    if not wandb_cfg or "_target_" not in wandb_cfg or wandb_cfg.get("id"):
        return
    runs = [
        m.groups()
        for p in Path(wandb_cfg.save_dir, "wandb").glob("*run-*")
        if (m := WANDB_RUN_DIR.fullmatch(p.name))
    ]
    if not runs:
        return
    wandb_cfg.id = max(runs)[1]  # the newest timestamp
    log.info("Continuing the W&B run %s", wandb_cfg.id)


class ResumableCSVLogger(CSVLogger):
    """A CSVLogger whose ``metrics.csv`` survives a resume in the same folder.

    Lightning's writer deletes an existing ``metrics.csv`` when it starts; this one puts the
    earlier rows back and continues the file with the same columns.
    """

    @property
    def experiment(self):  # noqa: ANN201 - Lightning's experiment writer
        if self._experiment is not None:
            return self._experiment
        path = Path(self.log_dir) / "metrics.csv"
        earlier = path.read_text() if path.is_file() else ""
        writer = super().experiment
        if earlier:
            path.write_text(earlier)
            writer.metrics_keys = sorted(next(csv.reader(io.StringIO(earlier)), []))
        return writer


def finish_wandb() -> None:
    """Close the W&B run so the next multirun job starts its own."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        log.info("Closing the W&B run %s", wandb.run.id)
        wandb.finish()


def task_wrapper(task: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Run a task so that failures are logged with their traceback and W&B always finishes."""

    @functools.wraps(task)
    def wrapped(cfg: DictConfig) -> Any:
        try:
            return task(cfg)
        except Exception:
            log.exception("Task failed")
            raise
        finally:
            log.info("Output dir: %s", cfg.paths.output_dir)
            finish_wandb()

    return wrapped


@rank_zero_only
def print_config_tree(cfg: DictConfig, save_to: Path | None = None) -> None:
    """Print the composed config as a rich tree (data, model, ... first) and save it as text."""
    import rich
    import rich.syntax
    import rich.tree

    tree = rich.tree.Tree("CONFIG", style="dim")
    keys = [k for k in PRINT_ORDER if k in cfg] + [k for k in cfg if k not in PRINT_ORDER]
    for key in keys:
        value = cfg[key]
        text = (
            OmegaConf.to_yaml(value, resolve=False) if isinstance(value, DictConfig) else str(value)
        )
        tree.add(key).add(rich.syntax.Syntax(text, "yaml"))
    rich.print(tree)
    if save_to is not None:
        save_to.parent.mkdir(parents=True, exist_ok=True)
        with open(save_to, "w") as file:
            rich.print(tree, file=file)


def extras(cfg: DictConfig) -> None:
    """Optional conveniences before the task: silence warnings, print the config."""
    if not cfg.get("extras"):
        return
    if cfg.extras.get("ignore_warnings"):
        warnings.filterwarnings("ignore")
    if cfg.extras.get("print_config"):
        print_config_tree(cfg, save_to=Path(cfg.paths.output_dir) / "config_tree.log")


@rank_zero_only
def log_hyperparameters(cfg: DictConfig, model: pl.LightningModule, loggers: list[Logger]) -> None:
    """Send the resolved config and parameter counts to every logger."""
    if not loggers:
        return
    params = {
        key: OmegaConf.to_container(cfg[key], resolve=True)
        if isinstance(cfg[key], DictConfig)
        else cfg[key]
        for key in (
            "data",
            "model",
            "trainer",
            "callbacks",
            "task_name",
            "tags",
            "ckpt_path",
            "seed",
        )
        if key in cfg
    }
    params["model/params/total"] = sum(p.numel() for p in model.parameters())
    params["model/params/trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    notes = getattr(model, "run_notes", None)
    if notes:
        params["notes"] = dict(notes)
    for logger in loggers:
        logger.log_hyperparams(params)


@rank_zero_only
def log_final_metrics(metrics: dict[str, float], loggers: list[Logger]) -> None:
    """Log the run's final metrics as a table (W&B ``final/metrics``: one row per metric)."""
    rows = [[name, float(value)] for name, value in sorted(metrics.items())]
    for logger in loggers:
        if isinstance(logger, WandbLogger) and rows:
            logger.log_table("final/metrics", columns=["metric", "value"], data=rows)


def get_metric_value(metrics: dict[str, Any], name: str | None) -> float | None:
    """The value the sweeper optimises, or None when no metric is named."""
    if not name:
        return None
    if name not in metrics:
        raise KeyError(
            f"optimized_metric '{name}' was not logged; logged metrics: {sorted(metrics)}. "
            "Fix optimized_metric in the hparams_search config."
        )
    return float(metrics[name])
