"""Fixtures for the Stripe gateway: a localstripe emulator (a subprocess on a free 127.0.0.1
port, started once per session, emptied before each test), settings pointing at it, and
helpers to post signed webhooks to dj-stripe's endpoint.

Tests that need the emulator skip cleanly when it cannot start (no localstripe installed, no
loopback networking); nothing here reaches the internet.
"""

import hashlib
import hmac
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).parent
PAYLOADS = HERE / "payloads"
SECRET_KEY = "sk_test_" + "Prorata0localstripe0Tests0Key"
PUBLISHABLE_KEY = "pk_test_" + "Prorata0localstripe0Tests0Key"
WEBHOOK_SECRET = "whsec_" + "prorataTestSigningSecret0123456789"


@dataclass
class Emulator:
    url: str
    process: subprocess.Popen

    def request(self, method: str, path: str, data: bytes | None = None) -> int:
        req = urllib.request.Request(self.url + path, method=method, data=data)
        req.add_header("Authorization", f"Bearer {SECRET_KEY}")
        with urllib.request.urlopen(req, timeout=5) as response:
            return response.status

    def reset(self) -> None:
        """Forget every object (localstripe's DELETE /_config/data)."""
        self.request("DELETE", "/_config/data")


def _start_emulator() -> Emulator:
    try:
        import localstripe  # noqa: F401
    except ImportError as exc:  # the dev extra is not installed
        raise RuntimeError(f"localstripe is not installed: {exc}") from exc
    process = subprocess.Popen(
        [sys.executable, str(HERE / "localstripe_server.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    port = process.stdout.readline().strip()
    if not port.isdigit():
        process.kill()
        process.wait(timeout=5)
        raise RuntimeError("localstripe did not report its port")
    emulator = Emulator(url=f"http://127.0.0.1:{port}", process=process)
    deadline = time.monotonic() + 15
    while True:
        try:
            emulator.request("GET", "/v1/account")
            return emulator
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline or process.poll() is not None:
                _stop(process)
                raise RuntimeError("localstripe did not answer within 15 s") from None
            time.sleep(0.1)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    if process.stdout:
        process.stdout.close()


@pytest.fixture(scope="session")
def localstripe_server():
    try:
        emulator = _start_emulator()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"localstripe cannot start here: {exc}")
    yield emulator
    _stop(emulator.process)


@pytest.fixture
def localstripe(localstripe_server, settings, db):
    """An empty emulator, with Prorata configured for Stripe against it."""
    localstripe_server.reset()
    settings.PAYMENT_GATEWAY = "stripe"
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_TEST_SECRET_KEY = SECRET_KEY
    settings.STRIPE_PUBLISHABLE_KEY = PUBLISHABLE_KEY
    settings.STRIPE_API_BASE = localstripe_server.url
    settings.STRIPE_JS_URL = localstripe_server.url + "/js.stripe.com/v3/"
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    # The page's Content-Security-Policy names the Stripe.js origin the settings name at start-up
    # (config/settings/base.py); here Stripe.js and the API are the emulator's.
    policy = {**settings.CONTENT_SECURITY_POLICY, "DIRECTIVES": dict(settings.CONTENT_SECURITY_POLICY["DIRECTIVES"])}
    for directive in ("script-src", "connect-src", "frame-src"):
        policy["DIRECTIVES"][directive] = [*policy["DIRECTIVES"][directive], localstripe_server.url]
    settings.CONTENT_SECURITY_POLICY = policy
    yield localstripe_server


@pytest.fixture
def gateway(localstripe):
    from invoices.gateways import get_gateway

    return get_gateway("stripe")


@pytest.fixture
def account(db):
    from tests.factories import AccountFactory, UserFactory

    return AccountFactory(owner=UserFactory(username="owner@example.com"), subscription=False)


# -- webhooks ----------------------------------------------------------------------------------


@pytest.fixture
def webhook_endpoint(db):
    """dj-stripe's endpoint row: it holds the signing secret and the URL's uuid."""
    from djstripe.models import WebhookEndpoint

    return WebhookEndpoint.objects.create(
        id="we_prorataTest0001",
        livemode=False,
        url="http://testserver/stripe/webhook/",
        enabled_events=["*"],
        status="enabled",
        secret=WEBHOOK_SECRET,
        api_version="2024-06-20",
    )


def sign(payload: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """Stripe's `Stripe-Signature` header: t=<ts>,v1=<HMAC-SHA256 of "<ts>.<payload>">."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def event_for(event_type: str, obj: dict, *, event_id: str | None = None, created: int | None = None) -> dict:
    """An Event in the shape of Stripe's API reference (api_version, data.object, request…)."""
    created = created or int(time.time())
    return {
        "id": event_id or f"evt_{event_type.replace('.', '_')}_{obj.get('id', 'x')}"[:60],
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


@pytest.fixture
def post_event(client, webhook_endpoint, django_capture_on_commit_callbacks):
    """Post an event to dj-stripe's URL, signed like Stripe signs it, as a committed request (the
    work a receiver leaves for after the commit runs); returns the response."""
    from django.urls import reverse

    url = reverse("djstripe:djstripe_webhook_by_uuid", kwargs={"uuid": webhook_endpoint.djstripe_uuid})

    def post(event: dict, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None, signature=None):
        payload = json.dumps(event).encode()
        header = signature if signature is not None else sign(payload, secret, timestamp)
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(url, data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)

    return post


def load_payload(name: str, **replace) -> dict:
    """A recorded Stripe object (tests/stripe/payloads/<name>.json) with some fields replaced."""
    data = json.loads((PAYLOADS / f"{name}.json").read_text())
    data.update(replace)
    return data
