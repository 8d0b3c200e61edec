"""Money records. Issued invoices, payments and credit notes are append-only (INV-2): an issued
invoice's amounts never change; corrections are credit notes that name the invoice."""

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils.timezone import now as tz_now

from accounts.countries import country_name
from core.seller import seller_record

from . import tax_rules
from .documents import IssuedDocument

MONEY = {"max_digits": 12, "decimal_places": 2}
RATE = {"max_digits": 5, "decimal_places": 2}  # a tax rate in percent: 19.00, 25.50


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", "Draft"  # an attempt not issued (e.g. a declined upgrade, UPG-4); no number
    OPEN = "open", "Open"  # issued, not paid (DUN-1)
    PAID = "paid", "Paid"  # settled in full
    VOID = "void", "Void"  # cancelled after issue (DUN-3 replaces the open renewal)
    UNCOLLECTIBLE = "uncollectible", "Uncollectible"  # written off


# What a paid invoice's status says once credit notes name it (Invoice.status_label): their own
# events, dated by the notes (invoices.selectors.invoice_status_line, INV-6).
REFUNDED, PARTLY_REFUNDED = "Refunded", "Partly refunded"
CREDITED, PARTLY_CREDITED = "Credited", "Partly credited"


class InvoiceKind(models.TextChoices):
    SUBSCRIPTION = "subscription", "First period"  # REN-4 / UPG-6 without trial
    TRIAL_CONVERSION = "trial_conversion", "Trial conversion"  # TRI-3
    RENEWAL = "renewal", "Renewal"  # REN-1
    UPGRADE = "upgrade", "Upgrade"  # UPG-2, UPG-3
    ADD_ON = "add_on", "Extra properties"  # ADD-1
    OVERAGE = "overage", "Overage"  # USE-3
    REACTIVATION = "reactivation", "Reactivation"  # DUN-3


class TaxTreatment(models.TextChoices):
    NONE = tax_rules.NONE, tax_rules.TREATMENTS[tax_rules.NONE]  # no tax lines: a seller outside the EU (TAX-3)
    DOMESTIC = tax_rules.DOMESTIC, tax_rules.TREATMENTS[tax_rules.DOMESTIC]  # the seller's country: the seller's rate
    EU_RATE = tax_rules.EU_RATE, tax_rules.TREATMENTS[tax_rules.EU_RATE]  # another EU country, no valid VAT ID
    REVERSE_CHARGE = tax_rules.REVERSE_CHARGE, tax_rules.TREATMENTS[tax_rules.REVERSE_CHARGE]  # valid VAT ID: 0 %
    EXPORT = tax_rules.EXPORT, tax_rules.TREATMENTS[tax_rules.EXPORT]  # outside the EU: no VAT


class TaxRate(models.Model):
    """A country's standard VAT rate from a date on (TAX-2): loaded from the tax-rates file by
    `load_tax_rates`; the rate in force on an invoice's issue date is the one with the latest
    `valid_from` not after it. Issued invoices keep the rate they used."""

    country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2.")
    rate = models.DecimalField(help_text="Percent, e.g. 19.00.", **RATE)
    valid_from = models.DateField()

    class Meta:
        ordering = ["country", "-valid_from"]
        constraints = [models.UniqueConstraint(fields=["country", "valid_from"], name="tax_rate_unique")]

    def __str__(self):
        return f"{self.country} {tax_rules.percent(self.rate)} from {self.valid_from}"


class Sequence(models.Model):
    """Gapless counters (INV-1): one row per (series, year), bumped under a row lock in the
    transaction that issues the document, so a rollback gives the number back."""

    series = models.CharField(max_length=10)
    year = models.PositiveIntegerField()
    last = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["series", "year"], name="sequence_unique")]

    def __str__(self):
        return f"{self.series} {self.year}: last {self.last}"


