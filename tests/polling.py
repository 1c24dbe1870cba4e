"""Waiting for state that no event announces (a database another process writes), with a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], bool], seconds: float) -> None:
    """Wait for `condition` (polled, as the code under test polls), failing after `seconds`."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - the state we wait for is a database's, no event tells it
            await asyncio.sleep(0.02)
