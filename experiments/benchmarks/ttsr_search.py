"""Peak memory and time of the full TTSR forward: memory-bounded search against the official one.

Each (size, search) case runs in its own child process: paper widths, random weights, batch 1,
``no_grad``, fp32, LR / Ref sizes as given (Ref = 4 x LR by default). Peak memory is the child's
peak RSS during the forward minus its RSS just before it (the peak is reset through
/proc/self/clear_refs, so model construction does not count); it is also taken per stage (LTE,
search, backbone). As in the official measurements (reference/ttsr.md §5), a watchdog kills a child
whose RSS exceeds ``--rss-cap-gib``; the naive search is not run on larger sizes after its first
failure.

    python experiments/benchmarks/ttsr_search.py            # all sizes (long: about an hour)
    python experiments/benchmarks/ttsr_search.py --quick    # 40/160, 80/320
    python experiments/benchmarks/ttsr_search.py --cases 200/800 --contiguous  # ours contiguous

Writes ttsr_search.md (a Markdown table) and ttsr_search.json beside this file.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = ["40/160", "80/320", "120/480", "160/640", "200/800", "240/960", "600/600"]
QUICK_CASES = ["40/160", "80/320"]
IMPLS = ("bounded", "naive")
STAGES = ("lte", "search", "net")


def _status_kib(field: str, pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


class PeakRss:
    """Peak RSS above a baseline, segment by segment (Linux >= 4.0: VmHWM can be reset)."""

    def __init__(self) -> None:
        self.baseline_kib = _status_kib("VmRSS")
        self.overall_kib = 0
        self._reset()

    @staticmethod
    def _reset() -> None:
        Path("/proc/self/clear_refs").write_text("5")

    def segment(self) -> int:
        """Peak (KiB above the baseline) since the last call; starts the next segment."""
        peak = _status_kib("VmHWM") - self.baseline_kib
        self.overall_kib = max(self.overall_kib, peak)
        self._reset()
        return peak


def run_case(lr_size: int, ref_size: int, impl: str, threads: int, channels_last: bool) -> dict:
    """One full forward in this process; returns the measurement.

    ``channels_last`` puts the model and inputs in that memory format (how ``revive-sr`` runs):
    oneDNN then convolves without reordering each 4x feature map into its blocked layout.
    """
    import torch
    import torch.nn.functional as F

    from revive.nets.ttsr import TTSR

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = TTSR(search_impl=impl).eval()
    lr = torch.rand(1, 3, lr_size, lr_size) * 2 - 1
    lr_up = F.interpolate(lr, scale_factor=4, mode="bicubic")
    ref = torch.rand(1, 3, ref_size, ref_size) * 2 - 1
    ref_down_up = F.interpolate(F.avg_pool2d(ref, 4), scale_factor=4, mode="bicubic")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        lr, lr_up, ref, ref_down_up = (
            x.contiguous(memory_format=torch.channels_last) for x in (lr, lr_up, ref, ref_down_up)
        )
    with torch.no_grad():  # warm-up at a tiny size: lazy initialisation is not the forward's cost
        model(lr[..., :8, :8], lr_up[..., :32, :32], ref[..., :32, :32], ref_down_up[..., :32, :32])

    seconds = dict.fromkeys(STAGES, 0.0)
    peak_kib = dict.fromkeys(STAGES, 0)
    started = {}

    def before(name: str) -> None:
        tracker.segment()
        started[name] = time.perf_counter()

    def after(name: str) -> None:
        seconds[name] += time.perf_counter() - started[name]
        peak_kib[name] = max(peak_kib[name], tracker.segment())

    for name in STAGES:
        module = getattr(model, name)
        module.register_forward_pre_hook(lambda m, a, name=name: before(name))
        module.register_forward_hook(lambda m, a, o, name=name: after(name))

    gc.collect()
    tracker = PeakRss()
    start = time.perf_counter()
    with torch.no_grad():  # inference: each texture level is freed once fused (as revive-sr runs)
        model(lr, lr_up, ref, ref_down_up, keep_textures=False)
    total = time.perf_counter() - start
    tracker.segment()
    return {
        "seconds": round(total, 2),
        "stage_seconds": {name: round(value, 2) for name, value in seconds.items()},
        "baseline_mib": round(tracker.baseline_kib / 1024, 1),
        "peak_above_baseline_mib": round(tracker.overall_kib / 1024, 1),
        "stage_peak_above_baseline_mib": {k: round(v / 1024, 1) for k, v in peak_kib.items()},
    }


def child(args: argparse.Namespace) -> None:
    """Entry point of a child process: run one case, print one JSON line."""
    lr_size, ref_size = (int(n) for n in args.case.split("/"))
    try:
        channels_last = args.impl == "bounded" and not args.contiguous
        result = {
            "ok": True,
            "layout": "channels_last" if channels_last else "contiguous",
            **run_case(lr_size, ref_size, args.impl, args.threads, channels_last),
        }
    except (MemoryError, RuntimeError) as error:
        result = {"ok": False, "error": str(error).splitlines()[0][:200]}
    print(json.dumps(result), flush=True)


def watch(command: list[str], rss_cap_kib: int, timeout: float) -> dict:
    """Run a child, killing it when its RSS exceeds the cap or time runs out."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        deadline, max_rss, verdict = time.monotonic() + timeout, 0, None
        while proc.poll() is None:
            try:
                max_rss = max(max_rss, _status_kib("VmRSS", proc.pid))
            except (FileNotFoundError, RuntimeError):  # exiting between poll() and the read
                pass
            if max_rss > rss_cap_kib:
                verdict = f"killed by the watchdog at {max_rss // 1024} MiB RSS"
            elif time.monotonic() > deadline:
                verdict = f"killed after {timeout:g} s"
            if verdict:
                proc.kill()
                proc.wait()
                return {"ok": False, "error": verdict}
            time.sleep(0.05)
        out.seek(0)
        err.seek(0)
        lines = out.read().strip().splitlines()
        if proc.returncode == 0 and lines:
            return json.loads(lines[-1])
        tail = err.read().strip().splitlines()[-1:] or [""]
        return {"ok": False, "error": f"exit code {proc.returncode}: {tail[0][:200]}"}


