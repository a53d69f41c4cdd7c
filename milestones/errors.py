"""User-facing errors.

Every error a user can cause (a wrong name, key, file, image or checkpoint) is raised as a subclass of
:class:`MilestonesError` with a one-line message that says what is wrong and what to do. The CLI prints the message
to stderr and exits with status 2; library callers can catch the class they care about.
"""

from __future__ import annotations


class MilestonesError(Exception):
    """Base class: a problem with the user's input, explained in one line."""


class UnknownModelError(MilestonesError, KeyError):
    """A model name that is not registered."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class ConfigError(MilestonesError, ValueError):
    """An unknown config key or option, or a value of the wrong type."""


class DataError(MilestonesError):
    """Missing, corrupt or truncated dataset files, or an unusable image."""


class CheckpointError(MilestonesError):
    """A checkpoint that is missing, corrupt, unsafe, or made for another model."""


class RunDirError(MilestonesError):
    """A run directory that cannot be used as asked (already holds a run, no space left, ...)."""
