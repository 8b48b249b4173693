"""Make moto's SQS hand a message to one receiver at a time, as the real service does.

moto's ReceiveMessage looks whether a message is visible and then marks it received as
two steps, and its server answers requests in threads: two receivers polling at once can
both take the same message within its visibility timeout, which SQS does not do (its
at-least-once duplicates are rare, not a race every test run can hit). One lock around
ReceiveMessage makes the look-and-mark atomic; a long poll gives the lock up while it
waits for messages, so other receivers and senders are not held up.

``install()`` patches moto in this process (the in-process ``mock_aws`` backend and a
``ThreadedMotoServer`` started here alike) and returns a function that undoes it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import wraps
from typing import Any


def install() -> Callable[[], None]:
    """Patch moto's SQS backend; returns the undo."""
    from moto.sqs.models import Queue, SQSBackend

    lock = threading.Lock()
    receive = SQSBackend.receive_message
    wait = Queue.wait_for_messages

    @wraps(receive)
    def receive_one_at_a_time(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return receive(*args, **kwargs)

    @wraps(wait)
    def wait_unlocked(self: Any, *args: Any, **kwargs: Any) -> Any:
        # Called by ReceiveMessage only, with the lock held.
        lock.release()
        try:
            return wait(self, *args, **kwargs)
        finally:
            lock.acquire()

    SQSBackend.receive_message = receive_one_at_a_time  # type: ignore[method-assign]
    Queue.wait_for_messages = wait_unlocked  # type: ignore[method-assign]

    def undo() -> None:
        SQSBackend.receive_message = receive  # type: ignore[method-assign]
        Queue.wait_for_messages = wait  # type: ignore[method-assign]

    return undo
