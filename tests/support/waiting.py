"""Waiting for something another thread or process does, without sleeping longer than needed."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import pytest

# Short: a condition is cheap to check, and every wait ends that much sooner.
POLL_SECONDS = 0.05


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               step: float = POLL_SECONDS) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def came_up(process: subprocess.Popen[bytes], ready: Callable[[], bool], deadline: float,
            step: float = POLL_SECONDS) -> bool:
    """Poll `ready` until it holds (True); False as soon as `process` has exited or the
    monotonic `deadline` has passed: a server that started, or why not to wait longer."""
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True
