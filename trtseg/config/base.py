"""The base model every configuration section derives from."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Strict section: unknown keys are typos, so they are refused instead of ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)
