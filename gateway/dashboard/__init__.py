"""The household dashboard: a small ASGI app (Starlette on uvicorn) served by the gateway itself."""
