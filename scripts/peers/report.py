#!/usr/bin/env python3
"""Medians over rounds, and the comparison tables of scripts/bench-peers.sh.

Reads the manifest the script writes (one JSON object per job: round, table, backend,
kind, file, ok) and the peers' descriptions, takes per cell the median over rounds of each
backend's figure, prints one table per comparison and writes everything as JSON.

Usage: report.py --manifest M --peers P --settings S --json OUT
"""

import argparse
import json
import statistics
import sys
from collections import defaultdict


def human_bytes(n):
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    if n >= 1 << 10 and n % (1 << 10) == 0:
        return f"{n >> 10} KiB"
    return f"{n} B"


def cell_name(op, nbytes):
    return op if op == "barrier" else f"{op} {human_bytes(nbytes)}"


def load_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def median(values):
    return statistics.median(values) if values else None


def paired_ratio(ours, peers):
    """The median over rounds of ours over the best peer of the same round.

    The jobs of one cell run back to back in each round, so this compares figures taken
    seconds apart; the median of each contender over rounds (the `ratio`) may pair figures
    of different rounds when the machine changed speed in between.
    """
    if not ours:
        return None
    ratios = []
    for rnd, value in ours["by_round"].items():
        theirs = [c["by_round"][rnd] for c in peers if c and rnd in c["by_round"]]
        best = min(theirs) if theirs else None
        if best:
            ratios.append(value / best)
    return median(ratios)


def by_round(values):
    """A contender's figures of one cell in round order, `None` for a round it missed, so
    that a cell that swings can be looked at afterwards: which rounds were slow, and for
    whom."""
    last = max(values, default=0)
    return [values.get(r) for r in range(1, last + 1)]


