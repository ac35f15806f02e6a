"""The request body every HTTP benchmark posts: a short sign-in code message."""

from __future__ import annotations

from pathlib import Path

import orjson

SEND_REQUEST = {
    "recipient": "Ada Lovelace <ada@example.com>",
    "from": "Acme <no-reply@acme.example>",
    "subject": "Your sign-in code",
    "text": "Your sign-in code is 847291. It expires in 5 minutes.\n",
    "html": "<p>Your sign-in code is <b>847291</b>. It expires in 5 minutes.</p>",
    "metadata": {"user_id": "42"},
    "tags": ["otp"],
}


def write_body(path: Path) -> Path:
    path.write_bytes(orjson.dumps(SEND_REQUEST))
    return path
