"""The benchmarks' SMTP sink: the test suite's aiosmtpd server, in a process of its own.

Driven over stdin, one command a line, each answered with one JSON line on stdout:
`delay SECONDS` (every mail takes this long to be accepted; 0 = at once),
`mode NAME` (one of the test server's modes: `451` refuses every DATA, `delay` accepts
again; answers `{"mode": NAME, "at": t}`, the wall-clock time of the switch),
`stats` (`{"count": n, "refused": n, "first_data": t, "first": t, "last": t}`: DATA
commands refused, wall-clock times of the first DATA command, the first and the last
arrival), `reset`.
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
from support.smtp_server import FAILING_MODES, SMTPTestServer  # noqa: E402


class CountingSink(SMTPTestServer):
    """Counts accepted mails and their arrival times instead of parsing and keeping them."""

    def __init__(self) -> None:
        super().__init__()
        self.mode = "delay"
        self.delay = 0.0
        self._stats_lock = threading.Lock()
        self.arrivals: list[float] = []
        self.refused = 0
        self.first_data: float | None = None

    def _count_data_command(self) -> None:
        super()._count_data_command()
        with self._stats_lock:
            if self.first_data is None:
                self.first_data = time.time()

    def _take_mode(self) -> str:
        mode: str = super()._take_mode()
        if mode in FAILING_MODES:  # counted here: this is where the refusal is decided
            with self._stats_lock:
                self.refused += 1
        return mode

    def _record(self, envelope: Any) -> None:
        with self._stats_lock:
            self.arrivals.append(time.time())

    def stats(self) -> dict[str, Any]:
        """Mails accepted and refused so far, when the first DATA began, the last mail arrived."""
        with self._stats_lock:
            found, first_data, refused = list(self.arrivals), self.first_data, self.refused
        return {"count": len(found), "refused": refused, "first_data": first_data,
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
        elif command == "mode":
            try:
                sink.mode = argument
                answer = {"mode": argument, "at": time.time()}
            except ValueError as error:
                answer = {"error": str(error)}
        elif command == "reset":
            with sink._stats_lock:
                sink.arrivals.clear()
                sink.first_data = None
                sink.refused = 0
            answer = {"reset": True}
        else:
            answer = sink.stats()
        print(json.dumps(answer), flush=True)
    sink.close()


if __name__ == "__main__":
    main()
