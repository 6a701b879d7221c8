"""Tests of ``resilience.scrub``: secrets removed by key, by known value and by shape."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience.scrub import FILTERED, MAX_TEXT_CHARS, Scrubber

ALPACA_KEY = "PKTESTABCDEFGHIJ1234"
ALPACA_SECRET = "sEcReTvAlUe9876543210zyxwv"


@pytest.fixture
def scrub() -> Scrubber:
    """A scrubber that knows this process's Alpaca credentials."""
    return Scrubber([ALPACA_KEY, ALPACA_SECRET])


# --- by key ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "api_key",
        "Authorization",
        "webhook_url",
        "SENTRY_DSN",
        "slack-webhook",
        "ALPACA_SECRET_KEY",
        "X-Api-Key",
        "smtp_passwd",
        "refresh_token",
    ],
)
def test_secret_keys_are_filtered_at_any_depth(key: str) -> None:
    """A value under a secret-named key is filtered however deep it sits."""
    value = {"outer": [{"inner": {key: "opaque-value-1"}}], key: "opaque-value-2"}
    scrubbed = Scrubber()(value)
    assert scrubbed == {"outer": [{"inner": {key: FILTERED}}], key: FILTERED}


def test_secret_key_with_nested_value_is_filtered_whole() -> None:
    """A secret-named key holding a structure is filtered as a whole."""
    scrubbed = Scrubber()({"credentials": {"user": "bob", "pin": "1234"}})
    assert scrubbed == {"credentials": FILTERED}


def test_empty_secret_values_are_kept_as_is() -> None:
    """``None`` and empty strings under secret keys stay (they reveal nothing)."""
    assert Scrubber()({"password": None, "token": ""}) == {"password": None, "token": ""}


# --- by known value -------------------------------------------------------------------------------


def test_known_values_are_removed_anywhere_in_strings(scrub: Scrubber) -> None:
    """A known secret is replaced inside URLs, messages and tracebacks."""
    value = {
        "url": f"https://api.example/v2?key={ALPACA_KEY}&x=1",
        "message": f"login failed for {ALPACA_SECRET} at broker",
        "traceback": f'Traceback:\n  File "x.py"\n    connect("{ALPACA_SECRET}")\nOSError',
        "list": [f"prefix{ALPACA_SECRET}suffix"],
    }
    dumped = json.dumps(scrub(value))
    assert ALPACA_KEY not in dumped
    assert ALPACA_SECRET not in dumped
    assert "prefix[Filtered]suffix" in dumped
    assert "login failed for [Filtered] at broker" in dumped


def test_short_known_values_are_ignored() -> None:
    """Values shorter than four characters are not treated as secrets (they would eat text)."""
    assert Scrubber(["ab", ""]).text("about a cab") == "about a cab"


def test_longer_secret_is_replaced_whole() -> None:
    """A secret containing another is replaced as one piece."""
    scrub = Scrubber(["abcd1234", "abcd1234efgh5678"])
    assert scrub.text("x abcd1234efgh5678 y") == "x [Filtered] y"


def test_with_values_adds_secrets_and_keeps_key_parts() -> None:
    """``with_values`` knows the old and new secrets and the extra key parts."""
    base = Scrubber(["first-secret"], extra_key_parts=["pin"])
    more = base.with_values(["second-secret"])
    assert more.text("first-secret second-secret") == "[Filtered] [Filtered]"
    assert more({"card_pin": "1234"}) == {"card_pin": FILTERED}


