"""Account actions in the back office, each on a confirmation page with a mandatory reason:
suspend / lift (SUS-2), immediate downgrade with a credit note (DWN-4), extend the period and
refund one invoice for a system failure (REF-4), plus custom plans (CAT-3) and the trial-abuse
list (TRI-2). The views validate input and call the engine (subscriptions.staff); they never
change billing state themselves. There is no action that cancels a subscription (CAN-1)."""

from decimal import Decimal

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, F, OuterRef, Q
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.utils.html import format_html

from accounts.models import Account, AccountFlag, FlagKind
from backoffice.evidence import identity_matches, trial_abuse_candidates
from core.admin_base import CappedCountPaginator, change_url
from core.money import format_money
from invoices.models import Invoice, InvoiceStatus, Payment, PaymentStatus
from plans.models import Plan
from subscriptions import staff, terms
from subscriptions.errors import BillingError
from subscriptions.models import Status

REASON_HELP = "Recorded in the audit log and sent to the owner."


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 70}), max_length=2000,
                             help_text=REASON_HELP)

    def clean_reason(self):
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("A reason is required.")
        return reason


class DowngradeForm(ReasonForm):
    field_order = ["plan", "reason"]
    plan = forms.ChoiceField(label="Downgrade at once to")

    def __init__(self, *args, choices=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["plan"].choices = choices


class ExtendForm(ReasonForm):
    field_order = ["days", "reason"]
    days = forms.IntegerField(min_value=1, max_value=staff.MAX_EXTENSION_DAYS, label="Days to add")


class RefundInvoiceForm(ReasonForm):
    field_order = ["invoice", "reason"]
    invoice = forms.ModelChoiceField(queryset=Invoice.objects.none(), label="Invoice to refund")

    def __init__(self, *args, account, **kwargs):
        super().__init__(*args, **kwargs)
        paid_by_card = Payment.objects.filter(invoice=OuterRef("pk"), status=PaymentStatus.SUCCEEDED,
                                              refunded_amount__lt=F("amount"))
        self.fields["invoice"].queryset = (
            Invoice.objects.filter(Exists(paid_by_card), account=account, status=InvoiceStatus.PAID,
                                   number__isnull=False).order_by("-issued_at", "-id")
        )
        self.fields["invoice"].label_from_instance = lambda inv: (
            f"{inv.number} · {inv.get_kind_display()} · {format_money(inv.total, inv.currency)} paid "
            f"{inv.paid_at:%Y-%m-%d}" if inv.paid_at else inv.number
        )


class CustomPlanForm(forms.Form):
    base_plan = forms.ChoiceField(
        label="Start from",
        help_text="The custom plan takes this plan's rank (upgrades and downgrades are judged by it). "
                  "\u201cCopy the chosen plan's prices and limits\u201d fills the fields below from it.")
    code = forms.SlugField(max_length=50, help_text="Unique, e.g. acme-advanced.")
    name = forms.CharField(max_length=100)
    monthly_price = forms.DecimalField(max_digits=12, decimal_places=2, min_value=0, required=False)
    yearly_price = forms.DecimalField(max_digits=12, decimal_places=2, min_value=0, required=False)
    limit_properties = forms.IntegerField(min_value=0, required=False, help_text="Empty: unlimited.")
    limit_sessions = forms.IntegerField(min_value=0, required=False, label="Sessions per month",
                                        help_text="Empty: unlimited.")
    limit_integrations = forms.IntegerField(min_value=0, required=False, help_text="Empty: unlimited.")
    overage_per_1000 = forms.DecimalField(max_digits=12, decimal_places=2, min_value=0, required=False,
                                          help_text="Empty: hard cap, no overage.")
    extra_property_monthly = forms.DecimalField(max_digits=12, decimal_places=2, min_value=0, required=False,
                                                help_text="Empty: the add-on is not offered.")
    trial_days = forms.IntegerField(min_value=0, max_value=365, initial=0)

    PLAN_FIELDS = ("monthly_price", "yearly_price", "limit_properties", "limit_sessions", "limit_integrations",
                   "overage_per_1000", "extra_property_monthly", "trial_days")

    def __init__(self, *args, account, **kwargs):
        super().__init__(*args, **kwargs)
        plans = Plan.objects.filter(Q(public=True) | Q(account=account)).order_by("rank", "code")
        self.fields["base_plan"].choices = [(p.code, f"{p.name} ({p.code})") for p in plans if not p.is_free]


def _plan_initial(plan: Plan, account: Account) -> dict:
    initial = {field: getattr(plan, field) for field in CustomPlanForm.PLAN_FIELDS}
    initial.update(base_plan=plan.code, name=f"{plan.name} for {account.name}"[:100],
                   code=f"{plan.code}-{account.pk}")
    return initial


def _confirm(model_admin, request, account, form, *, title, submit_label, facts, consequence, perform,
             danger=False, secondary_submit=None):
    if request.method == "POST" and form.is_valid():
        try:
            message = perform(form.cleaned_data)
        except BillingError as exc:
            form.add_error(None, str(exc))
        else:
            model_admin.message_user(request, message, messages.SUCCESS)
            return redirect(change_url(account))
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": Account._meta, "title": title, "subtitle": account.name, "original": account, "form": form,
        "facts": facts, "consequence": consequence, "submit_label": submit_label, "danger": danger,
        "cancel_url": change_url(account), "secondary_submit": secondary_submit,
    }
    return TemplateResponse(request, "admin/prorata/confirm_action.html", context)


