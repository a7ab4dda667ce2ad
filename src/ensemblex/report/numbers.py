"""How numbers are written for people: the terminal tables and the HTML report share this, so a
score reads the same in both."""

from __future__ import annotations

import math

# Outside this range fixed-point notation needs too many characters (0.0000001234,
# 123456789012345678): scientific notation is then the shorter and clearer one.
_FIXED_MIN, _FIXED_MAX = 1e-4, 1e15


def format_number(value, digits: int = 5) -> str:
    """``value`` rounded to ``digits`` significant digits, in plain (not scientific) notation.

    Parameters
    ----------
    value : float, int or None
    digits : int, default 5
        Significant digits kept; the digits of an integer part are never replaced by zeros,
        so a large number may show more (``33730345.2`` with 4 digits gives ``"33730345"``).

    Returns
    -------
    str
        ``""`` for None, ``"nan"``, ``"inf"`` or ``"-inf"`` for those, scientific notation
        only below 1e-4 or from 1e15 in magnitude.

    Examples
    --------
    >>> format_number(27031.12345), format_number(0.33242198), format_number(0.0512)
    ('27031', '0.33242', '0.051200')
    >>> format_number(12.3456, 3), format_number(0), format_number(None)
    ('12.3', '0', '')
    >>> format_number(9.99996), format_number(1.23e-7), format_number(33730345.2, 4)
    ('10.000', '1.2300e-07', '33730345')
    """
    if value is None:
        return ""
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    # Round to the significant digits first: 9.99996 rounds up to 10.000, one more integer
    # digit, so the decimals must come from the rounded value's magnitude.
    rounded = float(f"{value:.{digits - 1}e}")
    if not _FIXED_MIN <= abs(rounded) < _FIXED_MAX:
        return f"{value:.{digits - 1}e}"
    decimals = digits - 1 - math.floor(math.log10(abs(rounded)))
    if decimals <= 0:  # all integer digits are shown: zeros in their place would be made up
        return f"{value:.0f}"
    return f"{rounded:.{decimals}f}"


def format_ms_per_1k_rows(seconds_per_row) -> str:
    """Predict time, from seconds per row to milliseconds per 1,000 rows (3 significant
    digits); ``""`` when it was not measured (combiners)."""
    return "" if seconds_per_row is None else format_number(seconds_per_row * 1e6, 3)
