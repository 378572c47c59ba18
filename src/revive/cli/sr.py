"""revive-sr: x4 reference-based super-resolution (TTSR) of one image or a folder of images."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig

from revive.config import CONF_DIR
from revive.data.imageio import ImageReadError, list_images, read_image
from revive.data.sr import pair_files
from revive.pipelines.batch import (
    output_names,
    process_folder,
    write_image_atomic,
    write_index_html,
)
from revive.pipelines.super_resolve import SuperResolver, attention_picture
from revive.utils.reliability import check_options

log = logging.getLogger(__name__)


OPTION_TYPES = {
    "precision": str,
    "attention_map": bool,
    "query_chunk": int,
    "key_chunk": int,
    "max_pixels": int,
}


class UsageError(Exception):
    """A problem with the command line that the user fixes by changing an option."""


def build_resolver(cfg: DictConfig) -> SuperResolver:
    """The model of ``cfg.checkpoint``; refuses to run without one (no random weights)."""
    if not cfg.checkpoint:
        raise UsageError(
            "checkpoint= is required: a TTSRModule .ckpt (revive-train experiment=ttsr/small "
            "writes one) or the official TTSR.pt. revive-sr never runs on random weights."
        )
    search = {"query_chunk": cfg.query_chunk, "key_chunk": cfg.key_chunk}
    return SuperResolver.from_checkpoint(cfg.checkpoint, cfg.precision, **search)


def read_ref(path: Path, max_pixels: int) -> np.ndarray:
    """Read a reference image; an unreadable one is an error naming the file."""
    try:
        return read_image(path, max_pixels=max_pixels)
    except ImageReadError as err:
        raise ValueError(f"its reference {err}") from None


def super_resolve_file(cfg: DictConfig, resolver: SuperResolver) -> int:
    """One LR image and one Ref into ``cfg.out`` (and ``<out>_attention.png`` on request)."""
    out = Path(cfg.out)
    if out.suffix.lower() != ".png":
        raise UsageError(f"out='{out}': revive-sr writes lossless PNG; name the output .png.")
    try:
        lr = read_image(cfg.lr, max_pixels=cfg.max_pixels)
        ref = read_image(cfg.ref, max_pixels=cfg.max_pixels)
    except ImageReadError as err:
        raise UsageError(str(err)) from None
    sr, attention = resolver.super_resolve(lr, ref, ref_name=str(cfg.ref))
    write_image_atomic(sr, out)
    if cfg.attention_map:
        write_image_atomic(attention_picture(attention), out.with_name(f"{out.stem}_attention.png"))
    log.info("Wrote %s (%dx%d from %dx%d)", out, sr.shape[1], sr.shape[0], lr.shape[1], lr.shape[0])
    return 0


def reference_for_each(lr_dir: Path, ref_dir: Path) -> dict[str, Path | None]:
    """Output stem of every LR image -> its Ref: same stem, else sorted order; None if unpaired."""
    lr_paths = list_images(lr_dir)
    stems = output_names(lr_paths, lr_dir)  # the stems process_folder gives the same files
    try:
        pairs = dict(pair_files(lr_dir, ref_dir))
    except FileNotFoundError:
        refs = {p.stem: p for p in list_images(ref_dir)}
        pairs = {p: refs.get(p.stem) for p in lr_paths}
    return {stems[p]: pairs.get(p) for p in lr_paths}


def super_resolve_folder(cfg: DictConfig, resolver: SuperResolver) -> int:
    """Every LR image of ``cfg.lr`` with its Ref from ``cfg.ref``; bad inputs skipped, exit 1."""
    lr_dir, ref_dir, out = Path(cfg.lr), Path(cfg.ref), Path(cfg.out)
    if not ref_dir.is_dir():
        raise UsageError(f"lr='{lr_dir}' is a folder, so ref='{ref_dir}' must be a folder too.")
    refs = reference_for_each(lr_dir, ref_dir)

    def work(image: np.ndarray, stem: str) -> dict[str, np.ndarray]:
        ref_path = refs.get(stem)
        if ref_path is None:
            raise ValueError(f"no reference with the same name in '{ref_dir}'; add one")
        sr, attention = resolver.super_resolve(
            image, read_ref(ref_path, cfg.max_pixels), str(ref_path)
        )
        outputs = {"lr": image, "sr": sr}
        if cfg.attention_map:
            outputs["attention"] = attention_picture(attention)
        return outputs

    report, names = process_folder(lr_dir, out, work, max_pixels=cfg.max_pixels, main_output="sr")
    stems = sorted(set(names.values()))
    page = write_index_html(out, stems, ["lr", "sr", "attention"], "revive: reference-based SR")
    log.info(
        "Super-resolved %d, kept %d from an earlier run, skipped %d. Page: %s",
        len(report.done), len(report.resumed), len(report.skipped), page,
    )  # fmt: skip
    for name, reason in report.skipped.items():
        log.warning("skipped %s: %s", name, reason)
    return report.exit_code


def run(cfg: DictConfig) -> int:
    """Super-resolve a file or a folder; return the exit code (2 = a usage error, printed)."""
    try:
        check_options(cfg, OPTION_TYPES)
        resolver = build_resolver(cfg)
        if Path(cfg.lr).is_dir():
            return super_resolve_folder(cfg, resolver)
        return super_resolve_file(cfg, resolver)
    except (UsageError, FileNotFoundError, ValueError) as err:
        print(f"revive-sr: {err}", file=sys.stderr)
        return 2


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="sr")
def main(cfg: DictConfig) -> None:
    """Console entry point: ``revive-sr lr=IMG ref=IMG out=IMG checkpoint=CKPT``."""
    code = run(cfg)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