def fmt(value, width=11):
    if value is None:
        return f"{'-':>{width}}"
    if value >= 1000:
        return f"{value:>{width}.0f}"
    if value >= 10:
        return f"{value:>{width}.1f}"
    return f"{value:>{width}.2f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--peers", required=True)
    ap.add_argument("--settings", required=True)
    ap.add_argument("--json", required=True)
    args = ap.parse_args()

    settings = json.load(open(args.settings, encoding="utf-8"))
    peers = load_jsonl(args.peers)
    jobs = load_jsonl(args.manifest)

    # (table, backend, op, bytes) -> {"avg": [..], "min": [..], "max": [..], "iters": n}
    cells = defaultdict(lambda: {"avg": [], "min": [], "max": [], "iters": None, "by_round": {}})
    sddp_by_round = defaultdict(dict)
    # (table, backend) -> [ms per iteration, one per round]
    sddp = defaultdict(list)
    failures = []
    stopped = defaultdict(int)
    for job in jobs:
        if job.get("stopped_after_result"):
            stopped[f"{job['backend']}:{job['table']}"] += 1
        if not job["ok"]:
            failures.append(job)
            continue
        data = json.load(open(job["file"], encoding="utf-8"))
        if job["kind"] == "sweep":
            for row in data["results"]:
                c = cells[(job["table"], job["backend"], row["op"], row["bytes"])]
                c["avg"].append(row["avg_us"])
                c["by_round"][job["round"]] = row["avg_us"]
                c["min"].append(row["min_us"])
                c["max"].append(row["max_us"])
                c["iters"] = row["iters"]
        else:
            for _, ranks in data:
                values = [r["avg_us"] for r in ranks]
                sddp[(job["table"], job["backend"])].append(sum(values) / len(values) / 1e3)
                sddp_by_round[(job["table"], job["backend"])][job["round"]] = sum(values) / len(values) / 1e3

    ranks = settings["ranks"]
    out = {
        "ranks": ranks,
        "cores": settings["cores"],
        "rounds": settings["rounds"],
        "iters": settings["iters"],
        "quick": settings["quick"],
        "load_average_at_start": settings["load_average"],
        "sddp_config": settings["sddp"],
        "peers": peers,
        "tables": [],
        "stopped_after_result": dict(stopped),
        "failed_jobs": [
            {k: job[k] for k in ("round", "table", "backend", "what")} for job in failures
        ],
        "results": [],
    }
    text = []
    for table in settings["tables"]:
        ours = table["ours"]
        labels = [p["label"] for p in table["peers"]]
        mode_word = "shared-memory" if table["name"] == "shm" else "TCP"
        yielding = " (yielding modes)" if settings["cores"] < ranks else ""
        text.append(
            f"\n== {ours} against the MPIs in {mode_word} mode{yielding}: {ranks} ranks on "
            f"{settings['cores']} cores, median of {settings['rounds']} rounds, "
            "latency in us (average over ranks)"
        )
        for left in table["left_out"]:
            text.append(f"   left out: {left['peer']}: {left['reason']}")
        header = f"{'cell':<20}{ours:>11}" + "".join(f"{p:>11}" for p in labels)
        header += f"  {'best peer':<10}{ours + '/best':>10}{'paired':>8}"
        text.append(header)
        rows = []
        for op, nbytes in [(c["op"], c["bytes"]) for c in settings["cells"]]:
            ours_c = cells.get((table["name"], ours, op, nbytes))
            ours_us = median(ours_c["avg"]) if ours_c else None
            peer_us = {}
            for p in labels:
                c = cells.get((table["name"], p, op, nbytes))
                peer_us[p] = median(c["avg"]) if c else None
            present = {p: v for p, v in peer_us.items() if v is not None}
            best = min(present, key=present.get) if present else None
            ratio = ours_us / present[best] if best and ours_us and present[best] > 0 else None
            paired = paired_ratio(
                ours_c, [cells.get((table["name"], p, op, nbytes)) for p in labels]
            )
            rows.append(
                {
                    "op": op,
                    "bytes": nbytes,
                    "ours_us": ours_us,
                    "peers_us": peer_us,
                    "best_peer": best,
                    "best_us": present.get(best) if best else None,
                    "ratio": ratio,
                    "paired_ratio": paired,
                    "rounds": {
                        b: len(c["avg"])
                        for b in [ours] + labels
                        if (c := cells.get((table["name"], b, op, nbytes)))
                    },
                    "by_round_us": {
                        b: by_round(c["by_round"])
                        for b in [ours] + labels
                        if (c := cells.get((table["name"], b, op, nbytes)))
                    },
                }
            )
            line = f"{cell_name(op, nbytes):<20}{fmt(ours_us)}"
            line += "".join(fmt(peer_us[p]) for p in labels)
            line += f"  {best or '-':<10}" + (f"{ratio:>10.2f}" if ratio is not None else f"{'-':>10}")
            line += f"{paired:>8.2f}" if paired is not None else f"{'-':>8}"
            text.append(line)
        entry = {
            "name": table["name"],
            "ours": ours,
            "peers": labels,
            "left_out": table["left_out"],
            "cells": rows,
        }
        if settings["workload"]:
            ours_ms = median(sddp.get((table["name"], ours), []))
            peer_ms = {p: median(sddp.get((table["name"], p), [])) for p in labels}
            present = {p: v for p, v in peer_ms.items() if v is not None}
            best = min(present, key=present.get) if present else None
            ratio = ours_ms / present[best] if best and ours_ms and present[best] > 0 else None
            entry["sddp"] = {
                "ours_ms": ours_ms,
                "peers_ms": peer_ms,
                "best_peer": best,
                "ratio": ratio,
                "by_round_ms": {
                    b: by_round(sddp_by_round[(table["name"], b)])
                    for b in [ours] + labels
                    if (table["name"], b) in sddp_by_round
                },
            }
            line = f"{'sddp ms/iteration':<20}{fmt(ours_ms)}"
            line += "".join(fmt(peer_ms[p]) for p in labels)
            line += f"  {best or '-':<10}" + (f"{ratio:>10.2f}" if ratio is not None else f"{'-':>10}")
            text.append(line)
        out["tables"].append(entry)

    # Every median as a row of `cobre-comm bench --json`, backends named table-qualified.
    order = {c["op"]: i for i, c in reversed(list(enumerate(settings["cells"])))}
    for (table, backend, op, nbytes), c in sorted(
        cells.items(), key=lambda kv: (kv[0][0], kv[0][1] != kv[0][0], kv[0][1], order[kv[0][2]], kv[0][3])
    ):
        name = backend if backend == table else f"{backend}:{table}"
        out["results"].append(
            {
                "backend": name,
                "op": op,
                "bytes": nbytes,
                "avg_us": median(c["avg"]),
                "min_us": median(c["min"]),
                "max_us": median(c["max"]),
                "iters": c["iters"],
            }
        )

    for name, count in sorted(stopped.items()):
        text.append(
            f"\nnote: {count} {name} job(s) hung after printing their result (in MPI_Finalize) "
            "and were stopped 5 s later; their results stand"
        )
    if failures:
        text.append(f"\n{len(failures)} job(s) failed or timed out (see failed_jobs in the JSON):")
        for job in failures:
            text.append(f"   round {job['round']} {job['table']} {job['backend']} {job['what']}")
    print("\n".join(text))
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
