"""The Java ``RANDOM_CUT_FOREST`` (``udf/java``): its jar, and the ``java`` backend against ``aws`` through Flink.

The jar is what a user uploads to Managed Service for Apache Flink Studio: AWS's RCF classes inside,
Flink's outside, Java 11 class files. Locally it is the ``java`` backend; the lab replay's ctrstream
scored by ``java`` and by ``aws`` (krcf, the same algorithm in Rust) with the same parameters must
rank the windows alike and flag the same labelled anomalies.

Two forests of one implementation with different seeds do not agree perfectly either (a forest is
random), so the single-draw agreement between the backends is also compared with the agreement of
Java with itself over several draws (each draw: the same series under another key, hence another
per-key seed, in the same Flink job).
"""

from __future__ import annotations

import itertools
import struct
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clicklab import flink, javaudf, settings, udfs
from clicklab.evaluation import detections
from clicklab.exceptions import ClicklabError, SqlError
from clicklab.results import read_labels, reference_ctr
from clicklab.score import score_frames
from clicklab_udf.forest import ForestParams, KeyedForests

pytestmark = pytest.mark.flink

DRAWS = 4  # draws per backend (the same ctrstream under DRAWS keys per site)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


@pytest.fixture(scope="session")
def built_jar(tmp_path_factory) -> Path:
    """A fresh build (not the cached jar), so the build itself is what is tested."""
    return javaudf.build_jar(tmp_path_factory.mktemp("udf") / "clickstream-rcf-udf.jar", force=True)


# --- the jar -------------------------------------------------------------------------------------


def test_jar_holds_our_classes_and_the_rcf_library_but_no_flink(built_jar: Path):
    with zipfile.ZipFile(built_jar) as zf:
        names = set(zf.namelist())
    assert {"clicklab/udf/RandomCutForestUDF.class", "clicklab/udf/RandomCutForestWithFlagUDF.class"} <= names
    assert javaudf.JAVA_UDF_CLASS.replace(".", "/") + ".class" in names
    with zipfile.ZipFile(javaudf.rcf_core_jar()) as rcf:
        rcf_classes = {n for n in rcf.namelist() if n.endswith(".class")}
    assert "com/amazon/randomcutforest/RandomCutForest.class" in rcf_classes
    assert rcf_classes <= names  # every class of randomcutforest-core: the one file to upload
    assert not [n for n in names if n.startswith(("org/apache/flink/", "org/apache/log4j", "org/slf4j"))]


def test_our_classes_are_java_11_bytecode(built_jar: Path):
    with zipfile.ZipFile(built_jar) as zf:
        ours = [n for n in zf.namelist() if n.startswith("clicklab/") and n.endswith(".class")]
        majors = {n: struct.unpack(">HH", zf.read(n)[4:8])[1] for n in ours}
        rcf_max = max(struct.unpack(">HH", zf.read(n)[4:8])[1]
                      for n in zf.namelist() if n.startswith("com/amazon/") and n.endswith(".class"))
    assert len(ours) >= 3 and set(majors.values()) == {55}, majors
    assert rcf_max <= 55  # Studio's Java 11 loads the library too


def test_build_is_cached_until_the_inputs_change(built_jar: Path, tmp_path: Path):
    stamp = built_jar.stat().st_mtime_ns
    assert javaudf.jar_is_current(built_jar)
    assert javaudf.build_jar(built_jar) == built_jar and built_jar.stat().st_mtime_ns == stamp
    # a jar built from other inputs (here: another digest in its manifest) is rebuilt
    stale = tmp_path / "stale.jar"
    with zipfile.ZipFile(stale, "w") as zf:
        zf.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nClicklab-Inputs-SHA256: 0123\n")
    assert not javaudf.jar_is_current(stale)
    javaudf.build_jar(stale)
    assert javaudf.jar_is_current(stale)
    with zipfile.ZipFile(stale) as zf:
        assert "clicklab/udf/RandomCutForestUDF.class" in zf.namelist()


def test_missing_javac_is_one_clear_message(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))  # a "JDK" without bin/javac
    with pytest.raises(ClicklabError, match=r"javac not found: JAVA_HOME=.* has no bin/javac.*openjdk-17-jdk-headless"):
        javaudf.build_jar(tmp_path / "x.jar", force=True)
    monkeypatch.delenv("JAVA_HOME")
    monkeypatch.setenv("PATH", str(tmp_path))
    from clicklab.cli import main

    assert main(["udf-jar", "--out", str(tmp_path / "x.jar"), "--force"]) == 1
    err = capsys.readouterr().err
    assert "clicklab udf-jar: javac not found on PATH" in err and "JDK" in err and "Traceback" not in err
    assert not (tmp_path / "x.jar").exists()


