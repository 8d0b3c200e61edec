import copy
import json
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from plans.models import Plan
from plans.services import DEMO_CATALOG, CatalogError, catalog_load

pytestmark = pytest.mark.django_db

DEMO = json.loads(DEMO_CATALOG.read_text())


def test_cat2_demo_catalog_loads_the_three_plans_with_their_prices_and_limits():
    result = catalog_load(DEMO)
    assert sorted(result.created) == ["advanced", "free", "personal"]
    personal = Plan.objects.get(code="personal")
    assert personal.monthly_price == Decimal("14.00") and personal.yearly_price == Decimal("134.40")
    assert (personal.limit_properties, personal.limit_sessions, personal.limit_integrations) == (3, 10000, None)
    assert personal.overage_per_1000 == Decimal("2.00") and personal.extra_property_monthly is None
    advanced = Plan.objects.get(code="advanced")
    assert advanced.yearly_price == Decimal("278.04") and advanced.extra_property_monthly == Decimal("30.00")
    free = Plan.objects.get(code="free")
    assert free.is_free and free.hard_capped and free.trial_days == 0 and free.yearly_price is None
    assert personal.trial_days == advanced.trial_days == 14


def test_cat1_reload_is_idempotent_and_updates_by_code():
    catalog_load(DEMO)
    again = catalog_load(DEMO)
    assert again.created == [] and again.updated == [] and len(again.unchanged) == 3
    changed = copy.deepcopy(DEMO)
    changed["plans"][1]["prices"]["monthly"] = "15.00"
    result = catalog_load(changed)
    assert result.updated == ["personal"]
    assert Plan.objects.get(code="personal").monthly_price == Decimal("15.00")
    assert Plan.objects.count() == 3


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["plans"][1]["prices"].update(monthly="14.0x"), "plan 'personal': prices.monthly"),
        (lambda d: d["plans"][1]["prices"].update(monthly=14.5), "plan 'personal': prices.monthly"),
        (lambda d: d["plans"][2].update(currency="usd"), "plan 'advanced': currency"),
        (lambda d: d["plans"][2]["limits"].update(properties=-1), "plan 'advanced': limits.properties"),
        (lambda d: d["plans"][2].pop("rank"), "plan 'advanced': missing field(s) rank"),
        (lambda d: d["plans"][0].update(colour="red"), "plan 'free': unknown field(s) colour"),
        (lambda d: d["plans"][1].update(code="Personal Plan"), "code must be lower-case"),
        (lambda d: d["plans"][2].update(code="personal"), "plan 'personal': code appears twice"),
        (lambda d: d["plans"][1].update(prices={"monthly": None, "yearly": None}), "needs a monthly or a yearly"),
        (lambda d: d["plans"][1].update(trial_days="14"), "plan 'personal': trial_days"),
    ],
)
def test_cat1_bad_file_is_rejected_naming_plan_and_field_and_writes_nothing(mutate, message):
    bad = copy.deepcopy(DEMO)
    mutate(bad)
    with pytest.raises(CatalogError) as exc:
        catalog_load(bad)
    assert message in str(exc.value)
    assert Plan.objects.count() == 0


def test_cat1_bad_file_leaves_existing_plans_untouched():
    catalog_load(DEMO)
    bad = copy.deepcopy(DEMO)
    bad["plans"][0]["name"] = "Changed"
    bad["plans"][2]["overage_per_1000"] = "abc"
    with pytest.raises(CatalogError):
        catalog_load(bad)
    assert Plan.objects.get(code="free").name == "Free"


def test_cat1_load_catalog_command(tmp_path, capsys):
    call_command("load_catalog", str(DEMO_CATALOG))
    assert "3 created" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text('{"plans": [ {"code": "x"} ')
    with pytest.raises(CommandError, match="not valid JSON"):
        call_command("load_catalog", str(bad))
    missing = tmp_path / "missing.json"
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("load_catalog", str(missing))


