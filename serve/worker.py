"""gunicorn's threaded worker with a deadline on reading each request, so slow clients cannot hold it.

A client that sends its headers, or its body, a byte every few seconds holds one of the worker's threads
for as long as it trickles: a handful of them and `/ping` waits behind them. Here every connection's
socket is wrapped in `DeadlineSocket` when it is handed to a thread: the whole request (headers and
body) must arrive within `read_timeout` seconds of that moment, whatever the pace of the bytes. Past
it, a read raises `ReadTimeout`: while the headers are read, gunicorn closes the connection quietly;
while the application reads the body, it answers 408 (serve/app.py). The application clears the
deadline once it holds the whole body, so inference time never counts against it.
"""
from __future__ import annotations

import errno
import socket
import time

from gunicorn.workers.gthread import ThreadWorker


class ReadTimeout(ConnectionResetError):
    """The request did not arrive within the read deadline. A ConnectionResetError (ECONNRESET), so that
    gunicorn drops the connection as it does a client that went away, without a traceback in the log."""

    def __init__(self, seconds: float):
        super().__init__(errno.ECONNRESET, f"the request was not received within {seconds:g} s")
        self.seconds = seconds


class DeadlineSocket:
    """A socket whose reads fail with ReadTimeout once `deadline` (time.monotonic()) has passed."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self.deadline: float | None = None
        self.seconds = 0.0

    def start(self, seconds: float) -> None:
        """The request read from now on must be done within `seconds`."""
        self.deadline, self.seconds = time.monotonic() + seconds, seconds

    def clear(self) -> None:
        """The request is read: no deadline for what follows (the response, a drained body)."""
        self.deadline = None

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def recv(self, size: int, *flags) -> bytes:
        left = self.remaining()
        if left is None:
            return self._sock.recv(size, *flags)
        if left <= 0:
            raise ReadTimeout(self.seconds)
        blocking = self._sock.gettimeout()
        self._sock.settimeout(left)
        try:
            return self._sock.recv(size, *flags)
        except TimeoutError:
            raise ReadTimeout(self.seconds) from None
        finally:
            self._sock.settimeout(blocking)

    def __getattr__(self, name):  # everything else is the socket's own (fileno, send, setblocking, close...)
        return getattr(self._sock, name)


class DeadlineThreadWorker(ThreadWorker):
    """ThreadWorker whose connections read each request under a deadline (`read_timeout`, seconds)."""

    read_timeout = 20.0

    def enqueue_req(self, conn):
        if not isinstance(conn.sock, DeadlineSocket):
            conn.sock = DeadlineSocket(conn.sock)
        conn.sock.start(self.read_timeout)  # a new connection, or a kept-alive one with its next request
        super().enqueue_req(conn)


def with_read_timeout(seconds: float) -> type:
    """The worker class gunicorn is given: DeadlineThreadWorker with this read deadline."""
    return type("DeadlineThreadWorker", (DeadlineThreadWorker,), {"read_timeout": float(seconds)})