# --- parameters --------------------------------------------------------------------------------


def test_java_backend_is_a_parameter_for_flink_only():
    params = ForestParams(backend="java", number_of_trees=10, time_decay=0, seed=-3, warmup=7)
    assert javaudf.job_parameters(params) == {
        "rcf.number_of_trees": "10", "rcf.sub_sample_size": "256", "rcf.time_decay": "0.0",
        "rcf.shingle_size": "1", "rcf.seed": "-3", "rcf.warmup": "7",
    }
    with pytest.raises(ValueError, match="backend 'java' runs only inside Flink"):
        KeyedForests(params)


def test_job_parameters_reach_the_function_and_keys_have_their_own_forests(t_env, tmp_path: Path):
    rng = np.random.default_rng(3)
    n = 60
    frame = pd.DataFrame({"key": ["a", "b"] * n, "ms": np.arange(2 * n) * 1000,
                          "value": np.r_[10 + rng.normal(0, 1, 2 * n - 2), 80.0, 10.0]})
    params = ForestParams(backend="java", number_of_trees=20, sub_sample_size=32, warmup=5)
    scored = score_frames({"s": frame}, tmp_path, udfs.Detector(forest=params, adaptive=False), t_env=t_env)["s"]
    for key in ("a", "b"):
        part = scored[scored["key"] == key]
        # warm-up 5 (not the default 65): the job parameter reached open()
        assert part["warming_up"].tolist() == [True] * 5 + [False] * (n - 5)
        assert (part["anomaly_score"].iloc[:5] == 0).all() and (part["anomaly_score"].iloc[5:] > 0).all()
    a = scored[scored["key"] == "a"]["anomaly_score"].to_numpy()
    assert a[-1] > 2 and a[-1] == a.max()  # the 80 among values about 10
    assert np.median(a[5:-1]) < 1.5


def test_defaults_when_no_job_parameters_as_in_studio(t_env):
    """Registered by hand, with no ``rcf.*`` job parameter set: warm-up 65 = 1 + 256 // 4 (and the other defaults)."""
    conf = t_env.get_config()
    before = conf.get("pipeline.global-job-parameters", "")
    javaudf.register(t_env, ForestParams(backend="java"))
    conf.set("pipeline.global-job-parameters", "unrelated:1")
    flink.execute(t_env, "CREATE TEMPORARY TABLE IF NOT EXISTS numbers (n BIGINT) WITH ('connector' = 'datagen', "
                         "'fields.n.kind' = 'sequence', 'fields.n.start' = '1', 'fields.n.end' = '260')")
    try:
        sql = "SELECT RANDOM_CUT_FOREST_WITH_FLAG(CAST(MOD(n, 7) AS DOUBLE), 'k') AS r FROM numbers"
        got = flink.collect(flink.execute(t_env, sql), max_changes=1000, timeout_s=120)
    finally:
        conf.set("pipeline.global-job-parameters", before)
        flink.execute(t_env, "DROP TEMPORARY TABLE IF EXISTS numbers")
    flags = [row[0][1] for _, row in got.changes]
    assert len(flags) == 260 and flags[:65] == [True] * 65 and flags[65:] == [False] * 195


def test_a_value_that_is_not_a_finite_number_fails_naming_the_key(t_env):
    javaudf.register(t_env, ForestParams(backend="java", warmup=0))
    sql = "SELECT RANDOM_CUT_FOREST(CAST('NaN' AS DOUBLE), 'https://shop.example.com')"
    with pytest.raises(SqlError, match=r"RANDOM_CUT_FOREST: site 'https://shop.example.com': value NaN is not a "
                                       r"finite number"):
        flink.collect(flink.execute(t_env, sql), max_changes=10, timeout_s=120)


# --- java against aws on the lab replay's ctrstream -------------------------------------------


@pytest.fixture(scope="module")
def lab_scores(t_env, tmp_path_factory) -> dict[str, dict[str, pd.DataFrame]]:
    """The replay's ctrstream scored through Flink by each backend, DRAWS times (default parameters)."""
    ctr = reference_ctr(settings.DEFAULT_DATASET).sort_values(["time", "site"], kind="stable")
    frame = pd.DataFrame({"key": ctr["site"].to_numpy(), "ms": ctr["time"].to_numpy() * 1000,
                          "value": ctr["ctr"].to_numpy(), "time": ctr["time"].to_numpy()})
    out = {}
    for backend in ("aws", "java"):
        detector = udfs.Detector(forest=ForestParams(backend=backend))
        out[backend] = score_frames({f"draw{i}": frame for i in range(DRAWS)},
                                    tmp_path_factory.mktemp(backend), detector, t_env=t_env)
    return out


