"""A runbook for one error type, from what the fleet recorded: its history (causes, patterns),
how its failures ended (what worked here), its dead letters, and the escalation policy."""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from resilience.errors import AlchemiserError, ErrorSeverity
from resilience.notify.escalation_policy import EscalationPolicy, EscalationRule
from resilience.notify.model import Example, Notification, group_key
from resilience.patterns.analysis import Pattern
from resilience.patterns.history import ErrorEvent
from resilience.runbooks.guidance import Guidance, guidance_for

__all__ = ["Resolution", "Runbook", "RunbookInputs", "build_runbook"]

TOP_CAUSES = 5


@dataclass(frozen=True, slots=True)
class Resolution:
    """One way failures of the type ended here, and how often."""

    how: str
    count: int
    description: str


@dataclass(frozen=True, slots=True)
class RunbookInputs:
    """What the fleet recorded, read once by the caller."""

    events: Sequence[ErrorEvent]  # the error history (every type: patterns relate types)
    patterns: Sequence[Pattern]
    resolutions: Mapping[str, int]  # ResolutionLog.counts(error_type)
    dead_letters: Mapping[str, int]  # status -> count of this type's entries in the store
    discarded: int  # this type's dead letters discarded (audit trail)
    policy: EscalationPolicy | None
    advice: Mapping[str, str] = field(default_factory=dict)  # class name -> operator advice
    guidance: Mapping[type[AlchemiserError], Guidance] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Runbook:
    """The runbook of one error type, as data; :meth:`to_markdown` for people."""

    error_type: str
    generated_at: str
    last_seen: str | None
    occurrences: int
    description: str
    policy: Mapping[str, Any]
    causes: Sequence[Mapping[str, Any]]
    patterns: Sequence[str]
    diagnose: Sequence[str]
    resolutions: Sequence[Resolution]
    waiting: int  # dead letters still waiting for an operator
    prevent: Sequence[str]
    told: Sequence[Mapping[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``runbook --json``), the Markdown included."""
        return {
            "error_type": self.error_type,
            "generated_at": self.generated_at,
            "last_seen": self.last_seen,
            "occurrences": self.occurrences,
            "description": self.description,
            "policy": dict(self.policy),
            "causes": [dict(c) for c in self.causes],
            "patterns": list(self.patterns),
            "diagnose": list(self.diagnose),
            "resolutions": [
                {"how": r.how, "count": r.count, "description": r.description}
                for r in self.resolutions
            ],
            "dead_letters_waiting": self.waiting,
            "prevent": list(self.prevent),
            "told": [dict(t) for t in self.told],
            "markdown": self.to_markdown(),
        }

    def to_markdown(self) -> str:
        """The runbook as Markdown."""
        p = self.policy
        lines = [
            f"# Runbook: {self.error_type}",
            "",
            f"_Generated {self.generated_at} from {self.occurrences} recorded occurrences"
            f" (last seen {self.last_seen or 'never'})._",
            "",
            "## What it is",
            "",
            self.description,
            "",
            f"Severity {p['severity']}; "
            + (
                f"retried up to {p['max_attempts']} attempts"
                if p["retryable"]
                else ("deferred, not retried" if p["defer"] else "never retried")
            )
            + ("; escalated when it fails for good." if p["escalate"] else "; not escalated."),
            "",
            "## Common causes here",
            "",
        ]
        if self.causes:
            lines += [
                f"- {c['count']} times `{c['template']}` ({_counts(c['components'])};"
                f" {_counts(c['operations'])})"
                for c in self.causes
            ]
        else:
            lines.append("- None recorded yet.")
        lines += [f"- Pattern: {description}" for description in self.patterns]
        lines += ["", "## Diagnose", ""]
        lines += [f"{i}. {step}" for i, step in enumerate(self.diagnose, start=1)]
        lines += ["", "## Resolve: what worked here, most often first", ""]
        if self.resolutions:
            lines += [
                f"{i}. {r.description}: **{r.count}**"
                for i, r in enumerate(self.resolutions, start=1)
            ]
        else:
            lines.append("Nothing has resolved it here yet.")
        if self.waiting:
            lines += [
                "",
                f"{self.waiting} dead letters of this type wait for an operator:"
                f" `alchemiser dlq list --error {self.error_type}`.",
            ]
        lines += ["", "## Prevent", ""]
        lines += [f"- {step}" for step in self.prevent]
        lines += ["", "## Who is told", ""]
        lines += [
            f"- Rule `{t['rule']}`: "
            + "; then ".join(
                f"{', '.join(level['channels'])} after {level['after_s']:g} s"
                for level in t["levels"]
            )
            for t in self.told
        ] or ["- Nobody: no escalation policy is configured."]
        return "\n".join(lines) + "\n"


def build_runbook(
    error_class: type[AlchemiserError], inputs: RunbookInputs, *, now_s: float
) -> Runbook:
    """The runbook of ``error_class`` from ``inputs``."""
    name = error_class.__name__
    own = [e for e in inputs.events if e.error_type == name]
    policy = error_class.policy
    guide = guidance_for(error_class, inputs.guidance)
    advice = next(
        (inputs.advice[c.__name__] for c in error_class.__mro__ if c.__name__ in inputs.advice),
        None,
    )
    statuses = inputs.dead_letters
    return Runbook(
        error_type=name,
        generated_at=_iso(now_s),
        last_seen=_iso(max(e.at_s for e in own)) if own else None,
        occurrences=len(own),
        description=inspect.cleandoc(error_class.__doc__ or name),
        policy={
            "severity": policy.severity.value,
            "retryable": policy.retryable,
            "defer": policy.defer,
            "max_attempts": policy.max_attempts,
            "escalate": policy.escalate,
            "counts_against_breaker": policy.counts_against_breaker,
        },
        causes=_causes(own),
        patterns=[p.description for p in inputs.patterns if name in p.error_types],
        diagnose=[*([advice] if advice else []), *guide.diagnose],
        resolutions=_resolutions(inputs.resolutions, statuses, inputs.discarded),
        waiting=statuses.get("dead", 0),
        prevent=list(guide.prevent),
        told=_told(inputs.policy, error_class),
    )


def _causes(events: Sequence[ErrorEvent]) -> list[dict[str, Any]]:
    by_template: dict[str, list[ErrorEvent]] = {}
    for event in events:
        by_template.setdefault(event.template, []).append(event)
    ranked = sorted(by_template.items(), key=lambda item: -len(item[1]))[:TOP_CAUSES]
    return [
        {
            "template": template,
            "count": len(alike),
            "components": dict(Counter(e.component for e in alike).most_common(3)),
            "operations": dict(Counter(e.operation for e in alike).most_common(3)),
        }
        for template, alike in ranked
    ]


def _describe(how: str) -> str:
    kind, _, detail = how.partition(":")
    if kind == "recovered":
        return f"Recovered automatically by the `{detail}` strategy"
    if kind == "succeeded_at":
        return f"Retried; succeeded at attempt {detail}"
    if kind == "settled_elsewhere":
        return "Found already done before it was dead-lettered (a lost reply)"
    if kind == "replayed":
        return "Replayed from the dead-letter store (`alchemiser dlq replay ID`)"
    if kind == "discarded":
        return "Discarded by an operator (`alchemiser dlq discard ID`)"
    return how


def _resolutions(
    counts: Mapping[str, int], statuses: Mapping[str, int], discarded: int
) -> list[Resolution]:
    ended = {how: n for how, n in counts.items() if how != "dead_lettered" and n > 0}
    if statuses.get("replayed"):
        ended["replayed"] = statuses["replayed"]
    if discarded:
        ended["discarded"] = discarded
    ranked = sorted(ended.items(), key=lambda item: (-item[1], item[0]))
    return [Resolution(how, n, _describe(how)) for how, n in ranked]


def _told(
    policy: EscalationPolicy | None, error_class: type[AlchemiserError]
) -> list[dict[str, Any]]:
    if policy is None or not error_class.policy.escalate:
        return []
    severity = error_class.policy.severity
    rule = policy.route(_probe(error_class.__name__, severity))
    return [_rule(rule)]


def _rule(rule: EscalationRule) -> dict[str, Any]:
    return {
        "rule": rule.name,
        "levels": [
            {"after_s": level.after_s, "channels": list(level.channels)} for level in rule.levels
        ],
    }


def _probe(error_type: str, severity: ErrorSeverity) -> Notification:
    """A notification of this type, to ask the policy which rule decides for it."""
    return Notification(
        key=group_key(error_type, "runbook"),
        severity=severity,
        error_type=error_type,
        component="runbook",
        count=1,
        examples=(Example("runbook", "", "", "", _iso(0.0)),),
    )


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name or '?'} {n}" for name, n in counts.items())


def _iso(at_s: float) -> str:
    return datetime.fromtimestamp(at_s, UTC).isoformat(timespec="seconds")
