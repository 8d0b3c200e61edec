"""ACC-5: every figure of the revenue page, exact to the cent, on the 14-month ledger of
tests/metrics/ledger.py, worked out by hand below; and the rows behind each figure.

Prices (CAT-2): Personal $14.00/month, $134.40/year (11.20 a month); Advanced $29.00/month,
$278.04/year (23.17 a month), extra property $30.00/month; Metered (the test's plan) $9.00/month.
"Now" is 2027-03-10 10:00 UTC: the window is March 2026 ... February 2027 and March 2027 to date.
"""

from decimal import Decimal

import pytest

from metrics import movements, summary, tasks
from metrics.closed import closed_months_match_ledger
from metrics.models import ClosedMonth, MrrMovement
from metrics.mrr import Kind
from metrics.rows import Figure, figure_rows
from tests.metrics.ledger import NOW, at, build_ledger

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

D = Decimal
PM, PY, AM, AY, MM = ("personal", "monthly"), ("personal", "yearly"), ("advanced", "monthly"), \
    ("advanced", "yearly"), ("metered", "monthly")

# Before the window: A converts on 2026-01-19 (+14.00 new, Personal monthly), B subscribes on
# 2026-02-14 (+14.00 new): MRR at the start of March 2026 = 28.00.
#
# MRR by plan and cycle at each month's end, and who pays (hand computation):
#   2026-03  C converts 03-16 (+29.00 new, Advanced monthly, its charge fails: past due still
#            counts); the last retry fails 03-23, suspended (-29.00 churn)  -> PM A 14 + B 14 = 28.00
#   2026-04  C pays a new period 04-06 (+29.00 reactivation); A Personal -> Advanced 04-08
#            (14.00 -> 29.00: +15.00 expansion)  -> PM B 14; AM A 29 + C 29 = 58; total 72.00
#   2026-05  B's renewal fails 05-13, paid 05-17 (past due counts: no movement); E converts 05-19
#            (278.04 / 12 = 23.17 new, Advanced yearly)  -> 72.00 + 23.17 = 95.17
#   2026-06  A buys 2 extra properties 06-02 (+2 x 30.00 = +60.00 expansion: 29 -> 89); I
#            subscribes 06-10 (+14.00 new)  -> PM B, I 28; AM A 89 + C 29 = 118; AY E 23.17; 169.17
#   2026-07  C's downgrade takes effect 07-06 (29.00 -> 14.00: -15.00 contraction)
#            -> PM B, I, C 42; AM A 89; AY E 23.17; 154.17
#   2026-08  E moved to Personal yearly at once 08-05 (23.17 -> 134.40 / 12 = 11.20: -11.97
#            contraction); B cancels 08-20 (no change until the period end)
#            -> PM 42; AM 89; PY E 11.20; 142.20
#   2026-09  A monthly -> yearly 09-10 (89.00 -> 23.17 + 60.00 = 83.17: -5.83 contraction); B's
#            period ends 09-14 (-14.00 churn); D subscribes 09-20 (+9.00 new)
#            -> PM I, C 28; AY A 83.17; PY E 11.20; MM D 9; 131.37
#   2026-10  F converts 10-15 (+14.00 new), refunded 10-21 and back to Free (-14.00 churn): 131.37
#   2026-11  B subscribes again 11-03 (+14.00 reactivation)  -> PM I, C, B 42; 145.37
#   2026-12  K subscribes 12-08 (+14.00 new); H's trial counts nothing  -> PM 56; 159.37
#   2027-01  I's renewal fails 01-09 and is paid by the retry of 01-12: no movement; 159.37
#   2027-02  nothing; 159.37
#   2027-03  G's trial and K's failed renewal (past due) change nothing: today 159.37
#            = A 83.17 + E 11.20 + D 9.00 + B, C, I, K 4 x 14.00
MRR = {
    "2026-03": {PM: D("28.00")},
    "2026-04": {PM: D("14.00"), AM: D("58.00")},
    "2026-05": {PM: D("14.00"), AM: D("58.00"), AY: D("23.17")},
    "2026-06": {PM: D("28.00"), AM: D("118.00"), AY: D("23.17")},
    "2026-07": {PM: D("42.00"), AM: D("89.00"), AY: D("23.17")},
    "2026-08": {PM: D("42.00"), AM: D("89.00"), PY: D("11.20")},
    "2026-09": {PM: D("28.00"), AY: D("83.17"), PY: D("11.20"), MM: D("9.00")},
    "2026-10": {PM: D("28.00"), AY: D("83.17"), PY: D("11.20"), MM: D("9.00")},
    "2026-11": {PM: D("42.00"), AY: D("83.17"), PY: D("11.20"), MM: D("9.00")},
    "2026-12": {PM: D("56.00"), AY: D("83.17"), PY: D("11.20"), MM: D("9.00")},
    "2027-01": {PM: D("56.00"), AY: D("83.17"), PY: D("11.20"), MM: D("9.00")},
    "2027-02": {PM: D("56.00"), AY: D("83.17"), PY: D("11.20"), MM: D("9.00")},
    "2027-03": {PM: D("56.00"), AY: D("83.17"), PY: D("11.20"), MM: D("9.00")},
}
TOTAL = {"2026-03": "28.00", "2026-04": "72.00", "2026-05": "95.17", "2026-06": "169.17", "2026-07": "154.17",
         "2026-08": "142.20", "2026-09": "131.37", "2026-10": "131.37", "2026-11": "145.37", "2026-12": "159.37",
         "2027-01": "159.37", "2027-02": "159.37", "2027-03": "159.37"}
