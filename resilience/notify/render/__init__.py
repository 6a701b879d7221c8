"""What each channel sends for a :class:`~resilience.notify.model.Notification`: pure functions.

Every renderer shows the same facts (status and severity, error type, component, how many
failed, the first :data:`~resilience.notify.model.MAX_EXAMPLES` examples, how many
notifications the rate limits held back, the runbook and dead-letter links) in its channel's
form and within its channel's limits (:mod:`.facts`). Renderers read nothing but the
notification: no settings, no environment, no clock, so what goes out is exactly what the
(already scrubbed) notification holds. Text is escaped for where it lands (HTML, Slack mrkdwn),
and only ``http``/``https`` URLs ever become links; any other URL is shown as text.
"""

from resilience.notify.render.events import (
    PAGERDUTY_SEVERITY,
    PAGERDUTY_SOURCE,
    WEBHOOK_VERSION,
    pagerduty,
    webhook,
)
from resilience.notify.render.mail import EmailContent, email
from resilience.notify.render.slack_blocks import SLACK_HEADER_MAX_CHARS, slack
from resilience.notify.render.sms_text import SMS_MAX_CHARS, sms

__all__ = [
    "PAGERDUTY_SEVERITY",
    "PAGERDUTY_SOURCE",
    "SLACK_HEADER_MAX_CHARS",
    "SMS_MAX_CHARS",
    "WEBHOOK_VERSION",
    "EmailContent",
    "email",
    "pagerduty",
    "slack",
    "sms",
    "webhook",
]
