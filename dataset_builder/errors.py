"""The builder's error types (defined in the core, shared with shards and the trainer)."""
from bigearth.errors import EnvironmentFailure, InputError  # noqa: F401
