"""The goals every benchmark checks, gathered into one Markdown table.

Each bench calls :func:`record` for the goals it measures; with ``DP_BENCH_GOALS`` set to a file
(``make bench`` sets it), the rows are appended there as JSON lines, and

    .venv/bin/python bench/goals.py FILE [--markdown OUT]

prints them as one table (goal, target, measured, met or not, the command that measured it), the
table the README quotes. Without ``DP_BENCH_GOALS`` a bench only prints its own report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

ENV = "DP_BENCH_GOALS"


def record(bench: str, goal: str, target: str, measured: str, met: bool | None,
           note: str = "") -> None:
    """One goal's outcome from ``bench`` (e.g. "bench/soak.py"); ``met`` None = no target, a
    figure for the record. ``note`` says why a goal is missed, or what the figure depends on."""
    path = os.environ.get(ENV)
    if not path:
        return
    row = {"bench": bench, "goal": goal, "target": target, "measured": measured,
           "met": None if met is None else bool(met),  # a numpy bool is not JSON
           "note": note, "args": " ".join(sys.argv[1:])}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def machine() -> str:
    """CPU model, cores and the instruction-set extensions that decide CPU inference speed."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and ":" in line:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    ext = [f for f in ("avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8") if f in flags]
    return f"{model}, {os.cpu_count()} cores" + (f" ({', '.join(ext)})" if ext else "")


def markdown(rows: list[dict]) -> str:
    verdict = {True: "met", False: "**not met**", None: "—"}
    lines = [f"Measured on {machine()}, Python {platform.python_version()}.", "",
             "| goal | target | measured | | command | note |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        command = f"`{r['bench']}{(' ' + r['args']) if r['args'] else ''}`"
        cells = [r["goal"], r["target"], r["measured"], verdict[r["met"]], command, r["note"]]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, help="the JSON-lines file the benches appended to")
    ap.add_argument("--markdown", type=Path, help="also write the table here")
    args = ap.parse_args()
    if not args.results.exists():
        print(f"no goals recorded: {args.results} does not exist", file=sys.stderr)
        return 2
    rows = [json.loads(line) for line in args.results.read_text().splitlines() if line.strip()]
    # a bench run again (`make soak` twice) replaces its rows rather than adding to them
    rows = list({(r["bench"], r["goal"]): r for r in rows}.values())
    table = markdown(rows)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