# -- bad input: a clear error, nothing written (issue 16) ------------------------------------


@pytest.fixture
def loaded():
    """The demo catalog as it is before each bad file: nothing may change it."""
    catalog_load(DEMO)
    return list(Plan.objects.order_by("code").values())


def load_bad(tmp_path, content: bytes) -> str:
    path = tmp_path / "catalog.json"
    path.write_bytes(content)
    with pytest.raises(CommandError) as exc:
        call_command("load_catalog", str(path))
    return str(exc.value)


def test_cat1_a_file_that_is_not_utf8_is_refused_with_the_byte_and_line(tmp_path, loaded):
    latin1 = json.dumps(DEMO, indent=1).replace("Personal", "Persönal").encode("latin-1")

    message = load_bad(tmp_path, latin1)

    assert message.startswith("Catalog not loaded, nothing was changed.")
    assert "is not UTF-8 text: byte 0xf6 on line" in message and "Save the file as UTF-8" in message
    assert list(Plan.objects.order_by("code").values()) == loaded


def test_cat1_a_100000_deep_json_is_refused_not_a_recursion_traceback(tmp_path, loaded):
    message = load_bad(tmp_path, b"[" * 100_000 + b"]" * 100_000)

    assert "nested too deeply to be a catalog" in message
    assert list(Plan.objects.order_by("code").values()) == loaded


@pytest.mark.parametrize("price", ["1e400", "1E+400", "99999999999.99", "1000000.01"])
def test_cat1_a_price_too_large_for_any_invoice_is_refused_naming_plan_and_field(tmp_path, loaded, price):
    bad = copy.deepcopy(DEMO)
    bad["plans"][1]["prices"]["monthly"] = price

    message = load_bad(tmp_path, json.dumps(bad).encode())

    assert f"plan 'personal': prices.monthly: '{price}' is more than the largest price allowed, 1,000,000.00." \
        in message
    assert list(Plan.objects.order_by("code").values()) == loaded


def test_cat1_a_count_too_large_for_its_column_is_refused(tmp_path, loaded):
    bad = copy.deepcopy(DEMO)
    bad["plans"][2]["limits"]["sessions"] = 10**30

    message = load_bad(tmp_path, json.dumps(bad).encode())

    assert "plan 'advanced': limits.sessions: 1000000000000000000000000000000 is more than 2,147,483,647" in message
    assert list(Plan.objects.order_by("code").values()) == loaded


def test_cat1_a_utf8_file_with_a_byte_order_mark_loads(tmp_path):
    path = tmp_path / "catalog.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(DEMO).encode())
    call_command("load_catalog", str(path))
    assert Plan.objects.count() == 3


@pytest.mark.parametrize(("name", "shown"), [("Pers\u0000onal", "U+0000 at position 5"),
                                             ("Personal\u202e", "U+202E at position 9"),
                                             ("Per\nsonal", "U+000A at position 4")])
def test_cat1_a_name_with_a_nul_or_control_character_is_refused_not_a_database_error(tmp_path, loaded, name, shown):
    """Issue 28, finding 6: a NUL byte in a name ended in PostgreSQL's traceback (text cannot hold
    it); a bidi override or line break would be shown to customers. Refused with the position."""
    bad = copy.deepcopy(DEMO)
    bad["plans"][1]["name"] = name

    message = load_bad(tmp_path, json.dumps(bad).encode())

    assert f"plan 'personal': name has an invisible or control character ({shown})" in message
    assert list(Plan.objects.order_by("code").values()) == loaded


def test_cat1_a_name_longer_than_its_column_is_refused(tmp_path, loaded):
    bad = copy.deepcopy(DEMO)
    bad["plans"][1]["name"] = "P" * 101

    assert "plan 'personal': name is 101 characters; at most 100." in load_bad(tmp_path, json.dumps(bad).encode())
    assert list(Plan.objects.order_by("code").values()) == loaded
