"""Import every table module so that SQLModel.metadata knows the whole schema."""

from receiver.store import (  # noqa: F401
    audit_models,
    models,
    notification_models,
    refusals,
    replay_models,
    token_models,
    trace_models,
)
