"""revive-convert: official checkpoints of the papers -> revive's checkpoints."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

log = logging.getLogger("revive.convert")


def convert_ttsr(src: Path, dst: Path) -> None:
    """Official ``TTSR.pt`` / ``TTSR-rec.pt`` -> a state_dict of ``revive.nets.ttsr.TTSR``."""
    from revive.convert.ttsr import load_official_ttsr

    state = load_official_ttsr(src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, dst)
    log.info("Wrote %s (%d tensors)", dst, len(state))


def main(argv: list[str] | None = None) -> int:
    """``revive-convert bopbtl SRC_DIR DST_DIR`` or ``revive-convert ttsr TTSR.pt OUT.pt``."""
    parser = argparse.ArgumentParser(prog="revive-convert", description=__doc__)
    parser.add_argument("paper", choices=["bopbtl", "ttsr"], help="whose checkpoints")
    parser.add_argument(
        "src", type=Path, help="bopbtl: the official repository root; ttsr: TTSR.pt"
    )
    parser.add_argument(
        "dst", type=Path, help="bopbtl: a checkpoints folder; ttsr: the output file"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.paper == "bopbtl":
            from revive.convert.release import export_official_bopbtl

            written = export_official_bopbtl(args.src, args.dst)
            print(
                f"Converted {len(written)} checkpoints into {args.dst}; use revive-restore checkpoints={args.dst}"
            )
        else:
            convert_ttsr(args.src, args.dst)
    except (FileNotFoundError, ValueError) as err:
        print(f"revive-convert: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
