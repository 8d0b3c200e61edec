"""Every event the engine emits becomes an e-mail; connected once by NotificationsConfig.ready()."""

from core import events

from .facts import event_facts
from .services import notify_event


def connect() -> None:
    # Every event the engine emits becomes an e-mail (kinds.NOTIFICATIONS covers events.KINDS).
    for kind in events.KINDS:
        events.subscribe(kind, notify_event)
    # NOT-4: what each e-mail states about the account is taken when its event is emitted.
    events.snapshot_with(event_facts)
