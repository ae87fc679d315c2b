"""The bench's plots as PNG (matplotlib, from the ``bench`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt

FLOOR, OURS, PEERS = "#888888", "#2a7ab9", "#d98b2b"


def _color(name: str) -> str:
    if name.startswith("floor"):
        return FLOOR
    return OURS if name.startswith(("installed", "checkout")) else PEERS


def write(results: dict[str, Any], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = [_cli(results, directory / "cli-latency.png")]
    if "watcher_curve" in results:
        written.append(_curve(results, directory / "watcher-curve.png"))
    return written


def _cli(results: dict[str, Any], path: Path) -> Path:
    figures = results["cli_ms"]
    names = list(figures)
    medians = [figures[n]["median"] for n in names]
    p99s = [figures[n]["p99"] - figures[n]["median"] for n in names]
    colors = [_color(n) for n in names]
    fig, ax = plt.subplots(figsize=(9, 6))
    ax.barh(names, medians, xerr=[[0] * len(names), p99s], color=colors, capsize=3)
    bare = figures["floor: python -I -c pass"]["median"]
    with_click = figures["floor: python -c 'import click, json, socket'"]["median"]
    ax.axvline(
        bare * 1.6, color=OURS, linestyle="--", linewidth=1, label="goal through the daemon: 1.6 × bare floor"
    )
    ax.axvline(
        with_click * 1.6, color=OURS, linestyle=":", linewidth=1, label="goal embedded: 1.6 × click floor"
    )
    ax.invert_yaxis()
    ax.set_xlabel("wall time per command, ms (bar: median, whisker: p99)")
    ax.set_title(f"session-agent CLI vs floor and peers — {results['machine']['date']}")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _curve(results: dict[str, Any], path: Path) -> Path:
    rows = results["watcher_curve"]
    steps = [row["step_ms"] for row in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(steps, [row["edit_to_durable_ms"]["median"] for row in rows], "o-", label="edit → durable p50")
    ax.plot(steps, [row["edit_to_durable_ms"]["p99"] for row in rows], "s--", label="edit → durable p99")
    ax.set_xlabel("watcher step, ms")
    ax.set_ylabel("latency, ms")
    cpu = ax.twinx()
    cpu.plot(steps, [row["idle_cpu_pct"] for row in rows], "^-", color="#c0392b", label="idle CPU")
    cpu.set_ylabel("idle CPU, % of one core")
    cpu.set_ylim(bottom=0)
    lines = ax.get_legend_handles_labels()[0] + cpu.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + cpu.get_legend_handles_labels()[1]
    ax.legend(lines, labels, loc="upper left", fontsize=8)
    ax.set_title("watcher step: latency against idle CPU")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