# --- by pattern -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "redis://alchemiser:hunter2pass@redis.internal:6379/0",
            "redis://alchemiser:[Filtered]@redis.internal:6379/0",
        ),
        ("amqp://guest:guest@rabbit:5672//", "amqp://guest:[Filtered]@rabbit:5672//"),
        ("header Bearer eyJhbGciOiJIUzI1NiJ9.abc.def", "header Bearer [Filtered]"),
        (
            "post to https://hooks.slack.com/services/T0001/B0002/XXXXyyyyZZZZ failed",
            "post to https://hooks.slack.com/services/[Filtered] failed",
        ),
        ("key PKA1B2C3D4E5F6G7H8I9 rejected", "key [Filtered] rejected"),
        ("api_key=abc123def&symbol=AAPL", "api_key=[Filtered]&symbol=AAPL"),
        ("password: hunter2", "password: [Filtered]"),
        ('{"secret": "s3cr3t"}', '{"secret": "[Filtered]"}'),
        ("token sk-abcdefghijklmnop", "token [Filtered]"),
        (
            "{'broker_password': 'hunter2-kw', 'qty': 1}",
            "{'broker_password': '[Filtered]', 'qty': 1}",
        ),
        (
            "broker_password\n  Extra inputs are not permitted [type=extra_forbidden,"
            " input_value='hunter2-kw', input_type=str]",
            "broker_password\n  Extra inputs are not permitted [type=extra_forbidden,"
            " input_value=[Filtered], input_type=str]",
        ),
    ],
)
def test_secret_shapes_are_filtered(text: str, expected: str) -> None:
    """Credentials in URLs, bearer tokens, Slack hooks, Alpaca keys and key=value pairs go."""
    assert Scrubber().text(text) == expected


def test_patterns_apply_inside_nested_values() -> None:
    """Patterns reach strings nested in lists and dicts."""
    value = {"events": [{"msg": "connect redis://u:topsecret@h:6379 failed"}]}
    assert Scrubber()(value) == {"events": [{"msg": "connect redis://u:[Filtered]@h:6379 failed"}]}


# --- what stays -----------------------------------------------------------------------------------


def test_trading_data_is_untouched(scrub: Scrubber) -> None:
    """Order fields and ordinary messages pass through unchanged."""
    value = {
        "client_order_id": "alc-3f2a9c1e-7b7d-4f3e-9d11-2a6c0b9f8e21",
        "symbol": "BRK.B",
        "side": "buy",
        "qty": 12.5,
        "limit_price": 431.17,
        "valid_until": "2026-01-05T15:00:00+00:00",
        "filled": True,
        "note": None,
        "message": "order alc-1 filled at 187.52 on the paper broker",
        "url": "https://paper-api.alpaca.markets/v2/orders",
    }
    assert scrub(value) == value


def test_input_is_never_mutated(scrub: Scrubber) -> None:
    """Scrubbing returns a copy; the input keeps its secrets."""
    value: dict[str, Any] = {
        "password": "pw-123456",
        "nested": {"msg": f"key {ALPACA_KEY}", "items": [ALPACA_SECRET, {"token": "t"}]},
    }
    before = copy.deepcopy(value)
    scrubbed = scrub(value)
    assert value == before
    assert scrubbed["nested"] is not value["nested"]
    assert scrubbed["nested"]["items"] is not value["nested"]["items"]


def test_tuples_and_sets_become_lists() -> None:
    """Tuples, sets and frozensets come back as JSON lists."""
    scrubbed = Scrubber()({"t": (1, "a"), "s": {"only"}, "f": frozenset({2})})
    assert scrubbed == {"t": [1, "a"], "s": ["only"], "f": [2]}


def test_non_json_objects_become_scrubbed_text(scrub: Scrubber) -> None:
    """An object that is not JSON-shaped becomes its repr, scrubbed."""

    class Conn:
        def __repr__(self) -> str:
            return f"Conn(key={ALPACA_SECRET!r})"

    scrubbed = scrub({"conn": Conn()})
    assert isinstance(scrubbed["conn"], str)
    assert ALPACA_SECRET not in scrubbed["conn"]


def test_non_string_keys_become_strings() -> None:
    """Mapping keys come back as strings (JSON keys)."""
    assert Scrubber()({1: "a", None: "b"}) == {"1": "a", "None": "b"}


def test_known_secret_used_as_a_mapping_key_is_removed() -> None:
    """A known secret or a credential URL appearing as a mapping key does not survive."""
    value = {"session-Qw3rTy9UiOp2Lk": 1, "redis://u:hunter2pass@h:6379": "up"}
    scrubbed = Scrubber(["Qw3rTy9UiOp2Lk"])(value)
    assert scrubbed == {"session-[Filtered]": 1, "redis://u:[Filtered]@h:6379": "up"}


