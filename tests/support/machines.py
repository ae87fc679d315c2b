"""Several machines on one box: data dirs sharing a sync dir, each with its
``[sync] host`` (``agent.sync_settings``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["machine", "remote_ids", "segments_of"]


def machine(root: Path, host: str, shared: Path, *, omit: tuple[str, ...] = (), rescan: str = "1s") -> Path:
    """A data dir of its own that ships as ``host`` into ``shared``."""
    data = root / f"machine-{host}"
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    lines = ["[sync]", f'dir = "{shared}"', f'host = "{host}"', f'rescan = "{rescan}"']
    if omit:
        lines.append(f"omit = {json.dumps(list(omit))}")
    (data / "config.toml").write_text("\n".join(lines) + "\n")
    os.chmod(data / "config.toml", 0o600)
    return data


def segments_of(shared: Path, host: str) -> list[Path]:
    folder = shared / host
    return sorted(folder.glob("seg-*.jsonl")) if folder.is_dir() else []


def remote_ids(listing: str) -> list[str]:
    """The ids of a ``list --all-hosts --json`` output."""
    return [item["id"] for item in json.loads(listing)]
