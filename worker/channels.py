"""The notification channels of a deployment, built once from its settings.

The console is always there: nothing to configure, no network, every escalation level's last
fallback. Email, Slack, the generic webhook, SMS and PagerDuty are built when their settings
are complete (``docs/CONFIGURATION.md``). A channel whose settings are partly given is refused
with a :class:`~resilience.errors.ConfigurationError` that names each missing setting by its
environment variable and its config key (``email: ALCHEMISER_SMTP_RECIPIENTS ([smtp]
recipients) is not set``) and never holds a secret's value; so is an email login over a
connection without TLS (``security = "none"``) to a server other than this host's loopback. A
channel is "given" when any of its settings was set to a non-empty value, in the environment or
the config file (``<channel>_send_resolved`` does not count: :func:`resolved_to` reads it).

A channel the escalation policy names but nothing configures is an :class:`UnconfiguredChannel`:
every send fails for good as ``NOT_CONFIGURED`` (counted apart from a receiver's refusal), so
the level's fallback (the console by default) takes over; :func:`unconfigured` lists those
names for one warning at start.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import requests
from pydantic import SecretStr

from resilience.errors import ConfigurationError
from resilience.notify.channel import Delivery, NotificationChannel
from resilience.notify.console import ConsoleChannel
from resilience.notify.email import EmailChannel, EmailConfig
from resilience.notify.escalation_policy import EscalationPolicy
from resilience.notify.model import Notification
from resilience.notify.pagerduty import PagerDutyChannel, PagerDutyConfig
from resilience.notify.slack import SlackChannel, SlackConfig
from resilience.notify.sms import SmsChannel, SmsConfig
from resilience.notify.webhook import WebhookChannel, WebhookConfig
from worker.settings import Settings

__all__ = [
    "ChannelConfigs",
    "UnconfiguredChannel",
    "build_channels",
    "channel_configs",
    "resolved_to",
    "unconfigured",
]

_T = TypeVar("_T")
_FILTERED = "[Filtered]"
_MIN_SECRET_LEN = 4  # as the scrubber: shorter "secrets" would mangle ordinary words


@dataclass(frozen=True, slots=True)
class _Spec:
    """One channel's settings: ``[section] key`` in the file, ``section_key`` in Settings."""

    name: str
    section: str
    keys: tuple[str, ...]
    required: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...] = ()  # one given, the other is required too

    def setting(self, key: str) -> str:
        """The Settings field of ``key``."""
        return f"{self.section}_{key}"

    def describe(self, key: str) -> str:
        """``ALCHEMISER_SMTP_HOST ([smtp] host)``."""
        return f"ALCHEMISER_{self.setting(key).upper()} ([{self.section}] {key})"


_EMAIL = _Spec(
    "email",
    "smtp",
    ("host", "port", "security", "username", "password", "sender", "recipients", "timeout_s"),
    required=("host", "sender", "recipients"),
    pairs=(("username", "password"), ("password", "username")),
)
_SLACK = _Spec("slack", "slack", ("webhook_url", "timeout_s"), required=("webhook_url",))
_WEBHOOK = _Spec("webhook", "webhook", ("url", "timeout_s"), required=("url",))
_SMS = _Spec(
    "sms",
    "sms",
    ("account_sid", "auth_token", "from_number", "to_numbers", "base_url", "timeout_s"),
    required=("account_sid", "auth_token", "from_number", "to_numbers"),
)
_PAGERDUTY = _Spec(
    "pagerduty", "pagerduty", ("routing_key", "events_url", "timeout_s"), required=("routing_key",)
)
_SPECS = (_EMAIL, _SLACK, _WEBHOOK, _SMS, _PAGERDUTY)


@dataclass(frozen=True, slots=True)
class ChannelConfigs:
    """The config of each configured channel (None: not configured); secrets stay out of the
    repr, as in each config."""

    email: EmailConfig | None = None
    slack: SlackConfig | None = None
    webhook: WebhookConfig | None = None
    sms: SmsConfig | None = None
    pagerduty: PagerDutyConfig | None = None


@dataclass(frozen=True, slots=True)
class UnconfiguredChannel:
    """A channel the escalation policy names but nothing configures: every send fails for
    good, so the level's fallback takes over."""

    name: str

    def send(self, notification: Notification) -> Delivery:
        """A ``NOT_CONFIGURED`` delivery; nothing is sent."""
        return Delivery.not_configured(self.name)


def channel_configs(settings: Settings) -> ChannelConfigs:
    """The config of every channel whose settings are given; a :class:`ConfigurationError`
    listing every channel that is partly given or invalid (no secret in the message)."""
    problems: list[str] = []
    configs = ChannelConfigs(
        email=_config(settings, _EMAIL, _email_config, problems),
        slack=_config(settings, _SLACK, _slack_config, problems),
        webhook=_config(settings, _WEBHOOK, _webhook_config, problems),
        sms=_config(settings, _SMS, _sms_config, problems),
        pagerduty=_config(settings, _PAGERDUTY, _pagerduty_config, problems),
    )
    if problems:
        raise ConfigurationError(_without_secrets("; ".join(problems), settings))
    return configs