def test_scrubbing_keys_never_drops_an_entry() -> None:
    """Keys that differ only in a secret both survive scrubbing (no entry is lost)."""
    value = {"redis://u:first-pass@h": 1, "redis://u:second-pass@h": 2}
    scrubbed = Scrubber()(value)
    assert len(scrubbed) == 2
    assert sorted(scrubbed.values()) == [1, 2]


def test_long_text_is_cut_and_still_scrubbed() -> None:
    """Text beyond ``MAX_TEXT_CHARS`` is cut (saying how much) and its head is scrubbed."""
    text = f"key {ALPACA_SECRET} " + "x" * (2 * MAX_TEXT_CHARS)
    scrubbed = Scrubber([ALPACA_SECRET]).text(text)
    assert scrubbed.startswith("key [Filtered] xxx")
    assert len(scrubbed) < MAX_TEXT_CHARS + 64
    # Known secrets are replaced before the cut, so the count is of the replaced text.
    replaced = text.replace(ALPACA_SECRET, "[Filtered]")
    assert f"[truncated {len(replaced) - MAX_TEXT_CHARS} characters]" in scrubbed


def test_known_secret_across_the_cut_does_not_leak_its_head() -> None:
    """A known secret that straddles the ``MAX_TEXT_CHARS`` cut leaves no part of itself."""
    secret = "Zq8xLm3pQr7tUv2wXy4zAb6cDe8fGh0iJk2lMn4o"
    text = "x" * (MAX_TEXT_CHARS - 30) + secret + "y" * 10
    scrubbed = Scrubber([secret]).text(text)
    assert secret[:30] not in scrubbed
    assert secret[:8] not in scrubbed


# --- property -------------------------------------------------------------------------------------

_secrets = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    min_size=8,
    max_size=40,
).filter(lambda s: any(c.isalpha() and c not in "eE" for c in s))  # not a number's digits

_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
_json = st.recursive(
    _leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=15,
)
_wrappers = st.sampled_from(
    [
        "{}",
        "https://api.example/v2/orders?key={}",
        "redis://user:{}@host:6379/0",
        "Traceback (most recent call last):\n  File 'a.py', line 3\nValueError: bad {}\n",
        "auth failed with {} for account",
        "Bearer {}",
        "x={}&y=1",
    ]
)


@st.composite
def _planted(draw: st.DrawFn) -> tuple[str, Any]:
    """A secret and a random JSON value with the secret planted in one of its strings or keys."""
    secret = draw(_secrets)
    carrier = draw(_wrappers).format(secret)
    prefix, suffix = draw(st.text(max_size=10)), draw(st.text(max_size=10))
    carrier = prefix + carrier + suffix

    def plant(value: Any) -> Any:
        if isinstance(value, dict) and value and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(value)))
            return {**value, key: plant(value[key])}
        if isinstance(value, list) and value and draw(st.booleans()):
            index = draw(st.integers(0, len(value) - 1))
            return [*value[:index], plant(value[index]), *value[index + 1 :]]
        return plant_here(value)

    def plant_here(value: Any) -> Any:
        if isinstance(value, dict):
            if draw(st.booleans()):
                return {**value, carrier: draw(_leaves)}
            return {**value, draw(st.text(max_size=10)): carrier}
        if isinstance(value, list):
            return [*value, carrier]
        if isinstance(value, str):
            cut = draw(st.integers(0, len(value)))
            return value[:cut] + carrier + value[cut:]
        return carrier

    return secret, plant(draw(_json))


@settings(max_examples=300, deadline=None)
@given(case=_planted())
def test_a_planted_secret_never_survives(case: tuple[str, Any]) -> None:
    """A known secret planted anywhere in a nested JSON value is absent from its scrubbed dump."""
    secret, value = case
    assert secret in json.dumps(value)
    scrubbed = Scrubber([secret])(value)
    assert secret not in json.dumps(scrubbed)
