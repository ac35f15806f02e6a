"""Routing rules and the transports they choose."""

from sendarix_backends.routing.router import Dispatch, RouteExplanation, Router
from sendarix_backends.routing.service import Routes
from sendarix_backends.routing.store import MemoryRouteStore, RouteStore, StoredRule
from sendarix_backends.routing.transports import RouteTransports

__all__ = [
    "Dispatch",
    "MemoryRouteStore",
    "RouteExplanation",
    "RouteStore",
    "RouteTransports",
    "Router",
    "Routes",
    "StoredRule",
]
