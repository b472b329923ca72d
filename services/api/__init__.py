"""The HTTP API: a FastAPI app with one router per resource (``create_app`` builds it)."""
