"""revive-eval: any revive checkpoint on a dataset, as a metrics table and per-image results.

The checkpoint says which model it holds (scratch detector, VAE1 / VAE2, mapping, TTSR, or the
official ``TTSR.pt``) and the network is rebuilt from it, so the experiment only brings the data:

    revive-eval experiment=ttsr/small ckpt_path=run/checkpoints/last.ckpt data.test_dir=CUFED5/
    revive-eval experiment=bopb/mapping_small ckpt_path=... data.data_dir=photos/ data.val_length=200

The images are the datamodule's test samples (its fixed validation draw, or ``data.test_dir``).
Metrics per image, then averaged over images (BasicSR convention):

- restoration (VAE, mapping): PSNR / SSIM on RGB (``psnr_rgb``) and on Y (``psnr_y``, BT.601),
  no border crop; SR (TTSR): the same with ``crop_border = 4``, plus the official TTSR convention
  (``psnr_y_ttsr``: uint8 levels, TTSR's luma, no crop);
- ``*_input``: the model's input against the target (degraded photo / bicubic LR-up): the baseline;
- ``lpips`` (AlexNet) when ``alexnet-owt-7be5be79.pth`` is in the torch hub cache;
- scratch detector: IoU, F1 (Dice), precision and recall at its threshold; the summary pools the
  pixels of all images, as the training's ``test/iou``.

Writes ``metrics.csv`` (one row: checkpoint, model, images, ``test/*``), ``metrics.md`` (the same as
a table with the conventions) and ``per_image.csv`` in the run folder.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from torch import Tensor

from revive.config import CONF_DIR, register_configs
from revive.metrics.image import psnr_ssim
from revive.metrics.lpips import LPIPSMetric, build_lpips
from revive.models.stages import freeze, load_detector, load_vae, read_checkpoint
from revive.pipelines.restore import load_restorer
from revive.pipelines.super_resolve import load_ttsr
from revive.utils import spine
from revive.utils.images import to_unit

log = logging.getLogger(__name__)

register_configs()

SR_SCALE = 4  # TTSR is x4; BasicSR crops this many border pixels for SR metrics
REAL, SYNTHETIC = 1, 0  # VAE1 batches: the domain flag of each image


@dataclass
class Evaluable:
    """A checkpoint's network as a function of a batch, and what the batch must hold."""

    kind: str  # scratch | vae | mapping | ttsr
    predict: Callable[[dict[str, Tensor]], dict[str, Any]]
    needs: tuple[str, ...]  # batch keys
    crop_border: int = 0


def checkpoint_kind(hp: dict[str, Any], path: str | Path) -> str:
    """Which model a revive checkpoint holds, from its hyperparameters."""
    if "threshold" in hp:
        return "scratch"
    if "latent_gan" in hp:
        return "vae"
    if "mapping" in hp:
        return "mapping"
    if isinstance(hp.get("net"), dict) and "n_feats" in hp["net"]:
        return "ttsr"
    raise ValueError(
        f"'{path}' holds no model revive-eval knows (hyperparameters: {sorted(hp)}); give a "
        "checkpoint of revive-train (bopb/scratch*, vae*, mapping*, ttsr/*) or the official TTSR.pt."
    )


def load_evaluable(path: str | Path) -> Evaluable:
    """The network of any revive checkpoint (or an official TTSR.pt), frozen."""
    try:
        hp = read_checkpoint(path, "a revive-train checkpoint")["hyper_parameters"]
    except ValueError:  # not a Lightning checkpoint: maybe the official TTSR.pt
        return _ttsr(path)
    kind = checkpoint_kind(hp, path)
    log.info("Evaluating a %s checkpoint: %s", kind, path)
    if kind == "scratch":
        net, hp = load_detector(path)
        return _scratch(freeze(net), hp["threshold"])
    if kind == "vae":
        vae, _ = load_vae(path, "vae1" if hp["latent_gan"] else "vae2")
        return _vae(freeze(vae))
    if kind == "mapping":
        return _mapping(load_restorer(path))
    return _ttsr(path)


def _scratch(net: torch.nn.Module, threshold: float) -> Evaluable:
    def predict(batch: dict[str, Tensor]) -> dict[str, Any]:
        prob = torch.sigmoid(net(batch["image"]).float())
        return {"mask_pred": prob >= threshold, "mask": batch["mask"] > 0.5}

    return Evaluable("scratch", predict, ("image", "mask"))


