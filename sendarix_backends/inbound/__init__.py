"""Bounce and complaint reports: VERP return paths, parsing, intake, listener.

``intake.ReportIntake`` records what a report says and ``server.InboundServer``
receives reports by SMTP. Only the pure parts are exported here, so the
outbound path can import them without a cycle.
"""

from sendarix_backends.inbound.reports import (
    DeliveryReport,
    FeedbackReport,
    RecipientStatus,
    parse_report,
)
from sendarix_backends.inbound.verp import message_id_of, return_path

__all__ = [
    "DeliveryReport",
    "FeedbackReport",
    "RecipientStatus",
    "message_id_of",
    "parse_report",
    "return_path",
]
