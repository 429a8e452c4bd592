"""The errors clicklab raises. Each names what the user has to look at: a file, a field, a notebook cell."""

from __future__ import annotations


class ClicklabError(Exception):
    """Base class: the CLI prints these as one line and exits non-zero, without a stack trace."""


class ScenarioError(ClicklabError, ValueError):
    """A scenario file is invalid. The message names the file, the sender and the field."""


class DatasetError(ClicklabError):
    """A replay dataset or labels file is missing or unreadable. The message names the path."""


class JavaError(ClicklabError):
    """No usable Java runtime for Flink."""


class NotebookError(ClicklabError):
    """A notebook failed while running headless. The message names the notebook, the cell and the cause."""

    def __init__(self, notebook: str, cell: str, cause: str) -> None:
        self.notebook = notebook
        self.cell = cell
        self.cause = cause
        super().__init__(f"{notebook}, cell {cell}: {cause}")


class SqlError(ClicklabError):
    """A Flink SQL statement failed; the message keeps Flink's own reason, without the Java stack."""
