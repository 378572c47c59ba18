"""Which scratch threshold? Detection scores and held-back restoration per threshold.

For a scratch detector checkpoint, on fresh crops drawn like its training data (``official``
degradation, scratches, dust) from the embedded train photos and, separately, from the val
photos: pixel precision, recall, IoU, F1 and F0.5 (precision weighted twice) per threshold. With
``--restore DIR`` (a ``restore_checkpoints`` folder holding that detector's stages) also the
quickstart's held-back restoration (PSNR against the clean photos) per threshold, over several
damage seeds, next to the damaged inputs and to the restoration given the true scratch masks.

    python experiments/bopb_detector_threshold/threshold.py \\
        --detector logs/quickstart/scratch/checkpoints/last.ckpt \\
        --restore logs/quickstart/restore_checkpoints --seeds 0 1 2 3 4

Writes ``results.json`` and ``results.md`` next to this script (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from revive.data.datamodules import ScratchDataModule
from revive.data.sample import TRAIN_PHOTOS, VAL_PHOTOS, sample_photo
from revive.metrics.image import psnr
from revive.models.stages import freeze, load_detector
from revive.pipelines.heldback import damage_with_mask, unit
from revive.pipelines.restore import OldPhotoRestorer

HERE = Path(__file__).resolve().parent


def detection_table(detector, thresholds: np.ndarray, split: str, crops: int, seed: int) -> list:
    """Pooled pixel counts over ``crops`` fresh 256 px crops of ``split`` -> scores per threshold."""
    data = ScratchDataModule(crop_size=256, degradation="official").make_dataset(split, crops, seed)
    tp, fp, fn = (np.zeros(len(thresholds)) for _ in range(3))
    for i in range(crops):
        sample = data[i]
        with torch.no_grad():
            prob = torch.sigmoid(detector(sample["image"][None]))[0, 0].numpy()
        truth = sample["mask"][0].numpy() > 0.5
        for k, threshold in enumerate(thresholds):
            found = prob >= threshold
            tp[k] += (found & truth).sum()
            fp[k] += (found & ~truth).sum()
            fn[k] += (~found & truth).sum()
    rows = []
    for k, threshold in enumerate(thresholds):
        precision, recall = tp[k] / max(tp[k] + fp[k], 1), tp[k] / max(tp[k] + fn[k], 1)
        rows.append(
            {
                "threshold": round(float(threshold), 2),
                "precision": precision,
                "recall": recall,
                "iou": tp[k] / max(tp[k] + fp[k] + fn[k], 1),
                "f1": f_beta(precision, recall, 1.0),
                "f0.5": f_beta(precision, recall, 0.5),
            }
        )
    return rows


def f_beta(precision: float, recall: float, beta: float) -> float:
    """F-score weighting recall ``beta`` times as much as precision (beta < 1 favours precision)."""
    b2 = beta * beta
    return (1 + b2) * precision * recall / max(b2 * precision + recall, 1e-12)


def restore_table(
    root: Path, thresholds: np.ndarray, seeds: list[int], photos: tuple[str, ...], crop: int = 256
) -> list:
    """Restored PSNR (mean over photos and seeds) per threshold, damaged as the quickstart's
    held-back photos are."""
    restorer = OldPhotoRestorer.from_dir(root)
    cases = []
    for seed in seeds:
        for k, name in enumerate(photos):
            clean = np.ascontiguousarray(sample_photo(name)[:crop, :crop])
            damaged, true_mask = damage_with_mask(clean, "official", True, seed + 10 * k)
            cases.append((clean, damaged, true_mask))

    def mean_psnr(outputs) -> float:
        return float(
            np.mean([psnr(unit(o), unit(c)).item() for o, (c, _, _) in zip(outputs, cases)])
        )

    rows = [{"threshold": "damaged input", "psnr": mean_psnr([d for _, d, _ in cases])}]
    oracle = [restorer.restore(d, mask=m)[0] for _, d, m in cases]
    rows.append({"threshold": "true masks", "psnr": mean_psnr(oracle)})
    for threshold in thresholds:
        restorer.threshold = float(threshold)
        restored = [restorer.restore(d) for _, d, _ in cases]
        rows.append(
            {
                "threshold": round(float(threshold), 2),
                "psnr": mean_psnr([r for r, _ in restored]),
                "flagged_pct": 100 * float(np.mean([m.mean() for _, m in restored])),
            }
        )
    return rows


def markdown(result: dict) -> str:
    lines = [f"Detector: `{result['detector']}`", ""]
    for split, rows in result["detection"].items():
        lines += [
            f"### Detection on {result['crops']} fresh {split} crops (256 px, pooled pixels)",
            "",
            "| threshold | precision | recall | IoU | F1 | F0.5 |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['threshold']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['iou']:.3f} "
            f"| {r['f1']:.3f} | {r['f0.5']:.3f} |"
            for r in rows
        ]
        lines.append("")
    if result.get("restore"):
        lines += [
            f"### Restoration of the {result['photos']} photos (top-left 256 px, `official` + "
            f"scratches as the held-back ones), `{result['restore_dir']}`, seeds {result['seeds']}",
            "",
            "| threshold | PSNR (dB) | pixels flagged |",
            "|---|---|---|",
        ]
        for r in result["restore"]:
            flagged = f"{r['flagged_pct']:.2f} %" if "flagged_pct" in r else ""
            name = r["threshold"] if isinstance(r["threshold"], str) else f"{r['threshold']:.2f}"
            lines.append(f"| {name} | {r['psnr']:.2f} | {flagged} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", type=Path, required=True, help="scratch detector checkpoint")
    parser.add_argument("--restore", type=Path, help="restore_checkpoints folder: held-back PSNR")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--photos", choices=["train", "val"], default="val",
        help="restore the train photos (choose a threshold) or the val ones (the held-back set)",
    )  # fmt: skip
    parser.add_argument("--crops", type=int, default=96, help="fresh crops per split")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    torch.set_num_threads(2)
    detector, _ = load_detector(args.detector)
    detector = freeze(detector)
    thresholds = np.round(np.arange(0.3, 0.91, 0.1), 2)
    result = {
        "detector": str(args.detector),
        "crops": args.crops,
        "detection": {
            split: detection_table(detector, thresholds, split, args.crops, seed=1234)
            for split in ("train", "val")
        },
    }
    if args.restore:
        result.update(
            restore_dir=str(args.restore),
            seeds=args.seeds,
            photos=args.photos,
            restore=restore_table(
                args.restore,
                thresholds,
                args.seeds,
                TRAIN_PHOTOS if args.photos == "train" else VAL_PHOTOS,
            ),
        )
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
