"""Limits of the shared web test server (``web_server`` in conftest.py), used by its tests."""

WEB_MAX_MESSAGE = 2 * 1024 * 1024  # the web server's configured limit (default is 16 MiB)
WEB_MAX_TOP_K = 50
