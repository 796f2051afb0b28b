"""The one table: rows, medians, ratios, targets, and the machine it ran on."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ROWS", "Row", "machine", "render", "summarize"]

Samples = dict[str, dict[str, dict[str, list[float | None]]]]  # workload -> side -> metric -> runs


@dataclass(frozen=True, slots=True)
class Row:
    workload: str
    metric: str  # key in the workload's result
    label: str
    unit: str  # "s", "ms", "bytes", "MB", "count"
    lower_is_better: bool = True
    target: str = ""
    met: Callable[[float, float | None], bool] | None = None  # (ours, peer) -> met?
    peer_na: str = ""  # why the peer has no figure for this row, if it never has one


_NO_API_PEER = "no peer has this office API; our figure against the target only"


def _w1_met(ours: float, peer: float | None) -> bool:
    return ours < 1.0 and peer is not None and peer / ours >= 20


ROWS: list[Row] = [
    Row("Ceiling", "store_s", "W1's edits applied+stored, one process, no network", "s"),
    Row(
        "W1 ingest",
        "durable_s",
        "every edit durable (ours: acked; peer: in its file)",
        "s",
        target="< 1 s and >= 20x sooner than peer",
        met=_w1_met,
    ),
    Row("W1 ingest", "converged_s", "all devices hold all edits", "s"),
    Row("W1 ingest", "edited_s", "devices done making their edits", "s"),
    Row("W1 ingest", "disk_bytes", "bytes on disk at the end (db + wal/journal)", "bytes"),
    Row("W2 crash", "on_disk", "edits on disk after SIGKILL", "count", lower_is_better=False),
    Row(
        "W2 crash",
        "acked",
        "edits acknowledged before the kill",
        "count",
        lower_is_better=False,
        peer_na="y-websocket has no acknowledgement",
    ),
    Row(
        "W2 crash",
        "acked_lost",
        "acknowledged edits missing from disk",
        "count",
        target="0",
        met=lambda ours, peer: ours == 0,
        peer_na="y-websocket has no acknowledgement",
    ),
    Row("W2 crash", "kill_delay_ms", "kill, after first device held all", "ms"),
    Row(
        "W3 catch-up",
        "seconds",
        "until both devices hold both sides' changes",
        "s",
        target="< 1 s",
        met=lambda ours, peer: ours < 1.0,
    ),
    Row(
        "W3 catch-up",
        "wire_bytes",
        "websocket payload bytes, both devices",
        "bytes",
        target="<= 2x the least a relay must carry",
        met=None,  # checked against least_bytes in summarize()
    ),
    Row("W3 catch-up", "change_bytes", "size of the changes themselves", "bytes"),
    Row("W3 catch-up", "least_bytes", "least any relay carries: B's once, A's twice", "bytes"),
    Row("W3 catch-up", "connections", "connections the returning device opens", "count"),
    Row("W4 fan-out", "median_ms", "edit -> arrival, median", "ms"),
    Row(
        "W4 fan-out",
        "p99_ms",
        "edit -> arrival, p99",
        "ms",
        target="< 50 ms",
        met=lambda ours, peer: ours < 50,
    ),
    Row("W4 fan-out", "missing", "arrivals that never happened", "count"),
    Row("W5 memory", "rss_idle_mb", "relay RSS before any connection", "MB"),
    Row("W5 memory", "rss_connected_mb", "relay RSS, all connections open", "MB"),
    Row(
        "W5 memory",
        "rss_peak_mb",
        "relay RSS peak while edits flow",
        "MB",
        target="< 500 MB",
        met=lambda ours, peer: ours < 500,
    ),
    Row(
        "API reads",
        "views_built_s",
        "views of every stored work order built on start",
        "s",
        peer_na=_NO_API_PEER,
    ),
    Row(
        "API reads",
        "page_median_ms",
        "filtered page of 100, median",
        "ms",
        target="< 20 ms",
        met=lambda ours, peer: ours < 20,
        peer_na=_NO_API_PEER,
    ),
    Row("API reads", "page_p99_ms", "filtered page of 100, p99", "ms", peer_na=_NO_API_PEER),
    Row(
        "API reads",
        "one_median_ms",
        "one work order, median",
        "ms",
        target="< 5 ms",
        met=lambda ours, peer: ours < 5,
        peer_na=_NO_API_PEER,
    ),
    Row("API reads", "one_p99_ms", "one work order, p99", "ms", peer_na=_NO_API_PEER),
]


METHOD_NOTES = [
    "W1/W2: the peer acknowledges nothing, so its 'durable' is when the bench process finds"
    " every edit in its SQLite file; our devices write each edit to their own SQLite file"
    " before the edit returns, the peer's devices keep nothing locally.",
    "W3: bytes are websocket message payloads; framing, TCP and each connection's HTTP"
    " upgrade (one for ours, one per document for the peer) are not counted.",
    "W4: receivers share a few processes (4 in the full run: 12-13 devices each); ours each"
    " also write every update they receive to their own SQLite file.",
    "API reads: 10,000 work orders (1,000 with --quick) seeded into the store, views built by"
    " the relay on start; requests through uvicorn from one keep-alive httpx client, office key.",
]


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(samples: Samples) -> list[dict[str, object]]:
    """One dict per row: medians, ratio, target verdict."""
    out: list[dict[str, object]] = []
    for row in ROWS:
        sides = samples.get(row.workload)
        if sides is None:
            continue
        ours = median(sides.get("ours", {}).get(row.metric, []))
        peer = median(sides.get("peer", {}).get(row.metric, []))
        ratio = peer / ours if ours and peer is not None else None
        met: bool | None = None
        if ours is not None and row.met is not None:
            met = row.met(ours, peer)
        if row.metric == "wire_bytes" and ours is not None:
            least = median(sides.get("ours", {}).get("least_bytes", []))
            met = least is not None and ours <= 2 * least
        out.append(
            {
                "workload": row.workload,
                "metric": row.metric,
                "label": row.label,
                "unit": row.unit,
                "lower_is_better": row.lower_is_better,
                "ours": ours,
                "peer": peer,
                "peer_over_ours": ratio,
                "target": row.target,
                "met": met,
                "peer_na": row.peer_na,
            }
        )
    return out


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "bytes":
        if value >= 1024 * 1024:
            return f"{value / 1024 / 1024:.2f} MB"
        return f"{value / 1024:.1f} KB"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "MB":
        return f"{value:.0f} MB"
    return f"{value:,.0f}"


def render(summary: list[dict[str, object]], notes: list[str]) -> str:
    header = ["workload", "metric", "ours", "peer", "peer/ours", "target (ours)"]
    lines: list[list[str]] = []
    footnotes: list[str] = []
    for item in summary:
        unit = str(item["unit"])
        arrow = "↓" if item["lower_is_better"] else "↑"
        peer_text = _fmt(item["peer"], unit)  # type: ignore[arg-type]
        if item["peer"] is None and item["peer_na"]:
            if item["peer_na"] not in footnotes:
                footnotes.append(str(item["peer_na"]))
            peer_text += f" [{footnotes.index(str(item['peer_na'])) + 1}]"
        ratio = item["peer_over_ours"]
        ratio_text = f"{ratio:.1f}x" if isinstance(ratio, float) else "n/a"
        target = str(item["target"])
        if target:
            verdict = {True: "met", False: "MISSED", None: "n/a"}[item["met"]]  # type: ignore[index]
            target = f"{target}: {verdict}"
        lines.append(
            [
                str(item["workload"]),
                f"{arrow} {item['label']}",
                _fmt(item["ours"], unit),  # type: ignore[arg-type]
                peer_text,
                ratio_text,
                target,
            ]
        )
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    right = {2, 3, 4}

    def fmt_line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    text = [fmt_line(header), fmt_line(["-" * w for w in widths])]
    previous = ""
    for line in lines:
        if line[0] == previous:
            line = ["", *line[1:]]
        else:
            previous = line[0]
        text.append(fmt_line(line))
    text.append("")
    text.append("↓ lower is better, ↑ higher is better; peer/ours above 1 on a ↓ row: ours wins.")
    for index, note in enumerate(footnotes, 1):
        text.append(f"[{index}] peer n/a: {note}")
    text.extend(METHOD_NOTES)
    text.extend(notes)
    return "\n".join(text)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine(work: Path) -> dict[str, str]:
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return {
        "cores": str(os.cpu_count()),
        "cpu": model,
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "crdtsync": _version("crdtsync"),
        "pycrdt": _version("pycrdt"),
        "pycrdt-websocket": _version("pycrdt-websocket"),
        "pycrdt-store": _version("pycrdt-store"),
        "websockets": _version("websockets"),
        "uvicorn": _version("uvicorn"),
        "workdir": str(work),
    }
