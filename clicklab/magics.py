"""``%%flink_sql``: a Zeppelin ``%flink.ssql`` paragraph in a Jupyter cell.

Usage, after ``lab = clicklab.notebook.start(...)``::

    %%flink_sql --max-rows 10
    SELECT site, COUNT(*) AS events FROM tickerstream GROUP BY site

``{name}`` is replaced by a notebook variable and ``${NAME}`` by an environment variable (so
secrets stay out of notebooks). Interrupting the kernel cancels the running Flink job.
``--type append``, ``--parallelism 1`` and ``--zeppelin "key=value, ..."`` are the paragraph's Zeppelin
local properties: the Zeppelin export writes them (``%flink.ssql(type=append, parallelism=1)``).
"""

from __future__ import annotations

from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.display import Markdown, display

from clicklab import sqltext
from clicklab.notebook import current


@magics_class
class FlinkSqlMagics(Magics):
    """The ``flink_sql`` line and cell magics."""

    @cell_magic
    def flink_sql(self, line: str, cell: str) -> None:
        """Run the cell's Flink SQL statements in the notebook's Flink session."""
        args = sqltext.parse_magic_line(line)  # Zeppelin properties (--type, --zeppelin ...) only matter to the export
        sql = sqltext.substitute(cell, self.shell.user_ns)
        if args.echo:
            display(Markdown(f"```sql\n{sql.strip()}\n```"))
        for outcome in current().run(sql, max_rows=args.max_rows, timeout_s=args.timeout):
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


def load_ipython_extension(shell) -> None:
    """``%load_ext clicklab.magics``."""
    shell.register_magics(FlinkSqlMagics)
