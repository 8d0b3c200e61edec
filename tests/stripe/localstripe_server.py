"""Run localstripe on 127.0.0.1 for the tests: `python localstripe_server.py` prints its port.

localstripe's own command binds every interface and pickles its store to /tmp on every write;
here it listens on a free loopback port chosen by the kernel, keeps its store in memory, and
answers the two account routes dj-stripe calls before any sync (`GET /v1/account`,
`GET /v1/accounts`), which the emulator lacks.

localstripe has no disputes either. A test registers a recorded Stripe dispute (the JSON shape of
Stripe's API reference, tests/stripe/payloads/dispute.json) with `POST /_config/disputes`, and
`GET /v1/disputes/<id>` then answers it, as Stripe would when dj-stripe re-reads the dispute
named by a `charge.dispute.created` event.
"""

import asyncio
import socket
import sys

from aiohttp import web
from localstripe import resources, server

ACCOUNT = {
    "id": "acct_localstripe0001",
    "object": "account",
    "business_profile": {"name": "Prorata (localstripe)", "url": None, "support_email": None},
    "business_type": "company",
    "capabilities": {"card_payments": "active"},
    "charges_enabled": True,
    "country": "US",
    "created": 1700000000,
    "default_currency": "usd",
    "details_submitted": True,
    "email": "billing@prorata.localhost",
    "metadata": {},
    "payouts_enabled": True,
    "settings": {"branding": {"icon": None, "logo": None}, "dashboard": {"display_name": "Prorata"}},
    "type": "standard",
}


async def account(request):
    return web.json_response(ACCOUNT)


async def accounts(request):
    return web.json_response({"object": "list", "url": "/v1/accounts", "has_more": False, "data": []})


DISPUTES: dict[str, dict] = {}


async def dispute_register(request):
    dispute = await request.json()
    DISPUTES[dispute["id"]] = dispute
    return web.json_response(dispute)


async def dispute_retrieve(request):
    dispute = DISPUTES.get(request.match_info["id"])
    if dispute is None:
        error = {"type": "invalid_request_error", "code": "resource_missing", "message": "No such dispute"}
        return web.json_response({"error": error}, status=404)
    return web.json_response(dispute)


async def flush_disputes(app_request, handler):
    if app_request.method == "DELETE" and app_request.path == "/_config/data":
        DISPUTES.clear()
    return await handler(app_request)


def die_with_parent() -> None:
    """Linux: end this emulator when the process that started it ends, even if that one is killed
    with no chance to clean up (a test run interrupted with SIGKILL leaves nothing behind)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main() -> None:
    die_with_parent()
    # The store writes itself to a fixed file on every change: keep it in memory only.
    resources.Store.dump_to_disk = lambda self: None
    resources.Store.try_load_from_disk = lambda self: None
    app = server.app
    # Added routes go first: aiohttp matches in order and `/v1/accounts/{id}` style routes may follow.
    app.router.add_get("/v1/account", account)
    app.router.add_get("/v1/accounts", accounts)
    app.router.add_post("/_config/disputes", dispute_register)
    app.router.add_get("/v1/disputes/{id}", dispute_retrieve)
    app.middlewares.append(web.middleware(flush_disputes))

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    web.run_app(app, sock=sock, print=None, access_log=None, handle_signals=True)


if __name__ == "__main__":
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    sys.exit(main())
