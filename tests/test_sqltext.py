import pytest

from clicklab import sqltext


def test_substitute_python_and_environment_variables():
    sql = "SELECT * FROM {table} WHERE ctr > {limit} AND arn = '${TOPIC}'"
    out = sqltext.substitute(sql, {"table": "ctrstream", "limit": 2}, {"TOPIC": "arn:aws:sns:x"})
    assert out == "SELECT * FROM ctrstream WHERE ctr > 2 AND arn = 'arn:aws:sns:x'"


def test_substitute_literal_braces_and_missing_names():
    assert sqltext.substitute("SELECT '{{x}}'", {}, {}) == "SELECT '{x}'"
    with pytest.raises(KeyError, match=r"\{window\}"):
        sqltext.substitute("INTERVAL '{window}' SECOND", {}, {})
    with pytest.raises(KeyError, match=r"\$\{SECRET\}"):
        sqltext.substitute("'${SECRET}'", {"SECRET": "python value is not an env var"}, {})


def test_split_respects_quotes_and_comments():
    script = """
    CREATE TABLE t (a STRING);  -- first; with a semicolon in a comment
    INSERT INTO t SELECT 'a;b' ;
    /* block; comment */ SELECT `we;ird` FROM t;
    ;
    """
    parts = sqltext.split_statements(script)
    assert len(parts) == 3
    assert parts[0] == "CREATE TABLE t (a STRING)"
    assert "'a;b'" in parts[1]
    assert parts[2].endswith("SELECT `we;ird` FROM t")


def test_split_keeps_escaped_quotes():
    assert sqltext.split_statements("SELECT 'it''s; fine'; SHOW TABLES") == ["SELECT 'it''s; fine'", "SHOW TABLES"]


@pytest.mark.parametrize("script", [
    "SELECT 'it''s -- not a comment' FROM t -- but this is\n;",
    "SELECT \"a\"\"b\" /* x; 'y */ , `c``d` FROM t; SELECT 1",
    "SELECT 'unclosed; -- quote",
    "/* unclosed block; comment",
    "",
])
def test_tokens_give_the_script_back_and_one_scanner_serves_split_and_strip(script: str):
    pieces = list(sqltext.tokens(script))
    assert "".join(text for _, text in pieces) == script
    assert sqltext.strip_comments(script) == "".join(t for k, t in pieces if k != "comment")
    outside = [t for k, t in pieces if k == "semicolon"]
    assert len(sqltext.split_statements(script)) <= len(outside) + 1


def test_strip_comments_keeps_comment_markers_inside_doubled_quotes():
    sql = "SELECT 'it''s -- here' AS a -- gone"
    assert sqltext.strip_comments(sql) == "SELECT 'it''s -- here' AS a "


@pytest.mark.parametrize(
    ("sql", "kind", "target"),
    [
        ("CREATE TABLE x (a INT)", sqltext.DDL, None),
        ("-- comment\nINSERT INTO impressionstream SELECT 1", sqltext.INSERT, "impressionstream"),
        ("insert overwrite `default_catalog`.`db`.`ctrstream` select 1", sqltext.INSERT, "ctrstream"),
        ("WITH a AS (SELECT 1) SELECT * FROM a", sqltext.QUERY, None),
        ("SELECT * FROM tickerstream", sqltext.QUERY, None),
        ("DESCRIBE tickerstream", sqltext.INFO, None),
        ("SHOW TABLES", sqltext.INFO, None),
        ("SET 'parallelism.default' = '2'", sqltext.DDL, None),
    ],
)
def test_classify(sql, kind, target):
    st = sqltext.classify(sql)
    assert (st.kind, st.target) == (kind, target)


def test_classify_refuses_what_it_does_not_know():
    with pytest.raises(ValueError, match="MERGE"):
        sqltext.classify("MERGE INTO t USING s")
    with pytest.raises(ValueError, match="empty"):
        sqltext.classify("-- only a comment")


def test_materialize_applies_updates_in_place_and_deletes():
    changes = [
        ("+I", ("a", 1)),
        ("+I", ("b", 1)),
        ("-U", ("a", 1)),
        ("+U", ("a", 2)),
        ("+I", ("c", 1)),
        ("-D", ("b", 1)),
    ]
    assert sqltext.materialize(changes) == [("a", 2), ("c", 1)]


def test_materialize_refuses_inconsistent_changelog():
    with pytest.raises(ValueError, match="not in the result"):
        sqltext.materialize([("-D", ("x",))])
