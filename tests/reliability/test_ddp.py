"""DDP with two CPU processes follows the one-process loss curve for the same global batch.

Tolerance: 1e-5 relative on every step's loss, 1e-5 absolute on the final weights (measured:
8e-8 and 3e-8). Both runs see the same samples at every step (``FixedScratchData``) and average
the same per-sample losses; only the order of the float32 sums differs (each rank's half batch,
then gloo's all-reduce, against one sum over the batch), ~1e-7 relative, carried through 12
Adam steps. An Adam step is ~lr = 1e-3 whatever the gradient's size, so a real difference (a
sample seen twice or not at all, a gradient not averaged) shows far above 1e-5. BatchNorm is off:
it normalises each rank's half batch with its own statistics, which is another model, not a
rounding difference (SyncBatchNorm, in ``trainer=ddp``, needs GPUs).
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.global_hydra import GlobalHydra

from revive.models.scratch import ScratchDetector
from tests.conftest import compose_cfg
from tests.reliability.helpers import FixedScratchData, LossRecorder

RTOL = 1e-5  # losses, relative
ATOL = 1e-5  # weights, absolute
EPOCHS = 2  # 24 samples / global batch 4 = 6 steps per epoch


def fit(run_dir: Path, preset: str) -> tuple[list[float], dict[str, torch.Tensor]]:
    """Train the tiny detector with ``trainer=<preset>``; the global-batch loss per step and
    the final weights."""
    cfg = compose_cfg("train", [f"trainer={preset}", f"trainer.max_epochs={EPOCHS}"], run_dir)
    GlobalHydra.instance().clear()
    run_dir.mkdir(parents=True)
    record = run_dir / "losses.json"
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=[LossRecorder(str(record))],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    pl.seed_everything(0)
    model = ScratchDetector(net={"depth": 2, "wf": 2, "batch_norm": False}, lr=1e-3)
    trainer.fit(model, datamodule=FixedScratchData(length=24, batch_size=4))
    weights = torch.load(record.with_suffix(".pt"), weights_only=True)
    return json.loads(record.read_text()), weights


def test_two_process_ddp_follows_the_one_process_loss_curve(tmp_path) -> None:
    single_losses, single_weights = fit(tmp_path / "single", "cpu")
    ddp_losses, ddp_weights = fit(tmp_path / "ddp", "ddp_sim")
    assert len(ddp_losses) == len(single_losses) == 6 * EPOCHS
    torch.testing.assert_close(
        torch.tensor(ddp_losses), torch.tensor(single_losses), rtol=RTOL, atol=0
    )
    assert single_losses[-1] < single_losses[0]  # it trains, so the curves carry information
    for name, value in single_weights.items():
        torch.testing.assert_close(ddp_weights[name], value, rtol=0, atol=ATOL)
