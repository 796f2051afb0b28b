"""``python -m bench``: run the workloads against our relay and the peer, print one table.

Each workload runs ``--repeat`` times per side (ours and the peer alternate
which goes first), every run in a fresh directory with a fresh relay process;
the table shows medians. Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from .api import run_api
from .catchup import run_catchup
from .ceiling import run_ceiling
from .config import FULL, QUICK, Sizes
from .fanout import run_fanout
from .ingest import run_crash, run_ingest
from .memory import run_memory
from .report import Samples, machine, render, summarize

Runner = Callable[[str, Sizes, Path], dict[str, float | None]]

WORKLOADS: dict[str, tuple[str, Runner]] = {
    "ceiling": ("Ceiling", run_ceiling),
    "w1": ("W1 ingest", run_ingest),
    "w2": ("W2 crash", run_crash),
    "w3": ("W3 catch-up", run_catchup),
    "w4": ("W4 fan-out", run_fanout),
    "w5": ("W5 memory", run_memory),
    "api": ("API reads", run_api),
}

_LOGGED_PROBLEM = re.compile(r"ERROR|CRITICAL|relay error|Traceback")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repeat: a smoke run")
    parser.add_argument("--repeat", type=int, help="runs per workload and side (default 3)")
    parser.add_argument(
        "--only", help=f"comma-separated workloads among {','.join(WORKLOADS)} (default: all)"
    )
    parser.add_argument("--json", type=Path, help="also write medians and every sample here")
    parser.add_argument("--sides", default="ours,peer", help="ours,peer (default) or one of them")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    return parser


def _problems(directory: Path) -> list[str]:
    """The first problem each relay or device logged during one run, numbers blanked out."""
    found: list[str] = []
    for log in sorted(directory.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if _LOGGED_PROBLEM.search(line):
                text = re.sub(r"^\S+ \S+ ", "", line.strip())
                text = re.sub(r"\d+", "N", f"{log.name}: {text}")[:170]
                found.append(text)
                break
    return found


class _Notes:
    """Problems seen in runs, each said once with the runs and how many logs said it."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self._seen: dict[tuple[str, str], tuple[set[int], int]] = {}

    def add(self, where: str, run: int, problems: list[str]) -> None:
        for problem in problems:
            runs, count = self._seen.get((where, problem), (set(), 0))
            self._seen[(where, problem)] = (runs | {run}, count + 1)

    def lines(self) -> list[str]:
        out = list(self.failures)
        for (where, problem), (runs, count) in self._seen.items():
            run_list = ", ".join(str(r) for r in sorted(runs))
            out.append(f"* {where} run(s) {run_list}: {count} log(s) said: {problem}")
        return out


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    sizes = QUICK if args.quick else FULL
    repeat = args.repeat or (1 if args.quick else 3)
    names = [n.strip().lower() for n in args.only.split(",")] if args.only else list(WORKLOADS)
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        print(f"unknown workload(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    sides = [s.strip() for s in args.sides.split(",")]
    work = Path(tempfile.mkdtemp(prefix="crdtsync-bench-"))
    os.environ["BENCH_LOG_DIR"] = str(work)
    started = time.monotonic()
    samples: Samples = {}
    notes = _Notes()
    failures = 0
    try:
        for name in names:
            title, runner = WORKLOADS[name]
            per_side = samples.setdefault(title, {side: {} for side in sides})
            for rep in range(repeat):
                order = sides if rep % 2 == 0 else sides[::-1]
                for side in order:
                    run_dir = work / f"{name}-{side}-{rep + 1}"
                    run_dir.mkdir()
                    os.environ["BENCH_LOG_DIR"] = str(run_dir)
                    t0 = time.monotonic()
                    try:
                        result = runner(side, sizes, run_dir)
                    except Exception as exc:  # noqa: BLE001 (reported in the table, runs go on)
                        failures += 1
                        traceback.print_exc()
                        result = {}
                        notes.failures.append(f"* {title} {side} run {rep + 1} failed: {exc}"[:300])
                    for metric, value in result.items():
                        per_side[side].setdefault(metric, []).append(value)
                    notes.add(f"{title} {side}", rep + 1, _problems(run_dir))
                    print(
                        f"{title:12} {side:4} run {rep + 1}/{repeat}: "
                        f"{time.monotonic() - t0:5.1f} s  {_short(result)}",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - started
    info = machine(work)
    summary = summarize(samples)
    mode = "quick (smoke sizes)" if args.quick else "full"
    header = [
        f"crdtsync benchmark, {mode}, median of {repeat} run(s) per side, {elapsed:.0f} s in all",
        "machine: "
        + ", ".join(f"{k} {v}" for k, v in info.items() if k not in {"workdir"})
        + f"; files under {Path(tempfile.gettempdir())}",
        "",
    ]
    print("\n".join(header) + render(summary, notes.lines()))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "mode": mode,
                    "repeat": repeat,
                    "seconds": elapsed,
                    "machine": info,
                    "rows": summary,
                    "samples": samples,
                    "notes": notes.lines(),
                },
                indent=2,
            )
        )
    return 1 if failures else 0


def _short(result: dict[str, float | None]) -> str:
    return " ".join(f"{k}={v:.4g}" if v is not None else f"{k}=n/a" for k, v in result.items())


if __name__ == "__main__":
    sys.exit(main())
