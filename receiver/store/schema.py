"""Import every table module so that SQLModel.metadata knows the whole schema."""

from receiver.store import ledger_models, models, replay_models, token_models  # noqa: F401
