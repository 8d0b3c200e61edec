"""The whole page's figures at once: the MRR series (replayed from the stored movements and the
audit rows since), and the trial, dunning and money series (stored for closed months, counted for
the others)."""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from .closed import with_closed_months
from .figures import MrrFigures, catalog, current_subscriptions_mrr, months_window, mrr_figures, tail


@dataclass
class Dashboard:
    now: datetime
    months: list
    mrr: MrrFigures
    trials: list
    dunning: list
    money: list
    subscriptions_mrr: Decimal
    built_through: datetime | None
    tail_accounts: int
    currencies: list = field(default_factory=list)

    @property
    def check_difference(self) -> Decimal:
        return self.subscriptions_mrr - self.mrr.today.mrr


def dashboard(now: datetime) -> Dashboard:
    months = months_window(now)
    the_tail = tail(now)
    currencies = sorted({plan.currency for plan in catalog().values() if not plan.is_free})
    return Dashboard(now=now, months=months, mrr=mrr_figures(now, months, the_tail),
                     trials=with_closed_months("trials", now, months),
                     dunning=with_closed_months("failed-payments", now, months),
                     money=with_closed_months("money", now, months), subscriptions_mrr=current_subscriptions_mrr(),
                     built_through=the_tail.since, tail_accounts=len(the_tail.accounts), currencies=currencies)


