"""The HTTP v1 API and the ``sendarix`` command around the engine."""

from sendarix_http.app import create_app

__all__ = ["create_app"]
