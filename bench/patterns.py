"""Pattern detection and prediction on planted synthetic histories.

``python -m bench.patterns`` draws four-week histories (six error types of steady background,
and four planted patterns: one template across 1,000 order ids, a market-open time-of-day
cluster, an A-then-B sequence, a correlated pair; ``tests/resilience/patterns/
synthetic_history.py``) for ``--seeds`` seeds and reports, per seed, the patterns found, how
many of the planted ones (recall), how many others (spurious) and the analysis time. Then, for
nine more seeds, the prediction's calibration: trained on the first three weeks, the expected
count of the planted type over the fourth week and over its five market opens against what
happened. Prints Markdown, or ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from resilience.patterns.analysis import detect_patterns
from resilience.patterns.prediction import predict_error_probability
from tests.resilience.patterns.synthetic_history import DAY_S, PLANTED, START_S, history

CALIBRATED_TYPE = "MarketDataError"


def detection(seed: int) -> dict[str, Any]:
    events = history(seed=seed)
    started = time.perf_counter()
    found = detect_patterns(events)
    elapsed_s = time.perf_counter() - started
    planted = {(p.kind, frozenset(p.error_types)) for p in PLANTED}
    seen = {(f.kind, frozenset(f.error_types)) for f in found}
    return {
        "seed": seed,
        "events": len(events),
        "found": len(found),
        "recalled": len(planted & seen),
        "planted": len(planted),
        "spurious": [
            f.description for f in found if (f.kind, frozenset(f.error_types)) not in planted
        ],
        "analysis_s": round(elapsed_s, 3),
    }


def calibration(seed: int) -> dict[str, Any]:
    events = history(days=28, seed=seed)
    split_s = START_S + 21 * DAY_S
    held_out = [e.at_s for e in events if e.at_s >= split_s and e.error_type == CALIBRATED_TYPE]

    def expected(hour: int) -> float:
        return predict_error_probability(
            events, CALIBRATED_TYPE, 60, now_s=split_s + hour * 3600, history_end_s=split_s
        ).expected_count

    opens = [day * 24 + 14 for day in range(5)]
    observed_opens = sum(
        1 for t in held_out for h in opens if split_s + h * 3600 <= t < split_s + (h + 1) * 3600
    )
    return {
        "seed": seed,
        "week_expected": round(sum(expected(h) for h in range(7 * 24)), 1),
        "week_observed": len(held_out),
        "opens_expected": round(sum(expected(h) for h in opens), 1),
        "opens_observed": observed_opens,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = {
        "detection": [detection(seed) for seed in range(11, 11 + args.seeds)],
        "calibration": [calibration(seed) for seed in range(21, 30)],
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print("| seed | events | found | planted found | spurious | analysis s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for row in report["detection"]:
        print(
            f"| {row['seed']} | {row['events']:,} | {row['found']} |"
            f" {row['recalled']} of {row['planted']} | {len(row['spurious'])} |"
            f" {row['analysis_s']} |"
        )
    print()
    print("| seed | week: expected | observed | opens: expected | observed |")
    print("|---:|---:|---:|---:|---:|")
    for row in report["calibration"]:
        print(
            f"| {row['seed']} | {row['week_expected']} | {row['week_observed']} |"
            f" {row['opens_expected']} | {row['opens_observed']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
