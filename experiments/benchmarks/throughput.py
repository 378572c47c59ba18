"""Training and inference throughput of every model: fp32 contiguous vs bf16 autocast + channels_last.

For each model (scratch detector, VAE1, VAE2, quality and scratch mapping, TTSR) at the paper
widths, one child process measures, for the baseline (fp32, contiguous: how the official code
runs), the fastest eager setting (bf16 autocast with the model's ``channels_last`` default)
and, asked for with ``--settings ... compiled``, bf16 + channels_last + ``model.torch_compile``
(training only, timed after the compiling steps):

- a training step through a Lightning Trainer (``precision=32-true`` / ``bf16-mixed``) at the
  paper's crop size: images/s (best of the timed steps after one warm-up step);
- one inference forward at 512 px (TTSR: LR 128 / Ref 512): seconds per image;
- GFLOP per step / forward (``torch.utils.flop_counter``, counted during the warm-up) and the
  achieved GFLOP/s as a fraction of this machine's peak for that dtype, measured at the start
  (the faster of a large matmul and a channels_last 3x3 conv);
- how far the fastest setting's output drifts from fp32 (PSNR on the uint8 image);
- below half the bf16 peak: a torch.profiler run of the fastest setting naming the ops and the
  layers that hold it back.

    python experiments/benchmarks/throughput.py           # all models, 7-11 min on 2 cores (host-dependent)
    python experiments/benchmarks/throughput.py --quick   # tiny widths: checks the script (1-2 min)
    python experiments/benchmarks/throughput.py --models ttsr --settings fp32 fp32_cl bf16 bf16_cl
    python experiments/benchmarks/throughput.py --settings fp32 fast compiled  # + torch.compile
    python experiments/benchmarks/throughput.py --curves  # 200-step loss curves (see --help)
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import re
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET_SPEEDUP = 3.0
TARGET_PSNR = 40.0
TARGET_PEAK_FRACTION = 0.5


@dataclass(frozen=True)
class Setting:
    """A precision / memory-format combination."""

    name: str
    bf16: bool
    channels_last: bool
    compiled: bool = False  # model.torch_compile: training networks compiled, training only

    @property
    def dtype(self) -> str:
        return "bf16" if self.bf16 else "fp32"

    @property
    def trainer_precision(self) -> str:
        return "bf16-mixed" if self.bf16 else "32-true"


SETTINGS = {
    "fp32": Setting("fp32", bf16=False, channels_last=False),
    "fp32_cl": Setting("fp32_cl", bf16=False, channels_last=True),
    "bf16": Setting("bf16", bf16=True, channels_last=False),
    "bf16_cl": Setting("bf16_cl", bf16=True, channels_last=True),
    "compiled": Setting("compiled", bf16=True, channels_last=True, compiled=True),
}
COMPILE_WARMUP = 2  # steps that compile (the discriminators see new inputs in the second)


def resolve_setting(name: str, default_channels_last: bool) -> Setting:
    """``fast`` is bf16 with the model's configured ``channels_last``; other names are literal."""
    if name == "fast":
        return SETTINGS["bf16_cl" if default_channels_last else "bf16"]
    return SETTINGS[name]


# ---- peaks ----------------------------------------------------------------------------------


def _best_rate(run, flop: float, min_seconds: float, calls: int = 3) -> float:
    """GFLOP/s of the fastest of rounds of ``calls`` calls of ``run`` after one warm-up, over
    about ``min_seconds``: rounds, so that one mistimed short call cannot set the peak. The peak
    still moves with the host: 625-3011 GFLOP/s for the bf16 conv in runs an hour apart."""
    run()
    best, spent = float("inf"), 0.0
    while spent < min_seconds:
        t0 = time.perf_counter()
        for _ in range(calls):
            run()
        elapsed = time.perf_counter() - t0
        best, spent = min(best, elapsed / calls), spent + elapsed
    return flop / best / 1e9


