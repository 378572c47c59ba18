"""revive-eval: test a checkpoint on a datamodule and write the metrics as CSV and Markdown."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig

from revive.config import CONF_DIR, register_configs
from revive.utils import spine

log = logging.getLogger(__name__)

register_configs()


def write_metrics_table(metrics: dict[str, float], out_dir: Path, ckpt_path: str) -> None:
    """Write ``metrics.csv`` and ``metrics.md`` (one row: the checkpoint and its metrics)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = sorted(metrics)
    with open(out_dir / "metrics.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["checkpoint", *names])
        writer.writerow([ckpt_path, *(f"{metrics[n]:.6g}" for n in names)])
    header = "| checkpoint | " + " | ".join(names) + " |"
    rule = "|" + "---|" * (len(names) + 1)
    row = f"| {Path(ckpt_path).name} | " + " | ".join(f"{metrics[n]:.4f}" for n in names) + " |"
    (out_dir / "metrics.md").write_text("\n".join([header, rule, row]) + "\n")


@spine.task_wrapper
def evaluate(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Test ``cfg.ckpt_path`` with the configured data and model; return the metrics."""
    ckpt = Path(cfg.ckpt_path)
    if not ckpt.is_file():
        raise FileNotFoundError(
            f"ckpt_path '{ckpt}' does not exist; pass ckpt_path=/path/to/x.ckpt."
        )
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.data)
    model: pl.LightningModule = hydra.utils.instantiate(cfg.model)
    loggers = spine.instantiate_group(cfg.get("logger"), "logger")
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers)
    log.info("Testing %s", ckpt)
    trainer.test(model=model, datamodule=datamodule, ckpt_path=str(ckpt), weights_only=True)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    write_metrics_table(metrics, Path(cfg.paths.output_dir), str(ckpt))
    return metrics, {"cfg": cfg, "model": model, "trainer": trainer}


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
def main(cfg: DictConfig) -> None:
    """Console entry point: ``revive-eval experiment=... ckpt_path=...``."""
    spine.extras(cfg)
    evaluate(cfg)


if __name__ == "__main__":
    main()
