"""Hand a task to django-q2's broker (Redis in production), never letting a broker that is down
fail the action that queued it.

Every task queued here is backed by a durable row that a schedule picks up when the task is lost:
an outbox event waits in `PendingEvent` for the drain, an e-mail in its `EmailLog` row for the
retry, a billing run's chunk is run in the process that asked. So a broker failure is logged and
answered with False, and the caller falls back. After a failure the process does not ask the
broker again for PAUSE_SECONDS, so a broker that is down or hung costs one action its timeout
(REDIS_TIMEOUT), not every action.

When tasks run inline (django-q2's `sync`: tests, the embedded default's tasks), an exception is
the task's own and is raised to the caller as before.
"""

import logging

from .pause import Pause

log = logging.getLogger(__name__)

PAUSE_SECONDS = 5.0
_pause = Pause(PAUSE_SECONDS)


def task_enqueue(func: str, *args, group: str) -> bool:
    """Queue `func(*args)` (a dotted path) for a worker; True when the broker took it (or it ran
    inline), False when the broker could not be reached now or within the last PAUSE_SECONDS."""
    from django_q.conf import Conf
    from django_q.tasks import async_task

    if _pause.active():
        return False
    try:
        async_task(func, *args, group=group)
    except Exception as exc:
        if Conf.SYNC:
            raise  # run inline: the task itself failed
        _pause.start()
        log.warning("Task broker unreachable (%s: %s); %s not queued, its fallback takes it",
                    type(exc).__name__, exc, func)
        return False
    return True


def broker_resume() -> None:
    """Ask the broker again from the next call (tests)."""
    _pause.end()
