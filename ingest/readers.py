"""File readers: JSONL, CSV/TSV and XLSX → (row number a person sees, raw dict) pairs.

Row numbers: the line number in a JSONL file; the sheet row in CSV and XLSX, where the header is row 1 (a quoted
CSV cell spanning lines is still one row, as a spreadsheet shows it). Blank lines and empty rows are skipped but
keep their numbers. A row that cannot be read at all (malformed JSON) comes back as `Unreadable`, not an exception.
"""

from __future__ import annotations

import codecs
import csv
import json
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

from core.errors import InvalidInput

SUPPORTED_SUFFIXES = (".jsonl", ".ndjson", ".csv", ".tsv", ".xlsx")
# GB18030 is a superset of GBK/GB2312: what Excel on a Chinese Windows saves as "CSV".
FALLBACK_ENCODING = "gb18030"


class UnsupportedFile(InvalidInput):
    """The file's type is not one we read, or its bytes cannot be decoded."""

    code = "unsupported_file"
    title = "Unsupported file"


@dataclass(frozen=True)
class Unreadable:
    """A row that could not be parsed into a dict (e.g. a malformed JSON line)."""

    reason: str
    text: str


RawRow = Mapping[str, Any] | Unreadable


def read_rows(path: Path) -> Iterator[tuple[int, RawRow]]:
    """(row_number, raw dict or Unreadable) for each non-empty row of a JSONL, CSV/TSV or XLSX file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        hint = " (save it as .xlsx)" if suffix == ".xls" else ""
        raise UnsupportedFile(
            f"cannot read {path.name}: unsupported file type {suffix or '(none)'!r}{hint}; "
            f"expected one of {', '.join(SUPPORTED_SUFFIXES)}",
            extra={"path": str(path)},
        )
    if not path.is_file():
        raise InvalidInput(f"no such file: {path}", extra={"path": str(path)})
    # Checked eagerly above (a clear error before any run starts); the rows themselves stream lazily.
    if suffix in (".jsonl", ".ndjson"):
        return _jsonl_rows(path)
    if suffix in (".csv", ".tsv"):
        return _csv_rows(path, delimiter="\t" if suffix == ".tsv" else ",", encoding=_csv_encoding(path))
    if not zipfile.is_zipfile(path):
        raise UnsupportedFile(f"cannot read {path.name}: not an Excel .xlsx workbook", extra={"path": str(path)})
    return _xlsx_rows(path)


def count_rows(path: Path) -> int | None:
    """How many data rows the file has (for a progress bar); None when it cannot be told cheaply."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        with path.open("rb") as fh:
            return sum(1 for line in fh if line.strip())
    if suffix in (".csv", ".tsv"):
        delimiter = "\t" if suffix == ".tsv" else ","
        return sum(1 for _ in _csv_rows(path, delimiter=delimiter, encoding=_csv_encoding(path)))
    if suffix == ".xlsx":
        from openpyxl import load_workbook

        workbook = load_workbook(path, read_only=True, data_only=True)
        try:
            rows = workbook.worksheets[0].max_row
        finally:
            workbook.close()
        return max(rows - 1, 0) if rows else None
    return None


def _jsonl_rows(path: Path) -> Iterator[tuple[int, RawRow]]:
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if number == 1:
                line = line.removeprefix(codecs.BOM_UTF8)
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, Unreadable(f"not UTF-8 text: {exc.reason} at byte {exc.start}", _preview(line))
                continue
            try:
                # parse_float=Decimal: money written 12.3 must stay exactly 12.3, never a binary float.
                value = json.loads(text, parse_float=Decimal)
            except json.JSONDecodeError as exc:
                yield number, Unreadable(f"malformed JSON: {exc.msg} (column {exc.colno})", _preview(text))
                continue
            if not isinstance(value, dict):
                yield number, Unreadable(f"expected a JSON object, got {type(value).__name__}", _preview(text))
                continue
            yield number, value


def _csv_encoding(path: Path) -> str:
    """utf-8-sig when the whole file decodes as UTF-8, else GB18030; anything else is refused."""
    for encoding in ("utf-8-sig", FALLBACK_ENCODING):
        decoder = codecs.getincrementaldecoder(encoding)()
        try:
            with path.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            continue
        return encoding
    raise UnsupportedFile(f"cannot read {path.name}: neither UTF-8 nor GBK text", extra={"path": str(path)})


def _csv_rows(path: Path, *, delimiter: str, encoding: str) -> Iterator[tuple[int, RawRow]]:
    with path.open(encoding=encoding, newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        header: list[str] | None = None
        for number, cells in enumerate(reader, start=1):
            if header is None:
                header = [cell.strip() for cell in cells]
                continue
            if not any(cell.strip() for cell in cells):
                continue
            # Cells past the header have no name; columns with an empty header are not data.
            yield number, {name: cell for name, cell in zip(header, cells, strict=False) if name}


def _xlsx_rows(path: Path) -> Iterator[tuple[int, RawRow]]:
    from openpyxl import load_workbook

    workbook = load_workbook(path, read_only=True, data_only=True)
    try:
        sheet = workbook.worksheets[0]
        header: list[str] | None = None
        for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            if header is None:
                header = ["" if v is None else str(v).strip() for v in values]
                continue
            if all(v is None or (isinstance(v, str) and not v.strip()) for v in values):
                continue
            yield number, {name: _cell(v) for name, v in zip(header, values, strict=False) if name}
    finally:
        workbook.close()


def _cell(value: Any) -> Any:
    # A date cell arrives as a midnight datetime; a time-only cell has no business in our schema, keep it readable.
    if isinstance(value, datetime) and value.time() == time(0):
        return value.date()
    if isinstance(value, time):
        return value.isoformat()
    return value


def _preview(text: str | bytes, limit: int = 500) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = text.rstrip("\r\n")
    return text if len(text) <= limit else text[:limit] + "…"


def jsonable(value: Any) -> Any:
    """A raw row made safe for a JSON column (Decimal → str, dates → ISO text, anything odd → str)."""
    if isinstance(value, Unreadable):
        return {"_unreadable": value.text}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date | datetime | time):
        return value.isoformat()
    return str(value)
