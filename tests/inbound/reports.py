"""Bounce and complaint reports as receiving systems send them."""

from __future__ import annotations

from collections.abc import Sequence


def dsn(
    *,
    recipient: str,
    original_message_id: str,
    action: str = "failed",
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550 5.1.1 <{recipient}>: user unknown",
    report_id: str = "<dsn-1@mx.example.test>",
    original_recipient: str | None = None,
    other_recipients: Sequence[tuple[str, str, str]] = (),
) -> bytes:
    """Return an RFC 3464 delivery status notification.

    ``other_recipients`` adds a block for each ``(address, action, status)``.
    """
    diagnostic = diagnostic.format(recipient=recipient)
    original_recipient = original_recipient or recipient
    other_blocks = "".join(
        f"\nFinal-Recipient: rfc822; {address}\nAction: {other_action}\n"
        f"Status: {other_status}\n"
        for address, other_action, other_status in other_recipients
    )
    text = f"""From: Mail Delivery System <MAILER-DAEMON@mx.example.test>
Subject: Undelivered Mail Returned to Sender
Message-ID: {report_id}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
 boundary="report-boundary"

--report-boundary
Content-Type: text/plain; charset=us-ascii

The message could not be delivered.

--report-boundary
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.test
Arrival-Date: Sun, 19 Apr 2026 14:30:00 +0000

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822; {original_recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; mailbox.example.test
Diagnostic-Code: {diagnostic}
{other_blocks}
--report-boundary
Content-Type: text/rfc822-headers

From: Acme <no-reply@acme.example>
To: {recipient}
Subject: Your verification code
Message-ID: {original_message_id}

--report-boundary--
"""
    return text.replace("\n", "\r\n").encode()


def arf(
    *,
    recipient: str,
    original_message_id: str,
    feedback_type: str = "abuse",
    report_id: str = "<arf-1@fbl.example.test>",
) -> bytes:
    """Return an RFC 5965 feedback report."""
    text = f"""From: Feedback Loop <fbl@isp.example.test>
Subject: Abuse report
Message-ID: {report_id}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
 boundary="fbl-boundary"

--fbl-boundary
Content-Type: text/plain; charset=us-ascii

This is an email abuse report.

--fbl-boundary
Content-Type: message/feedback-report

Feedback-Type: {feedback_type}
User-Agent: ExampleFBL/1.0
Version: 1
Original-Mail-From: <no-reply@acme.example>
Original-Rcpt-To: <{recipient}>
Arrival-Date: Sun, 19 Apr 2026 14:31:00 +0000

--fbl-boundary
Content-Type: message/rfc822

From: Acme <no-reply@acme.example>
To: {recipient}
Subject: Your verification code
Message-ID: {original_message_id}

Your code is 847291.

--fbl-boundary--
"""
    return text.replace("\n", "\r\n").encode()
