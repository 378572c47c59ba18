"""Time and peak memory of restoring one large scratched photo end to end (issue: large photos).

The whole ``OldPhotoRestorer`` at the official sizes (random weights: time and memory do not
depend on the values): detection at short side 256, VAE1 encoder, mapping, VAE2 decoder, on a
W x W photo with a few thin scratches. Two mappings: the exact partial nonlocal attention
(``ScratchMapping``, memory-linear) and the official HR patch attention (``PatchAttentionMapping``).
Each case runs in its own subprocess; peak memory is the process's RSS high-water mark.

    python experiments/benchmarks/restore_large.py                 # 1024 and 2048 px, fp32
    python experiments/benchmarks/restore_large.py --sizes 512
    python experiments/benchmarks/restore_large.py --sizes 2048 --precisions fp32 bf16
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GIB = 2**30
KINDS = ("partial_nonlocal", "patch_attention")


def worker(kind: str, size: int, precision: str = "fp32") -> dict:
    """Build the pipeline, restore one photo, report seconds and peak RSS."""
    import numpy as np
    import torch

    sys.path.insert(0, str(HERE))
    # nonlocal.py is a keyword as a module name: import it by string
    scratch_mask = importlib.import_module("nonlocal").scratch_mask

    from revive.models.mapping import Restorer
    from revive.nets.mapping import PatchAttentionMapping, ScratchMapping
    from revive.nets.unet import ScratchUNet
    from revive.nets.vae import VAE
    from revive.pipelines.restore import OldPhotoRestorer

    torch.manual_seed(0)
    mapping = ScratchMapping() if kind == "partial_nonlocal" else PatchAttentionMapping()
    restorer = Restorer(
        VAE(), mapping, VAE(), "scratch" if kind == "partial_nonlocal" else "patch_attention"
    )
    pipeline = OldPhotoRestorer(
        detector=ScratchUNet().eval(),
        quality=None,
        scratch_mapping=None,
        hr_mapping=None,
        scratch="on",
        precision=precision,
    )
    if kind == "partial_nonlocal":
        pipeline.scratch_mapping = restorer.eval()
    else:
        pipeline.scratch_mapping, pipeline.hr_mapping, pipeline.hr = (
            restorer.eval(),
            restorer.eval(),
            True,
        )
    mask = scratch_mask(size)[0, 0].numpy().astype(np.uint8)
    photo = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    pipeline.detect = lambda image: mask  # the random detector would mark noise; use real lines
    start = time.perf_counter()
    restored, _ = pipeline.restore(photo)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "kind": kind,
        "size": size,
        "precision": precision,
        "seconds": round(seconds, 1),
        "peak_gib": round(peak / GIB, 2),
        "mask_fraction": round(float(mask.mean()), 4),
        "ok": restored.shape == photo.shape,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    parser.add_argument("--worker", nargs=3, metavar=("KIND", "SIZE", "PRECISION"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.worker[2])))
        return
    rows = []
    cases = [(s, k, p) for s in args.sizes for p in args.precisions for k in KINDS]
    for size, kind, precision in cases:
        done = subprocess.run(
            [sys.executable, __file__, "--worker", kind, str(size), precision],
            capture_output=True,
            text=True,
        )
        row = (
            json.loads(done.stdout.strip().splitlines()[-1])
            if done.returncode == 0
            else {
                "kind": kind,
                "size": size,
                "precision": precision,
                "error": done.stderr.strip().splitlines()[-1][:200],
            }
        )
        print(row, flush=True)
        rows.append(row)
    (HERE / "restore_large.json").write_text(json.dumps(rows, indent=2))
    lines = [
        "| photo | mapping | precision | seconds | peak RSS (GiB) | scratch pixels |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(
                f"| {r['size']}x{r['size']} | {r['kind']} | {r['precision']} | failed: {r['error']} | | |"
            )
        else:
            lines.append(
                f"| {r['size']}x{r['size']} | {r['kind']} | {r['precision']} | {r['seconds']} | {r['peak_gib']} | {r['mask_fraction']:.2%} |"
            )
    (HERE / "restore_large.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