PAYING = {"2026-03": "AB", "2026-04": "ABC", "2026-05": "ABCE", "2026-06": "ABCEI", "2026-07": "ABCEI",
          "2026-08": "ABCEI", "2026-09": "ACDEI", "2026-10": "ACDEI", "2026-11": "ABCDEI", "2026-12": "ABCDEIK",
          "2027-01": "ABCDEIK", "2027-02": "ABCDEIK", "2027-03": "ABCDEIK"}
# Movements within each month: (signed amount, accounts).
MOVES = {
    "2026-03": {Kind.NEW: ("29.00", "C"), Kind.CHURN: ("-29.00", "C")},
    "2026-04": {Kind.REACTIVATION: ("29.00", "C"), Kind.EXPANSION: ("15.00", "A")},
    "2026-05": {Kind.NEW: ("23.17", "E")},
    "2026-06": {Kind.EXPANSION: ("60.00", "A"), Kind.NEW: ("14.00", "I")},
    "2026-07": {Kind.CONTRACTION: ("-15.00", "C")},
    "2026-08": {Kind.CONTRACTION: ("-11.97", "E")},
    "2026-09": {Kind.CONTRACTION: ("-5.83", "A"), Kind.CHURN: ("-14.00", "B"), Kind.NEW: ("9.00", "D")},
    "2026-10": {Kind.NEW: ("14.00", "F"), Kind.CHURN: ("-14.00", "F")},
    "2026-11": {Kind.REACTIVATION: ("14.00", "B")},
    "2026-12": {Kind.NEW: ("14.00", "K")},
}
# Trials by the month they started: (started, converted, still open, rate %, started, converted).
#   2026-03 C: its conversion charge was never paid (voided on 04-06)       1 0 0  0.0%
#   2026-05 E: paid at the trial end                                         1 1 0  100.0%
#   2026-10 F: paid at the trial end (the later refund does not undo that)   1 1 0  100.0%
#   2026-12 H: cancelled during the trial                                    1 0 0  0.0%
#   2027-03 G: still in trial (switched to Advanced)                         1 0 1  no rate yet
TRIALS = {"2026-03": (1, 0, 0, D("0.0"), "C", ""), "2026-05": (1, 1, 0, D("100.0"), "E", "E"),
          "2026-10": (1, 1, 0, D("100.0"), "F", "F"), "2026-12": (1, 0, 0, D("0.0"), "H", ""),
          "2027-03": (1, 0, 1, None, "G", "")}
# Failed payments by the month of the first failure: (failed, amount, recovered, amount, lost,
# amount, in dunning, amount, rate %, whose invoice).
#   2026-03 C's trial conversion $29.00: every retry failed, voided when C paid a new period: lost
#   2026-05 B's renewal $14.00: paid by the card update of 05-17 (DUN-4): recovered
#   2027-01 I's renewal $14.00: paid by the retry of 01-12 (DUN-2): recovered
#   2027-03 K's renewal $14.00: first retry failed 03-08, next one 03-10 12:00: in dunning
FAILED = {"2026-03": (1, "29.00", 0, "0.00", 1, "29.00", 0, "0.00", D("0.0"), "C"),
          "2026-05": (1, "14.00", 1, "14.00", 0, "0.00", 0, "0.00", D("100.0"), "B"),
          "2027-01": (1, "14.00", 1, "14.00", 0, "0.00", 0, "0.00", D("100.0"), "I"),
          "2027-03": (1, "14.00", 0, "0.00", 0, "0.00", 1, "14.00", None, "K")}