class Invoice(IssuedDocument, models.Model):
    account = models.ForeignKey("accounts.Account", on_delete=models.PROTECT, related_name="invoices")
    subscription = models.ForeignKey(
        "subscriptions.Subscription", null=True, blank=True, on_delete=models.PROTECT, related_name="invoices"
    )
    number = models.CharField(max_length=20, unique=True, null=True, blank=True)
    kind = models.CharField(max_length=20, choices=InvoiceKind)
    status = models.CharField(max_length=15, choices=InvoiceStatus, default=InvoiceStatus.DRAFT)
    currency = models.CharField(max_length=3, default="USD")
    # REN-3: "once" is a database fact, e.g. "renewal:<subscription>:<period start>".
    dedupe_key = models.CharField(max_length=120, unique=True, null=True, blank=True)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    issued_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    # The account's billing details as they were at issue (INV-4).
    bill_to_name = models.CharField(max_length=200, blank=True)
    bill_to_company = models.CharField(max_length=200, blank=True)
    bill_to_address = models.TextField(blank=True)
    bill_to_country = models.CharField(max_length=2, blank=True)
    bill_to_vat_id = models.CharField(max_length=30, blank=True)
    # INV-6: fixed at issue with the rest. The seller as configured then (`core.seller.seller_record`,
    # every document is created with it) and the account's billing time zone then: the calendar of
    # every date the document prints.
    seller = models.JSONField(default=seller_record, blank=True, help_text="The seller as configured at issue.")
    timezone = models.CharField(max_length=64, blank=True,
                                help_text="The account's billing time zone at issue: the calendar of its dates.")
    # The tax treatment, frozen with the amounts (TAX-2, INV-2): what the rules decided, the
    # customer's country and valid VAT ID they read, the rate and the legal mention printed.
    tax_treatment = models.CharField(max_length=20, choices=TaxTreatment, default=TaxTreatment.NONE)
    tax_rate = models.DecimalField(default=Decimal("0"), **RATE)
    tax_country = models.CharField(max_length=2, blank=True)
    tax_vat_id = models.CharField("VAT ID used", max_length=30, blank=True)
    tax_mention = models.TextField(blank=True)
    prices_include_tax = models.BooleanField(default=False)
    subtotal = models.DecimalField(default=Decimal("0"), help_text="The lines' amounts.", **MONEY)
    tax_amount = models.DecimalField(default=Decimal("0"), **MONEY)
    credit_applied = models.DecimalField(default=Decimal("0"), **MONEY)
    total = models.DecimalField(default=Decimal("0"), help_text="Subtotal + tax (unless included) - credit.", **MONEY)
    amount_paid = models.DecimalField(default=Decimal("0"), **MONEY)
    notes = models.TextField(blank=True, help_text="Shown on the invoice, e.g. forfeited days (UPG-3).")
    # What to apply once an immediate charge succeeds (an upgrade whose outcome was unknown).
    pending_change = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=tz_now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["account", "-created_at"]),
            models.Index(fields=["status", "-created_at"]),
            models.Index(fields=["-issued_at"]),
            # ACC-5: the revenue page's overage and trial-conversion figures, by kind and month.
            models.Index(fields=["kind", "issued_at"], name="invoice_kind_issued"),
        ]
        permissions = [("refund_invoice", "Can refund one invoice for a system failure")]

    def __str__(self):
        return self.number or f"Draft #{self.pk}"

    @property
    def amount_due(self) -> Decimal:
        return self.total - self.amount_paid

    @property
    def is_issued(self) -> bool:
        return self.number is not None

    @property
    def net_amount(self) -> Decimal:
        """The amount before tax (TAX-2)."""
        return self.subtotal - self.tax_amount if self.prices_include_tax else self.subtotal

    @property
    def gross_amount(self) -> Decimal:
        """The amount with tax, before credit."""
        return self.subtotal if self.prices_include_tax else self.subtotal + self.tax_amount

    @property
    def bill_to_country_name(self) -> str:
        return country_name(self.bill_to_country)

    def credited_amounts(self) -> tuple[Decimal, Decimal]:
        """(refunded, credited): the totals of the refund credit notes and of the other credit
        notes naming this invoice. Lists annotate them (`invoices.selectors.with_credit_totals`)."""
        refunded, credited = getattr(self, "refunded_total", None), getattr(self, "credited_total", None)
        if refunded is None or credited is None:
            refunded, credited = Decimal("0"), Decimal("0")
            for kind, amount in self.credit_notes.values_list("kind", "amount"):
                if kind == CreditNoteKind.REFUND:
                    refunded += amount
                else:
                    credited += amount
        return refunded, credited

    @property
    def status_label(self) -> str:
        """The status a customer reads: a paid invoice that was refunded or credited says so (INV-2)."""
        if self.status != InvoiceStatus.PAID:
            return self.get_status_display()
        refunded, credited = self.credited_amounts()
        if refunded:
            return REFUNDED if refunded >= self.amount_paid else PARTLY_REFUNDED
        if credited:
            return CREDITED if credited >= self.total else PARTLY_CREDITED
        return self.get_status_display()

    @property
    def status_tone(self) -> str:
        """The badge's colour: ok (paid), bad (open), warn (refunded or credited), '' otherwise."""
        if self.status == InvoiceStatus.OPEN:
            return "bad"
        if self.status != InvoiceStatus.PAID:
            return ""
        return "ok" if self.status_label == "Paid" else "warn"