def spawn(case: str, impl: str, args: argparse.Namespace) -> dict:
    command = [
        sys.executable, __file__, "--child", "--case", case, "--impl", impl,
        "--threads", str(args.threads), *(["--contiguous"] if args.contiguous else []),
    ]  # fmt: skip
    load_before = os.getloadavg()[0]
    result = watch(command, int(args.rss_cap_gib * 2**20), args.timeout)
    lr_size, ref_size = (int(n) for n in case.split("/"))
    return {
        "lr": lr_size,
        "ref": ref_size,
        "impl": impl,
        "load_avg_1min_before": round(load_before, 2),
        **result,
    }


def relevance_bytes(lr_size: int, ref_size: int) -> int:
    """Size of the official relevance matrix R: (Hr*Wr) x (h*w) float32 per image."""
    return (ref_size // 4) ** 2 * lr_size**2 * 4


def markdown(results: list[dict], args: argparse.Namespace) -> str:
    def cell(result: dict | None) -> str:
        if result is None:
            return "not run"
        if not result["ok"]:
            return f"**fails**: {result['error'][:70]}"
        search = result["stage_peak_above_baseline_mib"]["search"] / 1024
        total = result["peak_above_baseline_mib"] / 1024
        return f"{result['seconds']:.0f} s / {total:.2f} GiB ({search:.2f})"

    def stages(result: dict | None) -> str:
        if not result or not result["ok"]:
            return "–"
        return " / ".join(f"{result['stage_seconds'][name]:.0f}" for name in STAGES)

    lines = [
        "| LR / Ref | official R | bounded: time / peak (search) | bounded LTE / search / net s "
        "| naive: time / peak (search) | naive LTE / search / net s | peak bounded / naive |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case in args.cases:
        lr_size, ref_size = (int(n) for n in case.split("/"))
        by_impl = {r["impl"]: r for r in results if (r["lr"], r["ref"]) == (lr_size, ref_size)}
        bounded, naive = by_impl.get("bounded"), by_impl.get("naive")
        ratio = "–"
        if bounded and naive and bounded["ok"] and naive["ok"]:
            ratio = f"{bounded['peak_above_baseline_mib'] / naive['peak_above_baseline_mib']:.3f}"
        lines.append(
            f"| {case} | {relevance_bytes(lr_size, ref_size) / 2**30:.2f} GiB | {cell(bounded)} | "
            f"{stages(bounded)} | {cell(naive)} | {stages(naive)} | {ratio} |"
        )
    lines += [
        "",
        "Full TTSR forward (3x LTE + search + backbone), paper widths, random weights, batch 1, "
        f"no_grad, fp32, ours {'contiguous' if args.contiguous else 'channels_last'} (as revive-sr "
        f"runs), naive contiguous (as the official code), {args.threads} torch threads, one "
        "child process per cell. Peak = peak "
        "RSS during the forward minus the RSS just before it (model and inputs built); in "
        "brackets the peak during the search stage alone. A watchdog kills a child above "
        f"{args.rss_cap_gib:g} GiB RSS (as in reference/ttsr.md §5); the naive search is not run "
        "after its first failure. official R = the (Hr*Wr) x (h*w) float32 relevance matrix the "
        "naive search materialises. Wall-clock times on a shared 2-core machine (load average "
        "per cell in the JSON).",
    ]
    return "\n".join(lines) + "\n"


def _torch_version() -> str:
    import torch

    return torch.__version__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"only {QUICK_CASES}")
    parser.add_argument("--cases", nargs="+", default=None, help=f"LR/Ref sizes (default {CASES})")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per child")
    parser.add_argument("--rss-cap-gib", type=float, default=16.0, help="watchdog RSS cap")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per child")
    parser.add_argument("--out", type=Path, default=HERE / "ttsr_search", help="output stem")
    parser.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS), help="searches")
    parser.add_argument(
        "--contiguous", action="store_true", help="run ours contiguous (default channels_last)"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--impl", choices=IMPLS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    args.cases = args.cases or (QUICK_CASES if args.quick else CASES)

    results: list[dict] = []
    naive_failed = False
    for case in args.cases:
        for impl in args.impls:
            if impl == "naive" and naive_failed:
                continue
            result = spawn(case, impl, args)
            results.append(result)
            naive_failed |= impl == "naive" and not result["ok"]
            print(json.dumps(result), flush=True)

    env = {
        "python": platform.python_version(),
        "torch": _torch_version(),
        "cpus": os.cpu_count(),
        "threads": args.threads,
        "rss_cap_gib": args.rss_cap_gib,
        "command": " ".join(sys.argv),
    }
    args.out.with_suffix(".json").write_text(json.dumps({"env": env, "results": results}, indent=1))
    args.out.with_suffix(".md").write_text(markdown(results, args))
    print(f"Wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
