"""A small HTTP proxy in front of localstripe that behaves like Stripe at a distance: each request
waits `latency` seconds, and past `rate` requests a second (a token bucket holding `burst`, one
second's worth by default, as Stripe's limiter) it is answered 429 without reaching the emulator.

For tests it can also refuse the next requests with 429 (`reject_next`, `reject_all`) or forward
a request and then drop the connection before answering (`lose_answers`: the charge happened, the
caller never hears of it). It counts what it saw: requests, 429s, the most requests in flight at
once, the time the emulator itself took, and the idempotency keys of the charges
(POST /v1/payment_intents) it let through and those it refused. Used by
tests/stripe/test_concurrency.py and bench/stripe_run.py.

It runs in a thread of the caller with its own event loop, on a free 127.0.0.1 port.
"""

import asyncio
import threading
import time
from collections import Counter

import aiohttp
from aiohttp import web

RATE_LIMITED = {"error": {"type": "invalid_request_error", "code": "rate_limit",
                          "message": "Too many requests hit the API too quickly."}}
FORWARDED_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "Stripe-Version", "Stripe-Account")


class LatencyProxy:
    def __init__(self, upstream: str, *, latency: float = 0.25, rate: float = 100.0, burst: float | None = None,
                 retry_after: str | None = None):
        self.upstream = upstream.rstrip("/")
        self.latency = latency
        self.rate = rate
        self.burst = rate if burst is None else burst
        self.retry_after = retry_after
        self.reject_next = 0
        self.reject_all = False
        self.lose_answers = 0
        self.url = ""
        self.reset()

    def reset(self) -> None:
        """Forget the counts (and fill the bucket)."""
        self.requests = 0
        self.rejected = 0
        self.forwarded = 0
        self.upstream_seconds = 0.0  # time the emulator took to answer the requests let through
        self.in_flight = 0
        self.max_in_flight = 0
        self.charges_forwarded: Counter[str] = Counter()  # idempotency key -> times let through
        self.charges_rejected: Counter[str] = Counter()  # idempotency key -> times answered 429
        self._tokens = self.burst
        self._filled_at = time.monotonic()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> str:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="latency-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the latency proxy did not start")
        return self.url

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application(client_max_size=10 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self._session = self._loop.run_until_complete(self._open_session())
        ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self._session.close())
            self._loop.run_until_complete(runner.cleanup())
            self._loop.close()

    @staticmethod
    async def _open_session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    # -- one request -------------------------------------------------------------------------

    def _take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._filled_at) * self.rate)
        self._filled_at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def _refuse(self) -> bool:
        if self.reject_all:
            return True
        if self.reject_next > 0:
            self.reject_next -= 1
            return True
        return not self._take()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        charge_key = request.headers.get("Idempotency-Key", "") if (
            request.method == "POST" and request.path == "/v1/payment_intents") else ""
        try:
            refused = self._refuse()  # Stripe counts a request when it arrives
            body = await request.read()
            await asyncio.sleep(self.latency)
            if refused:
                self.rejected += 1
                if charge_key:
                    self.charges_rejected[charge_key] += 1
                headers = {"Retry-After": self.retry_after} if self.retry_after else {}
                return web.json_response(RATE_LIMITED, status=429, headers=headers)
            headers = {name: request.headers[name] for name in FORWARDED_HEADERS if name in request.headers}
            started = time.monotonic()
            async with self._session.request(request.method, self.upstream + request.path_qs, data=body or None,
                                             headers=headers) as upstream:
                answer = await upstream.read()
                status = upstream.status
            self.upstream_seconds += time.monotonic() - started
            self.forwarded += 1
            if charge_key:
                self.charges_forwarded[charge_key] += 1
            if self.lose_answers > 0:
                self.lose_answers -= 1
                request.transport.close()  # the charge was made; its answer never arrives
                raise ConnectionResetError("answer dropped by the latency proxy")
            return web.Response(body=answer, status=status, content_type="application/json")
        finally:
            self.in_flight -= 1
