"""Patterns in an error history: recurring message templates, time-of-day and day-of-week
clusters, sequences (A then B within a window) and correlated error types.

Pure functions of a list of :class:`~resilience.patterns.history.ErrorEvent`; the thresholds
are a :class:`PatternConfig`. Each detector compares what it sees with what chance would give
(a uniform spread over the hours, a B at a random moment, independent counts), so a steady
background of errors yields no pattern.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from resilience.patterns.history import ErrorEvent

__all__ = ["Pattern", "PatternConfig", "PatternKind", "detect_patterns"]

PatternKind = Literal["template", "time_of_day", "day_of_week", "sequence", "correlation"]
HOUR_S = 3600
DAY_S = 24 * HOUR_S
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True, slots=True)
class PatternConfig:
    """How strong a regularity must be to count as a pattern."""

    min_events: int = 20  # of an error type before any pattern of it is looked for
    template_min_variants: int = 10  # distinct messages one template must stand for
    cluster_min_ratio: float = 3.0  # an hour (day) with this many times its fair share...
    cluster_min_z: float = 4.0  # ...and this many Poisson standard deviations above it
    sequence_window_s: float = 300.0
    sequence_min_support: int = 10  # A events followed by a B
    sequence_min_confidence: float = 0.5
    sequence_min_lift: float = 3.0
    correlation_bucket_s: float = 300.0
    correlation_min_r: float = 0.6


@dataclass(frozen=True, slots=True)
class Pattern:
    """One detected regularity; ``score`` is its strength in the detector's own unit (a ratio
    to chance, a lift, a correlation)."""

    kind: PatternKind
    error_types: tuple[str, ...]
    description: str
    count: int
    score: float
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``patterns --json``)."""
        data = asdict(self)
        data["error_types"] = list(self.error_types)
        data["details"] = dict(self.details)
        return data


def detect_patterns(
    events: Sequence[ErrorEvent], config: PatternConfig | None = None
) -> list[Pattern]:
    """Every pattern in ``events``, strongest kinds first."""
    config = config or PatternConfig()
    by_type: dict[str, list[ErrorEvent]] = defaultdict(list)
    for event in sorted(events, key=lambda e: e.at_s):
        by_type[event.error_type].append(event)
    frequent = {t: evs for t, evs in by_type.items() if len(evs) >= config.min_events}
    sequences = _sequences(frequent, config)
    ordered = {tuple(sorted(p.error_types)) for p in sequences}
    return [
        *_templates(frequent, config),
        *_clusters(frequent, config),
        *sequences,
        *(p for p in _correlations(frequent, config) if p.error_types not in ordered),
    ]


def _templates(by_type: Mapping[str, list[ErrorEvent]], config: PatternConfig) -> list[Pattern]:
    found = []
    for error_type, events in sorted(by_type.items()):
        counts = Counter(e.template for e in events)
        for template, count in counts.most_common():
            if count < config.min_events:
                break
            variants = len({e.variant for e in events if e.template == template})
            if variants < config.template_min_variants:
                continue
            components = Counter(e.component for e in events if e.template == template)
            found.append(
                Pattern(
                    kind="template",
                    error_types=(error_type,),
                    description=f'{error_type}: {count} times "{template}" ({variants} variants)',
                    count=count,
                    score=count / len(events),
                    details={
                        "template": template,
                        "variants": variants,
                        "components": dict(components.most_common(3)),
                    },
                )
            )
    return found


def _span_s(events: Sequence[ErrorEvent]) -> float:
    return events[-1].at_s - events[0].at_s if events else 0.0


