#!/usr/bin/env python3
"""Plot acknowledgement-latency percentiles of load runs (bench/lab_load.py --json).

Each report's per-message latencies (``result.latencies_ms``) become one curve:
latency against percentile (p1 … p99.9).

    bench/plot_load.py RUNS.json [MORE.json …] --out docs/load-latency.png \
        [--label "inflight 5"] [--label "inflight 1"]

Needs matplotlib (not a project dependency: ``pip install matplotlib`` in any venv;
this script imports nothing else from the project).
Exit codes: 0 ok, 64 usage, 65 a file is not a lab_load report, 69 no matplotlib.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

PERCENTILES = [1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 97, 99, 99.5, 99.9]


def nearest_rank(ordered: list[float], q: float) -> float:
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def curves(paths: list[Path], labels: list[str]) -> list[tuple[str, list[float], dict[str, Any]]]:
    out: list[tuple[str, list[float], dict[str, Any]]] = []
    n = 0
    for path in paths:
        try:
            reports = json.loads(path.read_text())
            if isinstance(reports, dict):
                reports = [reports]
            for rep in reports:
                res = rep["result"]
                lat = sorted(float(v) for v in res["latencies_ms"])
                if not lat:
                    continue
                label = labels[n] if n < len(labels) else f"{rep['mode']} ({path.stem})"
                n += 1
                label += (
                    f": {res['senders']} senders, {res['acked']} acked, {res['msgs_per_s']} msg/s"
                )
                out.append((label, [nearest_rank(lat, q) for q in PERCENTILES], rep))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"plot_load: {path}: not a lab_load --json report ({exc})") from exc
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.plot_load",
        description="Plot ack-latency percentiles of bench/lab_load.py --json reports (PNG).",
        epilog="exit codes: 0 ok, 64 usage, 65 bad input, 69 matplotlib missing",
    )
    p.add_argument("reports", nargs="+", type=Path, help="lab_load --json files")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--label", action="append", default=[], help="label per run, in order")
    p.add_argument("--title", default="ejabberd cluster via lb: XEP-0198 ack latency")
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 64
    try:
        data = curves(args.reports, args.label)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 65
    if not data:
        print("plot_load: no latencies in the reports (use lab_load --json)", file=sys.stderr)
        return 65
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot_load: needs matplotlib (pip install matplotlib)", file=sys.stderr)
        return 69
    fig, ax = plt.subplots(figsize=(8, 4.5))
    xs = list(range(len(PERCENTILES)))
    for label, values, _rep in data:
        ax.plot(xs, [v / 1000.0 for v in values], marker="o", markersize=3, label=label)
    ax.set_xticks(xs)
    ax.set_xticklabels([f"p{q:g}" for q in PERCENTILES], rotation=45)
    ax.set_ylabel("ack latency (s)")
    ax.set_xlabel("percentile of messages")
    ax.set_title(args.title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
