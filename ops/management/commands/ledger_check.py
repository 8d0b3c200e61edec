from django.core.management.base import BaseCommand, CommandError

from ops.ledger import ledger_check


class Command(BaseCommand):
    help = ("Prove the ledger's invariants (OPS-2): each paid period invoiced once, gapless numbers, payments "
            "equal to paid invoices' totals, refunds equal to their credit notes, credit balances equal to the "
            "notes' remaining. Records the outcome in the admin, e-mails staff and exits non-zero on a breach. "
            "No --now: it checks the ledger as it is.")

    def handle(self, *args, **options):
        record = ledger_check()
        for name, count in record.checked.items():
            self.stdout.write(f"  {name:<22} {count} row(s) read")
        if not record.ok:
            for breach in record.breaches:
                self.stderr.write(f"BREACH {breach['invariant']}: {breach['subject']}: {breach['detail']}")
            raise CommandError(f"Ledger check #{record.pk}: {len(record.breaches)} breach(es); "
                               f"staff alerted ({record.alerted_to or 'no address'}).")
        self.stdout.write(f"Ledger check #{record.pk}: every invariant holds.")
