"""The Studio note's forest-parameter paragraph, run against the jar's Java function.

In a pytest process of its own (the Makefile's JAVA_TESTS): after other tests have made table environments in a
process, a session can no longer load the jar's classes (the open ClassNotFoundException the Makefile notes).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from clicklab import flink, javaudf, settings
from clicklab.zeppelin.localprops import parse_paragraph
from clicklab_udf.forest import ForestParams
from tests.test_zeppelin_export import _forest_paragraphs, export


@pytest.mark.flink
@pytest.mark.parametrize("params", ["lab", "default"])
def test_the_parameters_paragraph_reaches_the_java_function(t_env, tmp_path: Path, params: str):
    """Run the note's paragraph as Studio would (``st_env`` is the session): the jar's function warms up
    ``1 + sub_sample_size // 4`` windows of that set, whatever the session had before."""
    _, data = export(tmp_path, params=params)
    _, setting, _, ps = _forest_paragraphs(data)
    conf = t_env.get_config()
    before = conf.get("pipeline.global-job-parameters", "")
    javaudf.register(t_env, ForestParams(backend="java", sub_sample_size=2, warmup=0),
                     names=(settings.RANDOM_CUT_FOREST_WITH_FLAG,))  # other parameters: the paragraph replaces them
    rows = 80
    flink.execute(t_env, "CREATE TEMPORARY TABLE IF NOT EXISTS note_numbers (n BIGINT) WITH ('connector' = "
                         f"'datagen', 'fields.n.kind' = 'sequence', 'fields.n.start' = '1', 'fields.n.end' = '{rows}')")
    try:
        exec(parse_paragraph(ps[setting]["text"]).script, {"st_env": t_env})
        sql = "SELECT RANDOM_CUT_FOREST_WITH_FLAG(CAST(MOD(n, 7) AS DOUBLE), 'k') AS r FROM note_numbers"
        got = flink.collect(flink.execute(t_env, sql), max_changes=1000, timeout_s=120)
    finally:
        conf.set("pipeline.global-job-parameters", before)
        flink.execute(t_env, "DROP TEMPORARY TABLE IF EXISTS note_numbers")
    warmup = 1 + ForestParams.preset(params).sub_sample_size // 4
    flags = [row[0][1] for _, row in got.changes]
    assert flags == [True] * warmup + [False] * (rows - warmup)
