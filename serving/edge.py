"""The server's network edge: deadlines and limits applied before (and beside) the app.

uvicorn's httptools protocol has no header deadline (its keep-alive timer starts only after a first response), no
body deadline, no header size or field limit and no bound on the bodies it buffers. :func:`edge_protocol` returns a
subclass of it (uvloop + httptools latency kept: a few counters per callback) that adds, per connection:

- an idle deadline from accept to the first byte (``idle_timeout_s``, also uvicorn's keep-alive between requests);
- a header deadline from a request's first byte to its last header (``header_timeout_s``) -> 408, closed;
- a body deadline: ``body_timeout_s`` of grace plus one second per ``min_body_rate`` bytes received -> 408, closed;
- header bytes (``max_header_bytes``, the request line included) and fields (``max_header_fields``) -> 431, closed;
- open connections (``max_connections``) -> 503 with ``Retry-After``, closed at once;
- a **global** budget of request body bytes held by the server (``body_budget_bytes``): a request's declared
  ``Content-Length`` is reserved when its headers end (chunked bodies as they arrive) and released when its
  response is complete or its connection lost; a request that would pass the budget -> 503 with ``Retry-After``.

When the budget's bytes return to zero after a burst that held at least ``trim_after_bytes``, glibc's
``malloc_trim(0)`` gives the freed heap pages back to the system (at most once every :data:`TRIM_EVERY_S`, in a
thread, :data:`TRIM_DELAY_S` later so that the requests' last references are gone): glibc keeps freed memory of
large bodies in its arenas otherwise, and the server's RSS stays at its peak (benchmarks/edge_memory.py).
The other half is :func:`serving.heap.set_mmap_threshold` (``mmap_threshold_bytes``, set by ``pointkd serve``):
with glibc's own threshold, large blocks freed after a burst stay in the threads' heaps, out of the trim's reach.

:class:`serving.middleware.InFlightLimit` bounds the requests the app works on at once (503 with ``Retry-After``,
health apart).
Every answer here is the project's one error shape, ``{"error": message}``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .heap import malloc_trim
from .settings import EdgeLimits

LINGER_S = 2.0  # after a refusal, the client's further bytes are read and dropped for this long, at most
LINGER_BYTES = 1 << 20  # and up to this many, before the close
TRIM_EVERY_S = 5.0  # malloc_trim at most this often
TRIM_DELAY_S = 0.2  # after the budget drained, so that the requests' frames and bodies are gone


class EdgeReject(Exception):
    """Raised inside a parser callback: answer ``status`` with ``message`` and close the connection."""

    def __init__(self, status: int, message: str, retry: bool = False):
        super().__init__(message)
        self.status, self.message, self.retry = status, message, retry


class BodyBudget:
    """Request body bytes held by the server, across every connection: :meth:`take` refuses past ``limit``. When
    the held bytes return to zero after a burst that reached ``trim_after`` (0: never), ``trim`` runs (rate-limited,
    in a thread of the running loop); ``trims`` counts the trims started."""

    def __init__(self, limit: int, trim_after: int = 0, trim: Callable[[], int] | None = None):
        self.limit = limit
        self.held = 0
        self.peak = 0
        self.burst_peak = 0  # since the held bytes were last zero
        self.trim_after = trim_after
        self.trim = trim
        self.trims = 0
        self._last_trim = -TRIM_EVERY_S
        self._trim_pending = False

    def take(self, n: int) -> bool:
        if self.limit and self.held + n > self.limit:
            return False
        self.held += n
        self.peak = max(self.peak, self.held)
        self.burst_peak = max(self.burst_peak, self.held)
        return True

    def give(self, n: int) -> None:
        self.held -= n
        if self.held == 0:
            if self.trim is not None and self.trim_after and self.burst_peak >= self.trim_after:
                self._schedule_trim()
            self.burst_peak = 0

    def _schedule_trim(self) -> None:
        """One trim TRIM_DELAY_S from now, or when TRIM_EVERY_S since the last one has passed: a burst that drains
        inside the interval is trimmed late, not skipped (its heap would stay held until the next burst)."""
        if self._trim_pending:
            return
        now = time.monotonic()
        delay = max(TRIM_DELAY_S, self._last_trim + TRIM_EVERY_S - now)
        self._last_trim = now + delay
        self._trim_pending = True
        self.trims += 1
        asyncio.get_running_loop().call_later(delay, self._run_trim)

    def _run_trim(self) -> None:
        self._trim_pending = False
        asyncio.get_running_loop().run_in_executor(None, self.trim)  # ctypes drops the GIL: off the loop


def error_bytes(status: int, message: str, retry: bool = False) -> bytes:
    """A complete ``connection: close`` HTTP/1.1 answer with the JSON error body."""
    body = json.dumps({"error": message}).encode()
    head = [STATUS_LINE[status], b"content-type: application/json\r\n"]
    head += [b"content-length: %d\r\n" % len(body), b"connection: close\r\n"]
    if retry:
        head.append(b"retry-after: 1\r\n")
    return b"".join([*head, b"\r\n", body])


def edge_protocol(limits: EdgeLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with ``limits`` (one :class:`BodyBudget` shared by every connection)."""
    budget = BodyBudget(limits.body_budget_bytes, limits.trim_after_bytes, malloc_trim())

    class EdgeProtocol(HttpToolsProtocol):
        edge_limits = limits
        body_budget = budget

        def connection_made(self, transport) -> None:
            over = limits.max_connections and len(self.connections) >= limits.max_connections
            super().connection_made(transport)
            self._in_headers = True
            self._header_bytes = 0
            self._header_fields = 0
            self._header_total = 0
            self._reserved = 0  # body bytes this connection holds in the budget
            self._expected = None  # the current request's Content-Length
            self._received = 0
            self._header_timer = None
            self._body_timer = None
            self._body_started = 0.0
            self._discarding = False
            self._discarded = 0
            if over:
                message = f"this server holds {limits.max_connections} connections, its limit; retry shortly"
                return self._reject(EdgeReject(503, message, retry=True))
            if limits.idle_timeout_s:  # uvicorn arms its keep-alive timer only after a first response
                self.timeout_keep_alive_task = self.loop.call_later(
                    limits.idle_timeout_s, self.timeout_keep_alive_handler
                )
            self._arm_header_timer()

        def connection_lost(self, exc) -> None:
            self._release()
            self._cancel_timers()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._discarding:
                self._discarded += len(data)
                if self._discarded > LINGER_BYTES:
                    self.transport.close()
                return
            if self.transport.is_closing():
                return
            self._unset_keepalive_if_required()
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserCallbackError as err:
                if isinstance(err.__context__, EdgeReject):
                    return self._reject(err.__context__)
                self._bad_request()
                return
            except httptools.HttpParserUpgrade:
                self._unsupported_upgrade_warning()
                return
            except httptools.HttpParserError:
                self._bad_request()
                return
            if self._in_headers:  # httptools buffers a header's pieces itself: count what came in
                self._header_bytes += len(data)
                if limits.max_header_bytes and self._header_bytes > limits.max_header_bytes:
                    message = f"request line and headers over {limits.max_header_bytes} bytes"
                    self._reject(EdgeReject(431, message))

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_headers = True
            self._header_fields = 0
            self._header_total = 0
            self._arm_header_timer()

        def on_url(self, url: bytes) -> None:
            super().on_url(url)
            self._count_header_bytes(len(url))

        def on_header(self, name: bytes, value: bytes) -> None:
            self._header_fields += 1
            if limits.max_header_fields and self._header_fields > limits.max_header_fields:
                raise EdgeReject(431, f"over {limits.max_header_fields} header fields")
            self._count_header_bytes(len(name) + len(value) + 4)
            super().on_header(name, value)

        def _count_header_bytes(self, n: int) -> None:
            """The request line and header fields parsed so far, against the limit (complete ones: the bytes not
            yet parsed are counted in :meth:`data_received`)."""
            self._header_total += n
            if limits.max_header_bytes and self._header_total > limits.max_header_bytes:
                raise EdgeReject(431, f"request line and headers over {limits.max_header_bytes} bytes")

        def on_headers_complete(self) -> None:
            self._in_headers = False
            self._header_bytes = 0
            self._cancel_header_timer()
            self._release()
            self._expected = _content_length(self.headers)
            self._received = 0
            if self._expected and not budget.take(self._expected):
                raise EdgeReject(503, self._budget_message(), retry=True)
            self._reserved = self._expected or 0
            super().on_headers_complete()
            if self._expected or _chunked(self.headers):
                self._body_started = self.loop.time()
                self._arm_body_timer(limits.body_timeout_s)

        def on_body(self, body: bytes) -> None:
            if self.cycle is None or self.cycle.response_complete:
                return super().on_body(body)  # the rest of an answered request's body: dropped, not held
            self._received += len(body)
            if self._received > self._reserved:  # chunked, or more than declared
                extra = self._received - self._reserved
                if not budget.take(extra):
                    raise EdgeReject(503, self._budget_message(), retry=True)
                self._reserved += extra
            super().on_body(body)

        def on_message_complete(self) -> None:
            self._cancel_body_timer()
            super().on_message_complete()

        def on_response_complete(self) -> None:
            self._release()
            super().on_response_complete()

        # ---------------------------------------------------------------- helpers

        def _budget_message(self) -> str:
            return f"the server holds its budget of {limits.body_budget_bytes} request body bytes; retry shortly"

        def _release(self) -> None:
            if self._reserved:
                budget.give(self._reserved)
                self._reserved = 0

        def _arm_header_timer(self) -> None:
            if limits.header_timeout_s and self._header_timer is None:
                self._header_timer = self.loop.call_later(limits.header_timeout_s, self._header_timeout)

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _arm_body_timer(self, delay: float) -> None:
            if limits.body_timeout_s:
                self._body_timer = self.loop.call_later(max(delay, 0.05), self._body_check)

        def _cancel_body_timer(self) -> None:
            if self._body_timer is not None:
                self._body_timer.cancel()
                self._body_timer = None

        def _cancel_timers(self) -> None:
            self._cancel_header_timer()
            self._cancel_body_timer()
            self._unset_keepalive_if_required()

        def _header_timeout(self) -> None:
            self._header_timer = None
            if not self._in_headers or self.transport.is_closing():
                return
            if self._header_bytes == 0 and (self.cycle is None or self.cycle.response_complete):
                self.transport.close()  # nothing of a request arrived: no answer to give
                return
            self._reject(EdgeReject(408, f"request headers not received within {limits.header_timeout_s:g} s"))

        def _body_check(self) -> None:
            """The body's deadline: grace + received / min rate since its headers; re-armed while it keeps up."""
            self._body_timer = None
            if self.transport.is_closing():
                return
            allowed = limits.body_timeout_s + (self._received / limits.min_body_rate if limits.min_body_rate else 0)
            elapsed = self.loop.time() - self._body_started
            if elapsed < allowed:
                return self._arm_body_timer(allowed - elapsed)
            if self.cycle is not None and self.cycle.response_started:
                self.transport.close()  # answered already (a 401, a 413): the rest of the body is not wanted
                return
            rate = f" at {limits.min_body_rate} bytes/s" if limits.min_body_rate else ""
            message = f"request body not received within {limits.body_timeout_s:g} s{rate}"
            self._reject(EdgeReject(408, message))

        def _reject(self, err: EdgeReject) -> None:
            self._answer_and_close(error_bytes(err.status, err.message, err.retry))

        def _bad_request(self) -> None:
            self._answer_and_close(error_bytes(400, "invalid HTTP request"))

        def _answer_and_close(self, answer: bytes) -> None:
            """Write ``answer``, then a lingering close (nginx's): half-close and drop what the client still sends
            for up to :data:`LINGER_S` and :data:`LINGER_BYTES`, so that it reads the answer rather than a reset."""
            self._cancel_timers()
            self._release()
            if self.transport.is_closing() or self._discarding:
                return
            self.transport.write(answer)
            self._discarding = True
            if self.cycle is not None and not self.cycle.response_complete:
                self.cycle.disconnected = True  # an app still reading this request sees its client gone
                self.cycle.message_event.set()
            if self.transport.can_write_eof():
                self.transport.write_eof()
                self.flow.resume_reading()
                self.loop.call_later(LINGER_S, self.transport.close)
            else:  # TLS: no half-close
                self.transport.close()

    return EdgeProtocol


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length" and value.strip().isdigit():
            return int(value)
    return None


def _chunked(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name == b"transfer-encoding" and b"chunked" in value.lower() for name, value in headers)