def _vae(vae: torch.nn.Module) -> Evaluable:
    def predict(batch: dict[str, Tensor]) -> dict[str, Any]:
        image = batch["image"]
        recon = vae.decode(vae.encode(image)[0])  # from the mean, as validation does
        groups = None
        if "domain" in batch:
            groups = ["real" if d == REAL else "synthetic" for d in batch["domain"].tolist()]
        return {"pred": to_unit(recon), "target": to_unit(image), "groups": groups}

    return Evaluable("vae", predict, ("image",))


def _mapping(restorer: torch.nn.Module) -> Evaluable:
    def predict(batch: dict[str, Tensor]) -> dict[str, Any]:
        restored = restorer(batch["degraded"], batch["mask"])
        return {
            "pred": to_unit(restored),
            "target": to_unit(batch["clean"]),
            "input": to_unit(batch["degraded"]),
        }

    return Evaluable("mapping", predict, ("degraded", "clean", "mask"))


def _ttsr(path: str | Path) -> Evaluable:
    model = load_ttsr(path)

    def predict(batch: dict[str, Tensor]) -> dict[str, Any]:
        out = model(batch["lr"], batch["lr_up"], batch["ref"], batch["ref_down_up"])
        return {
            "pred": to_unit(out.sr),
            "target": to_unit(batch["hr"]),
            "input": to_unit(batch["lr_up"]),
        }

    return Evaluable("ttsr", predict, ("lr", "lr_up", "hr", "ref", "ref_down_up"), SR_SCALE)


def image_metrics(
    pred: Tensor, target: Tensor, crop_border: int, lpips: LPIPSMetric | None, sr: bool
) -> dict[str, Tensor]:
    """Per-image PSNR / SSIM (RGB and Y, BasicSR; and TTSR's official for SR) and LPIPS: (B,)."""
    out = {}
    out["psnr_rgb"], out["ssim_rgb"] = psnr_ssim(pred, target, "basicsr", crop_border, False)
    out["psnr_y"], out["ssim_y"] = psnr_ssim(pred, target, "basicsr", crop_border, True)
    if sr:
        out["psnr_y_ttsr"], out["ssim_y_ttsr"] = psnr_ssim(pred, target, "ttsr_official")
    if lpips is not None:
        out["lpips"] = lpips(pred, target)
    return out


