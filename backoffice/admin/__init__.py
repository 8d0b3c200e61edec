"""The admin registrations of the models of accounts, plans, subscriptions and invoices. They live
above the engine because their actions call it (subscriptions.staff); the admin's URLs are named
after each model's app, so they are the same as when each app registered its own."""

from . import accounts, invoices, plans, subscriptions  # noqa: F401  (registers the ModelAdmins)
