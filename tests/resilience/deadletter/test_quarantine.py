"""The dead letter of a refused message: raw body kept, scrubbed and bounded; never a crash."""

from __future__ import annotations

import json

from resilience.deadletter.quarantine import RAW_BODY_LIMIT, quarantined
from resilience.scrub import Scrubber
from resilience.task import HEADER, DeliveryState


def _entry(body: object, headers: dict[str, object] | None = None) -> dict[str, object]:
    entry = quarantined(
        body=body,
        headers=headers,
        delivery_info={"routing_key": "trading"},
        reason="invalid task message: bad eta",
        scrubber=Scrubber(["s3cr3t-value"]),
        hostname="w1",
        now_s=1_700_000_000.0,
    )
    stored: dict[str, object] = json.loads(entry.to_json())
    return stored


def test_a_ten_megabyte_body_is_kept_bounded() -> None:
    """A 10 MB body is cut to the limit, and its full length is recorded."""
    stored = _entry(b"x" * 10_000_000, {"id": "t-1", "task": "tasks.submit_order"})
    extra = stored["extra"]
    assert isinstance(extra, dict)
    assert extra["raw_body_length"] == 10_000_000
    assert len(extra["raw_body"]) < RAW_BODY_LIMIT + 100
    assert stored["id"] == "t-1"
    assert stored["queue"] == "trading"
    assert stored["error_type"] == "MalformedMessageError"


def test_secrets_and_odd_headers_are_handled() -> None:
    """Known secret values and secret-named fields are filtered; bytes and objects in the
    headers become text; a missing or absurd id gets a quarantine id of its own."""
    stored = _entry(
        '{"api_key": "hunter2", "note": "s3cr3t-value"}',
        {"id": "x" * 500, "task": b"tasks.nope", "odd": object()},
    )
    text = json.dumps(stored)
    assert "hunter2" not in text
    assert "s3cr3t-value" not in text
    assert str(stored["id"]).startswith("quarantine-")
    assert stored["task"] == "unknown"


def test_a_malformed_delivery_header_reads_as_absent() -> None:
    """Counts that are not small non-negative integers, a history that is not a list of
    objects, or a header that is not an object: read as a first delivery."""
    for header in ({"failures": "abc"}, "oops", {"history": 5}, {"failures": -1},
                   {"deferrals": True}, {"history": [1, 2]}, {"replay_of": 7}):  # fmt: skip
        assert DeliveryState.from_headers({HEADER: header}) == DeliveryState()
    good = {"failures": 2, "deferrals": 0, "history": [{"a": 1}], "replay_of": None}
    assert DeliveryState.from_headers({HEADER: good}).failures == 2
