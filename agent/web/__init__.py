"""The web page (``inkless serve``): FastAPI + Jinja2 + htmx, server-rendered, every page also JSON."""
