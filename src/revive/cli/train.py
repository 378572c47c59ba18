"""revive-train: the training spine (seed, data, model, callbacks, loggers, trainer, fit, test)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from revive.config import CONF_DIR, register_configs
from revive.utils import cluster, spine
from revive.utils.reliability import check_options

log = logging.getLogger(__name__)

register_configs()


def resolve_ckpt_path(ckpt_path: str | None, output_dir: str) -> str | None:
    """``last`` means this run folder's ``checkpoints/last.ckpt``; a missing file is an error."""
    if not ckpt_path:
        return None
    path = (
        Path(output_dir) / "checkpoints" / "last.ckpt" if ckpt_path == "last" else Path(ckpt_path)
    )
    if not path.is_file():
        raise FileNotFoundError(
            f"ckpt_path '{ckpt_path}' -> '{path}' does not exist. Give an existing .ckpt, or "
            "ckpt_path=last with hydra.run.dir set to the run folder to resume."
        )
    return str(path)


@spine.task_wrapper
def train(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit (and test) the configured model; return the final metrics and the built objects."""
    check_options(cfg)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    plugins = cluster.cluster_plugins(cfg.trainer)
    cluster.check_sweep_strategy(cfg, plugins)
    ckpt = None
    if cfg.get("train"):
        ckpt = resolve_ckpt_path(cfg.get("ckpt_path"), cfg.paths.output_dir)
        ckpt = ckpt or cluster.requeued_checkpoint(cfg.paths.output_dir)
    if ckpt:
        spine.continue_wandb_run(cfg)

    log.info("Instantiating datamodule <%s>", cfg.data._target_)
    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.data)
    log.info("Instantiating model <%s>", cfg.model._target_)
    model: pl.LightningModule = hydra.utils.instantiate(cfg.model)
    callbacks = spine.instantiate_group(cfg.get("callbacks"), "callback")
    loggers = spine.instantiate_group(cfg.get("logger"), "logger")
    log.info("Instantiating trainer <%s>", cfg.trainer._target_)
    # the preset's plugins (atomic checkpoint IO) plus the cluster's; a plugins= kwarg alone
    # would replace the preset's
    plugins = [*(hydra.utils.instantiate(cfg.trainer.get("plugins")) or []), *(plugins or [])]
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers, plugins=plugins or None
    )
    objects = {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer}
    spine.log_hyperparameters(cfg, model, loggers)

    if cfg.get("train"):
        log.info("Starting training")
        trainer.fit(model=model, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
    metrics = dict(trainer.callback_metrics)

    if cfg.get("test") and not trainer.fast_dev_run:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        log.info("Testing %s", best or "the current weights")
        trainer.test(model=model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        metrics.update(trainer.callback_metrics)
    metrics = {k: v.item() if isinstance(v, torch.Tensor) else v for k, v in metrics.items()}
    spine.log_final_metrics(metrics, trainer.loggers)
    return metrics, objects


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Console entry point: ``revive-train experiment=... key=value``."""
    spine.extras(cfg)
    if cfg.get("chain"):
        from revive.chain import run_chain

        run_chain(cfg)
        return None
    metrics, _ = train(cfg)
    return spine.get_metric_value(metrics, cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
