"""API keys: stored hashed, shown once, revocable; every request needs one (401 otherwise)."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import AuditEvent, UsageEvent
from api.models import ApiKey, api_key_hash
from api.services import api_key_create, api_key_revoke

from .conftest import event

USAGE = "/api/v1/usage/events"


def entitlement_url(prop):
    return f"/api/v1/entitlements/{prop.tracking_tag}"


def test_key_is_stored_hashed_and_recognisable_by_prefix(db):
    """Safety: an API key is stored only as its hash, with a prefix (prk_...) to recognise it, and its creation is
    audited."""
    key, raw = api_key_create(name="tracking-prod")
    assert raw.startswith("prk_") and len(raw) > 40
    assert key.key_hash == api_key_hash(raw) and raw not in key.key_hash
    assert key.prefix == raw[:12]
    assert not ApiKey.objects.filter(key_hash=raw).exists()
    assert AuditEvent.objects.filter(action="api_key.created", object_id=str(key.pk)).exists()


def test_key_needs_a_name(db):
    """An API key with a blank name is refused."""
    with pytest.raises(ValueError, match="name"):
        api_key_create(name="  ")


@pytest.mark.parametrize(
    "header",
    [None, "Bearer ", "Bearer prk_wrong", "Token abc", "prk_nobearer", "Bearer " + "x" * 500],
)
def test_missing_or_wrong_key_gets_401_and_records_nothing(client, personal_prop, header):
    """Safety: without a valid Bearer key the usage API answers 401 and records no event, and the entitlement API
    answers 401."""
    headers = {"Authorization": header} if header is not None else {}
    response = client.post(USAGE, {"events": [event(personal_prop)]}, content_type="application/json",
                           headers=headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert "API key" in response.json()["detail"]
    assert UsageEvent.objects.count() == 0
    assert client.get(entitlement_url(personal_prop), headers=headers).status_code == 401


def test_revoked_key_gets_401_at_once(client, personal_prop, django_capture_on_commit_callbacks):
    """Safety: a revoked API key is refused at once, not after the cache expires; revoking it again changes nothing and
    is audited once."""
    key, raw = api_key_create(name="tracking-old")
    auth = {"Authorization": f"Bearer {raw}"}
    assert client.get(entitlement_url(personal_prop), headers=auth).status_code == 200  # now cached as valid
    with django_capture_on_commit_callbacks(execute=True):
        assert api_key_revoke(key) is True
    assert client.get(entitlement_url(personal_prop), headers=auth).status_code == 401
    assert api_key_revoke(key) is False  # already revoked: nothing changes
    assert AuditEvent.objects.filter(action="api_key.revoked").count() == 1


def test_other_keys_keep_working_after_a_revocation(client, personal_prop, auth):
    """Revoking one API key leaves the other keys working."""
    old, _ = api_key_create(name="old")
    api_key_revoke(old)
    assert client.get(entitlement_url(personal_prop), headers=auth).status_code == 200


def test_create_api_key_command_prints_the_key_once(db):
    """create_api_key prints the key once on stdout (only its hash is stored) and warns on stderr that it is not shown
    again."""
    out, err = StringIO(), StringIO()
    call_command("create_api_key", "tracking-prod", stdout=out, stderr=err)
    raw = out.getvalue().strip()
    key = ApiKey.objects.get(name="tracking-prod")
    assert key.key_hash == api_key_hash(raw)
    assert raw not in err.getvalue() and "not shown again" in err.getvalue()


def test_create_api_key_command_refuses_an_empty_name(db):
    """create_api_key refuses a blank name with a clear error."""
    with pytest.raises(CommandError, match="name"):
        call_command("create_api_key", " ", stdout=StringIO(), stderr=StringIO())


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("staff@example.com", "staff@example.com", "pw-123456")
    client.force_login(user)
    return client


def test_staff_create_a_key_in_the_admin_and_see_it_once(staff_client):
    """Staff create an API key in the admin: it is shown once in a message, stored hashed with its creator, and never
    shown on its page."""
    response = staff_client.post("/admin/api/apikey/add/", {"name": "tracking-admin"}, follow=True)
    assert response.status_code == 200
    key = ApiKey.objects.get(name="tracking-admin")
    shown = [str(m) for m in response.context["messages"] if "copy it now" in str(m)]
    assert len(shown) == 1
    raw = next(word for word in shown[0].split() if word.startswith("prk_"))
    assert key.key_hash == api_key_hash(raw)
    assert key.created_by.username == "staff@example.com"
    page = staff_client.get(f"/admin/api/apikey/{key.pk}/change/")
    assert raw not in page.content.decode()


def test_staff_revoke_keys_from_the_admin(staff_client):
    """Staff revoke API keys from the admin list with the revoke action."""
    key, raw = api_key_create(name="to-revoke")
    response = staff_client.post("/admin/api/apikey/", {"action": "revoke", "_selected_action": [key.pk]},
                                 follow=True)
    assert response.status_code == 200
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert staff_client.get("/admin/api/apikey/").status_code == 200
