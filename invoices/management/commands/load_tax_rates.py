from django.core.management.base import BaseCommand, CommandError

from invoices.tax_rates import EU_RATES, TaxRatesError, tax_rates_load_file


class Command(BaseCommand):
    help = "Make the VAT rates those of a tax-rates JSON file (all or nothing; run it again after editing the file)."

    def add_arguments(self, parser):
        parser.add_argument("file", nargs="?", default=str(EU_RATES), help="Tax-rates JSON (default: the EU's).")

    def handle(self, *args, file, **options):
        try:
            result = tax_rates_load_file(file)
        except TaxRatesError as exc:
            raise CommandError(f"Tax rates not loaded, nothing was changed. {exc}") from None
        self.stdout.write(f"Tax rates {file}: {len(result.created)} created, {len(result.updated)} updated, "
                          f"{len(result.removed)} removed, {result.unchanged} unchanged.")
        for label, rows in (("created", result.created), ("updated", result.updated), ("removed", result.removed)):
            for row in rows:
                self.stdout.write(f"  {label}: {row}")
