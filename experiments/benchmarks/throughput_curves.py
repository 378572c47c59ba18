"""Loss curves: does the fastest setting train like fp32? (``throughput.py --curves``)

Each model trains ``--steps`` steps (200) from its small preset on the embedded photos three
times: fp32 with seed 0, fp32 with seed 1 (the run-to-run noise: another init and data order)
and the fastest setting (bf16-mixed with the model's channels_last default; ``--curve-setting
compiled``: also ``model.torch_compile``, written to ``throughput_curves_compiled.*``) with seed
0. The mappings train on the VAE1 / VAE2 of the fp32 seed-0 runs. One figure, one panel per model;
the table compares the mean loss of the last steps.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import throughput_setup as setup
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from throughput import resolve_setting

RUNS = (("fp32", 0), ("fp32", 1), ("fast", 0))
ORDER = ("vae1", "vae2", "scratch", "mapping_quality", "mapping_scratch", "ttsr")  # VAEs first


class LossRecorder(pl.Callback):
    """``train/loss`` after every training batch, and the wall time of the run."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(trainer.callback_metrics["train/loss"]))


def curve_config(name: str, seed: int, steps: int, quick: bool, stages: list[str]) -> DictConfig:
    """The small preset of ``name`` for ``steps`` batches with ``seed`` (model and data)."""
    spec = setup.SPECS[name]
    overrides = [*spec.overrides, f"seed={seed}", f"data.seed={seed}", "data.num_workers=0"]
    overrides += list(spec.tiny) if quick else []
    overrides += stages if spec.family == "mapping" else []
    cfg = setup.compose_config(spec.small, overrides)
    cfg.data.train_length = steps * cfg.data.batch_size
    return cfg


def train_curve(cfg: DictConfig, setting_key: str, seed: int, steps: int) -> tuple[dict, object]:
    """One run: the per-step losses, the setting it resolved to, and the trained module."""
    setting = resolve_setting(setting_key, bool(cfg.model.channels_last))
    pl.seed_everything(seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    model = instantiate(
        cfg.model, channels_last=setting.channels_last, torch_compile=setting.compiled
    )
    recorder = LossRecorder()
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, precision=setting.trainer_precision, max_epochs=1,
        limit_train_batches=steps, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[recorder],
    )  # fmt: skip
    t0 = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    run = {"setting": setting.name, "seed": seed, "losses": recorder.losses,
           "seconds": time.perf_counter() - t0}  # fmt: skip
    return run, model


def compare(runs: list[dict], tail: int) -> dict:
    """Mean loss of the last ``tail`` steps per run; the fast run's gap to fp32 seed 0 against the
    noise: the gap between the two fp32 seeds, or twice the standard error of a difference of two
    tail means if larger (one pair of seeds can land close by chance)."""
    tails = [np.asarray(r["losses"][-tail:]) for r in runs]
    final = [float(t.mean()) for t in tails]
    stderr = float(np.sqrt((tails[0].var() + tails[1].var()) / len(tails[0])))
    noise = max(abs(final[1] - final[0]), 2 * stderr)
    drift = abs(final[2] - final[0])
    return {"final": final, "noise": noise, "drift": drift, "within_noise": drift <= noise}


