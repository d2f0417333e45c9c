"""The package's user-facing error types that its lowest layers raise (no imports: every module may use them)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config file or override is malformed."""
