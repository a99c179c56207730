"""Generates docs/api.md from the API's OpenAPI document plus the original SelfHelp examples."""
