"""What every workbook the platform writes shares: cells that Excel can hold."""

from __future__ import annotations

from typing import Any

from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def cell(value: Any) -> Any:
    """A value a worksheet can hold: text loses the control characters XLSX cannot store (names typed or imported
    with them would otherwise make the whole export fail)."""
    if isinstance(value, str):
        return ILLEGAL_CHARACTERS_RE.sub("", value)
    return value


def row(values: list[Any]) -> list[Any]:
    """A row of cells (see cell)."""
    return [cell(v) for v in values]