def measure_peaks(threads: int, quick: bool) -> dict[str, float]:
    """Matmul and channels_last 3x3 conv GFLOP/s in fp32 and bf16; ``fp32`` / ``bf16`` = the max."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    n, (b, c, s) = (256, (1, 32, 16)) if quick else (2048, (4, 256, 64))
    seconds = 0.2 if quick else 1.5
    peaks = {}
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        a, w = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        peaks[f"{name}_matmul"] = _best_rate(partial(torch.mm, a, w), 2 * n**3, seconds)
        x = torch.randn(b, c, s, s, dtype=dtype).contiguous(memory_format=torch.channels_last)
        k = torch.randn(c, c, 3, 3, dtype=dtype).contiguous(memory_format=torch.channels_last)
        flop = 2 * b * c * c * 9 * s * s
        conv = partial(F.conv2d, x, k, padding=1)
        peaks[f"{name}_conv3x3_cl"] = _best_rate(conv, flop, seconds)
        peaks[name] = max(peaks[f"{name}_matmul"], peaks[f"{name}_conv3x3_cl"])
    x, k = x.float().contiguous(), k.float().contiguous()
    peaks["fp32_conv3x3"] = _best_rate(lambda: F.conv2d(x, k, padding=1), flop, seconds)
    return peaks


# ---- one model (child process) ----------------------------------------------------------------


def _cpu_attention_formulas() -> dict:
    """FLOP formulas of the CPU flash-attention kernels, which torch's table does not list."""
    import torch
    from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

    def forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query, key, value)

    def backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_backward_flop_count(grad_out, query, key, value)

    aten = torch.ops.aten
    return {
        aten._scaled_dot_product_flash_attention_for_cpu: forward,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: backward,
    }


def flop_counter():
    """A dispatch mode summing FLOPs with ``torch.utils.flop_counter``'s formulas.

    Not FlopCounterMode itself: its module tracker refuses the gradient penalty's
    ``autograd.grad``. Per-layer counts come from ``layer_stats`` reading ``total`` instead.
    """
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry, shape_wrapper

    formulas = {**flop_registry}
    formulas.update({k: shape_wrapper(v) for k, v in _cpu_attention_formulas().items()})

    class TotalFlops(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            formula = formulas.get(func._overloadpacket)
            if formula is not None:
                self.total += formula(*args, **kwargs, out_val=out)
            return out

        def get_total_flops(self) -> int:
            return self.total

    return TotalFlops()


def autocast(setting: Setting):
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=setting.bf16)


def as_format(inputs: dict, channels_last: bool) -> dict:
    from revive.models.memory_format import channels_last_batch

    return channels_last_batch(inputs) if channels_last else inputs


def time_inference(
    model, forward, inputs: dict, setting: Setting, opts, gflop: float = 0.0
) -> dict:
    """Seconds per forward (best after a warm-up), GFLOP (``gflop`` or, when 0, counted in the
    warm-up), the output in fp32."""
    import torch

    model.eval()
    inputs = as_format(inputs, setting.channels_last)
    with torch.no_grad(), autocast(setting):
        counter = flop_counter() if not gflop else nullcontext()
        t0 = time.perf_counter()
        with counter:
            out = forward(model, inputs)
        first = time.perf_counter() - t0
        times: list[float] = []
        while len(times) < opts.repeats and sum(times) < opts.min_seconds:
            t0 = time.perf_counter()
            forward(model, inputs)
            times.append(time.perf_counter() - t0)
    return {
        "seconds": min(times),
        "first_call_seconds": first,
        "gflop": gflop or counter.get_total_flops() / 1e9,
        "output": out.float(),
    }


def host_ticks() -> tuple[int, int]:
    """(stolen, all) CPU ticks of the machine so far (``/proc/stat``; zeros where absent)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def steal_fraction(start: tuple[int, int], end: tuple[int, int]) -> float:
    """Share of the machine's CPU time the hypervisor gave to other guests in between."""
    total = end[1] - start[1]
    return (end[0] - start[0]) / total if total > 0 else 0.0


