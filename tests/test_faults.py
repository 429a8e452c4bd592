"""Faults survived, nothing lost, nothing twice: the keyed steps on the standalone cluster.

A replay of 100 sites x 4 hours runs through the lab's steps on the cluster of ``clicklab cluster up`` (two
TaskManagers). Scoring (08) runs at parallelism 2, checkpointing every second, fed its input in two halves
(:mod:`clicklab.feed`): uninterrupted; with ``kill -9`` of a TaskManager between the halves; and stopped with a
savepoint between them, then resumed from it. Each
time 09 decides the anomalies after it. The faulty runs' destinationstream and anomalydetectionstream must
equal the uninterrupted run's, row for row and score for score, and the alerts sent for them must be the same
alerts, none twice.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from clicklab import cluster, faults

pytestmark = [pytest.mark.flink, pytest.mark.server]

SITES, SECONDS = 100, 28_800


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    from clicklab.generator import benchmark_scenario, generate

    build = tmp_path_factory.mktemp("faults") / "build"
    build.mkdir()
    replay = generate(benchmark_scenario(SITES, SECONDS, 1.0, 0.1), 5, build / "replay.jsonl.gz")
    session = faults.session(replay.out_path, build)
    faults.run_upstream(session)
    yield session
    cluster.down(build)


def _run(lab, fault: str | None) -> tuple[faults.StepRun, pd.DataFrame, pd.DataFrame]:
    scored = faults.run_step(lab, "08", parallelism=2, fault=fault)
    faults.run_step(lab, "09", parallelism=2)
    return scored, faults.rows(lab.build, "destinationstream"), faults.rows(lab.build, "anomalydetectionstream")


def _alerts(build: Path, anomalies: pd.DataFrame, where: Path) -> pd.DataFrame:
    """Send the alerts of ``anomalies`` through the local SNS and SMTP servers, with a fresh alert state."""
    from clicklab.alerts import destination

    where.mkdir()
    dest = destination.open_destination(where, cooldown_s=0)
    try:
        for event in destination.events(anomalies, 100):
            dest.invoke(event)
        table = dest.table()
        emails = len(dest.emails())
    finally:
        dest.close()
    assert emails == ((table["channel"] == "smtp") & (table["outcome"] == "sent")).sum()
    keys = ["channel", "site", "window_start", "outcome"]
    return table[keys].sort_values(keys).reset_index(drop=True)


@pytest.fixture(scope="module")
def uninterrupted(lab):
    run, scores, anomalies = _run(lab, None)
    assert run.checkpoints.completed >= 1 and len(scores) > 50_000
    # every CTR row is scored (and the feed's end row of its first half): none fell behind ctrstream's watermark in
    # 08's ordering view (a run that drops some drops a different number each time, and no faulty run could equal it)
    assert len(scores) == faults.fed_rows(lab.build)
    return scores, anomalies


@pytest.mark.parametrize("fault", faults.FAULTS)
def test_a_fault_mid_job_changes_no_row_and_no_alert(lab, uninterrupted, fault, tmp_path):
    ref_scores, ref_anomalies = uninterrupted
    run, scores, anomalies = _run(lab, fault)
    assert run.fault == fault and run.recovery_s is not None
    if fault == "kill":
        assert run.killed_pid is not None and run.killed_pid not in cluster.taskmanager_pids(lab.build)
    else:
        assert Path(run.savepoint.removeprefix("file:")).exists()
    pd.testing.assert_frame_equal(scores, ref_scores, check_exact=True)
    pd.testing.assert_frame_equal(anomalies, ref_anomalies, check_exact=True)
    assert len(anomalies) > 0, "the replay's noise gives the adaptive threshold a few anomalies to alert on"
    ref_alerts = _alerts(lab.build, ref_anomalies, tmp_path / "ref")
    alerts = _alerts(lab.build, anomalies, tmp_path / "faulty")
    sent = alerts[alerts["outcome"] == "sent"]
    assert not sent.duplicated(["channel", "site", "window_start"]).any()
    assert len(sent) == len(anomalies) * sent["channel"].nunique()  # cooldown 0: each anomaly alerted on, once
    pd.testing.assert_frame_equal(alerts, ref_alerts)


def test_a_savepoint_at_parallelism_2_resumes_at_1_with_every_sites_state(lab, uninterrupted):
    """Rescale: 08 as a compiled plan at parallelism 2, stopped with a savepoint, resumed at parallelism 1; each
    site's forest moves to the one task left and scores on as if nothing had happened."""
    from clicklab import rescale

    ref_scores, ref_anomalies = uninterrupted
    run = rescale.run_rescaled(lab, "08", parallelism=2, to_parallelism=1)
    faults.run_step(lab, "09", parallelism=2)
    assert cluster.job_parallelism(lab.build, run.job_id) == 1
    assert cluster.restored_from(lab.build, run.job_id) == run.savepoint
    pd.testing.assert_frame_equal(faults.rows(lab.build, "destinationstream"), ref_scores, check_exact=True)
    pd.testing.assert_frame_equal(faults.rows(lab.build, "anomalydetectionstream"), ref_anomalies, check_exact=True)
