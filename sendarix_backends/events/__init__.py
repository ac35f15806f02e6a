"""The event log and what is built on it: search, processing, analytics.

``services.EventServices`` is what ``Engine.events`` holds. Only the value
types are exported here, so the SQL modules can import them without a
cycle.
"""

from sendarix_backends.events.analytics import AnalyticsQuery, GroupBy, Interval
from sendarix_backends.events.query import EventOrder, EventQuery

__all__ = ["AnalyticsQuery", "EventOrder", "EventQuery", "GroupBy", "Interval"]