def mask_counts(pred: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """Per-image true positives, false positives and false negatives of a binary mask: (B,)."""
    dims = tuple(range(1, pred.dim()))
    return {
        "tp": (pred & mask).sum(dims).double(),
        "fp": (pred & ~mask).sum(dims).double(),
        "fn": (~pred & mask).sum(dims).double(),
    }


def mask_scores(tp: Tensor, fp: Tensor, fn: Tensor) -> dict[str, Tensor]:
    """IoU, F1, precision, recall; an empty prediction of an empty mask scores 1 (it is right)."""

    def ratio(num: Tensor, den: Tensor) -> Tensor:
        return torch.where(den > 0, num / den.clamp_min(1), torch.ones_like(num))

    return {
        "iou": ratio(tp, tp + fp + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
    }


def batch_rows(model: Evaluable, batch: dict[str, Tensor], lpips: LPIPSMetric | None) -> list[dict]:
    """One dict of metrics per image of the batch."""
    out = model.predict(batch)
    if model.kind == "scratch":
        counts = mask_counts(out["mask_pred"], out["mask"])
        columns = {**mask_scores(**counts), **counts}
    else:
        sr = model.kind == "ttsr"
        columns = image_metrics(out["pred"], out["target"], model.crop_border, lpips, sr)
        if "input" in out:
            baseline = image_metrics(out["input"], out["target"], model.crop_border, None, sr)
            columns.update({f"{k}_input": v for k, v in baseline.items()})
    n = next(iter(columns.values())).shape[0]
    rows = [{k: float(v[i]) for k, v in columns.items()} for i in range(n)]
    for row, group in zip(rows, out.get("groups") or [None] * n):
        if group:
            row["group"] = group
    return rows


def summarize(kind: str, rows: list[dict[str, Any]]) -> dict[str, float]:
    """``test/<metric>``: the mean over images (masks: pooled pixels), and per group if any."""
    if kind == "scratch":
        pooled = {k: torch.tensor([sum(r[k] for r in rows)]) for k in ("tp", "fp", "fn")}
        return {f"test/{k}": float(v) for k, v in mask_scores(**pooled).items()}
    names = [k for k in rows[0] if k != "group"]
    summary = {f"test/{k}": sum(r[k] for r in rows) / len(rows) for k in names}
    for group in sorted({r["group"] for r in rows if "group" in r}):
        members = [r for r in rows if r.get("group") == group]
        summary.update(
            {f"test/{k}_{group}": sum(r[k] for r in members) / len(members) for k in names}
        )
    return summary


def write_tables(
    summary: dict[str, float], rows: list[dict[str, Any]], out_dir: Path, about: dict[str, str]
) -> None:
    """``metrics.csv`` (one row), ``metrics.md`` (the same, long) and ``per_image.csv``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = sorted(summary)
    with open(out_dir / "metrics.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow([*about, *names])
        writer.writerow([*about.values(), *(f"{summary[n]:.6g}" for n in names)])
    lines = [f"- {key}: {value}" for key, value in about.items()]
    lines += ["", "| metric | value |", "|---|---|"]
    lines += [f"| {n} | {summary[n]:.4f} |" for n in names]
    (out_dir / "metrics.md").write_text("\n".join(lines) + "\n")
    columns = ["image", *dict.fromkeys(k for r in rows for k in r)]
    with open(out_dir / "per_image.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows({"image": i, **r} for i, r in enumerate(rows))


def conventions(model: Evaluable, lpips: LPIPSMetric | None) -> str:
    """What the numbers mean, for the table's header."""
    if model.kind == "scratch":
        return "binary masks at the detector's threshold; summary pools all pixels"
    text = f"per image then averaged; BasicSR PSNR/SSIM (RGB and Y BT.601), crop_border={model.crop_border}"
    if model.kind == "ttsr":
        text += "; *_ttsr: official TTSR convention (uint8, TTSR luma, no crop)"
    lpips_note = (
        f"alex, backbone {lpips.backbone_source}" if lpips else "skipped (no backbone weights)"
    )
    return f"{text}; *_input: the model's input as prediction; LPIPS: {lpips_note}"


@spine.task_wrapper
def evaluate(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Evaluate ``cfg.ckpt_path`` on the test samples of ``cfg.data``; write the tables."""
    ckpt = Path(cfg.ckpt_path)
    if not ckpt.is_file():
        raise FileNotFoundError(
            f"ckpt_path '{ckpt}' does not exist; pass ckpt_path=/path/to/x.ckpt."
        )
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    model = load_evaluable(ckpt)
    lpips = build_lpips("alex") if model.kind != "scratch" else None
    log.info("Instantiating datamodule <%s>", cfg.data._target_)
    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("test")
    rows: list[dict[str, Any]] = []
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            missing = [key for key in model.needs if key not in batch]
            if missing:
                raise ValueError(
                    f"'{ckpt}' is a {model.kind} checkpoint, but data <{cfg.data._target_}> gives "
                    f"batches without {missing}. Pick the experiment of that model "
                    "(e.g. experiment=ttsr/small for TTSR, bopb/mapping_small for a mapping)."
                )
            rows += batch_rows(model, batch, lpips)
    summary = summarize(model.kind, rows)
    data_dir = cfg.data.get("test_dir") or cfg.data.get("data_dir") or "embedded sample photos"
    about = {"checkpoint": str(ckpt), "model": model.kind, "data": str(data_dir)}
    about |= {"images": str(len(rows)), "conventions": conventions(model, lpips)}
    write_tables(summary, rows, Path(cfg.paths.output_dir), about)
    for logger in spine.instantiate_group(cfg.get("logger"), "logger"):
        logger.log_metrics(summary, step=0)
        logger.save()
    log.info("Wrote metrics.csv, metrics.md and per_image.csv (%d images)", len(rows))
    return summary, {"cfg": cfg, "rows": rows}


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
def main(cfg: DictConfig) -> None:
    """Console entry point: ``revive-eval experiment=... ckpt_path=...``."""
    spine.extras(cfg)
    evaluate(cfg)


if __name__ == "__main__":
    main()
