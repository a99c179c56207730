"""Refreshes the dashboard's vendored JavaScript from npm (`python -m uivendor`)."""
