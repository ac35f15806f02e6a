"""Route handlers of the v1 API, one module per resource."""