class InvoiceLine(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    description = models.CharField(max_length=300)
    computation = models.CharField(max_length=300, blank=True)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    quantity = models.DecimalField(max_digits=12, decimal_places=3, default=Decimal("1"))
    unit_price = models.DecimalField(**MONEY)
    amount = models.DecimalField(**MONEY)
    tax_rate = models.DecimalField(default=Decimal("0"), **RATE)
    tax_amount = models.DecimalField(default=Decimal("0"), **MONEY)  # this line's tax, half up (TAX-2)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return self.description


class CreditNoteKind(models.TextChoices):
    DOWNGRADE = "downgrade", "Unused value after an immediate downgrade"  # DWN-4: credit
    REFUND = "refund", "Refund"  # REF-2, REF-4: money paid back through the gateway
    CORRECTION = "correction", "Correction"  # staff correction kept as credit


class CreditNote(IssuedDocument, models.Model):
    """Names the invoice it corrects (INV-2). Credit (`remaining`) is applied to the account's
    next invoices until used up (DWN-4); it is never paid out. A refund note has remaining 0."""

    account = models.ForeignKey("accounts.Account", on_delete=models.PROTECT, related_name="credit_notes")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")
    number = models.CharField(max_length=20, unique=True)
    kind = models.CharField(max_length=15, choices=CreditNoteKind)
    currency = models.CharField(max_length=3, default="USD")
    amount = models.DecimalField(help_text="Credited or refunded, tax included.", **MONEY)
    # The tax of the invoice it corrects, reversed in proportion (TAX-2): amount = net + tax.
    net_amount = models.DecimalField(default=Decimal("0"), **MONEY)
    tax_amount = models.DecimalField(default=Decimal("0"), **MONEY)
    tax_rate = models.DecimalField(default=Decimal("0"), **RATE)
    tax_treatment = models.CharField(max_length=20, choices=TaxTreatment, default=TaxTreatment.NONE)
    remaining = models.DecimalField(**MONEY)
    reason = models.TextField()
    computation = models.CharField(max_length=300, blank=True)
    issued_at = models.DateTimeField(default=tz_now)
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # INV-6: fixed at issue with the rest. The seller as configured then (`core.seller.seller_record`,
    # every document is created with it) and the account's billing time zone then: the calendar of
    # every date the document prints.
    seller = models.JSONField(default=seller_record, blank=True, help_text="The seller as configured at issue.")
    timezone = models.CharField(max_length=64, blank=True,
                                help_text="The account's billing time zone at issue: the calendar of its dates.")

    class Meta:
        ordering = ["-issued_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(remaining__gte=0) & models.Q(remaining__lte=models.F("amount")),
                name="credit_note_remaining_in_range",
            ),
        ]

    def __str__(self):
        return self.number

    @property
    def status_label(self) -> str:
        """Refunded (money paid back), or how much of the credit is left to use (DWN-4)."""
        if self.kind == CreditNoteKind.REFUND:
            return "Refunded"
        if self.remaining <= 0:
            return "Credit used"
        if self.remaining < self.amount:
            return "Credit partly used"
        return "Credit available"


class CreditApplication(models.Model):
    credit_note = models.ForeignKey(CreditNote, on_delete=models.PROTECT, related_name="applications")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_applications")
    amount = models.DecimalField(**MONEY)
    applied_at = models.DateTimeField(default=tz_now)

    def __str__(self):
        return f"Credit of {self.amount} applied (#{self.pk})"


class PaymentMethod(models.Model):
    """A card held by the gateway (PAY-1): never the number."""

    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="payment_methods")
    gateway = models.CharField(max_length=20)
    gateway_id = models.CharField(max_length=100)
    brand = models.CharField(max_length=20)
    last4 = models.CharField(max_length=4)
    exp_month = models.PositiveSmallIntegerField()
    exp_year = models.PositiveSmallIntegerField()
    fingerprint = models.CharField(max_length=100, db_index=True)
    is_default = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=tz_now)
    detached_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account"], condition=models.Q(is_default=True), name="one_default_payment_method"
            )
        ]

    def __str__(self):
        return f"{self.brand.title()} •••• {self.last4} ({self.exp_month:02d}/{self.exp_year})"


class PaymentStatus(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"  # sent, outcome not known yet: settle before any retry (PAY-2)
    SUCCEEDED = "succeeded", "Succeeded"  # money moved
    FAILED = "failed", "Failed"  # declined; see decline_code


class Payment(models.Model):
    """One charge attempt."""

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="payments")
    account = models.ForeignKey("accounts.Account", on_delete=models.PROTECT, related_name="payments")
    payment_method = models.ForeignKey(
        PaymentMethod, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The card as it was when charged (INV-6): a card the bank updates later (PAY-9) or one removed
    # does not change what an invoice says paid it.
    card_brand = models.CharField(max_length=20, blank=True)
    card_last4 = models.CharField(max_length=4, blank=True)
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3, default="USD")
    idempotency_key = models.CharField(max_length=120, unique=True)
    gateway = models.CharField(max_length=20)
    gateway_reference = models.CharField(max_length=100, blank=True, db_index=True)
    status = models.CharField(max_length=10, choices=PaymentStatus, default=PaymentStatus.UNKNOWN)
    decline_code = models.CharField(max_length=60, blank=True)
    decline_message = models.CharField(max_length=300, blank=True)
    refunded_amount = models.DecimalField(default=Decimal("0"), **MONEY)
    attempted_at = models.DateTimeField(default=tz_now)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-attempted_at", "-id"]
        indexes = [models.Index(fields=["status", "attempted_at"])]

    def __str__(self):
        return f"{self.amount} {self.currency} {self.status} ({self.idempotency_key})"

    @property
    def method_label(self) -> str:
        """The card charged, as an invoice prints it: "Visa •••• 4242" (the gateway's name without a card)."""
        return f"{self.card_brand.title()} •••• {self.card_last4}" if self.card_last4 else self.gateway


