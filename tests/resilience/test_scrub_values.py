"""Tests of ``resilience.scrub`` (issue 12, item 7): a secret-named key's value is removed,
the words after a key that has no value are not."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from resilience.errors import ValidationError
from resilience.scrub import Scrubber
from tasks.classification import trading_classifier
from tasks.payloads import OrderRequest, parse_payload

SECRET = "Zr7QpL2xVn9TkB4mWc8HsD3y"
ORDER: dict[str, Any] = {
    "symbol": "AAPL",
    "side": "buy",
    "qty": 1,
    "client_order_id": "alc-1",
    "valid_until": "2030-01-01T00:00:00+00:00",
}


class Strict(pydantic.BaseModel):
    """A model that refuses fields it does not declare, as every payload does."""

    model_config = pydantic.ConfigDict(extra="forbid")
    qty: int


def invalid(**fields: Any) -> pydantic.ValidationError:
    """The ValidationError pydantic raises for ``Strict(**fields)``."""
    with pytest.raises(pydantic.ValidationError) as raised:
        Strict(**fields)
    return raised.value


def test_a_payload_error_naming_a_secret_field_keeps_its_words() -> None:
    """An order with an extra ``api_key`` fails with pydantic's "Extra inputs are not
    permitted"; scrubbed, the message still says so (and never held the key's value)."""
    with pytest.raises(ValidationError) as raised:
        parse_payload(OrderRequest, {**ORDER, "api_key": SECRET, "password": "hunter2"})
    message = Scrubber().text(raised.value.message)
    assert message == (
        "invalid OrderRequest payload: api_key: Extra inputs are not permitted;"
        " password: Extra inputs are not permitted"
    )


def test_a_classified_pydantic_error_keeps_its_words() -> None:
    """The classifier's text of a real pydantic error (an extra ``api_key``, a missing
    ``qty``) passes the scrubber unchanged."""
    error = trading_classifier().classify(invalid(api_key=SECRET, auth_token="t0k3n-abc"))
    expected = (
        "ValidationError: 3 validation errors for Strict: qty: Field required;"
        " api_key: Extra inputs are not permitted; auth_token: Extra inputs are not permitted"
    )
    assert error.message == expected
    assert Scrubber([SECRET]).text(error.message) == expected


def test_pydantic_own_text_loses_the_value_and_keeps_the_words() -> None:
    """``str()`` of the error echoes the input: the value goes, the explanation stays."""
    text = Scrubber().text(str(invalid(qty=1, api_key=SECRET)))
    assert SECRET not in text
    assert "api_key\n  Extra inputs are not permitted [type=extra_forbidden," in text
    assert "input_value=[Filtered]" in text


@pytest.mark.parametrize(
    "text",
    [
        "api_key: Extra inputs are not permitted",
        "password: Field required",
        "token: Input should be a valid string",
        "secret: String should have at least 8 characters",
        "order.auth_token: Value error, must not be blank",
        "invalid settings: smtp_password: must be set with smtp_username",
        "secret_key: Extra inputs are not permitted; api_key: Field required",
    ],
)
def test_prose_after_a_secret_key_is_kept(text: str) -> None:
    """A secret-named key followed by ``: `` and words is an explanation, not an assignment."""
    assert Scrubber().text(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("api_key=abc123", "api_key=[Filtered]"),
        ("api_key = Extra", "api_key = [Filtered]"),
        ('{"api_key": "abc"}', '{"api_key": "[Filtered]"}'),
        ("{'api_key': 'two words'}", "{'api_key': '[Filtered]'}"),
        ("Authorization: Bearer xyz", "Authorization: Bearer [Filtered]"),
        ("authorization: Basic dXNlcjpwYXNz", "authorization: Basic [Filtered]"),
        ("password: hunter2", "password: [Filtered]"),
        ("password: letmein", "password: [Filtered]"),
        ("login password: letmein\nnext line", "login password: [Filtered]\nnext line"),
        ("password: letmein user=bob", "password: [Filtered] user=bob"),
        ("password: letmein, user: bob", "password: [Filtered], user: bob"),
        ("password: hunter2 for bob", "password: [Filtered] for bob"),
        ("token: Xy9-abc_def rejected", "token: [Filtered] rejected"),
        ("secret: p@ss word", "secret: [Filtered] word"),
    ],
)
def test_a_value_after_a_secret_key_is_filtered(text: str, expected: str) -> None:
    """``=``, a quoted value, a scheme and its credentials, a token that is not a plain word,
    or a single word that ends the text, line or clause: a value, filtered."""
    assert Scrubber().text(text) == expected


def test_a_known_secret_goes_even_inside_prose() -> None:
    """A configured secret value is removed wherever it appears, words around it kept."""
    text = f"api_key: Extra inputs are not permitted, got {SECRET} here"
    assert Scrubber([SECRET]).text(text) == (
        "api_key: Extra inputs are not permitted, got [Filtered] here"
    )
