"""The kiosk's tests: a live server (tests/live.py) for those that need the API."""

from tests.live import admin, server, world  # noqa: F401
