"""Reading the lab's notebooks as files: their SQL cells and whether outputs were committed."""

from __future__ import annotations

from pathlib import Path

import nbformat

MAGIC = "%%flink_sql"


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def sql_cells(path: Path) -> list[str]:
    """The SQL of every ``%%flink_sql`` cell of a notebook, without the magic line, in order."""
    out = []
    for cell in read(path).cells:
        if cell.cell_type == "code" and cell.source.lstrip().startswith(MAGIC):
            out.append(cell.source.lstrip().split("\n", 1)[1] if "\n" in cell.source else "")
    return out


def cells_with_outputs(path: Path) -> list[int]:
    """Indexes of code cells that carry outputs or an execution count (none should be committed)."""
    return [
        i
        for i, cell in enumerate(read(path).cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