def make_step_timer(opts, profile_below: float, warmup: int = 1, gflop: float = 0.0):
    """A Lightning callback: ``warmup`` untimed batches, then timed batches. The step's FLOPs are
    ``gflop`` or, when 0, counted on the first batch. While the achieved GFLOP/s is below
    ``profile_below``, one timed batch after the first runs under torch.profiler (its time counts:
    the best of the timed steps is reported, so a profiled step is only chosen if it was still
    the fastest)."""
    import pytorch_lightning as pl

    class StepTimer(pl.Callback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.steal: list[float] = []  # the host's steal during each timed step
            self.warmup_seconds = 0.0
            self.gflop = gflop
            self.profiler = None
            self._context = nullcontext()

        @property
        def timed_enough(self) -> bool:
            spent = sum(self.times)
            return (len(self.times) >= opts.min_steps or spent >= opts.max_seconds) and (
                len(self.times) >= opts.repeats or spent >= opts.min_seconds
            )

        @property
        def slow(self) -> bool:
            return bool(self.times) and self.gflop / min(self.times) < profile_below

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self._context = nullcontext()
            if batch_idx == 0 and not gflop:
                self._context = flop_counter()
            elif self.profiler is None and self.slow:
                self._context = self.profiler = torch_profiler()
            self._context.__enter__()
            self.stat0 = host_ticks()
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            elapsed = time.perf_counter() - self.t0
            steal = steal_fraction(self.stat0, host_ticks())
            self._context.__exit__(None, None, None)
            if batch_idx == 0 and not gflop:
                self.gflop = self._context.get_total_flops() / 1e9
            if batch_idx < warmup:
                self.warmup_seconds += elapsed
            else:
                self.times.append(elapsed)
                self.steal.append(steal)
            if self.timed_enough and (self.profiler is not None or not self.slow):
                trainer.should_stop = True

    return StepTimer()


def torch_profiler():
    import torch

    return torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True
    )


def time_training(
    model,
    samples: list,
    batch: int,
    setting: Setting,
    opts,
    profile_below: float = 0.0,
    gflop: float = 0.0,
) -> dict:
    """Images/s of the training step (best timed step after one warm-up); GFLOP per step is
    ``gflop`` or, when 0, counted in the warm-up; one timed step is profiled when the achieved
    GFLOP/s is below ``profile_below``."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    warmup = COMPILE_WARMUP if setting.compiled else 1
    timer = make_step_timer(opts, profile_below, warmup, gflop)
    steps = max(opts.repeats, opts.min_steps) + warmup + 1
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, precision=setting.trainer_precision, max_epochs=1,
        limit_train_batches=steps, limit_val_batches=0, num_sanity_val_steps=0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[timer],
    )  # fmt: skip
    loader = DataLoader(samples * steps, batch_size=batch)
    trainer.fit(model, loader)
    losses = {k: float(v) for k, v in trainer.callback_metrics.items()}
    timed = timer.times
    seconds = min(timed)
    result = {
        "seconds": seconds,
        "steps_timed": len(timed),
        "steal": timer.steal[timed.index(seconds)],
        "images_per_s": batch / seconds,
        "gflop": timer.gflop,
        "losses": losses,
        "finite": all(math.isfinite(v) for v in losses.values()),
    }
    if setting.compiled:  # compile time: the warm-up steps beyond what as many steps take
        result["compile_seconds"] = timer.warmup_seconds - warmup * seconds
    if timer.profiler is not None:
        result["top_ops"] = top_ops(timer.profiler)
    return result


def top_ops(prof, limit: int = 8) -> list[dict]:
    """The ops with the most self CPU time (grouped by input shapes) of a profiled run."""
    events = prof.key_averages(group_by_input_shape=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:limit]
    return [
        {
            "op": e.key,
            "shapes": str(e.input_shapes)[:160],
            "self_ms": e.self_cpu_time_total / 1e3,
            "share": e.self_cpu_time_total / total,
            "calls": e.count,
        }
        for e in rows
    ]


def layer_stats(model, run) -> dict[str, list[float]]:
    """Exclusive forward [seconds, FLOPs] of every module (children excluded) during ``run``."""
    counter = flop_counter()
    names = {m: n or type(model).__name__ for n, m in model.named_modules()}
    stack: list[list] = []
    stats: dict[str, list[float]] = {}

    def enter(module, args) -> None:
        stack.append([time.perf_counter(), counter.total, 0.0, 0])

    def leave(module, args, output) -> None:
        t0, f0, child_seconds, child_flops = stack.pop()
        seconds, flops = time.perf_counter() - t0, counter.total - f0
        entry = stats.setdefault(names[module], [0.0, 0])
        entry[0] += seconds - child_seconds
        entry[1] += flops - child_flops
        if stack:
            stack[-1][2] += seconds
            stack[-1][3] += flops

    handles = [m.register_forward_pre_hook(enter) for m in names]
    handles += [m.register_forward_hook(leave) for m in names]
    try:
        with counter:
            run()
    finally:
        for handle in handles:
            handle.remove()
    return stats


def profile_inference(model, forward, inputs: dict, setting: Setting, peak: float) -> dict:
    """torch.profiler's top ops and the layers losing the most time against ``peak`` (GFLOP/s):
    lost = exclusive time - exclusive FLOPs / peak."""
    import torch

    inputs = as_format(inputs, setting.channels_last)
    with torch.no_grad(), autocast(setting), torch_profiler() as prof:
        stats = layer_stats(model, lambda: forward(model, inputs))
    types = {n or type(model).__name__: type(m).__name__ for n, m in model.named_modules()}
    layers = [
        {"layer": name, "type": types[name], "ms": 1e3 * seconds, "gflop": flops / 1e9,
         "gflops": flops / 1e9 / seconds if seconds else 0.0,
         "lost_ms": 1e3 * (seconds - flops / 1e9 / peak)}
        for name, (seconds, flops) in stats.items()
    ]  # fmt: skip
    layers.sort(key=lambda r: r["lost_ms"], reverse=True)
    return {"top_ops": top_ops(prof), "top_layers": layers[:6]}


def psnr_uint8(a, b) -> float:
    """PSNR (dB) between two [-1, 1] images after the pipelines' uint8 rounding."""
    import math

    def to_uint8(x):
        return ((x.clamp(-1, 1) + 1) * 127.5).round()

    mse = (to_uint8(a) - to_uint8(b)).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def compare_outputs(name: str, out, reference) -> dict:
    """How far an output drifts from the fp32 one: PSNR, or mask agreement for the detector."""
    if name == "scratch":
        agree = ((out.sigmoid() >= 0.4) == (reference.sigmoid() >= 0.4)).float().mean().item()
        return {"mask_agreement": agree}
    return {"psnr_vs_fp32": psnr_uint8(out, reference)}


