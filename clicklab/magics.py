"""``%%flink_sql``: a Zeppelin ``%flink.ssql`` paragraph in a Jupyter cell.

Usage, after ``lab = clicklab.notebook.start(...)`` (which loads the magic with that session)::

    %%flink_sql --max-rows 10
    SELECT site, COUNT(*) AS events FROM tickerstream GROUP BY site

``{name}`` is replaced by a notebook variable and ``${NAME}`` by an environment variable (so
secrets stay out of notebooks). Interrupting the kernel cancels the running Flink job. In a live
session a query's table refreshes in place as rows arrive (Zeppelin's ``type=update``), until
``--timeout`` or Ctrl-C.
``--type append``, ``--parallelism 1`` and ``--zeppelin "key=value, ..."`` are the paragraph's Zeppelin
local properties: the Zeppelin export writes them (``%flink.ssql(type=append, parallelism=1)``).
The options are read by :func:`clicklab.cells.parse_magic_line`, the one reader the export shares.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.display import Markdown, display

from clicklab import cells, sqltext


class Session(Protocol):
    """What the magic needs of a session (:class:`clicklab.lab.Lab` is one)."""

    live: bool

    def run(self, script: str, max_rows: int = ..., timeout_s: float = ...,
            on_rows: Callable[[Any, str], None] | None = ...) -> list[Any]: ...


@magics_class
class FlinkSqlMagics(Magics):
    """The ``flink_sql`` line and cell magics, bound to one Flink session."""

    def __init__(self, shell: Any, session: Session | None = None) -> None:
        super().__init__(shell)
        self.session = session

    @cell_magic
    def flink_sql(self, line: str, cell: str) -> None:
        """Run the cell's Flink SQL statements in this magic's Flink session."""
        if self.session is None:
            raise RuntimeError("no Flink session yet: run `lab = clicklab.notebook.start(dataset, build)` first")
        args = cells.parse_magic_line(line)  # Zeppelin properties (--type, --zeppelin ...) only matter to the export
        sql = sqltext.substitute(cell, self.shell.user_ns)
        if args.echo:
            display(Markdown(f"```sql\n{sql.strip()}\n```"))
        live = _LiveTable(args.max_rows) if getattr(self.session, "live", False) else None
        on_rows = live.show if live is not None else None
        for outcome in self.session.run(sql, max_rows=args.max_rows, timeout_s=args.timeout, on_rows=on_rows):
            if live is not None and live.handle is not None and outcome.frame is not None:
                live.show(outcome.frame, outcome.message)  # the last state, in place
            else:
                print(outcome.message)
                if outcome.frame is not None and outcome.shown:
                    display(outcome.frame.head(outcome.shown))
            if outcome.frame is not None and args.out:
                self.shell.user_ns[args.out] = outcome.frame
            if live is not None:
                live.handle = None  # the next statement of the cell gets its own table

    @line_magic("flink_sql")
    def flink_sql_line(self, line: str) -> None:
        """One statement on the magic's line: ``%flink_sql SHOW TABLES``."""
        self.flink_sql("", line)


class _LiveTable:
    """A query's table shown once and then updated in place (an IPython display handle)."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.handle: Any = None

    def show(self, frame: Any, note: str) -> None:
        from IPython.display import HTML

        html = HTML(f"<p>{note}</p>" + frame.tail(self.max_rows).to_html(index=False))
        if self.handle is None:
            self.handle = display(html, display_id=True)
        else:
            self.handle.update(html)


def load(shell: Any, session: Session) -> FlinkSqlMagics:
    """Register the magics in ``shell``, bound to ``session`` (a later session replaces an earlier one)."""
    magics = FlinkSqlMagics(shell, session)
    shell.register_magics(magics)
    return magics


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext clicklab.magics``: the magics without a session yet (``clicklab.notebook.start`` binds one)."""
    shell.register_magics(FlinkSqlMagics(shell))