def plot(curves: dict[str, dict], path: Path, tail: int) -> None:
    """One panel per model: raw losses faint, a moving average of ``tail`` // 2 steps on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = -(-len(curves) // 3)
    fig, axes = plt.subplots(
        rows, 3, figsize=(15, 4 * rows), constrained_layout=True, squeeze=False
    )
    window = max(1, tail // 2)
    for ax, (name, entry) in zip(axes.flat, curves.items()):
        for run, color in zip(entry["runs"], ("tab:blue", "tab:cyan", "tab:red")):
            losses = np.asarray(run["losses"])
            label = f"{run['setting']} seed {run['seed']}"
            ax.plot(losses, color=color, alpha=0.25, linewidth=0.8)
            if len(losses) >= window:
                smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
                ax.plot(np.arange(window - 1, len(losses)), smooth, color=color, label=label)
        c = entry["comparison"]
        verdict = "within" if c["within_noise"] else "OUTSIDE"
        ax.set_title(f"{name}: |fast - fp32| {c['drift']:.3g} {verdict} noise {c['noise']:.3g}")
        ax.set_xlabel("training step")
        ax.set_ylabel("train/loss")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(curves) :]:
        ax.set_visible(False)
    fig.suptitle("train/loss: fp32 (two seeds) vs the fastest setting, small presets")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(curves: dict[str, dict], meta: dict) -> str:
    lines = [
        f"# Loss curves: {meta['steps']} steps, fp32 vs the fastest setting",
        "",
        f"{meta['mode']} on the embedded photos, {meta['threads']} threads, "
        f"{meta['wall_seconds'] / 60:.1f} min. Final = mean train/loss of the last {meta['tail']} "
        "steps; noise = |fp32 seed 1 - fp32 seed 0|, at least twice the standard error of a "
        "difference of two such means; drift = |fast seed 0 - fp32 seed 0|.",
        "",
        "| model | fast setting | fp32 seed 0 | fp32 seed 1 | fast seed 0 | noise | drift | "
        "within noise | s per run (fp32 / fast) |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for name, entry in curves.items():
        c, runs = entry["comparison"], entry["runs"]
        f0, f1, fast = c["final"]
        lines.append(
            f"| {name} | {runs[2]['setting']} | {f0:.4g} | {f1:.4g} | {fast:.4g} | "
            f"{c['noise']:.3g} | {c['drift']:.3g} | {'yes' if c['within_noise'] else 'no'} | "
            f"{runs[0]['seconds']:.0f} / {runs[2]['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def stage_vaes(runs_by_model: dict, steps: int, quick: bool, root: Path) -> list[str]:
    """Checkpoints of the fp32 seed-0 VAE1 / VAE2 (trained here if their curves were not asked
    for) and the mapping overrides pointing at them."""
    overrides = []
    for name in ("vae1", "vae2"):
        model = runs_by_model.get(name)
        if model is None:
            print(f"Training {name} (fp32, seed 0) for the mappings ...", flush=True)
            _, model = train_curve(curve_config(name, 0, steps, quick, []), "fp32", 0, steps)
        path = setup.save_stage(model, root / f"{name}.ckpt")
        overrides.append(f"model.{name}_ckpt={path}")
    return overrides


def run(args) -> None:
    """Train every model three times, then write the JSON, the table and the figure."""
    torch.set_num_threads(args.threads)
    steps = 5 if args.quick else args.steps
    tail = max(1, min(50, steps // 4))
    suffix = "" if args.curve_setting == "fast" else f"_{args.curve_setting}"
    out = args.out.with_name(f"{args.out.name}_curves{suffix}" + ("_quick" if args.quick else ""))
    t0, curves, vaes, stages = time.perf_counter(), {}, {}, None
    with tempfile.TemporaryDirectory() as tmp:
        for name in [m for m in ORDER if m in args.models]:
            if setup.SPECS[name].family == "mapping" and stages is None:
                stages = stage_vaes(vaes, steps, args.quick, Path(tmp))
            runs = []
            for setting_key, seed in RUNS:
                setting_key = args.curve_setting if setting_key == "fast" else setting_key
                print(f"Training {name} ({setting_key}, seed {seed}) for {steps} steps ...", flush=True)  # fmt: skip
                cfg = curve_config(name, seed, steps, args.quick, stages or [])
                result, model = train_curve(cfg, setting_key, seed, steps)
                runs.append(result)
                if name in ("vae1", "vae2") and (setting_key, seed) == RUNS[0]:
                    vaes[name] = model
            curves[name] = {"runs": runs, "comparison": compare(runs, tail)}
            print(f"  {curves[name]['comparison']}", flush=True)
    meta = {"steps": steps, "tail": tail, "threads": args.threads,
            "mode": "QUICK CHECK (tiny widths)" if args.quick else "Small presets",
            "wall_seconds": time.perf_counter() - t0}  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "curves": curves}, indent=2))
    out.with_suffix(".md").write_text(markdown(curves, meta))
    plot(curves, out.with_suffix(".png"), tail)
    print(markdown(curves, meta))
    print(f"Wrote {out.with_suffix('.png')}, .json and .md in {meta['wall_seconds'] / 60:.1f} min")
