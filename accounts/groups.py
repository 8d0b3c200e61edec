"""Staff groups (ACC-2). The data migration accounts/0004_staff_groups and the tests call
`ensure_staff_groups`; it is idempotent, so running it again only adds what is missing.

- Support: read everything, suspend and lift for a policy violation (SUS-2), review and reject
  refund requests (REF-5), decide restore-days requests (UPG-3).
- Billing managers: read everything, review and approve refunds, refund one invoice (REF-4, a
  refund credit note), immediate downgrades with a credit note (DWN-4), extensions (REF-4),
  custom plans (CAT-3).
- Both see the revenue and health figures (ACC-5, `metrics.view_dashboard`).
Superusers are for setup only; day-to-day staff get one of these groups.
"""

SUPPORT = "Support"
BILLING_MANAGERS = "Billing managers"

# Every model of these apps is readable by both groups ("read all").
READ_APPS = ("accounts", "plans", "subscriptions", "invoices", "notifications")

GROUP_PERMISSIONS = {
    SUPPORT: [
        "accounts.suspend_account",
        "invoices.review_refund",
        "subscriptions.decide_restore",
        "metrics.view_dashboard",
    ],
    BILLING_MANAGERS: [
        "invoices.review_refund",
        "invoices.approve_refund",
        "invoices.refund_invoice",
        "subscriptions.downgrade_now",
        "subscriptions.extend_period",
        "plans.create_custom_plan",
        "metrics.view_dashboard",
    ],
}


def ensure_staff_groups(apps=None) -> dict:
    """Create the groups and give them their permissions; returns {name: Group}. `apps` is the
    migration state registry when called from a migration, the live registry otherwise. In a
    migration, the permissions of an app not migrated yet are left to that app's own migration
    (metrics/0002 gives its permission once its table exists)."""
    in_migration = apps is not None
    if apps is None:
        from django.apps import apps
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    wanted_view = Permission.objects.filter(content_type__app_label__in=READ_APPS, codename__startswith="view_")
    groups = {}
    for name, perms in GROUP_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        found = []
        for dotted in perms:
            app_label, codename = dotted.split(".")
            permission = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
            if permission is None and in_migration and not _migrated(apps, app_label):
                continue
            if permission is None:
                raise LookupError(f"Permission {dotted} does not exist; run the migrations of {app_label} first.")
            found.append(permission)
        group.permissions.add(*wanted_view, *found)
        groups[name] = group
    return groups


def staff_groups_migrate(apps, schema_editor) -> None:
    """The data migrations that (re)create the staff groups once new permissions exist. Django
    creates permissions after all migrations (post_migrate); they are created here first."""
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    ensure_staff_groups(apps)


def _migrated(apps, app_label: str) -> bool:
    """Whether the migration state has the app's models yet."""
    try:
        return bool(list(apps.get_app_config(app_label).get_models()))
    except LookupError:
        return False
