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
