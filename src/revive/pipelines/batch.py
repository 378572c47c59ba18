"""Process a folder of photos safely: unique output names, atomic writes, resume, skip report.

Shared by the restore, super-resolution and degrade CLIs: a bad file is skipped and listed with
its reason, never stops the batch; finished outputs are written to a temporary file and renamed,
so an interrupted run leaves no half-written image and resumes where it stopped.
"""

from __future__ import annotations

import html
import json
import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from revive.data.imageio import ImageReadError, list_images, read_image

log = logging.getLogger(__name__)


def output_names(inputs: list[Path], root: Path) -> dict[Path, str]:
    """A unique, safe output stem per input: ``a.jpg`` -> ``a``, or ``a_jpg`` when ``a.png`` exists too.

    Sub-folders are flattened with ``__`` so every output stays inside the output folder.
    """

    def stem(path: Path) -> str:
        rel = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
        return "__".join([*rel.parent.parts, rel.stem])

    counts = Counter(stem(p) for p in inputs)
    return {
        p: stem(p) if counts[stem(p)] == 1 else f"{stem(p)}_{p.suffix.lstrip('.').lower()}"
        for p in inputs
    }


def write_image_atomic(image: np.ndarray, path: Path) -> None:
    """Write a PNG through a temporary file and a rename: never a half-written output."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(image).save(tmp, format="PNG")
    os.replace(tmp, path)


@dataclass
class BatchReport:
    """What a folder run did: done, skipped (with reasons) and already present outputs."""

    done: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """1 when any input was skipped, else 0."""
        return 1 if self.skipped else 0

    def write(self, out_dir: Path) -> None:
        """``report.json`` and, when files were skipped, ``skipped.txt`` (one per line)."""
        report = {"done": self.done, "resumed": self.resumed, "skipped": self.skipped}
        (out_dir / "report.json").write_text(json.dumps(report, indent=2))
        if self.skipped:
            lines = [f"{name}: {reason}" for name, reason in self.skipped.items()]
            (out_dir / "skipped.txt").write_text("\n".join(lines) + "\n")


def process_folder(
    input_dir: Path,
    output_dir: Path,
    work: Callable[[np.ndarray, str], dict[str, np.ndarray]],
    *,
    max_pixels: int,
    main_output: str,
    progress: bool = True,
) -> tuple[BatchReport, dict[Path, str]]:
    """Run ``work(image, stem) -> {suffix: uint8 image}`` on every photo of ``input_dir``.

    Outputs go to ``output_dir/<suffix>/<stem>.png``; an input whose ``main_output`` file exists
    is not redone. Returns the report and the stem of each input.
    """
    if not input_dir.is_dir():
        raise FileNotFoundError(f"input='{input_dir}' is not a folder of images.")
    inputs = list_images(input_dir)
    names = output_names(inputs, input_dir)
    report = BatchReport()
    from rich.progress import track

    for path in track(inputs, description="images", disable=not progress):
        stem = names[path]
        if (output_dir / main_output / f"{stem}.png").is_file():
            report.resumed.append(stem)
            continue
        try:
            image = read_image(path, max_pixels=max_pixels)
            outputs = work(image, stem)
        except ImageReadError as err:
            report.skipped[path.name] = err.reason
            log.warning("Skipped %s: %s", path, err.reason)
            continue
        except (RuntimeError, ValueError, MemoryError) as err:
            report.skipped[path.name] = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
            log.warning("Skipped %s: %s", path, report.skipped[path.name])
            continue
        # the main output is written last: its presence marks the photo as finished
        for suffix in sorted(outputs, key=lambda s: s == main_output):
            write_image_atomic(outputs[suffix], output_dir / suffix / f"{stem}.png")
        report.done.append(stem)
    report.write(output_dir)
    return report, names


def write_index_html(output_dir: Path, stems: list[str], columns: list[str], title: str) -> Path:
    """An ``index.html`` with one row per photo and one column per output folder."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    rows = []
    for stem in stems:
        cells = "".join(
            f'<td><img src="{html.escape(c)}/{html.escape(stem)}.png" loading="lazy"></td>'
            if (output_dir / c / f"{stem}.png").is_file()
            else "<td>-</td>"
            for c in columns
        )
        rows.append(f"<tr><td>{html.escape(stem)}</td>{cells}</tr>")
    page = (
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>img{max-width:360px}td{vertical-align:top}</style>"
        f"<h1>{html.escape(title)}</h1><table><tr><th>photo</th>{head}</tr>{''.join(rows)}</table>"
    )
    path = output_dir / "index.html"
    path.write_text(page)
    return path
