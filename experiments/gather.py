"""Gather the metrics of a study's runs into a Markdown table and a plot.

A run is a Hydra job folder (e.g. one job of ``revive-train -m experiment=ablation/...``). Its
metrics come from ``csv/version_0/metrics.csv`` (``--source csv``, the default) or from its offline
W&B run files ``wandb/offline-run-*/run-*.wandb`` (``--source wandb``; a resumed run's files are
joined). Runs are labelled by what differs between them: the W&B tags, or the Hydra overrides
(``.hydra/overrides.yaml``) that not every run shares.

Writes ``table.md`` (the last value of each metric per run, and the W&B group) and ``curves.png``
(each metric over the training steps, one line per run):

    python experiments/gather.py logs/ablation/bopb_latent_d/<time> \
        --metrics val/latent_mmd val/psnr --out experiments/bopb_latent_gap --source wandb
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402

from revive.utils.wandb_offline import find_runs, read_run  # noqa: E402

CSV_FILE = Path("csv") / "version_0" / "metrics.csv"
STEP_KEY = "trainer/global_step"  # Lightning's WandbLogger logs the step under this key


@dataclass
class Run:
    """One run's metric series and what tells it apart."""

    folder: Path
    series: dict[str, list[tuple[int, float]]]  # metric -> (step, value) in logging order
    tags: list[str] = field(default_factory=list)
    group: str | None = None
    label: str = ""


def run_folders(roots: list[Path], source: str) -> list[Path]:
    """Every job folder under ``roots`` with metrics of this source."""
    if source == "csv":
        found = {p.parents[2] for root in roots for p in root.rglob(str(CSV_FILE))}
    else:
        found = {p.parents[1] for root in roots for p in find_runs(root)}
    return sorted(found)


def read_csv_run(folder: Path) -> Run:
    """Series of every metric in the run's ``metrics.csv``."""
    series: dict[str, list[tuple[int, float]]] = {}
    with open(folder / CSV_FILE) as file:
        for row in csv.DictReader(file):
            for key, value in row.items():
                if key not in ("step", "epoch") and value not in ("", None):
                    series.setdefault(key, []).append((int(row["step"]), float(value)))
    return Run(folder, series)


def read_wandb_run(folder: Path) -> Run:
    """Series of every number in the run's offline W&B history (all its files, oldest first)."""
    series: dict[str, list[tuple[int, float]]] = {}
    tags, group = [], None
    for run_dir in sorted(find_runs(folder), key=lambda p: p.name.split("-")[-2]):
        run = read_run(run_dir)
        tags, group = run["tags"], run["group"]
        for row in run["history"]:
            step = row.get(STEP_KEY, row.get("_step", 0))
            for key, value in row.items():
                if not key.startswith("_") and isinstance(value, int | float):
                    series.setdefault(key, []).append((int(step), float(value)))
    return Run(folder, series, tags, group)


def overrides(folder: Path) -> list[str]:
    """The run's command-line overrides (empty when Hydra wrote none)."""
    path = folder / ".hydra" / "overrides.yaml"
    return (yaml.safe_load(path.read_text()) or []) if path.is_file() else []


def label_runs(runs: list[Run]) -> None:
    """Label each run by its tags, else its overrides, that not every run shares."""

    def distinct(items: list[list[str]]) -> list[list[str]]:
        shared = set.intersection(*(set(i) for i in items)) if items else set()
        return [[x for x in i if x not in shared] for i in items]

    by_tags = distinct([r.tags for r in runs])
    by_overrides = distinct([overrides(r.folder) for r in runs])
    for run, tags, over in zip(runs, by_tags, by_overrides):
        run.label = " ".join(tags or over) or run.folder.name


def markdown_table(runs: list[Run], metrics: list[str]) -> str:
    """A row per run: its label, group and the last value of each metric."""
    lines = ["| run | group | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 2) + "|"]
    for run in runs:
        values = [f"{run.series[m][-1][1]:.4f}" if run.series.get(m) else "-" for m in metrics]
        lines.append(f"| {run.label} | {run.group or '-'} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def plot(runs: list[Run], metrics: list[str], path: Path) -> None:
    """Each metric over the training steps, one line per run."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for run in runs:
            if run.series.get(metric):
                ax.plot(*zip(*run.series[metric]), marker="o", label=run.label)
        ax.set_title(metric)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def gather(roots: list[Path], metrics: list[str], out: Path, source: str = "csv") -> list[Run]:
    """Read the runs under ``roots``; write ``out/table.md`` and ``out/curves.png``."""
    folders = run_folders(roots, source)
    if not folders:
        raise SystemExit(f"No runs with {source} metrics under {[str(r) for r in roots]}")
    runs = [read_csv_run(f) if source == "csv" else read_wandb_run(f) for f in folders]
    label_runs(runs)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(markdown_table(runs, metrics))
    plot(runs, metrics, out / "curves.png")
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("roots", type=Path, nargs="+", help="sweep or run folders")
    parser.add_argument("--metrics", nargs="+", required=True, help="e.g. val/psnr test/psnr")
    parser.add_argument("--out", type=Path, required=True, help="where table.md and curves.png go")
    parser.add_argument("--source", choices=("csv", "wandb"), default="csv")
    args = parser.parse_args()
    gather(args.roots, args.metrics, args.out, args.source)
    print((args.out / "table.md").read_text(), end="")


if __name__ == "__main__":
    main()
