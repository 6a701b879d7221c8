"""``alchemiser patterns`` as an operator runs it, on a planted history in the real Redis."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import redis

from resilience.patterns.history import ErrorHistory
from resilience.storage.clock import SystemClock
from resilience.storage.keys import KeySpace
from tests.resilience.patterns.synthetic_history import DAY_S, PLANTED, START_S, history
from tests.worker.cli_process import cli_environment, run_cli


def test_patterns_json_names_the_planted_patterns_and_predicts_each_type(
    redis_url: str, client: redis.Redis, keys: KeySpace
) -> None:
    """Four weeks of planted history, ending now: `patterns --json` is one JSON document with
    the four planted patterns and a prediction per error type, the likeliest first."""
    shift = time.time() - (START_S + 28 * DAY_S)
    store = ErrorHistory(client, keys, SystemClock(), max_events=100_000)
    events = [replace(e, at_s=e.at_s + shift) for e in history()]
    for start in range(0, len(events), 2_000):
        store.append(*events[start : start + 2_000])
    env = cli_environment(ALCHEMISER_REDIS_URL=redis_url, ALCHEMISER_NAMESPACE=keys.namespace)
    result = run_cli("patterns", "--json", "--window-minutes", "30", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["events"] == len(events)
    assert 27.9 < report["history_days"] <= 28.0
    found = {(p["kind"], tuple(p["error_types"])) for p in report["patterns"]}
    assert found == {(p.kind, p.error_types) for p in PLANTED}
    predictions = report["predictions"]
    assert {p["error_type"] for p in predictions} == {e.error_type for e in events}
    assert all(p["window_minutes"] == 30 and p["basis"] == "hour_of_week" for p in predictions)
    chances = [p["probability"] for p in predictions]
    assert chances == sorted(chances, reverse=True) and all(0 <= c <= 1 for c in chances)

    human = run_cli("patterns", env=env)
    assert human.returncode == 0, human.stderr
    assert "WebSocketError → DataProviderError" in human.stdout
    assert "Next 60 minutes" in human.stdout


def test_patterns_of_an_empty_history_say_so(redis_url: str, keys: KeySpace) -> None:
    env = cli_environment(ALCHEMISER_REDIS_URL=redis_url, ALCHEMISER_NAMESPACE=keys.namespace)
    result = run_cli("patterns", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "generated_at": json.loads(result.stdout)["generated_at"],
        "events": 0,
        "history_days": 0.0,
        "patterns": [],
        "predictions": [],
    }
    assert "nothing in the history stands out" in run_cli("patterns", env=env).stdout
    bad = run_cli("patterns", "--window-minutes", "0", env=env)
    assert bad.returncode == 2 and bad.stdout == ""