# Overage (USE-3), refunds and credit notes:
#   2026-11 D's October: (800 - 300) sessions x $2.00 / 1,000 = $1.00, invoiced 11-01
#   2027-02 D's January: (1,300 - 300) x $2.00 / 1,000 = $2.00, invoiced 02-01
#   2026-08 E's credit note (DWN-4): ($278.04 - $134.40) x 287/365 days = 143.64 x 287 / 365
#           = 41,224.68 / 365 = 112.944... -> $112.94 (period 2026-05-19 -> 2027-05-19, 365 days;
#           05-19 -> 08-05 is 12 + 30 + 31 + 5 = 78 days used, 287 remaining), kept as credit
#   2026-10 F's refund $14.00 and its refund credit note $14.00 (not credit: paid back)
MONEY = {"2026-08": (0, "0.00", 0, "0.00", 1, "112.94", "112.94"),
         "2026-10": (0, "0.00", 1, "14.00", 1, "14.00", "0.00"),
         "2026-11": (1, "1.00", 0, "0.00", 0, "0.00", "0.00"),
         "2027-02": (1, "2.00", 0, "0.00", 0, "0.00", "0.00")}


@pytest.fixture
def ledger(catalog):
    return build_ledger(catalog)


def letters(ledger, ids) -> str:
    names = {acct.pk: name for name, acct in ledger.items() if name != "manager"}
    return "".join(sorted(names[pk] for pk in ids))


def rows_of(figure: str, model):
    return model.objects.filter(figure_rows(Figure.parse(figure), NOW))


def check_mrr(board, ledger):
    from accounts.models import Account

    assert [m.month.key for m in board.mrr.months] == list(MRR)
    for row in board.mrr.months:
        key = row.month.key
        assert row.by_bucket == MRR[key], key
        assert row.mrr == D(TOTAL[key]) and row.arr == D(TOTAL[key]) * 12, key
        assert row.paying_accounts == len(PAYING[key]), key
        assert letters(ledger, rows_of(f"mrr:{key}", Account).values_list("pk", flat=True)) == PAYING[key], key
        for plan, cycle in row.by_bucket:
            payers = rows_of(f"mrr:{key}:{plan}:{cycle}", Account).count()
            assert payers == row.payers_by_bucket[(plan, cycle)], (key, plan, cycle)
        moves = MOVES.get(key, {})
        for kind in (Kind.NEW, Kind.EXPANSION, Kind.REACTIVATION, Kind.CONTRACTION, Kind.CHURN):
            amount, who = moves.get(kind, ("0.00", ""))
            assert row.movements[kind] == D(amount), (key, kind)
            assert row.movers[kind] == len(who), (key, kind)
            assert letters(ledger, rows_of(f"{kind.value}:{key}", Account).values_list("pk", flat=True)) == who
        # The movements table adds up: opening MRR + the month's movements = closing MRR.
        assert row.opening + row.net == row.mrr, key
    assert board.mrr.months[0].opening == D("28.00")
    # Cross-check: the subscriptions as they are now, priced at their current_price.
    assert board.subscriptions_mrr == D("159.37") == board.mrr.today.mrr


def test_acc5_every_figure_is_exact_to_the_cent_on_a_hand_computed_ledger(ledger):
    board = summary.dashboard(NOW)
    assert board.built_through is None and board.tail_accounts == 10  # nothing stored: all replayed
    check_mrr(board, ledger)
    check_the_rest(board, ledger)


