"""Result tables written row by row, so that an interrupted run keeps every row it finished.

A :class:`CsvTable` starts as a header-only file (written atomically, replacing the table of an earlier run into
the same folder) or, on resume, from the rows already there. Each row is appended with one ``write`` call, then
flushed and synced, so after Ctrl-C, a crash or a power cut the file is valid CSV holding every finished row;
at most a last, partial line can be cut by a hard kill, and it is dropped when the table is read back. A row
that brings a new column rewrites the whole table atomically with the wider header.
"""

from __future__ import annotations

import csv
import io as _io
import os
from pathlib import Path
from typing import Any, Callable

from dermoseg.io import write_text


def read_rows(path: str | os.PathLike) -> tuple[list[str], list[dict[str, str]]]:
    """The header and complete rows of a table written by :class:`CsvTable`: a last line cut by a hard kill (no
    final newline) is dropped. Returns ``([], [])`` for an empty file. Raises OSError if it cannot be read."""
    text = Path(path).read_text(encoding="utf-8", errors="surrogateescape")
    if text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    reader = csv.DictReader(_io.StringIO(text))
    return list(reader.fieldnames or []), [dict(r) for r in reader]


def format_value(v: Any) -> str:
    """A cell as text: floats with 6 significant digits, None as empty, everything else ``str``."""
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else str(v)


def _csv_text(rows: list[dict[str, str]], header: list[str], with_header: bool = False) -> str:
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, extrasaction="ignore", lineterminator="\n")
    if with_header:
        writer.writeheader()
    for r in rows:
        writer.writerow(r)
    return buf.getvalue()


class CsvTable:
    """One CSV table of a batch command (``results.csv``, ``predictions.csv``, ...).

    Parameters
    ----------
    path : the CSV file.
    columns : leading columns, always present.
    key : the column that names an input (``image_id`` or ``image``: its output stem, one per input file in an
        output folder, :func:`dermoseg.batch.unique_stems`); it tells which inputs a resumed run has already done.
    extra : keep keys of rows that are not in ``columns`` as further columns (first-seen order); False drops
        them (a fixed format such as the ISIC submission).
    format_row : ``f(row) -> {column: text}``; default :func:`format_value` on each cell.
    """

    def __init__(self, path: str | os.PathLike, columns: list[str], key: str, extra: bool = True,
                 format_row: Callable[[dict[str, Any]], dict[str, str]] | None = None):
        self.path = Path(path)
        self.columns, self.key, self.extra = list(columns), key, extra
        self.format_row = format_row or (lambda row: {k: format_value(v) for k, v in row.items()})
        self.header = list(columns)
        self.rows: list[dict[str, str]] = []
        self._done: set[str | None] = set()  # the key of every row: resume checks in O(1)

    def start(self, resume: bool = False) -> None:
        """Begin the table: on ``resume`` keep the complete rows of an existing file (a cut last line is
        dropped), otherwise replace any existing file by the header alone (atomically)."""
        if resume and self.path.is_file():
            header, self.rows = read_rows(self.path)
            self.header = header or list(self.columns)
        else:
            self.header, self.rows = list(self.columns), []
        self._done = {self._id(r) for r in self.rows}
        self._rewrite()

    def _id(self, row: dict[str, str]) -> str | None:
        return row.get(self.key)

    def _rewrite(self) -> None:
        write_text(self.path, _csv_text(self.rows, self.header, with_header=True))

    def done(self, key: str) -> bool:
        """True if a row for input ``key`` exists."""
        return key in self._done

    def append(self, row: dict[str, Any]) -> None:
        """Append one row now (flushed and synced); a row for an input that already has one (redone on resume)
        replaces it, the file then rewritten atomically.

        Raises
        ------
        UnicodeEncodeError
            If a value cannot be written as UTF-8 (nothing is written then).
        """
        cells = self.format_row(row)
        new = [k for k in cells if k not in self.header] if self.extra else []
        line = _csv_text([cells], self.header + new).encode("utf-8")
        redone = self._id(cells) in self._done  # resumed: the input had a row but its outputs were incomplete
        if redone:
            self.rows = [r for r in self.rows if self._id(r) != self._id(cells)]
        self.rows.append(cells)
        self._done.add(self._id(cells))
        if new or redone:
            self.header += new
            self._rewrite()
            return
        with open(self.path, "ab") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
