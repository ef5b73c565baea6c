"""Reading one cell as a user's table holds it: a number (plain, or written "1,234.5" or
"$1,234"), a date, a category label, or empty. Pure pandas and numpy; the same functions read
the table at training time and new rows at prediction time, so both agree on every cell.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

# A number written with thousands separators and/or a currency sign: "1,234", "-$1,234.50",
# "€ 12", "£1,000,000". Only the usual grouping (1 to 3 digits, then groups of 3) counts, so
# that a list such as "1,2" stays text. A decimal comma ("1.234,5") is not read.
FORMATTED_NUMBER = re.compile(
    r"^(?P<sign>[-+]?)\s*(?P<currency>[$€£¥])?\s*(?P<sign2>[-+]?)"
    r"(?P<whole>\d{1,3}(?:,\d{3})+|\d+)(?P<fraction>\.\d+)?$")
# Whole-column date formats tried in this order; the first that reads nearly every cell wins
# (month-first before day-first: "03/04/2024" is read as March 4 unless a day above 12 says
# otherwise).
DATE_FORMATS = ("ISO8601", "%m/%d/%Y", "%d/%m/%Y", "%d.%m.%Y", "%Y/%m/%d")
# A column whose non-empty cells are at least this share numbers (or dates) is a numeric (or
# date) column with typos, not a categorical one.
TYPED_SHARE = 0.9


def cell_text(value: object) -> str:
    """A cell as the user wrote it, for messages: 'heavy', -3.5, or 'an empty cell'."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "an empty cell"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return repr(value)


def canonical_categories(values: pd.Series) -> pd.Series:
    """Category labels as text, the same whichever way they arrive: 3, 3.0 and '3' are all
    '3'; True and 'True' are 'True'; surrounding spaces go; empty cells are NaN."""
    def label(value):
        if value is None or (not isinstance(value, str) and pd.isna(value)):  # NaN, NA, NaT
            return np.nan
        if isinstance(value, (bool, np.bool_)):
            return str(bool(value))
        if isinstance(value, (int, np.integer)):
            return str(int(value))
        if isinstance(value, (float, np.floating)):
            return str(int(value)) if float(value).is_integer() else repr(float(value))
        text = str(value).strip()
        return text if text else np.nan

    return pd.Series([label(v) for v in values.tolist()], index=values.index, dtype=object)


def blank(values: pd.Series) -> pd.Series:
    """Where a cell is empty: missing, or text of spaces only."""
    return values.isna() | (values.astype(str).str.strip() == "")


def formatted_numbers(values: pd.Series) -> pd.Series:
    """Each cell written as a formatted number ("1,234", "$12.50") as a float; NaN elsewhere."""
    found = values.astype(str).str.strip().str.extract(FORMATTED_NUMBER)
    number = (found["whole"].str.replace(",", "", regex=False)
              + found["fraction"].fillna("")).astype(float)
    negative = (found["sign"] == "-") ^ (found["sign2"] == "-")
    return number.where(~negative, -number)


def numbers(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(the column as floats, with empty and infinite cells NaN; where a cell holds text).
    Formatted numbers ("1,234", "$12.50") are numbers."""
    parsed = pd.to_numeric(values, errors="coerce").astype(float)
    unread = parsed.isna() & ~blank(values)
    if unread.any():
        parsed = parsed.where(~unread, formatted_numbers(values[unread]))
    text = parsed.isna() & ~blank(values)
    return parsed.where(np.isfinite(parsed)), text


def is_formatted(values: pd.Series) -> bool:
    """Whether any cell of the column is a formatted number (for the generate stage's report)."""
    if pd.api.types.is_numeric_dtype(values):
        return False
    return bool(formatted_numbers(values[~blank(values)]).notna().any())


def date_format(values: pd.Series) -> str | None:
    """The format (DATE_FORMATS) that reads at least TYPED_SHARE of the column's non-empty
    text cells as dates, or None. Cells that are plain numbers never count as dates."""
    text = values[~blank(values)].astype(str).str.strip()
    text = text[pd.to_numeric(text, errors="coerce").isna()]
    if text.empty or len(text) < TYPED_SHARE * (~blank(values)).sum():
        return None
    for candidate in DATE_FORMATS:
        read = pd.to_datetime(text, format=candidate, errors="coerce")
        if read.notna().mean() >= TYPED_SHARE:
            return candidate
    return None


def dates(values: pd.Series, fmt: str | None) -> tuple[pd.Series, pd.Series]:
    """(the column as datetime64, empty cells NaT; where a non-empty cell is not a date in
    `fmt`). Datetime cells (Parquet, or already read) are taken as they are; a time zone is
    dropped after converting to UTC."""
    if isinstance(values.dtype, pd.PeriodDtype):
        values = values.dt.to_timestamp()
    if pd.api.types.is_datetime64_any_dtype(values):
        read = values
        if getattr(values.dt, "tz", None) is not None:
            read = values.dt.tz_convert("UTC").dt.tz_localize(None)
        return read.astype("datetime64[ns]"), pd.Series(False, index=values.index)
    empty = blank(values)
    read = pd.to_datetime(values.where(~empty).astype(object), format=fmt or "ISO8601",
                          errors="coerce")
    return read.astype("datetime64[ns]"), read.isna() & ~empty
