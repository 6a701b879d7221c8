"""False positives of the dynamic error-rate threshold on a synthetic labelled series.

``python -m bench.thresholds_fp`` draws, from a seed, ``--days`` of per-minute error counts:
Poisson noise around a daily profile in UTC (quiet nights, a pre-market rise, US market hours
13:30-20:00 with peaks in the first and last half hour), plus ``--incidents`` injected
incidents, each labelled with its start, end and magnitude (extra errors per minute). It then
runs :class:`resilience.observability.thresholds.AlertEvaluator` with the default thresholds once
per minute, as production would, over a source that answers like ``ErrorMetrics`` at that minute (no
critical errors, no dead letters, no breaker trips: only the error rate can fire).

Measures (every evaluation after ``--warmup-days``, which are history only):

- An evaluation at minute ``t`` judges the window (t - 5 min, t]; it is *in an incident* when
  that window overlaps one, else *quiet*.
- **False-positive rate**: quiet evaluations at which the threshold was breached / all quiet
  evaluations (the textbook FP / (FP + TN), per minute). Target < 5 % (the plan's).
- **False alerts**: alerts fired (a breach that starts an incident after the cool-down) at quiet
  evaluations / all alerts fired.
- **Detection**: incidents with a breach at one of their evaluations; delay from the incident's
  start to that first breach, in minutes.

Prints a Markdown table; exits 0 when it measured (whatever the figures), 1 on an error.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import math
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from resilience.observability.thresholds import AlertEvaluator, AlertThresholds, MemoryCooldown

__all__ = [
    "Incident",
    "LabelledSeries",
    "Outcome",
    "SeriesSource",
    "main",
    "measure",
    "rate_per_min",
    "synthesize",
]

TARGET_FP = 0.05
# A Monday, 00:00 UTC: days start at midnight so 5-minute buckets align with hours.
START_S = datetime(2026, 1, 5, tzinfo=UTC).timestamp()
_MINUTE_S = 60
_DAY_MIN = 1440
# Incidents are at least this far apart, so each is judged on its own.
_INCIDENT_GAP_MIN = 180
_DURATION_MIN = (10, 60)
_EXTRA_PER_MIN = (3.0, 10.0)


def rate_per_min(minute_of_day: int) -> float:
    """The normal error rate (errors/min) at a minute of the UTC day."""
    hour = minute_of_day / 60
    if 13.5 <= hour < 14 or 19.5 <= hour < 20:  # market open and close
        return 4.0
    if 14 <= hour < 19.5:
        return 2.0
    if 12 <= hour < 13.5 or 20 <= hour < 22:  # pre-market and after hours
        return 0.6
    return 0.2


@dataclass(frozen=True, slots=True)
class Incident:
    """An injected incident: minutes [start_min, end_min) from the series' start."""

    start_min: int
    end_min: int
    extra_per_min: float


@dataclass(frozen=True, slots=True)
class LabelledSeries:
    """Per-minute error counts from ``START_S`` and the incidents injected into them."""

    counts: tuple[int, ...]
    incidents: tuple[Incident, ...]


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's product method: exact, and fast for the small means drawn here.
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _incidents(rng: random.Random, minutes: int, first_min: int, count: int) -> list[Incident]:
    placed: list[Incident] = []
    while len(placed) < count:
        duration = rng.randint(*_DURATION_MIN)
        start = rng.randrange(first_min, minutes - duration - _INCIDENT_GAP_MIN)
        if all(abs(start - other.start_min) >= _INCIDENT_GAP_MIN for other in placed):
            placed.append(Incident(start, start + duration, rng.uniform(*_EXTRA_PER_MIN)))
    return sorted(placed, key=lambda incident: incident.start_min)


def synthesize(days: int, incidents: int, seed: int, warmup_days: int) -> LabelledSeries:
    """``days`` of per-minute counts with ``incidents`` injected after ``warmup_days``."""
    rng = random.Random(seed)
    minutes = days * _DAY_MIN
    injected = _incidents(rng, minutes, warmup_days * _DAY_MIN, incidents)
    extra = [0.0] * minutes
    for incident in injected:
        for minute in range(incident.start_min, incident.end_min):
            extra[minute] = incident.extra_per_min
    counts = tuple(
        _poisson(rng, rate_per_min(minute % _DAY_MIN) + extra[minute]) for minute in range(minutes)
    )
    return LabelledSeries(counts, tuple(injected))


