"""Chain training stages: each stage's checkpoint feeds the next, finished stages are kept.

``experiment=bopb/quickstart`` defines ``chain.stages`` (an experiment plus overrides each, and
``inputs`` naming which earlier stage's checkpoint fills which option). Stage folders are fixed
(``chain.dir/<stage>``), so running the command again skips every stage whose ``done.json``
exists and records the same composed config; a stage whose config changed (its preset, its
overrides, a stage it takes a checkpoint from) is trained again, its old folder moved aside.
After the stages, ``chain.exports`` copies checkpoints into a folder ``revive-restore`` reads,
and ``chain.heldback`` restores damaged copies of the held-back sample photos.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from hydra import compose
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def stage_overrides(
    name: str, stage: DictConfig, out_dir: Path, done: dict[str, str], common: list[str]
) -> list[str]:
    """The overrides that compose one stage's train config (``common`` ones first)."""
    overrides = [f"experiment={stage.experiment}", f"paths.output_dir={out_dir}", *common]
    for option, source in (stage.get("inputs") or {}).items():
        if source not in done:
            raise ValueError(
                f"chain stage '{name}' needs the checkpoint of stage '{source}', which does not "
                "run before it; reorder chain.stages."
            )
        overrides.append(f"{option}={done[source]}")
    return overrides + list(stage.get("overrides") or [])


def run_stage(
    name: str,
    stage: DictConfig,
    root: Path,
    done: dict[str, str],
    common: list[str],
    digests: dict[str, str],
) -> str:
    """Train one stage unless its ``done.json`` records the same config; return its checkpoint.

    The config digest covers the composed config and the digests of the stages it takes
    checkpoints from (a retrained VAE2 may write the same file name), and is added to
    ``digests`` under ``name``.
    """
    from revive.cli.train import train

    out_dir = root / name
    marker = out_dir / "done.json"
    cfg = compose(
        config_name="train", overrides=stage_overrides(name, stage, out_dir, done, common)
    )
    upstream = [digests[source] for source in (stage.get("inputs") or {}).values()]
    digest = hashlib.sha256("\n".join([OmegaConf.to_yaml(cfg), *upstream]).encode()).hexdigest()
    digests[name] = digest
    if marker.is_file():
        record = json.loads(marker.read_text())
        ckpt = record["checkpoint"]
        if record.get("config_sha256") == digest and Path(ckpt).is_file():
            log.info("Stage %s already trained: %s (delete %s to retrain)", name, ckpt, marker)
            return ckpt
        kept = out_dir.with_name(f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
        log.warning(
            "Stage %s: its config changed since %s was written (or its checkpoint is gone); "
            "training it again, the old run moved to %s",
            name,
            marker,
            kept,
        )
        out_dir.rename(kept)
    log.info("Stage %s: training experiment=%s into %s", name, stage.experiment, out_dir)
    metrics, objects = train(cfg)
    callback = objects["trainer"].checkpoint_callback
    ckpt = callback.best_model_path or callback.last_model_path
    if not ckpt:
        raise RuntimeError(f"Stage {name} wrote no checkpoint; check its callbacks config.")
    record = {"checkpoint": ckpt, "config_sha256": digest, "metrics": metrics}
    marker.write_text(json.dumps(record, indent=2))
    return ckpt


def export_checkpoints(exports: DictConfig, done: dict[str, str], target: Path) -> None:
    """Copy stage checkpoints under the file names ``revive-restore`` expects."""
    target.mkdir(parents=True, exist_ok=True)
    for file_name, stage in exports.items():
        shutil.copyfile(done[stage], target / file_name)
        log.info("Exported %s -> %s", done[stage], target / file_name)


def run_chain(cfg: DictConfig) -> dict[str, Any]:
    """Run every stage of ``cfg.chain`` in order, then export and restore the held-back photos."""
    chain = cfg.chain
    root = Path(chain.dir)
    root.mkdir(parents=True, exist_ok=True)
    done: dict[str, str] = {}
    digests: dict[str, str] = {}
    common = list(chain.get("common_overrides") or [])
    for name, stage in chain.stages.items():
        done[name] = run_stage(name, stage, root, done, common, digests)
    result: dict[str, Any] = {"checkpoints": done}
    if chain.get("exports"):
        export_dir = root / "restore_checkpoints"
        export_checkpoints(chain.exports, done, export_dir)
        if chain.get("heldback"):
            from revive.pipelines.heldback import restore_heldback

            settings = OmegaConf.to_container(chain.heldback, resolve=True)
            result["heldback"] = restore_heldback(export_dir, root / "heldback", **settings)
    return result
