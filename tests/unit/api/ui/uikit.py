"""Helpers for the dashboard's unit tests: log in through the form, read the CSRF token off a page."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable

import httpx
from scheduledjob_api.security import ALL_PERMISSIONS

from tests.unit.api.apitestkit import token


async def settle() -> None:
    await asyncio.sleep(0.05)


async def log_in(http: httpx.AsyncClient, permissions: Iterable[str] = ALL_PERMISSIONS, sub: str = "alice") -> None:
    response = await http.post("/ui/login", data={"token": token(list(permissions), sub=sub), "next": "/ui/"})
    assert response.status_code == 303, response.text


async def csrf_of(http: httpx.AsyncClient, page: str) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', (await http.get(page)).text)
    assert match, f"no CSRF token on {page}"
    return match.group(1)
