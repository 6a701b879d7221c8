"""resilience/observability/reporting.py: every reporter hears of a failure, whatever another one
does."""

from __future__ import annotations

from structlog.testing import capture_logs

from resilience.errors import TradingClientError
from resilience.observability.reporting import FailureReport, report_to


class Kept:
    def __init__(self) -> None:
        self.reports: list[FailureReport] = []

    def report(self, report: FailureReport) -> None:
        self.reports.append(report)


class Broken:
    def report(self, report: FailureReport) -> None:
        raise RuntimeError("tracker down")


def _report() -> FailureReport:
    return FailureReport(
        action="retry",
        error=TradingClientError("HTTP 503"),
        cause=None,
        task_name="tasks.submit_order",
        task_id="t-1",
        component="trading",
        reason="retryable",
        retry_count=1,
    )


def test_a_failing_reporter_is_logged_and_the_others_still_hear() -> None:
    """A reporter that raises is logged; the ones after it still get the report."""
    first, last = Kept(), Kept()
    report = _report()
    with capture_logs() as logs:
        report_to((first, Broken(), last), report)
    assert first.reports == [report] == last.reports
    (logged,) = [entry for entry in logs if entry["event"] == "failure_report_failed"]
    assert logged["reporter"] == "Broken"
    assert logged["task_id"] == "t-1"
    assert "tracker down" in logged["error"]
