"""Plain Locust, the bench's baselines: bare ``FastHttpUser`` locustfiles, no recording.

``plain`` users are paced per user (``constant(0)``: as fast as they go, or
``constant_throughput``); ``plain-open`` keeps an even arrival schedule like the
driver's open loop. :func:`plain_locustfile` writes one for :mod:`chaos.bench.driver`.
"""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

_PLAIN_LOCUSTFILE = """\
from locust import FastHttpUser, constant, constant_throughput, task

class Plain(FastHttpUser):
    wait_time = {wait}

    @task
    def get(self):
        self.client.get("/")
"""


# The like-for-like baseline of the open-loop driver: plain Locust keeping an even
# arrival schedule (one shared next slot, ``users`` long-lived senders), without its
# cap, drops, lag or recording. Spawning a greenlet per request instead costs more.
# After a pause (the bench pauses every generator but the one it measures) the slots
# more than 0.1 s late are skipped, as the driver drops them, rather than sent at once.
_PLAIN_OPEN_LOCUSTFILE = """\
import random
import time

import gevent
from locust import FastHttpUser, constant, task

PERIOD = 1.0 / {rate}
SKIP_LATE = 0.1


class PlainOpen(FastHttpUser):
    concurrency = {senders}
    wait_time = constant(1.0)

    def on_start(self):
        self.due = time.monotonic() + random.uniform(0.0, PERIOD)
        self.senders = [gevent.spawn(self.send_from) for _ in range({senders})]

    def send_from(self):
        while True:
            due = self.due
            wait = due - time.monotonic()
            if wait < -SKIP_LATE:
                due -= wait
                wait = 0.0
            self.due = due + PERIOD
            if wait > 0:
                gevent.sleep(wait)
            self.client.get("/")

    def on_stop(self):
        gevent.killall(self.senders)

    @task
    def idle(self):
        pass
"""


def plain_locustfile(work: Path, kind: str, users: int, rate: float | None) -> Path:
    """A plain locustfile in ``work``: ``kind`` "plain" or "plain-open", ``rate`` in all
    (None: as fast as it goes; a plain open loop needs one)."""
    path = work / f"plain-{os.getpid()}-{time.monotonic_ns()}.py"
    if kind == "plain-open":
        if rate is None:
            raise ValueError("a plain open loop needs a rate")
        path.write_text(_PLAIN_OPEN_LOCUSTFILE.format(rate=rate, senders=users))
        return path
    wait = "constant(0)" if rate is None else f"constant_throughput({rate / users})"
    path.write_text(textwrap.dedent(_PLAIN_LOCUSTFILE.format(wait=wait)))
    return path