def build_channels(
    settings: Settings, *, session: requests.Session | None = None
) -> dict[str, NotificationChannel]:
    """Every channel by its name in the escalation policy: ``console`` always, each configured
    one, and an :class:`UnconfiguredChannel` for each one the policy names but nothing
    configures. The HTTP channels share ``session`` when given. Raises
    :class:`ConfigurationError` as :func:`channel_configs`."""
    configs = channel_configs(settings)
    channels: dict[str, NotificationChannel] = {"console": ConsoleChannel()}
    if configs.email is not None:
        channels["email"] = EmailChannel(configs.email)
    if configs.slack is not None:
        channels["slack"] = SlackChannel(configs.slack, session)
    if configs.webhook is not None:
        channels["webhook"] = WebhookChannel(configs.webhook, session)
    if configs.sms is not None:
        channels["sms"] = SmsChannel(configs.sms, session)
    if configs.pagerduty is not None:
        channels["pagerduty"] = PagerDutyChannel(configs.pagerduty, session)
    for name in unconfigured(settings):
        channels[name] = UnconfiguredChannel(name)
    return channels


def unconfigured(settings: Settings) -> list[str]:
    """The channels the escalation policy names (as a level's channel or fallback) whose
    settings are not given at all, in the order the policy first names them."""
    configured = {"console"} | {spec.name for spec in _SPECS if _given(settings, spec)}
    return [name for name in _named_by(settings.escalation_policy) if name not in configured]


def resolved_to(settings: Settings) -> frozenset[str]:
    """The channels that are sent resolved notices: the console, and each channel whose
    ``<section>_send_resolved`` is true (all but SMS by default)."""
    return frozenset({"console"}) | {
        spec.name for spec in _SPECS if getattr(settings, spec.setting("send_resolved"))
    }


def _named_by(policy: EscalationPolicy) -> list[str]:
    names: dict[str, None] = {}  # ordered set
    for rule in (*policy.rules, policy.default):
        for level in rule.levels:
            names.update(dict.fromkeys((*level.channels, *level.fallback)))
    return list(names)


def _config(
    settings: Settings,
    spec: _Spec,
    make: Callable[[Settings], _T],
    problems: list[str],
) -> _T | None:
    """``make(settings)`` when the channel is given and complete; None when not given; else
    the problems are added to ``problems``."""
    if not _given(settings, spec):
        return None
    missing = [key for key in spec.required if not _present(settings, spec, key)]
    missing += [
        other
        for key, other in spec.pairs
        if _present(settings, spec, key) and not _present(settings, spec, other)
    ]
    if missing:
        problems.extend(f"{spec.name}: {spec.describe(key)} is not set" for key in missing)
        return None
    try:
        return make(settings)
    except ConfigurationError as invalid:  # the channel names itself and the field
        problems.append(invalid.message)
        return None


def _given(settings: Settings, spec: _Spec) -> bool:
    """Whether any of the channel's settings was set, to a non-empty value."""
    return any(
        spec.setting(key) in settings.model_fields_set and _present(settings, spec, key)
        for key in spec.keys
    )


def _present(settings: Settings, spec: _Spec, key: str) -> bool:
    value = getattr(settings, spec.setting(key))
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, list):
        return bool(value)
    return value is not None


def _without_secrets(message: str, settings: Settings) -> str:
    """``message`` with every known secret replaced (no channel check names one: a net)."""
    for secret in sorted(settings.secret_values(), key=len, reverse=True):
        if len(secret) >= _MIN_SECRET_LEN:
            message = message.replace(secret, _FILTERED)
    return message


def _reveal(secret: SecretStr | None) -> str:
    return "" if secret is None else secret.get_secret_value()


def _email_config(settings: Settings) -> EmailConfig:
    _check_login_protected(settings)
    return EmailConfig(
        host=settings.smtp_host or "",
        sender=settings.smtp_sender or "",
        recipients=tuple(settings.smtp_recipients),
        port=settings.smtp_port,
        security=settings.smtp_security,
        username=settings.smtp_username or None,
        password=_reveal(settings.smtp_password) or None,
        timeout_s=settings.smtp_timeout_s,
    )


def _check_login_protected(settings: Settings) -> None:
    """Refuse a login sent in clear (``security = "none"``) beyond this host: the username and
    password would cross the network readable by anyone on the path."""
    if settings.smtp_security != "none" or _is_loopback(settings.smtp_host or ""):
        return
    if not (_present(settings, _EMAIL, "username") or _present(settings, _EMAIL, "password")):
        return
    raise ConfigurationError(
        f"email: {_EMAIL.describe('security')} is none, so the login to "
        f"{settings.smtp_host!r} would cross the network in clear; set it to starttls or tls, "
        f"or drop {_EMAIL.describe('username')} and {_EMAIL.describe('password')} (only a "
        "relay on this host, localhost, 127.0.0.0/8 or ::1, may take a login without TLS)"
    )


def _is_loopback(host: str) -> bool:
    """Whether ``host`` is this host: ``localhost``, 127.0.0.0/8 or ``::1``."""
    name = host.strip().lower().removesuffix(".")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _slack_config(settings: Settings) -> SlackConfig:
    return SlackConfig(
        webhook_url=_reveal(settings.slack_webhook_url), timeout_s=settings.slack_timeout_s
    )


def _webhook_config(settings: Settings) -> WebhookConfig:
    return WebhookConfig(url=_reveal(settings.webhook_url), timeout_s=settings.webhook_timeout_s)


def _sms_config(settings: Settings) -> SmsConfig:
    return SmsConfig(
        account_sid=settings.sms_account_sid or "",
        auth_token=_reveal(settings.sms_auth_token),
        from_number=settings.sms_from_number or "",
        to_numbers=tuple(settings.sms_to_numbers),
        base_url=settings.sms_base_url,
        timeout_s=settings.sms_timeout_s,
    )


def _pagerduty_config(settings: Settings) -> PagerDutyConfig:
    return PagerDutyConfig(
        routing_key=_reveal(settings.pagerduty_routing_key),
        events_url=settings.pagerduty_events_url,
        timeout_s=settings.pagerduty_timeout_s,
    )