def _require(request, perm: str) -> None:
    if not request.user.has_perm(perm):
        raise PermissionDenied


def _subscription_facts(account) -> list[tuple[str, str]]:
    sub = account.subscription
    if sub is None:
        return [("Subscription", "none")]
    facts = [("Plan", f"{sub.plan.name} ({sub.cycle}), {sub.get_status_display().lower()}")]
    if sub.current_period_start and sub.current_period_end:
        facts.append(("Current period", f"{terms.period_date(sub, sub.current_period_start)} → "
                                        f"{terms.period_date(sub, sub.current_period_end)} ({sub.timezone})"))
    if sub.status == Status.TRIALING and sub.trial_end:
        facts.append(("Trial ends", f"{terms.period_date(sub, sub.trial_end)}"))
    return facts


def account_suspend(model_admin, request, object_id):
    _require(request, "accounts.suspend_account")
    account = get_object_or_404(Account, pk=object_id)
    form = ReasonForm(request.POST or None)
    return _confirm(
        model_admin, request, account, form, title="Suspend for a policy violation", submit_label="Suspend account",
        danger=True,
        facts=[("Account", account.name), ("Status", account.get_status_display()), *_subscription_facts(account)],
        consequence="Tracking stops for every property at once (SUS-1). The subscription is not cancelled. "
                    "The owner is e-mailed with your reason.",
        perform=lambda data: (staff.suspend_account(account, reason=data["reason"], actor=request.user),
                              f"{account.name} is suspended for a policy violation.")[1],
    )


def account_lift(model_admin, request, object_id):
    _require(request, "accounts.suspend_account")
    account = get_object_or_404(Account, pk=object_id)
    form = ReasonForm(request.POST or None)
    note = f": {account.suspension_note}" if account.suspension_note else ""
    return _confirm(
        model_admin, request, account, form, title="Lift the suspension", submit_label="Lift suspension",
        facts=[("Account", account.name), ("Suspended", f"{account.get_suspension_reason_display() or '—'}{note}")],
        consequence="Tracking resumes at once. The owner is e-mailed with your reason.",
        perform=lambda data: (staff.lift_suspension(account, reason=data["reason"], actor=request.user),
                              f"The suspension of {account.name} is lifted.")[1],
    )


def _downgrade_choices(account, sub, now=None) -> list[tuple[str, str]]:
    """Lower paid plans offered on the subscription's cycle, with the credit each would give (DWN-4)."""
    if sub is None or sub.status != Status.ACTIVE or not sub.is_paid or not sub.current_period_end:
        return []
    from django.utils import timezone

    now = now or timezone.now()
    choices = []
    plans = Plan.objects.filter(Q(public=True) | Q(account=account)).exclude(pk=sub.plan_id).order_by("-rank", "code")
    for plan in plans:
        price = plan.price_for(sub.cycle)
        if plan.is_free or price is None or terms.is_upgrade(sub, plan, sub.cycle) is not False:
            continue
        credit = staff.downgrade_credit(sub, plan, now)
        choices.append((plan.code, f"{plan.name} at {format_money(price, plan.currency)} per "
                                   f"{'month' if sub.cycle == 'monthly' else 'year'}: credit {credit.computation}"))
    return choices


def account_downgrade(model_admin, request, object_id):
    _require(request, "subscriptions.downgrade_now")
    account = get_object_or_404(Account, pk=object_id)
    sub = account.subscription
    form = DowngradeForm(request.POST or None, choices=_downgrade_choices(account, sub))
    return _confirm(
        model_admin, request, account, form, title="Downgrade at once with a credit note",
        submit_label="Downgrade now", danger=True, facts=[("Account", account.name), *_subscription_facts(account)],
        consequence="The plan changes now, in the same billing cycle. The unused value "
                    "(old price − new price) × remaining days / total days becomes a credit note applied to the "
                    "next invoices; credit is never paid out (DWN-4). Excess properties are paused, never "
                    "deleted. The owner is e-mailed the credit note and the plan change.",
        perform=lambda data: (staff.downgrade_now(sub, data["plan"], reason=data["reason"], actor=request.user),
                              f"{account.name} is now on {Plan.objects.get(code=data['plan']).name}.")[1],
    )


