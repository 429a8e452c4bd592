"""The Flink adapters of udf/clicklab_udf/functions.py, through a real Flink job."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clicklab import flink
from clicklab.exceptions import SqlError
from clicklab_udf.forest import ForestParams, KeyedForests

pytestmark = pytest.mark.flink

PARAMS = ForestParams(number_of_trees=30, sub_sample_size=64, warmup=32, backend="aws")


def _register_scalar(t_env) -> None:
    """The scalar ``RANDOM_CUT_FOREST(value, key)`` of functions.py, for sessions that want it (the lab's pipeline
    calls the keyed Java function under that name; see tests/test_keyed.py)."""
    from clicklab_udf.functions import random_cut_forest

    flink.execute(t_env, "DROP TEMPORARY FUNCTION IF EXISTS SCALAR_RCF")
    t_env.create_temporary_function("SCALAR_RCF", random_cut_forest(PARAMS))


def _table(t_env, folder: Path, rows: list[tuple[int, str, float]]) -> None:
    """``ctr(seq, site, ctr)`` on the filesystem connector, as the lab's streams are."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps({"seq": q, "site": s, "ctr": v}) + "\n" for q, s, v in rows)
    (folder / "part-0.json").write_text(lines)
    flink.execute(t_env, "DROP TABLE IF EXISTS ctr")
    flink.execute(t_env, f"CREATE TABLE ctr (seq BIGINT, site STRING, ctr DOUBLE) WITH ("
                         f"'connector' = 'filesystem', 'path' = '{folder}', 'format' = 'json')")


def _rows(sql: str, t_env) -> list[tuple]:
    return [values for _, values in flink.collect(flink.execute(t_env, sql), max_changes=10**6, timeout_s=300).changes]


def test_vectorized_random_cut_forest_scores_interleaved_sites_exactly_like_row_by_row(t_env, tmp_path: Path):
    """RANDOM_CUT_FOREST(ctr, site) as the notebooks call it: one forest per site, score-then-update, in order."""
    rng = np.random.default_rng(8)
    n = 150
    sites = ["https://www.mysite.com", "https://news.example.com"]
    values = {s: list(np.round(rng.normal(10 + 20 * i, 2, n), 3)) for i, s in enumerate(sites)}
    values[sites[0]][120] = 500.0
    rows = [(t * 2 + i, s, float(values[s][t])) for t in range(n) for i, s in enumerate(sites)]
    _table(t_env, tmp_path / "ctr", rows)
    _register_scalar(t_env)
    got = _rows("SELECT seq, site, SCALAR_RCF(ctr, site) FROM ctr", t_env)
    got.sort()
    assert [g[:2] for g in got] == [r[:2] for r in rows]
    for site in sites:
        forests = KeyedForests(PARAMS)
        expected = [forests.score(site, v).score for v in values[site]]
        assert [g[2] for g in got if g[1] == site] == pytest.approx(expected)
    assert dict((g[0], g[2]) for g in got)[240] > 2  # the 500 % window


def test_a_missing_ctr_stops_the_job_naming_the_site(t_env, tmp_path: Path):
    _table(t_env, tmp_path / "ctr", [(0, "https://shop.example.com", 12.5), (1, "https://shop.example.com", None)])
    _register_scalar(t_env)
    sql = "SELECT SCALAR_RCF(ctr, site) FROM ctr"
    with pytest.raises(SqlError, match=r"RANDOM_CUT_FOREST: site 'https://shop.example.com': value (nan|None)"):
        _rows(sql, t_env)
