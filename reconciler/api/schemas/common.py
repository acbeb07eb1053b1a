"""What every resource shares: the error answer, reference strings, domain-checked queries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from receiver.inputs import MAX_REF_LENGTH, REF_PATTERN, check_ref

CUSTOM_ERROR = "verihook"
"""The pydantic error type whose message is a domain parser's own (it names the field)."""


def _ref_rule(value: Any, info: ValidationInfo) -> Any:
    """receiver/inputs.py's rule for a text value, in its words (other types: pydantic's)."""
    if isinstance(value, str):
        try:
            check_ref(value, info.field_name or "value")
        except ValueError as exc:
            raise refused(str(exc)) from exc
    return value


Ref = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_REF_LENGTH, pattern=REF_PATTERN),
    BeforeValidator(_ref_rule),
]
"""A user ref or session id (in a body or a query string), or a provider name given as a
filter: the one rule of receiver/inputs.py, documented as a JSON Schema pattern."""


def _only_a_bool(value: Any) -> Any:
    if not isinstance(value, bool):  # `1 == True`, so a Literal[True] alone would take 1
        raise PydanticCustomError("bool_type", "Input should be a valid boolean")
    return value


StrictTrue = Annotated[Literal[True], BeforeValidator(_only_a_bool)]
"""JSON `true`, and nothing else (not 1, not 1.0, not "true")."""
Bool = StrictBool
"""JSON `true` or `false`, and nothing else: every boolean of a request body."""
Text = Annotated[str, StringConstraints(min_length=1, max_length=64)]
"""A short free-form value (a time, an age, a cursor)."""
Instant = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
"""An ISO-8601 time as text (its parser is the domain's)."""


def _drop_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def absent(description: str = "", **constraints: Any) -> Any:
    """An optional parameter: None when absent (a query string has no null, so none is shown)."""
    return Field(
        None, description=description or None, json_schema_extra=_drop_default, **constraints
    )


class Error(BaseModel):
    """An error answer; for bad input the message names the field."""

    error: str


def refused(message: str) -> PydanticCustomError:
    """A validation error answered with exactly `message` (which names the field)."""
    return PydanticCustomError(CUSTOM_ERROR, message)  # no context: the text is not formatted


class DomainChecked(BaseModel):
    """Input whose rules live in a domain parser that the CLI and the console share.

    The parser (`check`) sees the raw values first, and its message is the answer when it
    refuses: the API, `verihook events list` and the console explain a bad filter the same way.
    Then the fields, which are what the OpenAPI document shows, validate what it accepted (an
    empty value counts as not given). The parser's result is `parsed`.
    """

    REPEATED: ClassVar[Literal["join", "first", "keep"]] = "join"
    """A list value, as spectree gives a query parameter sent twice (`state=a&state=b`): join
    it with commas, keep its first value, or keep the list (a JSON body's list)."""
    _parsed: Any = PrivateAttr(default=None)

    if TYPE_CHECKING:  # each subclass defines it; __pydantic_init_subclass__ makes sure

        @classmethod
        def check(cls, values: dict[str, Any]) -> Any:
            """The domain parser: its result, or a ValueError saying what is wrong."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """A model without its domain parser is refused when it is defined, not per request."""
        super().__pydantic_init_subclass__(**kwargs)
        if not callable(getattr(cls, "check", None)):
            raise TypeError(f"{cls.__name__} must define the classmethod check(values)")

    @classmethod
    def raw_values(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Values as the domain parser takes them (repeated query parameters folded)."""
        if cls.REPEATED == "keep":
            return dict(data)
        return {
            key: (",".join(value) if cls.REPEATED == "join" else value[0])
            if isinstance(value, list)
            else value
            for key, value in data.items()
        }

    @model_validator(mode="wrap")
    @classmethod
    def _domain_first(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        if not isinstance(data, dict):
            return handler(data)
        values = cls.raw_values(data)
        try:
            parsed = cls.check(values)
        except ValueError as exc:
            raise refused(str(exc)) from exc
        model = handler({k: v for k, v in values.items() if v is not None and v != ""})
        model._parsed = parsed
        return model

    @property
    def parsed(self) -> Any:
        """What the domain parser made of the values."""
        return self._parsed


class StrictBody(BaseModel):
    """A JSON body: types as sent (no "yes" for true, no 1 for "1")."""

    model_config = ConfigDict(strict=True)