def _after_warmup(scored: dict[str, pd.DataFrame]) -> np.ndarray:
    """Scores after warm-up, one row per draw."""
    keep = ~scored["draw0"]["warming_up"].to_numpy()
    return np.array([scored[f"draw{i}"]["anomaly_score"].to_numpy()[keep] for i in range(DRAWS)])


def test_java_and_aws_warm_up_alike_and_score_on_the_same_scale(lab_scores):
    aws, java = lab_scores["aws"]["draw0"], lab_scores["java"]["draw0"]
    assert (aws["warming_up"].to_numpy() == java["warming_up"].to_numpy()).all()
    warm = ForestParams().warmup_points  # 1 + 256 // 4 = 65 windows per site
    assert int((~java["warming_up"]).sum()) == 3 * (720 - warm)  # three sites, two hours of 10-s windows
    a, j = _after_warmup(lab_scores["aws"]), _after_warmup(lab_scores["java"])
    assert abs(np.median(a) - np.median(j)) <= 0.05 * np.median(a)
    assert 0.5 < np.median(j) < 1.2


def test_java_and_aws_agree_in_rank(lab_scores):
    a, j = _after_warmup(lab_scores["aws"]), _after_warmup(lab_scores["java"])
    # one forest each, as a user runs them
    assert _spearman(a[0], j[0]) >= 0.9
    keys = lab_scores["java"]["draw0"]["key"].to_numpy()[~lab_scores["java"]["draw0"]["warming_up"].to_numpy()]
    for site in set(keys):
        assert _spearman(a[0][keys == site], j[0][keys == site]) >= 0.9, site
    # the backends differ no more than two draws of the Java forest differ from each other
    pairs = list(itertools.combinations(range(DRAWS), 2))
    java_java = np.mean([_spearman(j[p], j[q]) for p, q in pairs])
    aws_java = np.mean([_spearman(a[p], j[q]) for p, q in pairs])
    assert aws_java >= java_java - 0.03
    # what the implementations expect (mean over draws) agrees more closely still
    assert _spearman(a.mean(axis=0), j.mean(axis=0)) >= 0.95


def test_java_and_aws_flag_the_same_labelled_anomalies(lab_scores):
    labels = read_labels(settings.labels_path_for(settings.DEFAULT_DATASET)).rename(columns={"site": "key"})
    found = {}
    for backend in ("aws", "java"):
        s = lab_scores[backend]["draw0"]
        for mode, flagged in (("fixed", (s["anomaly_score"] > settings.ANOMALY_THRESHOLD) & ~s["warming_up"]),
                              ("adaptive", s["is_anomaly"])):
            flags = pd.DataFrame({"key": s["key"], "time": s["time"], "is_anomaly": flagged.to_numpy(bool)})
            det = detections(flags, labels, before_s=settings.WINDOW_SECONDS, max_delay_s=settings.WINDOW_SECONDS)
            found[backend, mode] = set(det.loc[det["detected"], "kind"])
    assert found["java", "fixed"] == found["aws", "fixed"]
    assert found["java", "adaptive"] == found["aws", "adaptive"]
    assert found["java", "adaptive"] == set(labels["kind"])  # all five, as the aws backend finds them


def test_cli_score_with_the_java_backend(tmp_path: Path, capsys):
    from clicklab.cli import main

    rng = np.random.default_rng(8)
    values = 20 + rng.normal(0, 1, 120)
    values[100] = 90
    rows = [f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}Z,{v:.3f}" for i, v in enumerate(values)]
    src = tmp_path / "in.csv"
    src.write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out.csv"
    code = main(["score", "--input", str(src), "--output", str(out), "--backend", "java", "--trees", "30",
                 "--sample-size", "64", "--warmup", "40", "--build", str(tmp_path / "build")])
    assert code == 0, capsys.readouterr().err
    scored = pd.read_csv(out)
    assert list(scored.columns) == ["timestamp", "value", "anomaly_score", "is_anomaly", "expected", "usual_low",
                                    "usual_high", "grade"] and len(scored) == 120
    assert (scored["anomaly_score"].iloc[:40] == 0).all() and (scored["anomaly_score"].iloc[40:] > 0).all()
    assert scored["anomaly_score"].idxmax() == 100 and bool(scored["is_anomaly"].iloc[100])
