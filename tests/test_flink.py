import os
import stat
from pathlib import Path

import pytest

from clicklab import flink
from clicklab.exceptions import JavaError


@pytest.mark.parametrize(
    ("text", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_402"', 8),
        ('openjdk version "11" 2018-09-25', 11),
        ('openjdk version "21.0.2" 2024-01-16 LTS', 21),
    ],
)
def test_parse_java_version(text, major):
    assert flink.parse_java_version(text) == major


def _fake_java_home(tmp_path: Path, version_line: str) -> Path:
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    return home


def test_old_java_is_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(_fake_java_home(tmp_path, 'java version "1.8.0_402"')))
    with pytest.raises(JavaError) as err:
        flink.check_java()
    msg = str(err.value)
    assert "Java 8" in msg and "too old" in msg and "environment.yml" in msg and "OpenJDK 17" in msg


def test_missing_java_is_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nowhere"))
    with pytest.raises(JavaError, match=r"Java not found.*JAVA_HOME"):
        flink.check_java()
    monkeypatch.delenv("JAVA_HOME")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(JavaError, match=r"no `java` on PATH.*environment.yml"):
        flink.check_java()


def test_this_machine_has_a_usable_java():
    assert flink.check_java() >= 11, os.environ.get("JAVA_HOME")


def test_error_message_keeps_flinks_reason_without_the_stack():
    exc = Exception(
        "org.apache.flink.table.api.ValidationException: Object 'nosuch' not found\n"
        "\tat org.apache.flink.Foo.bar(Foo.java:1)\n"
        "Caused by: org.apache.calcite.CalciteException: Table 'nosuch' not found\n"
        "\tat x.y(Z.java:2)\n"
    )
    msg = flink.error_message(exc)
    assert "Object 'nosuch' not found" in msg and "Table 'nosuch'" in msg and "Foo.java" not in msg


@pytest.mark.flink
@pytest.mark.parametrize("where", ["TRUE", "n < 0"], ids=["rows-arriving", "quiet-source"])
def test_a_local_query_past_its_deadline_stops_and_the_session_goes_on(t_env, where):
    """At its deadline a local query stops, whether rows keep arriving or the source is quiet (the watchdog
    cancels the job through the gateway, from its own thread), and the session's next statements still plan
    (that thread's py4j connection used to break them: NullPointerException: metadataHandlerProvider)."""
    from clicklab import flink

    flink.execute(t_env, "CREATE TEMPORARY TABLE IF NOT EXISTS endless (n BIGINT) WITH ("
                         "'connector' = 'datagen', 'rows-per-second' = '20', 'fields.n.min' = '0')")
    try:
        got = flink.collect(flink.execute(t_env, f"SELECT n FROM endless WHERE {where}"), max_changes=10_000,
                            timeout_s=2)
        assert got.stopped == "time limit of 2 s", got
        assert bool(got.changes) == (where == "TRUE"), got.changes[:5]
        for _ in range(3):
            again = flink.collect(flink.execute(t_env, "SELECT n, COUNT(*) FROM (VALUES (1), (1), (2)) AS t(n) "
                                                       "GROUP BY n"), max_changes=10, timeout_s=60)
            assert {("+I", (2, 1)), ("+U", (1, 2))} <= set(again.changes), again.changes
            assert again.stopped == "end of stream"
    finally:
        flink.execute(t_env, "DROP TEMPORARY TABLE IF EXISTS endless")