class SeriesSource:
    """Answers as ``ErrorMetrics`` would at ``now_s`` (a minute boundary), from the series."""

    def __init__(self, series: LabelledSeries) -> None:
        self.now_s = START_S
        self._prefix = [0, *itertools.accumulate(series.counts)]
        # Full buckets per step, built once: the evaluator asks for days of them every minute.
        self._buckets: dict[float, list[tuple[float, int]]] = {}

    def _minutes_until(self, at_s: float) -> int:
        return min(max(int((at_s - START_S) // _MINUTE_S), 0), len(self._prefix) - 1)

    def _errors(self, from_s: float, to_s: float) -> int:
        return self._prefix[self._minutes_until(to_s)] - self._prefix[self._minutes_until(from_s)]

    def error_rate_per_min(self, window_s: float, key: str | None = None) -> float:
        """Errors per minute over (now - window_s, now]."""
        return self._errors(self.now_s - window_s, self.now_s) * _MINUTE_S / window_s

    def critical_count(self, window_s: float) -> int:
        """No critical errors in the synthetic series."""
        return 0

    def series(
        self, window_s: float, step_s: float = 60, key: str | None = None
    ) -> list[tuple[float, int]]:
        """Buckets of ``step_s`` from ``now - window_s``, the current partial one last."""
        buckets = self._buckets.get(step_s)
        if buckets is None:
            starts = (START_S + i * step_s for i in itertools.count())
            buckets = [
                (start, self._errors(start, start + step_s))
                for start in itertools.takewhile(lambda s: s + step_s <= self._end_s(), starts)
            ]
            self._buckets[step_s] = buckets
        first = bisect.bisect_left(buckets, (self.now_s - window_s, -1))
        full = bisect.bisect_right(buckets, (self.now_s - step_s, math.inf))
        current_start = START_S + full * step_s
        return [*buckets[first:full], (current_start, self._errors(current_start, self.now_s))]

    def _end_s(self) -> float:
        return START_S + (len(self._prefix) - 1) * _MINUTE_S

    def recovery(self) -> _Recovery:
        """No failures recovered or dead-lettered."""
        return _Recovery()

    def breaker_trips(self, window_s: float) -> int:
        """No breaker trips."""
        return 0


@dataclass(frozen=True, slots=True)
class _Recovery:
    recovered: int = 0
    dead: int = 0


class _RecordingCooldown(MemoryCooldown):
    """Also keeps every breach the evaluator notes (it notes each, fired or not)."""

    def __init__(self) -> None:
        super().__init__()
        self.breaches_s: list[float] = []

    def note_breach(self, name: str, now_s: float, cooldown_s: float) -> bool:
        self.breaches_s.append(now_s)
        return super().note_breach(name, now_s, cooldown_s)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the evaluation found; rates are fractions."""

    quiet: int
    false_breaches: int
    alerts: int
    false_alerts: int
    incidents: int
    delays_min: tuple[float, ...] = field(default=())  # one per detected incident

    @property
    def fp_rate(self) -> float:
        """Quiet evaluations breached / quiet evaluations."""
        return self.false_breaches / self.quiet

    @property
    def false_alert_share(self) -> float:
        """Alerts fired at quiet evaluations / alerts fired."""
        return self.false_alerts / self.alerts if self.alerts else 0.0

    @property
    def detected(self) -> int:
        """Incidents breached at least once."""
        return len(self.delays_min)


def measure(series: LabelledSeries, thresholds: AlertThresholds, warmup_days: int) -> Outcome:
    """Evaluate once per minute after the warm-up, as production would, and score it."""
    source = SeriesSource(series)
    cooldown = _RecordingCooldown()
    evaluator = AlertEvaluator(thresholds, cooldown)
    window_min = int(thresholds.static.error_rate_window_s // _MINUTE_S)
    # The incident whose window an evaluation at minute t judges, if any.
    owner: dict[int, int] = {}
    for index, incident in enumerate(series.incidents):
        for t in range(incident.start_min + 1, incident.end_min + window_min):
            owner[t] = index
    quiet = false_breaches = alerts = false_alerts = 0
    first_breach: dict[int, int] = {}
    for t in range(warmup_days * _DAY_MIN, len(series.counts) + 1):
        source.now_s = START_S + t * _MINUTE_S
        fired = evaluator.evaluate(source, source.now_s)
        breached = bool(cooldown.breaches_s) and cooldown.breaches_s[-1] == source.now_s
        alerts += len(fired)
        judged = owner.get(t)
        if judged is None:
            quiet += 1
            false_breaches += breached
            false_alerts += len(fired)
        elif breached:
            first_breach.setdefault(judged, t)
    delays = tuple(
        float(first_breach[i] - incident.start_min)
        for i, incident in enumerate(series.incidents)
        if i in first_breach
    )
    return Outcome(quiet, false_breaches, alerts, false_alerts, len(series.incidents), delays)


def render(outcome: Outcome, args: argparse.Namespace, elapsed_s: float) -> str:
    """The Markdown report."""
    delay = f"{statistics.median(outcome.delays_min):g}" if outcome.delays_min else "n/a"
    verdict = "meets" if outcome.fp_rate < TARGET_FP else "MISSES"
    return "\n".join(
        [
            f"{args.days} days of per-minute errors, {args.incidents} incidents, seed"
            f" {args.seed}, warm-up {args.warmup_days} d; evaluated every minute in"
            f" {elapsed_s:.1f} s",
            "",
            "| measure | value |",
            "|---|---:|",
            f"| quiet evaluations | {outcome.quiet} |",
            f"| false-positive rate (quiet minutes breached) | {outcome.fp_rate:.2%} |",
            f"| alerts fired | {outcome.alerts} |",
            f"| false alerts (fired outside incidents) | {outcome.false_alerts}"
            f" ({outcome.false_alert_share:.1%}) |",
            f"| incidents detected | {outcome.detected} / {outcome.incidents} |",
            f"| median detection delay, min | {delay} |",
            f"| max detection delay, min | {max(outcome.delays_min, default=math.nan):g} |",
            "",
            f"False-positive rate {outcome.fp_rate:.2%} {verdict} the target of < {TARGET_FP:.0%}.",
        ]
    )


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--incidents", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--warmup-days", type=int, default=1)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 when it measured, 1 when it could not."""
    args = _parse(argv)
    try:
        started = time.perf_counter()
        series = synthesize(args.days, args.incidents, args.seed, args.warmup_days)
        outcome = measure(series, AlertThresholds(), args.warmup_days)
        elapsed_s = time.perf_counter() - started
    except Exception as failed:
        print(f"error: {type(failed).__name__}: {failed}", file=sys.stderr)
        return 1
    print(render(outcome, args, elapsed_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
