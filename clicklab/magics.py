"""``%%flink_sql``: a Zeppelin ``%flink.ssql`` paragraph in a Jupyter cell.

Usage, after ``lab = clicklab.notebook.start(...)`` (which loads the magic with that session)::

    %%flink_sql --max-rows 10
    SELECT site, COUNT(*) AS events FROM tickerstream GROUP BY site

``{name}`` is replaced by a notebook variable and ``${NAME}`` by an environment variable (so
secrets stay out of notebooks). Interrupting the kernel cancels the running Flink job.
``--type append``, ``--parallelism 1`` and ``--zeppelin "key=value, ..."`` are the paragraph's Zeppelin
local properties: the Zeppelin export writes them (``%flink.ssql(type=append, parallelism=1)``).
The options are read by :func:`clicklab.cells.parse_magic_line`, the one reader the export shares.
"""

from __future__ import annotations

from typing import Any, Protocol

from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.display import Markdown, display

from clicklab import cells, sqltext


class Session(Protocol):
    """What the magic needs of a session (:class:`clicklab.notebook.Lab` is one)."""

    def run(self, script: str, max_rows: int = ..., timeout_s: float = ...) -> list[Any]: ...


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
        for outcome in self.session.run(sql, max_rows=args.max_rows, timeout_s=args.timeout):
            print(outcome.message)
            if outcome.frame is not None:
                if outcome.shown:
                    display(outcome.frame.head(outcome.shown))
                if args.out:
                    self.shell.user_ns[args.out] = outcome.frame

    @line_magic("flink_sql")
    def flink_sql_line(self, line: str) -> None:
        """One statement on the magic's line: ``%flink_sql SHOW TABLES``."""
        self.flink_sql("", line)


def load(shell: Any, session: Session) -> FlinkSqlMagics:
    """Register the magics in ``shell``, bound to ``session`` (a later session replaces an earlier one)."""
    magics = FlinkSqlMagics(shell, session)
    shell.register_magics(magics)
    return magics


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext clicklab.magics``: the magics without a session yet (``clicklab.notebook.start`` binds one)."""
    shell.register_magics(FlinkSqlMagics(shell))
