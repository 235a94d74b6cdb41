"""Phone numbers in one form: E.164 (`+15551234567`), so a caller matches whatever way each system
wrote the number.

No phone library: the pipeline needs what every CRM and phone system here emits, which is a
number with a country code, or a ten-digit North American one (`(555) 123-4567`). A number with
no `+` and more than ten digits is taken to carry its country code; anything shorter than seven
digits (an internal extension) is not a phone number.
"""

from __future__ import annotations

import re

_DIGITS = re.compile(r"\d")


def to_e164(value: str | None, *, default_country_code: str = "1") -> str | None:
    """`value` as E.164, or None when it is no phone number (empty, an extension, letters).

    >>> to_e164("(555) 123-4567")
    '+15551234567'
    >>> to_e164("+44 20 7946 0958")
    '+442079460958'
    >>> to_e164("101") is None
    True
    """
    if not value:
        return None
    text = value.strip()
    text = text.split(";", 1)[0].split("x", 1)[0]  # drop `;ext=` and `x123` extensions
    digits = "".join(_DIGITS.findall(text))
    if text.startswith("00"):
        digits, text = digits[2:], "+" + digits[2:]
    if len(digits) < 7 or len(digits) > 15:
        return None
    if text.startswith("+"):
        return "+" + digits
    if len(digits) == 10:
        return f"+{default_country_code}{digits}"
    return "+" + digits


def phone_variants(e164: str) -> list[str]:
    """The forms a CRM with a strict phone search may hold `e164` in: itself, without the `+`,
    the national number, and the North American `(555) 123-4567` / `555-123-4567` forms."""
    digits = e164.lstrip("+")
    out = [e164, digits]
    if e164.startswith("+1") and len(digits) == 11:
        national = digits[1:]
        out += [
            national,
            f"({national[:3]}) {national[3:6]}-{national[6:]}",
            f"{national[:3]}-{national[3:6]}-{national[6:]}",
        ]
    return list(dict.fromkeys(out))
