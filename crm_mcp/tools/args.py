"""Argument types shared by the tools, each bounded.

Every value a tool takes ends up somewhere: in the outbox, in a local record, in a CRM, or echoed
back to the model. So every string has a length bound, every number a range, every list and map
a size, and every date a sane year: a 1 MB `connection` string, a 1 MB custom field value,
`offset=2**63` or `start_time=9999-12-31` is refused by argument validation with a message that
says which argument and why, instead of overflowing somewhere deeper as an internal error.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import AfterValidator, Field

MIN_YEAR, MAX_YEAR = 1970, 2100
MAX_OFFSET = 1_000_000
MAX_SAFE_INT = 2**53 - 1  # what every JSON reader (and every CRM) keeps exactly


def _sane_year(value: date) -> None:
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"year {value.year} is out of range: give a date between {MIN_YEAR} and {MAX_YEAR}")


def _sane_datetime(value: datetime) -> datetime:
    _sane_year(value)
    return value


def _sane_date(value: date) -> date:
    _sane_year(value)
    return value


SaneDateTime = Annotated[datetime, AfterValidator(_sane_datetime)]
SaneDate = Annotated[date, AfterValidator(_sane_date)]

ConnectionArg = Annotated[
    str | None,
    # said once, in the server's instructions: omitted (or empty), the only connection able to
    Field(max_length=128),
]
# The example is an obvious placeholder: a realistic key would be copied, and a copied key
# replays someone else's result instead of doing the new write.
KEY_PLACEHOLDER = "<unique-key-per-request>"
IdempotencyArg = Annotated[
    str | None,
    Field(
        description="Same key, same saved result.",
        max_length=200,
        examples=[KEY_PLACEHOLDER],
    ),
]
OffsetArg = Annotated[int, Field(ge=0, le=MAX_OFFSET, description="From next_offset of the previous page.")]

# A custom field value as a tool takes it: text, a number, a flag, or a list of options.
FieldText = Annotated[str, Field(max_length=2000)]
FieldValue = (
    FieldText
    | Annotated[int, Field(ge=-MAX_SAFE_INT, le=MAX_SAFE_INT)]
    | Annotated[float, Field(ge=-1e15, le=1e15, allow_inf_nan=False)]
    | bool
    | Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=50)]
)
