from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts import services
from accounts.models import Account
from backoffice import demo
from invoices.tax_rates import EU_RATES, tax_rates_load_file
from plans.services import DEMO_CATALOG, catalog_load_file
from subscriptions import billing

STAFF = ("admin@prorata.localhost", "admin-demo-2026")
OWNER = ("owner@acme.localhost", "owner-demo-2026")
DEMO_PROPERTIES = [("Acme shop", "shop.acme.localhost"), ("Acme blog", "blog.acme.localhost")]


class Command(BaseCommand):
    help = "Development only: load the demo catalog and the EU VAT rates, a staff superuser and a customer owner."

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("seed_demo creates known passwords: it only runs with DEBUG=true.")
        catalog_load_file(DEMO_CATALOG)
        tax_rates_load_file(EU_RATES)  # the demo seller is in the US (no tax); an EU seller needs them (TAX-2)
        User = get_user_model()
        if not User.objects.filter(username=STAFF[0]).exists():
            User.objects.create_superuser(username=STAFF[0], email=STAFF[0], password=STAFF[1])
        if not User.objects.filter(username=OWNER[0]).exists():
            _user, account = billing.sign_up(email=OWNER[0], password=OWNER[1], account_name="Acme Inc.")
            account.company, account.country, account.address = "Acme Inc.", "US", "1 Demo Street\nSpringfield"
            account.save(update_fields=["company", "country", "address"])
        account = Account.objects.get(memberships__user__username=OWNER[0])
        if not account.properties.exists():
            for name, domain in DEMO_PROPERTIES[:1]:
                services.property_add(account=account, name=name, domain=domain)
        # Demo customers in every account state a newcomer should see (issue 14), built through the
        # engine on a clock that ends now.
        demo.build_states(timezone.now(), User.objects.get(username=STAFF[0]))
        self.stdout.write(self.style.SUCCESS("Demo data ready."))
        self.stdout.write(f"  Staff (admin):   {STAFF[0]} / {STAFF[1]}")
        self.stdout.write(f"  Customer owner:  {OWNER[0]} / {OWNER[1]}")
        self.stdout.write("  Demo customers (billing page at /billing/):")
        for title, email, password in demo.demo_logins():
            self.stdout.write(f"    {email:<38} / {password}  {title}")
