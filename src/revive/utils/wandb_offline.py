"""Read offline W&B runs (``offline-run-*/run-<id>.wandb``) without syncing them.

wandb 0.31 keeps history, summary and config only in the binary ``.wandb`` file and ships no
Python reader (framework.md §2c). The file is a 7-byte header (``:W&B``, 0xBEE1, version)
followed by a LevelDB-style log: 32 KiB blocks of records, each with a 7-byte header
``<crc u32, length u16, type u8>``; a payload split over blocks comes as FIRST, MIDDLE..., LAST.
Each complete payload is a ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

_BLOCK = 32768
_HEADER = 7  # file header and record header are both 7 bytes
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def iter_records(path: str | Path) -> Iterator[wandb_internal_pb2.Record]:
    """Every record of a ``.wandb`` file, in write order."""
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"'{path}' is not a W&B transaction log (no ':W&B' header).")
    pos, payload = _HEADER, b""
    while pos + _HEADER <= len(data):
        room = _BLOCK - pos % _BLOCK
        if room < _HEADER:  # a block tail too short for a header is zero padding
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        chunk = data[pos + _HEADER : pos + _HEADER + length]
        if len(chunk) < length:  # the writer is mid-record (live or killed run): stop here
            return
        pos += _HEADER + length
        if kind == 0 and length == 0:  # zero fill at the end of a block
            continue
        payload = chunk if kind in (_FULL, _FIRST) else payload + chunk
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(payload)
            yield record


def _key(item: Any) -> str:
    # Flat keys arrive as a one-element nested_key; nested dicts as their path.
    return item.key or ".".join(item.nested_key)


def _value(item: Any) -> Any:
    if item.value_json:
        return json.loads(item.value_json)
    # History items may carry a typed value instead of JSON; summary/config items cannot.
    kind = item.WhichOneof("value") if "value" in item.DESCRIPTOR.oneofs_by_name else None
    if kind is None or kind == "none":
        return None
    value = getattr(item, kind)
    return json.loads(value) if kind == "json" else value


def _run_file(path: str | Path) -> Path:
    path = Path(path)
    if path.is_file():
        return path
    files = sorted(path.glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"No run-*.wandb file in '{path}'; pass an offline-run-* folder.")
    return files[0]


LIVE_SECONDS = 30.0  # a run folder touched this recently may still be written by wandb's service


def _last_touched(run_dir: Path) -> float:
    """Newest modification time of any file in a run folder (the service logs until it exits)."""
    return max((p.stat().st_mtime for p in run_dir.rglob("*") if p.is_file()), default=0.0)


def read_run(path: str | Path, wait: float = 20.0) -> dict[str, Any]:
    """History, summary and config of one offline run (its folder or its ``.wandb`` file).

    Returns ``dict(history=[{key: value, ...} per step], summary={...}, config={...},
    run_id=..., project=..., group=..., tags=[...], name=..., exit_code=int | None)``.
    Nested keys are joined with ".", and wandb's internal ``_wandb`` entries are dropped.

    :param wait: wandb 0.31's ``finish()`` can return before its service has flushed the file
        (seen: only the 7-byte header, complete ~10 ms later, much later on a loaded machine).
        While the file lacks its exit record and its run folder was touched within
        ``LIVE_SECONDS``, it is re-read, for at most ``wait`` seconds; an older file without an
        exit record (a crashed run) is read as it is.
    """
    file = _run_file(path)
    deadline = time.monotonic() + wait
    while True:
        run = _parse_run(file)
        fresh = time.time() - _last_touched(file.parent) < LIVE_SECONDS
        if run["exit_code"] is not None or not fresh or time.monotonic() > deadline:
            return run
        time.sleep(0.05)


def _parse_run(file: Path) -> dict[str, Any]:
    run: dict[str, Any] = dict(history=[], summary={}, config={}, run_id=None, project=None)
    run.update(group=None, tags=[], name=None, exit_code=None)
    for record in iter_records(file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.update(run_id=r.run_id, project=r.project, group=r.run_group or None)
            run.update(tags=list(r.tags), name=r.display_name or None)
            _apply(run["config"], r.config)
            _apply(run["summary"], r.summary)
        elif kind == "config":
            _apply(run["config"], record.config)
        elif kind == "summary":
            _apply(run["summary"], record.summary)
        elif kind == "history":
            run["history"].append({_key(i): _value(i) for i in record.history.item})
        elif kind == "exit":
            run["exit_code"] = record.exit.exit_code
    return run


def _apply(target: dict[str, Any], change: Any) -> None:
    """Apply a Config/Summary record's updates and removals to ``target``."""
    for item in change.update:
        key = _key(item)
        if not key.startswith("_wandb"):
            target[key] = _value(item)
    for item in change.remove:
        target.pop(_key(item), None)


def find_runs(save_dir: str | Path) -> list[Path]:
    """All ``offline-run-*`` folders under ``save_dir`` (recursively), sorted by path."""
    return sorted(p for p in Path(save_dir).rglob("offline-run-*") if p.is_dir())
