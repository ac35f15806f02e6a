"""SMTP relay ingress: durable ``250`` replies beside a bare aiosmtpd server.

Measured only when the relay is part of the source tree being benchmarked.
"""

from __future__ import annotations

import importlib.util

from benchmarks.options import Options
from benchmarks.report import Row, not_available

TARGET = "≥ 50% of the bare server's rate"


def run(options: Options) -> list[Row]:
    title = "SMTP relay ingress, durable 250"
    if importlib.util.find_spec("sendarix_http.relay") is None:
        reason = "the SMTP relay listener is not part of this version"
        return [not_available(title, TARGET, reason)]
    reason = "the relay benchmark is not written yet"
    return [not_available(title, TARGET, reason)]
