"""Every old-photo datamodule composes from Hydra and yields correctly shaped batches."""

from __future__ import annotations

import hydra
import pytest
import torch

from revive.data.datamodules import VAE1DataModule

SMALL = ["data.crop_size=32", "data.batch_size=4", "data.train_length=8", "data.val_length=4"]


@pytest.mark.parametrize(
    ("data", "keys"),
    [
        ("scratch", {"image": (4, 1, 32, 32), "mask": (4, 1, 32, 32)}),
        ("vae1", {"image": (4, 3, 32, 32), "domain": (4,)}),
        ("vae2", {"image": (4, 3, 32, 32)}),
        ("mapping", {"degraded": (4, 3, 32, 32), "clean": (4, 3, 32, 32), "mask": (4, 1, 32, 32)}),
    ],
)
def test_datamodule_composes_and_yields_batches(train_cfg, data: str, keys: dict) -> None:
    cfg = train_cfg([f"data={data}", *SMALL])
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup("fit")
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        batch = next(iter(loader))
        assert {k: tuple(v.shape) for k, v in batch.items()} == keys
        for name, value in batch.items():
            if name not in ("mask", "domain"):
                assert -1.0 <= value.min() and value.max() <= 1.0


def test_every_vae1_batch_holds_both_domains_in_equal_numbers() -> None:
    dm = VAE1DataModule(crop_size=32, batch_size=6, train_length=24, val_length=6)
    dm.setup("fit")
    for batch in dm.train_dataloader():
        assert batch["domain"].tolist() == [1, 1, 1, 0, 0, 0]


def test_vae1_rejects_an_odd_batch() -> None:
    dm = VAE1DataModule(crop_size=32, batch_size=5)
    with pytest.raises(ValueError, match="even"):
        dm.setup("fit")


def test_mapping_pairs_share_the_crop_and_holes_carry_a_mask(train_cfg) -> None:
    cfg = train_cfg(["data=mapping", *SMALL, "data.holes=true", "data.degradation=mild"])
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup("fit")
    samples = [dm.train_set[i] for i in range(8)]

    # degradation keeps the content: a degraded crop correlates with its own clean crop more than
    # with the next sample's (on average: one 32 px crop can be flat or mostly hole)
    def corr(a: torch.Tensor, b: torch.Tensor) -> float:
        return torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()

    own = [corr(s["degraded"], s["clean"]) for s in samples]
    other = [corr(s["degraded"], t["clean"]) for s, t in zip(samples, samples[1:] + samples[:1])]
    assert sum(own) / 8 > sum(other) / 8 + 0.2
    masks = [dm.train_set[i]["mask"].sum() for i in range(8)]
    assert any(m > 0 for m in masks)  # about half the samples get holes


def test_same_seed_gives_the_same_samples(train_cfg) -> None:
    def first_batch(seed: int) -> torch.Tensor:
        cfg = train_cfg(["data=vae2", *SMALL, f"seed={seed}"])
        dm = hydra.utils.instantiate(cfg.data)
        dm.setup("fit")
        return dm.train_set[0]["image"]

    assert torch.equal(first_batch(3), first_batch(3))
    assert not torch.equal(first_batch(3), first_batch(4))
