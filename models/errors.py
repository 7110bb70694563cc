"""The project's own error types: what a user can cause, as opposed to bugs.

The CLI prints one line for any ExploreError and exits with code 2, or 3 for an InfeasibleError
(nothing in the space can run); a traceback only with --debug.
"""


class ExploreError(Exception):
    """Base class for errors a user can cause and fix."""


class ConfigError(ExploreError):
    """A preset, YAML file or config.json that is missing, unreadable or malformed."""


class InputError(ExploreError):
    """A flag or parameter value outside its domain (bad range syntax, gamma < 1, ...)."""


class InfeasibleError(ExploreError):
    """Nothing asked for can run (exit code 3); the message names the constraint that binds."""