def check_the_rest(board, ledger):
    from accounts.models import Account
    from invoices.models import CreditNote, Invoice, Refund

    for row in board.trials:
        started, converted, open_, rate, who, who_converted = TRIALS.get(row.month.key, (0, 0, 0, None, "", ""))
        assert (row.started, row.converted, row.open, row.rate) == (started, converted, open_, rate), row.month.key
        assert letters(ledger, rows_of(f"trials:{row.month.key}", Account).values_list("pk", flat=True)) == who
        assert letters(ledger, rows_of(f"converted:{row.month.key}", Account).values_list("pk", flat=True)) == \
            who_converted
    for row in board.dunning:
        expected = FAILED.get(row.month.key, (0, "0.00", 0, "0.00", 0, "0.00", 0, "0.00", None, ""))
        assert (row.failed, row.failed_amount, row.recovered, row.recovered_amount, row.lost, row.lost_amount,
                row.open, row.open_amount, row.rate) == (
            expected[0], D(expected[1]), expected[2], D(expected[3]), expected[4], D(expected[5]), expected[6],
            D(expected[7]), expected[8]), row.month.key
        failed = rows_of(f"failed:{row.month.key}", Invoice)
        assert letters(ledger, failed.values_list("account_id", flat=True)) == expected[9]
        assert rows_of(f"recovered:{row.month.key}", Invoice).count() == expected[2]
        assert rows_of(f"lost:{row.month.key}", Invoice).count() == expected[4]
        assert rows_of(f"in_dunning:{row.month.key}", Invoice).count() == expected[6]
    for row in board.money:
        expected = MONEY.get(row.month.key, (0, "0.00", 0, "0.00", 0, "0.00", "0.00"))
        assert (row.overage, row.overage_amount, row.refunds, row.refunds_amount, row.credit_notes,
                row.credit_notes_amount, row.credit_amount) == (
            expected[0], D(expected[1]), expected[2], D(expected[3]), expected[4], D(expected[5]),
            D(expected[6])), row.month.key
        overage = rows_of(f"overage:{row.month.key}", Invoice)
        assert sum((i.net_amount for i in overage), D("0.00")) == row.overage_amount
        assert sum((r.amount for r in rows_of(f"refunds:{row.month.key}", Refund)), D("0.00")) == row.refunds_amount
        notes = rows_of(f"credit_notes:{row.month.key}", CreditNote)
        assert sum((n.amount for n in notes), D("0.00")) == row.credit_notes_amount


def test_acc5_stored_figures_are_the_same_built_at_once_in_steps_or_with_a_tail(ledger):
    """The precomputed rows are exact: the movements rebuilt in one go or refreshed in steps are
    the same rows and match a fresh replay of the audit log; the closed months stored are final;
    the figures read from them (with the audit rows recorded since the build replayed on the fly,
    and this month counted) are the hand-computed ones."""
    movements.movements_refresh(at("2026-04-07T00:00"))  # through 04-06 23:00: C has just reactivated
    stepped = movements.movements_refresh(at("2026-10-18T00:00"))
    assert stepped.accounts == 7  # A, B, C, D, E, F and I changed between the two builds
    board = summary.dashboard(NOW)  # stored up to 10-17 23:00, the rest replayed
    assert board.built_through == at("2026-10-17T23:00")
    assert board.tail_accounts == 8  # F's refund, B again, D's overage, H, I, K, G ... recorded later
    check_mrr(board, ledger)

    assert "Stored 36 closed month figure(s)" in tasks.refresh(NOW)  # 12 closed months x 3 figures, all final
    assert not ClosedMonth.objects.filter(month="2027-03-01").exists()  # this month is counted on each visit
    check_the_rest(summary.dashboard(NOW), ledger)
    assert movements.stored_movements_match_replay() == [] and closed_months_match_ledger(NOW) == []
    incremental = sorted((m.audit_event_id, m.at, m.kind, m.from_plan, m.from_cycle, m.from_amount, m.to_plan,
                          m.to_cycle, m.to_amount, m.delta) for m in MrrMovement.objects.all())
    rebuilt = movements.movements_refresh(NOW, full=True)
    assert rebuilt.full and rebuilt.movements == len(incremental) == 18
    assert sorted((m.audit_event_id, m.at, m.kind, m.from_plan, m.from_cycle, m.from_amount, m.to_plan,
                   m.to_cycle, m.to_amount, m.delta) for m in MrrMovement.objects.all()) == incremental
    board = summary.dashboard(NOW)
    assert board.tail_accounts == 0
    check_mrr(board, ledger)


def test_acc5_overage_revenue_is_net_of_tax_even_when_prices_include_it(db):
    """TAX-2 with ACC-5: VAT collected on an overage invoice is not revenue, whether the price was
    shown before tax or with it (TAX_PRICES_INCLUDE_TAX)."""
    from invoices.models import Invoice, InvoiceKind, InvoiceStatus
    from metrics.figures import Month, money_figures
    from tests.factories import AccountFactory

    account = AccountFactory()
    common = dict(account=account, kind=InvoiceKind.OVERAGE, status=InvoiceStatus.PAID, issued_at=at("2026-05-01"),
                  tax_amount=D("3.80"))
    Invoice.objects.create(number="2026-000901", subtotal=D("20.00"), total=D("23.80"), **common)  # 20 + 19 %
    Invoice.objects.create(number="2026-000902", subtotal=D("23.80"), total=D("23.80"), prices_include_tax=True,
                           **common)  # 23.80 with its 19 % inside
    month = Month.of("2026-05", at("2026-06-02"))
    (row,) = money_figures(at("2026-06-02"), [month])
    assert (row.overage, row.overage_amount) == (2, D("40.00"))
