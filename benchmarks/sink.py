"""The benchmarks' SMTP sink: the test suite's aiosmtpd server, in a process of its own.

Driven over stdin, one command a line, each answered with one JSON line on stdout:
`delay SECONDS` (every mail takes this long to be accepted; 0 = at once),
`stats` (`{"count": n, "first_data": t, "first": t, "last": t}`: wall-clock times of
the first DATA command, the first and the last arrival), `reset`.
Mails are counted, not kept: a long run must not grow the sink's memory.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from smtp_server import SMTPTestServer  # noqa: E402


class CountingSink(SMTPTestServer):
    """Counts accepted mails and their arrival times instead of parsing and keeping them."""

    def __init__(self) -> None:
        super().__init__()
        self.mode = "delay"
        self.delay = 0.0
        self._stats_lock = threading.Lock()
        self.arrivals: list[float] = []

        self.first_data: float | None = None

    def _count_data_command(self) -> None:
        super()._count_data_command()
        with self._stats_lock:
            if self.first_data is None:
                self.first_data = time.time()

    def _record(self, envelope: Any) -> None:
        with self._stats_lock:
            self.arrivals.append(time.time())

    def stats(self) -> dict[str, Any]:
        """Mails accepted so far, when the first DATA began and when the last mail arrived."""
        with self._stats_lock:
            found, first_data = list(self.arrivals), self.first_data
        return {"count": len(found), "first_data": first_data,
                "first": found[0] if found else None, "last": found[-1] if found else None}


def main() -> None:
    """Serve until stdin closes."""
    sink = CountingSink()
    sink.start()
    print(json.dumps({"port": sink.port}), flush=True)
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "delay":
            sink.delay = float(argument)
            answer: dict[str, Any] = {"delay": sink.delay}
        elif command == "reset":
            with sink._stats_lock:
                sink.arrivals.clear()
                sink.first_data = None
            answer = {"reset": True}
        else:
            answer = sink.stats()
        print(json.dumps(answer), flush=True)
    sink.close()


if __name__ == "__main__":
    main()