class RefundStatus(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"  # recorded before the gateway call; settled by reconcile_payments
    SUCCEEDED = "succeeded", "Succeeded"  # money returned; the refund credit note is issued
    FAILED = "failed", "Failed"  # the gateway refused it; nothing was returned


class Refund(models.Model):
    """Money paid back through the gateway, in three steps like a charge (PAY-2): the intent is
    recorded and committed, the gateway is called outside any transaction with the idempotency key,
    and the outcome is recorded once. The refund credit note (INV-2) is issued with the outcome."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    amount = models.DecimalField(**MONEY)
    idempotency_key = models.CharField(max_length=120, unique=True)
    status = models.CharField(max_length=10, choices=RefundStatus, default=RefundStatus.UNKNOWN)
    gateway_reference = models.CharField(max_length=100, blank=True)
    failure_message = models.CharField(max_length=300, blank=True)
    credit_note = models.OneToOneField(CreditNote, null=True, on_delete=models.PROTECT, related_name="refund")
    reason = models.TextField()
    # The trial-refund request it carries out (REF-2), whose decision e-mails the owner; None for a
    # staff refund of one invoice (REF-4), whose credit note is e-mailed.
    refund_request = models.ForeignKey("RefundRequest", null=True, blank=True, on_delete=models.PROTECT,
                                       related_name="refunds")
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=tz_now)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self):
        return f"Refund of {self.amount} ({self.get_status_display().lower()}, #{self.pk})"


class RefundRequestStatus(models.TextChoices):
    PENDING = "pending", "Pending review"  # waiting for staff (REF-2)
    APPROVED = "approved", "Approved"  # approved, refund being made
    REJECTED = "rejected", "Rejected"  # staff rejected with a reason (REF-5)
    REFUNDED = "refunded", "Refunded"  # money returned, credit note issued
    REFUSED = "refused", "Refused automatically"  # REF-3: not eligible


class RefundRequest(models.Model):
    account = models.ForeignKey("accounts.Account", on_delete=models.PROTECT, related_name="refund_requests")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="refund_requests")
    status = models.CharField(max_length=10, choices=RefundRequestStatus, default=RefundRequestStatus.PENDING)
    message = models.TextField(blank=True, help_text="The customer's words.")
    refusal_reason = models.TextField(blank=True)
    decision_reason = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_at = models.DateTimeField(default=tz_now)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    refund = models.OneToOneField(Refund, null=True, blank=True, on_delete=models.PROTECT, related_name="request")

    class Meta:
        ordering = ["-requested_at"]
        permissions = [
            ("approve_refund", "Can approve refunds"),
            ("review_refund", "Can review and reject refund requests"),
        ]

    def __str__(self):
        return f"Refund request #{self.pk} ({self.get_status_display().lower()})"


# The sandbox gateway's own state: what a real gateway would hold on its side.
class SandboxCard(models.Model):
    gateway_id = models.CharField(max_length=40, unique=True)
    customer = models.CharField(max_length=100)
    token = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=tz_now)

    def __str__(self):
        return self.gateway_id


class SandboxCharge(models.Model):
    reference = models.CharField(max_length=40, unique=True)
    idempotency_key = models.CharField(max_length=120, unique=True)
    card = models.ForeignKey(SandboxCard, null=True, on_delete=models.SET_NULL)
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    succeeded = models.BooleanField()
    decline_code = models.CharField(max_length=60, blank=True)
    refunded_amount = models.DecimalField(default=Decimal("0"), **MONEY)
    created_at = models.DateTimeField(default=tz_now)

    def __str__(self):
        return self.reference


class SandboxRefund(models.Model):
    reference = models.CharField(max_length=40, unique=True)
    idempotency_key = models.CharField(max_length=120, unique=True)
    charge = models.ForeignKey(SandboxCharge, on_delete=models.PROTECT)
    amount = models.DecimalField(**MONEY)
    created_at = models.DateTimeField(default=tz_now)

    def __str__(self):
        return self.reference
