from django.core.management.base import BaseCommand, CommandError

from plans.services import DEMO_CATALOG, CatalogError, catalog_load_file


class Command(BaseCommand):
    help = "Insert or update plans from a catalog JSON file, by code (all or nothing)."

    def add_arguments(self, parser):
        parser.add_argument("file", nargs="?", default=str(DEMO_CATALOG), help="Catalog JSON (default: the demo).")

    def handle(self, *args, file, **options):
        try:
            result = catalog_load_file(file)
        except CatalogError as exc:
            raise CommandError(f"Catalog not loaded, nothing was changed. {exc}") from None
        self.stdout.write(
            f"Catalog {file}: {len(result.created)} created, {len(result.updated)} updated, "
            f"{len(result.unchanged)} unchanged."
        )
        for label, codes in (("created", result.created), ("updated", result.updated)):
            for code in codes:
                self.stdout.write(f"  {label}: {code}")
