"""The classifier without any application's knowledge, and what a domain registers on it:
error families per component, rules read off HTTP bodies, client packages."""

from __future__ import annotations

import re

import pytest
import requests

from resilience.errors import (
    AlchemiserError,
    NotificationError,
    RateLimitError,
    RemoteServiceError,
    SecurityError,
    ValidationError,
)
from resilience.policy.classify import default_classifier
from resilience.policy.domain import BodyRule, ClassifierDomain, ErrorFamilies


def http_error(status: int, body: str = "") -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    response._content = body.encode()
    response.url = "https://mail.example/send"
    return requests.HTTPError(f"{status} Error", response=response)


class BouncedError(AlchemiserError):
    """A domain's own class: the mailbox refused the message."""


class VendorError(Exception):
    """An exception of a client library the domain names (module set below)."""


VendorError.__module__ = "mailvendor.client"

MAIL = ClassifierDomain(
    components={"mail": ErrorFamilies(transient=NotificationError, refused=BouncedError)},
    body_rules=(BodyRule(550, re.compile(r"mailbox unavailable"), BouncedError),),
    network_packages=frozenset({"mailvendor"}),
)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (TimeoutError("slow"), RemoteServiceError),
        (ConnectionResetError(104, "reset"), RemoteServiceError),
        (http_error(503), RemoteServiceError),
        (http_error(422, "insufficient buying power"), ValidationError),
        (http_error(403, "insufficient buying power"), SecurityError),
        (http_error(429), RateLimitError),
    ],
)
def test_without_a_domain_no_trading_knowledge(exc: Exception, expected: type) -> None:
    """Transient trouble is a RemoteServiceError (retried), a refusal a ValidationError, and a
    broker's wording means nothing: a 403 is a SecurityError whatever its body says."""
    assert type(default_classifier().classify(exc, component="trading")) is expected


def test_a_component_gets_its_families_and_others_the_default() -> None:
    """``mail`` failures fall into the domain's classes; any other component keeps the default
    families."""
    classifier = default_classifier(MAIL)
    assert type(classifier.classify(TimeoutError("x"), component="mail")) is NotificationError
    assert type(classifier.classify(http_error(404), component="mail")) is BouncedError
    assert type(classifier.classify(TimeoutError("x"), component="sms")) is RemoteServiceError
    assert type(classifier.classify(http_error(404), component="sms")) is ValidationError


def test_a_body_rule_decides_its_status_before_the_families() -> None:
    """A 550 saying "mailbox unavailable" is BouncedError (not retried); another 550 is transient
    as any 5xx."""
    classifier = default_classifier(MAIL)
    bounced = classifier.classify(http_error(550, "550 Mailbox unavailable"), component="sms")
    assert type(bounced) is BouncedError
    assert type(classifier.classify(http_error(550, "busy"), component="sms")) is (
        RemoteServiceError
    )


def test_a_body_rule_limited_to_components() -> None:
    """With ``components`` the rule speaks for those only."""
    rule = BodyRule(403, re.compile("quota"), RateLimitError, components=frozenset({"mail"}))
    classifier = default_classifier(ClassifierDomain(body_rules=(rule,)))
    assert type(classifier.classify(http_error(403, "quota"), component="mail")) is RateLimitError
    assert type(classifier.classify(http_error(403, "quota"), component="sms")) is SecurityError


def test_a_named_client_package_is_trouble_on_the_wire() -> None:
    """An exception of a package the domain names, without a status, is transient; unnamed, it
    is an unknown failure (never retried)."""
    assert type(default_classifier(MAIL).classify(VendorError("eof"))) is RemoteServiceError
    assert type(default_classifier().classify(VendorError("eof"))) is AlchemiserError
