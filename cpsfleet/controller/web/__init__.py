"""The dashboard: pages, JSON API, exports, sign-in and /metrics, served by uvicorn."""
