"""Reading a user's table from disk, the format picked by the file name: CSV, plain or
compressed as pandas reads it (.csv.gz, .csv.bz2, .csv.xz, .csv.zst, .zip), or Parquet. One
readable message per problem: a missing or unreadable file, an unknown suffix, two columns
with one name. Used by the generate stage and by `deepnormal-predict`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from deepnormal.errors import DeepnormalError

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zst", ".csv.zip", ".zip")
PARQUET_SUFFIXES = (".parquet", ".pq")
TABLE_SUFFIXES = CSV_SUFFIXES + PARQUET_SUFFIXES


def table_format(path: Path | str) -> str | None:
    """'csv' or 'parquet' by the name's suffix, or None for a name it does not know."""
    name = str(path).lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    return None


def load_table(path: Path | str) -> pd.DataFrame:
    """A user's table, by its name's suffix. A CSV keeps every line as a row (a blank line
    is a row of empty cells, so that the rows out are the rows in), and its header may not
    name a column twice (pandas would rename the second silently)."""
    path = Path(path)
    kind = table_format(path)
    if kind is None:
        raise DeepnormalError(f"data file {path}: not a table name this tool knows; it reads "
                              f"{', '.join(TABLE_SUFFIXES)}")
    if kind == "parquet":
        return read_parquet(path)
    header = read_csv(path, header=None, nrows=1, dtype=str, skip_blank_lines=False)
    names = [str(name) for name in header.iloc[0]] if len(header) else []
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise DeepnormalError(f"data file {path}: the header names {', '.join(map(repr, twice))} "
                              "more than once; rename the columns so that each is named once")
    return read_csv(path, skip_blank_lines=False)


def read_parquet(path: Path, hint: str = "") -> pd.DataFrame:
    if not path.is_file():
        raise DeepnormalError(f"data file {path} does not exist{hint}")
    try:
        return pd.read_parquet(path)
    except Exception as error:  # pyarrow raises many types for a damaged file
        raise DeepnormalError(f"data file {path} is not a readable Parquet file: "
                              f"{str(error).splitlines()[0]}") from None


def read_csv(path: Path, hint: str = "", **options) -> pd.DataFrame:
    if not path.is_file():
        raise DeepnormalError(f"data file {path} does not exist{hint}")
    try:
        return pd.read_csv(path, **options)
    except pd.errors.EmptyDataError:
        raise DeepnormalError(f"data file {path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError, ValueError) as error:
        # OSError and EOFError: a damaged compressed file; ValueError: a zip of several files
        raise DeepnormalError(f"data file {path} is not a readable CSV: "
                              f"{str(error).splitlines()[0]}") from None