def account_extend(model_admin, request, object_id):
    _require(request, "subscriptions.extend_period")
    account = get_object_or_404(Account, pk=object_id)
    sub = account.subscription

    def perform(data):
        extended = staff.extend_period(sub, data["days"], reason=data["reason"], actor=request.user)
        return f"The period of {account.name} now ends on {terms.period_date(extended, extended.current_period_end)}."

    return _confirm(
        model_admin, request, account, ExtendForm(request.POST or None), title="Extend the current period",
        submit_label="Extend period", facts=[("Account", account.name), *_subscription_facts(account)],
        consequence="For a system failure (REF-4): the days are added at no charge and the renewal moves by "
                    "as many days (a trial's end date moves). The owner is e-mailed.",
        perform=perform,
    )


def account_refund_invoice(model_admin, request, object_id):
    _require(request, "invoices.refund_invoice")
    account = get_object_or_404(Account, pk=object_id)
    initial = {"invoice": request.GET.get("invoice")} if request.GET.get("invoice", "").isdigit() else {}
    form = RefundInvoiceForm(request.POST or None, account=account, initial=initial)

    def perform(data):
        refunds = staff.refund_invoice(data["invoice"], reason=data["reason"], actor=request.user)
        amount = sum((r.amount for r in refunds), Decimal("0"))
        notes = ", ".join(r.credit_note.number for r in refunds)
        return (f"Refunded {format_money(amount, data['invoice'].currency)} on invoice "
                f"{data['invoice'].number}; credit note {notes}.")

    return _confirm(
        model_admin, request, account, form, title="Refund one invoice for a system failure",
        submit_label="Refund invoice", danger=True, facts=[("Account", account.name), *_subscription_facts(account)],
        consequence="For a system failure only (REF-4; payments are otherwise final, REF-1): what was paid on the "
                    "invoice goes back to the card through the payment provider and a refund credit note naming "
                    "the invoice is issued. The subscription does not change. The owner is e-mailed the credit note.",
        perform=perform,
    )


def account_custom_plan(model_admin, request, object_id):
    _require(request, "plans.create_custom_plan")
    account = get_object_or_404(Account, pk=object_id)
    prefill = request.method == "POST" and "prefill" in request.POST
    if request.method == "POST" and not prefill:
        form = CustomPlanForm(request.POST, account=account)
    else:
        # CAT-3: the chosen base plan (the "copy" button, or ?base=) fills the fields; by default the
        # account's current paid plan, else the highest public one.
        current = account.subscription
        base_code = (request.POST.get("base_plan") if prefill else request.GET.get("base")) or (
            current.plan.code if current and current.is_paid else None)
        base = (Plan.objects.filter(code=base_code).filter(Q(public=True) | Q(account=account)).first()
                or Plan.objects.filter(public=True, monthly_price__gt=0).order_by("-rank").first())
        form = CustomPlanForm(initial=_plan_initial(base, account) if base else {}, account=account)
        if prefill and base is not None:
            model_admin.message_user(request, f"The fields are filled from {base.name}: change what differs, then "
                                              "create the plan.", messages.INFO)

    def perform(data):
        plan = staff.create_custom_plan(
            account, base_plan_code=data["base_plan"], code=data["code"], name=data["name"],
            monthly_price=data["monthly_price"], yearly_price=data["yearly_price"],
            limit_properties=data["limit_properties"], limit_sessions=data["limit_sessions"],
            limit_integrations=data["limit_integrations"], overage_per_1000=data["overage_per_1000"],
            extra_property_monthly=data["extra_property_monthly"], trial_days=data["trial_days"],
            actor=request.user,
        )
        return format_html("Custom plan <a href=\"{}\">{}</a> ({}) created for {}; the owner can choose it on the "
                           "billing page.", change_url(plan), plan.name, plan.code, account.name)

    return _confirm(
        model_admin, request, account, form, title="Create a custom plan", submit_label="Create custom plan",
        facts=[("Account", account.name), *_subscription_facts(account)],
        consequence="A private plan offered to this account only (CAT-3), with the rank of the plan it starts "
                    "from. Nothing changes for the account until the owner chooses it.",
        perform=perform, secondary_submit=("prefill", "Copy the chosen plan's prices and limits"),
    )


def trial_abuse_list(model_admin, request):
    """TRI-2: accounts whose owner e-mail or card matches another account's trial, with the matches."""
    if not request.user.has_perm("accounts.view_account"):
        raise PermissionDenied
    paginator = CappedCountPaginator(trial_abuse_candidates(), 50)
    page = paginator.get_page(request.GET.get("p"))
    accounts = list(page.object_list)
    matches = identity_matches(accounts)
    flags = {}
    for flag in (AccountFlag.objects.filter(account__in=accounts, kind=FlagKind.TRIAL_ABUSE)
                 .select_related("matched_account").order_by("-created_at")):
        flags.setdefault(flag.account_id, []).append(flag)
    rows = [{"account": a, "url": change_url(a), "matches": matches.get(a.pk, []), "flags": flags.get(a.pk, [])}
            for a in accounts]
    context = {
        **model_admin.admin_site.each_context(request), "opts": Account._meta, "title": "Possible trial abuse",
        "rows": rows, "page": page, "capped": paginator.capped,
    }
    return TemplateResponse(request, "admin/accounts/account/trial_abuse.html", context)
