"""How far ``revive-restore precision=bf16`` drifts from fp32 with *trained* stages, and its speed.

``throughput.py`` measures the drift of the paper-width networks with random weights, where the
InstanceNorms re-amplify bf16's rounding (see the README). This script takes the stages the
quickstart trained (or any ``revive-restore`` checkpoints folder), damages the held-back photos
as the quickstart does, and restores each in fp32 and in bf16:

- ``network``: both precisions restore with the fp32 detector's mask (the networks' drift);
- ``end to end``: the whole pipeline, the detector included (its mask can differ in bf16).

PSNR of the bf16 uint8 output against the fp32 one; seconds are the best of ``--repeats`` runs
of the whole pipeline per photo, both precisions in this process.

    python experiments/benchmarks/bf16_restore.py                        # quickstart's stages
    python experiments/benchmarks/bf16_restore.py --checkpoints DIR --crop 512
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from revive.data.sample import VAL_PHOTOS, sample_photo
from revive.metrics.image import psnr
from revive.pipelines.heldback import damage, unit
from revive.pipelines.restore import OldPhotoRestorer

HERE = Path(__file__).resolve().parent


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    return psnr(unit(a), unit(b)).item()  # inf where the outputs are equal


def timed_restore(
    pipe: OldPhotoRestorer, image: np.ndarray, repeats: int
) -> tuple[float, tuple[np.ndarray, np.ndarray | None]]:
    """The best of ``repeats`` whole-pipeline runs (seconds) and the pipeline's output."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = pipe.restore(image)
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", default="logs/quickstart/restore_checkpoints")
    parser.add_argument("--crop", type=int, default=256, help="top-left crop of each photo")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="path stem of the .json / .md (bf16_restore_<crop>)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipes = {p: OldPhotoRestorer.from_dir(args.checkpoints, precision=p) for p in ("fp32", "bf16")}
    rows = []
    for k, name in enumerate(VAL_PHOTOS):
        clean = np.ascontiguousarray(sample_photo(name)[: args.crop, : args.crop])
        image = damage(clean, "official", True, 10 * k)
        mask = pipes["fp32"].detect(image)
        net = {p: pipe.restore(image, mask)[0] for p, pipe in pipes.items()}
        seconds, full = {}, {}
        for p, pipe in pipes.items():
            seconds[p], full[p] = timed_restore(pipe, image, args.repeats)
        rows.append(
            {
                "photo": name,
                "size": list(image.shape[:2]),
                "network_psnr": psnr_uint8(net["bf16"], net["fp32"]),
                "end_to_end_psnr": psnr_uint8(full["bf16"][0], full["fp32"][0]),
                "mask_agreement": float((full["bf16"][1] == full["fp32"][1]).mean()),
                "fp32_s": seconds["fp32"],
                "bf16_s": seconds["bf16"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out or HERE / f"bf16_restore_{args.crop}")
    out.with_suffix(".json").write_text(
        json.dumps(
            {"checkpoints": args.checkpoints, "threads": args.threads, "rows": rows}, indent=2
        )
    )
    lines = [
        f"Checkpoints `{args.checkpoints}`, held-back photos (top-left {args.crop} px, `official` "
        f"damage + scratches), {args.threads} threads, best of {args.repeats}.",
        "",
        "| photo | network bf16 vs fp32 | end to end | mask pixels equal | fp32 s | bf16 s | speed-up |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['photo']} | {r['network_psnr']:.1f} dB | {r['end_to_end_psnr']:.1f} dB | "
            f"{100 * r['mask_agreement']:.2f} % | {r['fp32_s']:.2f} | {r['bf16_s']:.2f} | "
            f"{r['fp32_s'] / r['bf16_s']:.2f}x |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