def _clusters(by_type: Mapping[str, list[ErrorEvent]], config: PatternConfig) -> list[Pattern]:
    found: list[Pattern] = []
    for error_type, events in sorted(by_type.items()):
        span_s = _span_s(events)
        if span_s >= 3 * DAY_S:
            hours = Counter(int(e.at_s % DAY_S // HOUR_S) for e in events)
            found += _cluster(
                error_type, "time_of_day", hours, bins=24, total=len(events), config=config
            )
        if span_s >= 14 * DAY_S:
            # 1970-01-01 was a Thursday: day 0 is index 3.
            days = Counter(int((e.at_s // DAY_S + 3) % 7) for e in events)
            found += _cluster(
                error_type, "day_of_week", days, bins=7, total=len(events), config=config
            )
    return found


def _cluster(
    error_type: str,
    kind: PatternKind,
    counts: Counter[int],
    *,
    bins: int,
    total: int,
    config: PatternConfig,
) -> list[Pattern]:
    """Runs of adjacent bins well above a uniform spread, one pattern per run."""
    expected = total / bins

    def hot(b: int) -> bool:
        n = counts.get(b, 0)
        return (
            n >= config.min_events / 2
            and n >= config.cluster_min_ratio * expected
            and n >= expected + config.cluster_min_z * math.sqrt(expected)
        )

    runs: list[list[int]] = []
    for b in range(bins):
        if hot(b):
            if runs and runs[-1][-1] == b - 1:
                runs[-1].append(b)
            else:
                runs.append([b])
    if len(runs) > 1 and runs[0][0] == 0 and runs[-1][-1] == bins - 1:
        runs[0] = runs.pop() + runs[0]  # the run wraps around midnight (Sunday)
    found = []
    for run in runs:
        count = sum(counts[b] for b in run)
        ratio = count / (expected * len(run))
        if kind == "time_of_day":
            where = f"{run[0]:02d}:00-{(run[-1] + 1) % 24:02d}:00 UTC"
            details: dict[str, Any] = {"hours_utc": run}
        else:
            where = _DAYS[run[0]] if len(run) == 1 else f"{_DAYS[run[0]]}-{_DAYS[run[-1]]}"
            details = {"days": [_DAYS[b] for b in run]}
        found.append(
            Pattern(
                kind=kind,
                error_types=(error_type,),
                description=f"{error_type} clusters at {where}: {count} of {total},"
                f" {ratio:.1f}x a uniform spread",
                count=count,
                score=ratio,
                details={**details, "share": round(count / total, 3)},
            )
        )
    return found


def _sequences(by_type: Mapping[str, list[ErrorEvent]], config: PatternConfig) -> list[Pattern]:
    times = {t: [e.at_s for e in evs] for t, evs in by_type.items()}
    span_s = max((_span_s(evs) for evs in by_type.values()), default=0.0)
    if span_s <= config.sequence_window_s:
        return []
    window = config.sequence_window_s
    found = []
    for a, a_times in sorted(times.items()):
        for b, b_times in sorted(times.items()):
            if a == b:
                continue
            hits = _followed(a_times, b_times, window)
            confidence = hits / len(a_times)
            # A B within the window of a moment chosen at random (B as a Poisson process).
            chance = 1.0 - math.exp(-len(b_times) / span_s * window)
            lift = confidence / chance if chance > 0 else math.inf
            reverse = _followed(b_times, a_times, window) / len(b_times)
            if (
                hits >= config.sequence_min_support
                and confidence >= config.sequence_min_confidence
                and lift >= config.sequence_min_lift
                and confidence >= 2 * reverse
            ):
                found.append(
                    Pattern(
                        kind="sequence",
                        error_types=(a, b),
                        description=f"{a} is followed by {b} within {window:g} s"
                        f" ({hits} of {len(a_times)}, confidence {confidence:.2f},"
                        f" lift {lift:.1f})",
                        count=hits,
                        score=lift,
                        details={
                            "window_s": window,
                            "support": hits,
                            "confidence": round(confidence, 3),
                            "lift": round(lift, 2),
                        },
                    )
                )
    return found


def _followed(a_times: Sequence[float], b_times: Sequence[float], window: float) -> int:
    """How many of ``a_times`` have a ``b_times`` entry in (a, a + window] (both sorted)."""
    hits, j = 0, 0
    for t in a_times:
        while j < len(b_times) and b_times[j] <= t:
            j += 1
        if j < len(b_times) and b_times[j] <= t + window:
            hits += 1
    return hits


def _correlations(by_type: Mapping[str, list[ErrorEvent]], config: PatternConfig) -> list[Pattern]:
    if len(by_type) < 2:
        return []
    start = min(evs[0].at_s for evs in by_type.values())
    end = max(evs[-1].at_s for evs in by_type.values())
    bucket = config.correlation_bucket_s
    size = int((end - start) // bucket) + 1
    if size < 10:
        return []
    series: dict[str, list[int]] = {}
    for error_type, events in by_type.items():
        counts = [0] * size
        for event in events:
            counts[int((event.at_s - start) // bucket)] += 1
        series[error_type] = counts
    names = sorted(series)
    found = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            r = _pearson(series[a], series[b])
            if r >= config.correlation_min_r:
                together = sum(min(x, y) for x, y in zip(series[a], series[b], strict=True))
                found.append(
                    Pattern(
                        kind="correlation",
                        error_types=(a, b),
                        description=f"{a} and {b} rise and fall together"
                        f" (r = {r:.2f} over {bucket:g} s buckets)",
                        count=together,
                        score=r,
                        details={"r": round(r, 3), "bucket_s": bucket},
                    )
                )
    return found


def _pearson(x: Sequence[int], y: Sequence[int]) -> float:
    n = len(x)
    mean_x, mean_y = sum(x) / n, sum(y) / n
    cov = sum((a - mean_x) * (b - mean_y) for a, b in zip(x, y, strict=True))
    var_x = sum((a - mean_x) ** 2 for a in x)
    var_y = sum((b - mean_y) ** 2 for b in y)
    if var_x == 0 or var_y == 0:
        return 0.0
    return cov / math.sqrt(var_x * var_y)
