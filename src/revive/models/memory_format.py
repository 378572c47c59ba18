"""``model.channels_last``: weights and batches in channels_last memory format.

oneDNN (CPU) and cuDNN run 3x3 convs fastest on NHWC data, and bf16 convs on this CPU's AMX
units only reach their speed in it. A module with ``channels_last=True`` converts its 4-D
weights once at construction and every 4-D tensor of each batch as a step receives it; the
math is unchanged, only the strides (and so the summation order) differ. What keeps a whole step
in NHWC: ``revive.nets.layers.InstanceNorm2d`` (torch's hands NHWC input back as NCHW), and the
losses of ``revive.losses.layout`` (a mean's backward starts an NCHW gradient).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def to_channels_last(module: nn.Module) -> nn.Module:
    """``module`` with its 4-D parameters and buffers in channels_last (in place)."""
    return module.to(memory_format=torch.channels_last)


def channels_last_batch(batch: Any) -> Any:
    """A dict batch with its 4-D tensors in channels_last; anything else is returned as is."""
    if not isinstance(batch, dict):
        return batch
    return {
        key: value.contiguous(memory_format=torch.channels_last)
        if isinstance(value, Tensor) and value.dim() == 4
        else value
        for key, value in batch.items()
    }


class ChannelsLastBatches:
    """LightningModule mixin: with ``hparams.channels_last``, every batch's 4-D tensors are made
    channels_last as the train / val / test step receives it.

    The batch dict is updated in place from the ``on_*_batch_start`` hooks: overriding
    ``on_after_batch_transfer`` instead would make Lightning warn on every run with a datamodule.
    """

    def _batch_to_channels_last(self, batch: Any) -> None:
        if self.hparams.get("channels_last", False) and isinstance(batch, dict):
            batch.update(channels_last_batch(batch))

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> Any:
        self._batch_to_channels_last(batch)
        return super().on_train_batch_start(batch, batch_idx)

    def on_validation_batch_start(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._batch_to_channels_last(batch)
        super().on_validation_batch_start(batch, batch_idx, dataloader_idx)

    def on_test_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._batch_to_channels_last(batch)
        super().on_test_batch_start(batch, batch_idx, dataloader_idx)
