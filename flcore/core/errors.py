"""Errors meant for the user: shown as one clear message, exit code 2, no stack trace."""


class UserError(Exception):
    """A mistake in what the user asked for (configuration, data, command line)."""

    exit_code = 2


class ConfigError(UserError):
    """An invalid configuration: unknown key, wrong type, value out of range."""


class DataError(UserError):
    """A dataset that is missing, truncated or altered."""


class StoreError(UserError):
    """A stored result that cannot be used (corrupted, wrong schema)."""
