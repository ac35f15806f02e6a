"""The SMTP relay: a submission server for systems that only speak SMTP.

Messages submitted here enter the same pipeline as API sends: each
recipient becomes one message with its own ``message_id``, states, events
and retries. docs/relay.md describes it for operators.
"""

from sendarix_http.relay.server import Relay, run_in_lifespan

__all__ = ["Relay", "run_in_lifespan"]
