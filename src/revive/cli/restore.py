"""revive-restore: restore a folder of old photos with trained or converted checkpoints."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from revive.config import CONF_DIR
from revive.pipelines.batch import process_folder, write_index_html
from revive.pipelines.restore import OldPhotoRestorer
from revive.utils.reliability import check_options

log = logging.getLogger(__name__)


OPTION_TYPES = {
    "detect_short_side": int,
    "threshold": float,
    "precision": str,
    "hr": bool,
    "max_pixels": int,
}
MIN_SIDE = 8  # the VAEs encode at 1/4 scale and reflect-pad there: smaller photos cannot pass


def restore_folder(cfg: DictConfig) -> int:
    """Restore every photo of ``cfg.input`` into ``cfg.output``; return the exit code."""
    check_options(cfg, OPTION_TYPES)
    if not Path(cfg.input).is_dir():
        raise FileNotFoundError(f"input='{cfg.input}' is not a folder of images.")
    restorer = OldPhotoRestorer.from_dir(
        cfg.checkpoints,
        scratch=cfg.scratch,
        detect_short_side=cfg.detect_short_side,
        threshold=cfg.get("threshold"),
        precision=cfg.precision,
        hr=cfg.hr,
    )
    out = Path(cfg.output)

    def work(image, stem):  # noqa: ANN001, ANN202 - the batch runner's callback
        restored, mask = restorer.restore(image)
        outputs = {"input": image, "restored": restored}
        if mask is not None:
            outputs["mask"] = mask * 255
        return outputs

    report, names = process_folder(
        Path(cfg.input),
        out,
        work,
        max_pixels=cfg.max_pixels,
        main_output="restored",
        min_side=MIN_SIDE,
    )
    stems = sorted(set(names.values()))
    page = write_index_html(out, stems, ["input", "mask", "restored"], "revive: restored photos")
    log.info(
        "Restored %d, kept %d from an earlier run, skipped %d. Before/after page: %s",
        len(report.done),
        len(report.resumed),
        len(report.skipped),
        page,
    )
    for name, reason in report.skipped.items():
        log.warning("skipped %s: %s", name, reason)
    return report.exit_code


def run(cfg: DictConfig) -> int:
    """Restore the folder; return the exit code (2 = a usage error, printed on one line)."""
    try:
        return restore_folder(cfg)
    except (FileNotFoundError, ValueError) as err:
        print(f"revive-restore: {err}", file=sys.stderr)
        return 2


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="restore")
def main(cfg: DictConfig) -> None:
    """Console entry point: ``revive-restore input=DIR output=DIR checkpoints=DIR``."""
    code = run(cfg)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
