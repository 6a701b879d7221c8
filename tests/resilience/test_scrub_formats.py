"""Tests of ``resilience.scrub`` (issue 13, item 8): tokens of well-known formats and values of
secret-named keys are filtered; prose, even prose naming secrets, is kept."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience.scrub import FILTERED, Scrubber

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("card declined: sk_live_ABC123SECRET", "card declined: [Filtered]"),
        ("key sk_test_4eC39HqLyjWDarjtT1zdp7dc used", "key [Filtered] used"),
        ("rk_live_51H8abcDEF0123 restricted", "[Filtered] restricted"),
        ("pk_live_TYooMQauvdEDq54NiTphI7jx", FILTERED),
        ("push with ghp_16C7e42F292c6912E7710c838347Ae178B4a", "push with [Filtered]"),
        ("gho_16C7e42F292c6912E7710c838347Ae178B4a!", "[Filtered]!"),
        ("(ghs_16C7e42F292c6912E7710c838347Ae178B4a)", "([Filtered])"),
        ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", FILTERED),
        ("slack xoxb-123456789012-1234567890123-AbCdEfGhIjKl", "slack [Filtered]"),
        ("xoxp-1234-5678-9012-abcdef0123 revoked", "[Filtered] revoked"),
        ("app token xapp-1-A0123BCDE-1234567890-abcdef0123", "app token [Filtered]"),
        ("aws AKIAIOSFODNN7EXAMPLE denied", "aws [Filtered] denied"),
        ("sts ASIAY34FZKBOKMUTVV7A.", "sts [Filtered]."),
        ("private_key=PRIVKEY0001", "private_key=[Filtered]"),
        ("private-key: PRIVKEY0001 refused", "private-key: [Filtered] refused"),
        ("secret=abc123", "secret=[Filtered]"),
        ("token: t0k3n", "token: [Filtered]"),
        ("smtp passwd=hunter2", "smtp passwd=[Filtered]"),
        ("credentials=user:pw1", "credentials=[Filtered]"),
        ('{"private_key": "-----BEGIN KEY-----"}', '{"private_key": "[Filtered]"}'),
        ("{'credentials': 'bob pw1', 'qty': 1}", "{'credentials': '[Filtered]', 'qty': 1}"),
        ("Authorization: Bearer abcdefghij", "Authorization: Bearer [Filtered]"),
        ('password="hunter 2"', 'password="[Filtered]"'),
        ("Conn(private_key='k1', qty=1)", "Conn(private_key='[Filtered]', qty=1)"),
        ("{'secret': 12345, 'qty': 1}", "{'secret': [Filtered], 'qty': 1}"),
        ('{"token": 987654}', '{"token": [Filtered]}'),
        ("{'password': b'hunter2'}", "{'password': b'[Filtered]'}"),
        ("{'passwd': \"it's\"}", "{'passwd': \"[Filtered]\"}"),
        ("token=b'raw1'", "token=b'[Filtered]'"),
        ("token private_key = 0000", "token private_key = [Filtered]"),
        ("bearer 'password': 12345", "bearer 'password': [Filtered]"),
    ],
)
def test_tokens_and_secret_key_values_are_filtered(text: str, expected: str) -> None:
    """Each token format and each secret-named key's value becomes ``[Filtered]``."""
    assert Scrubber().text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "token mismatch between replicas",
        "the secret is out, said the bearer of bad news",
        "basic authentication failed for the account",
        "credentials: Field required",
        "private_key: Extra inputs are not permitted",
        "risk_live_status and task_test_result",
        "{'token': None, 'secret': True, \"password\": null}",
    ],
)
def test_prose_and_look_alikes_are_kept(text: str) -> None:
    """Words after a scheme or key name, and near-misses of token formats, stay as they are."""
    assert Scrubber().text(text) == text


# --- properties -------------------------------------------------------------------------------

_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12)
_secret_word = st.sampled_from(
    ["token", "secret", "password", "passwd", "private", "key", "credentials", "bearer", "basic"]
)
_prose_words = st.lists(_word | _secret_word, max_size=20)
_separators = st.sampled_from([" ", ", ", ". ", "; ", "\n"])


def _chars(alphabet: str, size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, min_size=size, max_size=size)


def _value(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    """Random alphanumerics with a digit: a credential, never a word of prose."""
    return st.builds(
        lambda head, digit, tail: head + digit + tail,
        st.text(alphabet=_ALNUM, min_size=min_size - 1, max_size=max_size - 1),
        st.sampled_from("0123456789"),
        st.text(alphabet=_ALNUM, max_size=1),
    )


_stripe = st.builds(
    lambda prefix, body: prefix + body,
    st.sampled_from(["sk_live_", "sk_test_", "rk_live_", "rk_test_", "pk_live_", "pk_test_"]),
    _value(8, 40),
)
_github = st.builds(
    lambda prefix, body: prefix + body,
    st.sampled_from(["ghp_", "gho_", "ghs_", "ghu_", "ghr_"]),
    _chars(_ALNUM, 36),
) | st.builds(lambda a, b: f"github_pat_{a}_{b}", _chars(_ALNUM, 22), _chars(_ALNUM, 59))
_slack = st.builds(
    lambda prefix, a, b, c: f"{prefix}-{a}-{b}-{c}",
    st.sampled_from(["xoxb", "xoxp", "xapp"]),
    _chars("0123456789", 12),
    _chars(_UPPER, 13),
    _chars(_ALNUM, 24),
)
_aws = st.builds(
    lambda prefix, body: prefix + body, st.sampled_from(["AKIA", "ASIA"]), _chars(_UPPER, 16)
)
_key_name = st.sampled_from(
    [
        "private_key",
        "secret",
        "token",
        "passwd",
        "credentials",
        "api_key",
        "password",
        "PRIVATE_KEY",
    ]
)


@st.composite
def _assignment(draw: st.DrawFn) -> tuple[str, str]:
    """A secret-named key given a value in one of the usual forms (text, a repr, JSON, a call's
    keyword), and the value."""
    name, value = draw(_key_name), draw(_value(4, 30))
    forms = ["{}={}", "{} = {}", "{}: {}", '"{}": "{}"', "'{}': '{}'", "'{}': b'{}'"]
    forms += ['{}="{}"', "{}='{}'", "'{}': {}", '"{}": {}', '{}: "{}"']
    form = draw(st.sampled_from(forms))
    return form.format(name, value), value


_tokens = st.one_of(_stripe, _github, _slack, _aws).map(lambda token: (token, token))


@settings(max_examples=400, deadline=None)
@given(
    planted=_tokens | _assignment(),
    before=_prose_words,
    after=_prose_words,
    separator=_separators,
    wrap=st.sampled_from(["{}", "({})", "[{}]", "<{}>", "{},", "{}."]),
)
def test_a_secret_of_any_format_never_survives(
    planted: tuple[str, str],
    before: list[str],
    after: list[str],
    separator: str,
    wrap: str,
) -> None:
    """A random token or key=value secret embedded in random prose is gone once scrubbed."""
    carrier, secret = planted
    text = separator.join([*before, wrap.format(carrier), *after])
    scrubbed = Scrubber().text(text)
    assert secret not in scrubbed
    assert FILTERED in scrubbed


@settings(max_examples=400, deadline=None)
@given(words=_prose_words, separator=_separators)
def test_prose_is_left_alone(words: list[str], separator: str) -> None:
    """Random lowercase prose, with secret-sounding words but no values, passes unchanged."""
    text = separator.join(words)
    assert Scrubber().text(text) == text
