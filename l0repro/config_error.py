"""The error a run's config raises when it cannot be trained with (``python -m l0repro.train``
exits 2 with its message, which names the key and the value)."""


class ConfigError(ValueError):
    """A config value that cannot be trained with; the message names the key."""
