"""The web dashboard: FastAPI JSON API, Jinja2 pages, server-sent events (see README)."""
