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

    Sub-folders are flattened with ``__`` so every output stays inside the output folder. Names
    that would still clash, also when compared without case (``sub/a.png`` and ``sub__a.png``;
    ``a.png`` and ``a.PNG``), get ``_2``, ``_3``, ... in input order.
    """

    def stem(path: Path) -> str:
        rel = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
        return "__".join([*rel.parent.parts, rel.stem])

    counts = Counter(stem(p).lower() for p in inputs)
    wanted = {
        p: stem(p) if counts[stem(p).lower()] == 1 else f"{stem(p)}_{p.suffix.lstrip('.').lower()}"
        for p in inputs
    }
    taken = Counter(name.lower() for name in wanted.values())
    names: dict[Path, str] = {}
    used: set[str] = set()
    for path, name in wanted.items():
        unique, n = name, 1
        while unique.lower() in used or (unique != name and taken[unique.lower()]):
            n += 1
            unique = f"{name}_{n}"
        used.add(unique.lower())
        names[path] = unique
    return names


def inside(folder: Path, name: str) -> Path:
    """``folder / name``, refused when ``name`` would lead outside ``folder``."""
    path = folder / name
    if path.resolve().parent != folder.resolve():
        raise ValueError(f"Output name '{name}' would leave the output folder '{folder}'.")
    return path


def write_image_atomic(image: np.ndarray, path: Path) -> None:
    """Write a PNG through a temporary file and a rename: never a half-written output."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(image).save(tmp, format="PNG")
    os.replace(tmp, path)


@dataclass
class BatchReport:
    """What a folder run did: done, skipped (input path -> reason) and already present outputs."""

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
    min_side: int = 1,
    progress: bool = True,
) -> tuple[BatchReport, dict[Path, str]]:
    """Run ``work(image, stem) -> {suffix: uint8 image}`` on every photo of ``input_dir``.

    Outputs go to ``output_dir/<suffix>/<stem>.png``; an input whose ``main_output`` file exists
    is not redone. Photos with a side below ``min_side`` are skipped. Returns the report and
    the stem of each input.
    """
    if not input_dir.is_dir():
        raise FileNotFoundError(f"input='{input_dir}' is not a folder of images.")
    inputs = list_images(input_dir)
    names = output_names(inputs, input_dir)
    report = BatchReport()
    from rich.progress import track

    for path in track(inputs, description="images", disable=not progress):
        stem, relative = names[path], path.relative_to(input_dir).as_posix()
        if inside(output_dir / main_output, f"{stem}.png").is_file():
            report.resumed.append(stem)
            continue
        try:
            image = read_image(path, max_pixels=max_pixels)
            if min(image.shape[:2]) < min_side:
                h, w = image.shape[:2]
                raise ImageReadError(
                    path, f"is {w}x{h}, below the {min_side}x{min_side} minimum; upscale it first"
                )
            outputs = work(image, stem)
        except ImageReadError as err:
            report.skipped[relative] = err.reason
            log.warning("Skipped %s: %s", path, err.reason)
            continue
        except (RuntimeError, ValueError, MemoryError) as err:
            report.skipped[relative] = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
            log.warning("Skipped %s: %s", path, report.skipped[relative])
            continue
        # the main output is written last: its presence marks the photo as finished
        for suffix in sorted(outputs, key=lambda s: s == main_output):
            write_image_atomic(outputs[suffix], inside(output_dir / suffix, f"{stem}.png"))
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