def worker(name: str, settings: list[str], opts) -> dict:
    """Measure one model in every setting; the first setting is the reference for the outputs."""
    import throughput_setup as setup
    import torch
    from hydra.utils import instantiate

    torch.set_num_threads(opts.threads)
    spec = setup.SPECS[name]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = setup.benchmark_config(name, opts.quick, Path(tmp), opts.crop)
        crop = int(cfg.data.crop_size)
        batch = 2 if opts.quick else (opts.batch or spec.batch)
        samples = setup.training_samples(name, crop, batch)
        infer_size = 64 if opts.quick else opts.infer_size
        inputs = setup.inference_inputs(name, infer_size)
        forward = setup.inference_forward(name)
        default_cl = bool(cfg.model.channels_last)
        rows, reference, failed = [], None, []
        for key in settings:
            setting = resolve_setting(key, default_cl)
            # the network and inputs are the baseline's, so are the FLOPs: counted once
            base_gflop, base_infer_gflop = (
                (rows[0]["train"]["gflop"], rows[0]["infer"]["gflop"]) if rows else (0.0, 0.0)
            )
            torch.manual_seed(0)
            model = instantiate(
                cfg.model, channels_last=setting.channels_last, torch_compile=setting.compiled
            )
            if name in opts.weights:
                setup.load_trained(model, name, opts.weights[name])
            if setting.compiled:  # training only: the inference CLIs run eager networks
                try:
                    train = time_training(model, samples, batch, setting, opts, 0.0, base_gflop)
                except Exception as error:  # noqa: BLE001 - reported in the table, others kept
                    message = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
                    failed.append({"setting": key, "error": message})
                    continue
                finally:
                    del model
                rows.append({"setting": key, "resolved": setting.name, "dtype": setting.dtype,
                             "train": train, "infer": None, "profile": None})  # fmt: skip
                continue
            infer = time_inference(model, forward, inputs, setting, opts, base_infer_gflop)
            # the fastest setting is profiled where it reaches less than half the bf16 peak
            threshold = TARGET_PEAK_FRACTION * opts.peak_bf16 if setting.bf16 else 0.0
            profile = None
            if infer["gflop"] / infer["seconds"] < threshold:
                # at half the size: the same layers at a quarter of the cost
                half = setup.inference_inputs(name, infer_size // 2)
                profile = profile_inference(model, forward, half, setting, opts.peak_bf16)
            out = infer.pop("output")
            if reference is None:
                reference = out  # the baseline's output: what the others drift from
            else:
                infer.update(compare_outputs(name, out, reference))
            train = time_training(model, samples, batch, setting, opts, threshold, base_gflop)
            rows.append({"setting": key, "resolved": setting.name, "dtype": setting.dtype,
                         "train": train, "infer": infer, "profile": profile})  # fmt: skip
            del model
    return {"model": name, "preset": spec.paper, "crop": crop, "batch": batch,
            "paper_batch": spec.paper_batch, "infer_size": infer_size,
            "channels_last_default": default_cl, "rows": rows, "failed": failed}  # fmt: skip


def in_child(function, *args, timeout: float) -> dict:
    """``function(*args)`` (a JSON-able dict) in a forked child process: a fresh allocator and a
    crash that stays local, without paying the imports again. The child's console output goes
    to a log whose last line is reported if it fails."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    with tempfile.TemporaryFile("w+") as log:

        def target() -> None:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                send.send({**function(*args), "status": "ok"})
            except BaseException as error:  # noqa: BLE001 - reported to the parent
                send.send({"status": "failed", "error": f"{type(error).__name__}: {error}"[:300]})

        child = context.Process(target=target)
        child.start()
        send.close()
        try:
            result = receive.recv() if receive.poll(timeout) else None
        except EOFError:  # the child died without a word (a crash in native code)
            result = None
        child.join(5)
        timed_out = child.is_alive()
        if timed_out:
            child.kill()
            child.join()
        if result is None:
            log.seek(0)
            lines = [line for line in log.read().splitlines() if line.strip()]
            why = f"timeout after {timeout:.0f} s" if timed_out else "failed"
            result = {"status": why, "error": (lines or [f"exit code {child.exitcode}"])[-1][:300]}
    return result


def run_model(name: str, args, peaks: dict) -> dict:
    """``worker`` for one model in a forked child (see ``in_child``)."""
    import argparse

    opts = argparse.Namespace(**{**vars(args), "peak_bf16": peaks.get("bf16", 0.0)})
    t0 = time.perf_counter()
    result = in_child(worker, name, args.settings, opts, timeout=args.timeout)
    return {"model": name, **result, "wall_seconds": time.perf_counter() - t0}


# ---- report -----------------------------------------------------------------------------------


def add_rates(result: dict, peaks: dict) -> None:
    """GFLOP/s and the fraction of the same-dtype peak for every measured row (the training FLOPs
    are counted on the baseline's step; the other settings run the same network)."""
    rows = result.get("rows", [])
    for row in rows:
        for phase in ("train", "infer"):
            r = row[phase]
            if r is None:
                continue
            r["gflops"] = r["gflop"] / r["seconds"]
            r["peak_fraction"] = r["gflops"] / peaks[row["dtype"]]


def summary(result: dict) -> dict | None:
    """Baseline (first setting) against the fastest training setting of one model."""
    rows = result.get("rows", [])
    if len(rows) < 2:
        return None
    base = rows[0]
    # a setting whose losses went non-finite does not count as the fastest
    valid = [r for r in rows[1:] if r["train"].get("finite", True)] or rows[1:]
    fast = max(valid, key=lambda r: r["train"]["images_per_s"])
    train = {
        "model": result["model"],
        "fastest": fast["resolved"],
        "train_speedup": fast["train"]["images_per_s"] / base["train"]["images_per_s"],
        "train_finite": fast["train"].get("finite", True),
        "compile_seconds": fast["train"].get("compile_seconds"),
        "train_peak_fraction": fast["train"]["peak_fraction"],
    }
    # inference: the fastest row that measured it (compiled rows train only; maybe none)
    measured = [r for r in rows[1:] if r["infer"]]
    if not measured:
        return {**train, "fastest_infer": None}
    fast_infer = min(measured, key=lambda r: r["infer"]["seconds"])
    return {
        **train,
        "fastest_infer": fast_infer["resolved"],
        "infer_speedup": base["infer"]["seconds"] / fast_infer["infer"]["seconds"],
        "infer_peak_fraction": fast_infer["infer"]["peak_fraction"],
        "output_drift": {k: v for k, v in fast_infer["infer"].items() if k in ("psnr_vs_fp32", "mask_agreement")},
        "bottleneck": (fast_infer["profile"] or {}).get("top_layers", [None])[0],
    }  # fmt: skip


def markdown(results: list[dict], meta: dict) -> str:
    """The measurements as Markdown: conditions, peaks, one row per model and setting, summary."""
    p = meta["peaks"]
    lines = [
        f"# Throughput: one training step and one {meta['infer_size']} px forward per model (CPU)",
        "",
        f"{meta['mode']}; torch {meta['torch']}, {meta['cpu']}, {meta['threads']} threads, load "
        f"average at start {meta['loadavg']}. Paper widths, random weights "
        f"{meta['weights']}(VGG19: {meta['vgg19']}). Training: best of the timed steps after one warm-up, through a "
        "Lightning Trainer with `precision=32-true` or `bf16-mixed` (steps: how many were timed; "
        "steal: the share of the host's CPU time taken by other guests during the best one). "
        "Inference: batch 1, no_grad, "
        "best of the timed forwards. GFLOP from `torch.utils.flop_counter` (forward + backward for "
        "training); % peak = achieved GFLOP/s over the faster of matmul and channels_last 3x3 conv "
        "of the same dtype, measured in this run. *compiled*: bf16, channels_last and "
        f"`model.torch_compile=true`, training only, timed after {COMPILE_WARMUP} compiling "
        "steps (compile = their time beyond two plain steps; less when inductor's on-disk cache "
        "already holds the kernels); its FLOPs are the baseline's.",
        "",
        *([meta["note"], ""] if meta.get("note") else []),
        "| peak GFLOP/s | matmul | conv3x3 channels_last | conv3x3 contiguous |",
        "|---|---:|---:|---:|",
        f"| fp32 | {p['fp32_matmul']:.0f} | {p['fp32_conv3x3_cl']:.0f} | {p['fp32_conv3x3']:.0f} |",
        f"| bf16 | {p['bf16_matmul']:.0f} | {p['bf16_conv3x3_cl']:.0f} | – |",
        "",
        "| model | train batch x crop | setting | train img/s | steps, steal | train GFLOP | "
        "train GFLOP/s | % peak | forward s | forward GFLOP | forward GFLOP/s | % peak | "
        "output vs fp32 |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for res in results:
        if res["status"] != "ok":
            lines.append(f"| {res['model']} | – | – | {res['status']}: {res.get('error', '')} |")
            continue
        size = f"{res['batch']} x {res['crop']}" + (
            f" (paper {res['paper_batch']})" if res["batch"] != res["paper_batch"] else ""
        )
        for row in res["rows"]:
            t, i = row["train"], row["infer"]
            forward = "| – | – | – | – | eager rows |"
            if i is not None:
                forward = (
                    f"| {i['seconds']:.2f} | {i['gflop']:.0f} | {i['gflops']:.0f} | "
                    f"{100 * i['peak_fraction']:.0f} % | {_drift(i)} |"
                )
            lines.append(
                f"| {res['model']} | {size} | {_setting_label(row)} | {t['images_per_s']:.2f} | "
                f"{t['steps_timed']}, {100 * t.get('steal', 0.0):.0f} % | {t['gflop']:.0f} | {t['gflops']:.0f} | {100 * t['peak_fraction']:.0f} % "
                + forward
            )
        for fail in res.get("failed", []):
            lines.append(
                f"| {res['model']} | {size} | {fail['setting']} | failed: {fail['error']} |"
            )
    lines += summary_lines(results) + bottleneck_lines(results)
    return "\n".join(lines) + "\n"


def _setting_label(row: dict) -> str:
    """The setting's name, with the compile time and a warning for non-finite losses."""
    label = row["resolved"]
    if row["train"].get("compile_seconds") is not None:
        label += f" (compile {row['train']['compile_seconds']:.0f} s)"
    if not row["train"].get("finite", True):
        label += " **NON-FINITE LOSS**"
    return label


def _drift(measure: dict) -> str:
    if "psnr_vs_fp32" in measure:
        return f"{measure['psnr_vs_fp32']:.1f} dB"
    if "mask_agreement" in measure:
        return f"mask {100 * measure['mask_agreement']:.2f} % equal"
    return "reference"


def summary_lines(results: list[dict]) -> list[str]:
    lines = [
        "",
        f"Per model, baseline (fp32 contiguous) against the fastest setting. Targets: training "
        f"speed-up >= {TARGET_SPEEDUP:g}x, >= {100 * TARGET_PEAK_FRACTION:.0f} % of the bf16 peak "
        f"for the conv-heavy models, restore (mapping) and SR (TTSR) output >= {TARGET_PSNR:g} dB "
        "against fp32.",
        "",
        "| model | fastest training | train speed-up | train % bf16 peak | fastest forward | "
        "forward speed-up | forward % bf16 peak | output vs fp32 |",
        "|---|---|---:|---:|---|---:|---:|---|",
    ]
    for res in results:
        s = summary(res) if res["status"] == "ok" else None
        if s is None:
            continue
        fastest = s["fastest"] + ("" if s["train_finite"] else " **NON-FINITE LOSS**")
        forward = "| – | – | – | – |"  # no eager setting besides the baseline was run
        if s["fastest_infer"]:
            forward = (
                f"| {s['fastest_infer']} | {s['infer_speedup']:.2f}x | "
                f"{100 * s['infer_peak_fraction']:.0f} % | {_drift(s['output_drift'])} |"
            )
        lines.append(
            f"| {s['model']} | {fastest} | {s['train_speedup']:.2f}x | "
            f"{100 * s['train_peak_fraction']:.0f} % " + forward
        )
    return lines


def bottleneck_lines(results: list[dict]) -> list[str]:
    lines = ["", "## Where the fastest setting falls short of half the bf16 peak", ""]
    for res in results:
        for row in res.get("rows", []):
            prof = row.get("profile")
            if not prof:
                continue
            worst = prof["top_layers"][0]
            lines += [
                f"**{res['model']}** ({row['resolved']}): the layer losing the most time in a "
                f"{res['infer_size'] // 2} px forward is `{worst['layer']}` ({worst['type']}, {worst['ms']:.0f} ms for "
                f"{worst['gflop']:.1f} GFLOP = {worst['gflops']:.0f} GFLOP/s).",
                "",
                "| layer | type | ms | GFLOP | GFLOP/s | ms lost vs peak |",
                "|---|---|---:|---:|---:|---:|",
                *(
                    f"| `{r['layer']}` | {r['type']} | {r['ms']:.0f} | {r['gflop']:.2f} | "
                    f"{r['gflops']:.0f} | {r['lost_ms']:.0f} |"
                    for r in prof["top_layers"]
                ),
                "",
                "Top ops by self CPU time, training step:",
                "",
                "| op | input shapes | self ms | share |",
                "|---|---|---:|---:|",
                *(
                    f"| `{o['op']}` | `{o['shapes']}` | {o['self_ms']:.0f} | {100 * o['share']:.0f} % |"
                    for o in row["train"].get("top_ops", [])
                ),
                "",
            ]
    return lines


def print_bottlenecks(result: dict) -> None:
    for row in result.get("rows", []):
        prof = row.get("profile")
        if prof:
            worst = prof["top_layers"][0]
            print(f"  {result['model']} {row['resolved']}: held back by {worst['layer']} "
                  f"({worst['type']}, {worst['gflops']:.0f} GFLOP/s, {worst['lost_ms']:.0f} ms lost)")  # fmt: skip
            for op in row["train"].get("top_ops", [])[:5]:
                print(f"    {op['op']:<40} {op['self_ms']:8.0f} ms  {op['shapes'][:70]}")


def _cpu_model() -> str:
    match = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    return match[1] if match else "unknown CPU"


def parse_args() -> argparse.Namespace:
    import throughput_setup as setup

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(setup.MODELS), choices=setup.MODELS)
    parser.add_argument("--settings", nargs="+", default=["fp32", "fast"],
                        help="fp32 (baseline, first), fp32_cl, bf16, bf16_cl, fast, "
                             "compiled (bf16, channels_last, model.torch_compile; training only)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="tiny widths and crops: a check")
    parser.add_argument("--batch", type=int, default=0, help="training batch for every model")
    parser.add_argument("--crop", type=int, default=0, help="training crop for every model")
    parser.add_argument("--infer-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="most timed steps / forwards")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="stop timing after this")
    parser.add_argument(
        "--min-steps",
        type=int,
        default=2,
        help="timed training steps at least (best of them is reported) ...",
    )
    parser.add_argument("--max-seconds", type=float, default=12.0,
                        help="... unless the timed steps already took this long")  # fmt: skip
    parser.add_argument(
        "--weights", nargs="+", default=[], metavar="MODEL=PATH",
        help="trained weights for a model's inference network (e.g. ttsr=TTSR.pt "
        "mapping_quality=ckpts/mapping_quality.ckpt): the output drift then reflects real use",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--out", type=Path, default=HERE / "throughput")
    parser.add_argument("--table-only", action="store_true", help="rewrite the .md from the .json")
    parser.add_argument("--curves", action="store_true", help="200-step loss curves instead")
    parser.add_argument("--steps", type=int, default=200, help="--curves: training steps")
    parser.add_argument("--curve-setting", default="fast", choices=["fast", "compiled"],
                        help="--curves: the setting compared with fp32")  # fmt: skip
    args = parser.parse_args()
    args.weights = dict(item.split("=", 1) for item in args.weights)
    unknown = set(args.weights) - set(setup.MODELS)
    if unknown:
        parser.error(f"--weights: unknown models {sorted(unknown)}; use {list(setup.MODELS)}.")
    return args


def main() -> None:
    args = parse_args()
    if args.curves:
        import throughput_curves

        throughput_curves.run(args)
        return
    out = args.out.with_name(args.out.name + "_quick") if args.quick else args.out
    if args.table_only:
        saved = json.loads(out.with_suffix(".json").read_text())
        out.with_suffix(".md").write_text(markdown(saved["results"], saved["meta"]))
        return
    if args.settings[0] != "fp32":
        sys.exit("--settings: the first setting is the baseline and must be fp32.")
    run_benchmark(args, out)


def run_benchmark(args, out: Path) -> None:
    import torch

    from revive.nets.vgg import find_vgg19_weights

    t0 = time.perf_counter()
    meta = {
        "mode": "QUICK CHECK (tiny widths, not a measurement)" if args.quick else "Paper widths",
        "torch": torch.__version__, "threads": args.threads, "cpu": _cpu_model(),
        "loadavg": Path("/proc/loadavg").read_text().split()[0],
        "vgg19": "torchvision weights" if find_vgg19_weights() else "random init, same FLOPs",
        "infer_size": 64 if args.quick else args.infer_size,
        "weights": "".join(f"except {k} ({v}) " for k, v in args.weights.items()),
    }  # fmt: skip
    for module in ("pytorch_lightning", "revive.models.mapping", "revive.models.scratch",
                   "revive.models.ttsr"):  # fmt: skip
        importlib.import_module(module)  # once here: the forked children inherit them

    print("Measuring the peaks ...", flush=True)
    # in a child, like the models: the parent runs no parallel region, so forking stays safe
    peaks = in_child(measure_peaks, args.threads, args.quick, timeout=args.timeout)
    if peaks.pop("status") != "ok":
        sys.exit(f"Measuring the peaks failed: {peaks['error']}")
    meta["peaks"] = peaks
    print("  " + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()) + " GFLOP/s", flush=True)
    results = []
    for name in args.models:
        print(f"Running {name} ...", flush=True)
        result = run_model(name, args, peaks)
        add_rates(result, peaks)
        s = summary(result) if result["status"] == "ok" else None
        print(f"  {result['status']} " + (json.dumps(s, default=str)[:400] if s else result.get("error", "")), flush=True)  # fmt: skip
        print_bottlenecks(result)
        results.append(result)
    meta["wall_seconds"] = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    out.with_suffix(".md").write_text(markdown(results, meta))
    print(markdown(results, meta))
    print(f"Wrote {out.with_suffix('.json')} and .md in {meta['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
