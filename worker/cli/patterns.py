"""``alchemiser patterns``: the patterns in the fleet's error history and the chance of each
error type in the next minutes."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from resilience.patterns.analysis import detect_patterns
from resilience.patterns.history import ErrorHistory
from resilience.patterns.prediction import predict_error_probability
from resilience.storage.clock import SystemClock
from worker.cli.context import JsonOption, print_json, print_table, say, services

__all__ = ["patterns"]

DAY_S = 86_400


def patterns(
    ctx: typer.Context,
    as_json: JsonOption = False,
    window_minutes: Annotated[
        float,
        typer.Option("--window-minutes", min=1, max=1440, help="Prediction window."),
    ] = 60,
    days: Annotated[
        float, typer.Option("--days", min=1, max=365, help="History analysed, up to now.")
    ] = 28,
) -> None:
    """Error patterns (templates, time-of-day and day-of-week clusters, sequences, correlated
    types) and the probability of each error type within the next --window-minutes."""
    with services(ctx) as svc:
        history = ErrorHistory(svc.redis, svc.keys, SystemClock())
        now_s = time.time()
        events = history.events(since_s=now_s - days * DAY_S)
    found = detect_patterns(events)
    types = Counter(e.error_type for e in events)
    predictions = [
        predict_error_probability(events, error_type, window_minutes, now_s=now_s)
        for error_type in sorted(types)
    ]
    predictions.sort(key=lambda p: -p.probability)
    report: dict[str, Any] = {
        "generated_at": datetime.fromtimestamp(now_s, UTC).isoformat(timespec="seconds"),
        "events": len(events),
        "history_days": round((now_s - events[0].at_s) / DAY_S, 3) if events else 0.0,
        "patterns": [p.to_dict() for p in found],
        "predictions": [p.to_dict() for p in predictions],
    }
    if as_json:
        print_json(report)
        return
    say(
        f"{len(events)} errors over {report['history_days']:.1f} days"
        f" (of the last {days:g} days analysed)."
    )
    print_table(
        "Patterns",
        ["kind", "error types", "count", "score", "description"],
        (
            [p.kind, " → ".join(p.error_types), p.count, f"{p.score:.2f}", p.description]
            for p in found
        ),
        empty="no patterns: nothing in the history stands out from chance",
    )
    print_table(
        f"Next {window_minutes:g} minutes",
        ["error type", "probability", "expected", "basis"],
        (
            [p.error_type, f"{p.probability:.1%}", f"{p.expected_count:.2f}", p.basis]
            for p in predictions
        ),
        empty="no errors recorded: nothing to predict",
    )
