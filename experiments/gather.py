"""Gather the metrics of a study's runs into a Markdown table and a plot.

Reads each run's ``csv/version_0/metrics.csv`` (and ``.hydra/overrides.yaml`` to label it) and
writes ``table.md`` (the last value of each metric per run) and ``curves.png`` (each metric over
the training steps, one line per run).

    python experiments/gather.py logs/train/multiruns/<sweep> --metrics val/latent_mmd val/psnr \
        --out experiments/bopb_latent_gap
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402


def run_dirs(roots: list[Path]) -> list[Path]:
    """Every run folder (one holding csv/version_0/metrics.csv) under the given folders."""
    found = {p.parents[2] for root in roots for p in root.rglob("csv/version_0/metrics.csv")}
    return sorted(found)


def label(run: Path, drop: tuple[str, ...]) -> str:
    """The run's command-line overrides, minus the ones every run shares."""
    overrides = run / ".hydra" / "overrides.yaml"
    if not overrides.is_file():
        return run.name
    items = yaml.safe_load(overrides.read_text()) or []
    return " ".join(o for o in items if o not in drop) or run.name


def read_series(run: Path, metric: str) -> list[tuple[int, float]]:
    """(step, value) of ``metric`` over a run."""
    with open(run / "csv" / "version_0" / "metrics.csv") as file:
        return [(int(r["step"]), float(r[metric])) for r in csv.DictReader(file) if r.get(metric)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("roots", type=Path, nargs="+", help="sweep or run folders")
    parser.add_argument("--metrics", nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    runs = run_dirs(args.roots)
    if not runs:
        raise SystemExit(f"No runs with csv/version_0/metrics.csv under {args.roots}")
    all_overrides = [
        set(yaml.safe_load((r / ".hydra" / "overrides.yaml").read_text()) or [])
        if (r / ".hydra" / "overrides.yaml").is_file()
        else set()
        for r in runs
    ]
    shared = tuple(set.intersection(*all_overrides)) if all_overrides else ()
    labels = [label(r, shared) for r in runs]

    header = "| run | " + " | ".join(args.metrics) + " |"
    lines = [header, "|---" * (len(args.metrics) + 1) + "|"]
    for run, name in zip(runs, labels):
        values = []
        for metric in args.metrics:
            series = read_series(run, metric)
            values.append(f"{series[-1][1]:.4f}" if series else "-")
        lines.append(f"| {name} | " + " | ".join(values) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text("\n".join(lines) + "\n")

    fig, axes = plt.subplots(
        1, len(args.metrics), figsize=(5 * len(args.metrics), 3.5), squeeze=False
    )
    for ax, metric in zip(axes[0], args.metrics):
        for run, name in zip(runs, labels):
            series = read_series(run, metric)
            if series:
                ax.plot(*zip(*series), marker="o", label=name)
        ax.set_title(metric)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "curves.png", dpi=110)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
