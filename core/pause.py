"""A process's pause after a dependency failed: the shared cache and the task broker (Redis) are
left alone for some seconds, so that one that is down or hung costs one request its timeout, not
every request."""

import time


class Pause:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.until = 0.0

    def active(self) -> bool:
        return time.monotonic() < self.until

    def start(self) -> None:
        """The dependency failed: leave it alone for `seconds` from now."""
        self.until = time.monotonic() + self.seconds

    def end(self) -> None:
        """Ask the dependency again from the next call (tests)."""
        self.until = 0.0
