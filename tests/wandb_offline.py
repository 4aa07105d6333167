"""Read an offline wandb run file (``run-<id>.wandb``) back, for tests.

The file is a LevelDB-style log: a 7-byte header (``:W&B``, magic, version), then 32 KiB
blocks of records, each with a 7-byte header (crc32 4, length 2, type 1: full / first /
middle / last) and a serialized ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path):
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a wandb run file"
    pos, chunk = 7, b""
    while pos + 7 <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < 7:  # block trailer padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        payload = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        if kind == FULL:
            chunk = payload
        elif kind == FIRST:
            chunk = payload
            continue
        elif kind == MIDDLE:
            chunk += payload
            continue
        elif kind == LAST:
            chunk += payload
        record = pb.Record()
        record.ParseFromString(chunk)
        yield record


def history(path: Path) -> list[dict]:
    """The logged history rows, as dicts of key -> value."""
    rows = []
    for record in records(path):
        if record.WhichOneof("record_type") == "history":
            row = {}
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                row[key] = json.loads(item.value_json)
            rows.append(row)
    return rows


def config(path: Path) -> dict:
    """The run's config (from the run record and later config updates)."""
    out = {}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        items = (record.run.config.update if kind == "run"
                 else record.config.update if kind == "config" else [])
        for item in items:
            out[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return out


def summary(path: Path) -> dict:
    """The run's final summary values."""
    out = {}
    for record in records(path):
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                out[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return out
