"""A Flink session's statements plan on whichever py4j connection they get (:mod:`clicklab.planner_thread`).

Each case moves the session to a py4j connection whose Java thread did not create it, as happens at random in a
notebook, and runs a query there; before the fix that query failed with ``NullPointerException:
metadataHandlerProvider``.
"""

import threading

import pytest

pytestmark = pytest.mark.flink

QUERY = "SELECT n, COUNT(*) AS c FROM (VALUES (1), (1), (2)) AS t(n) GROUP BY n"


def _java_thread(gateway) -> str:
    return gateway.jvm.java.lang.Thread.currentThread().getName()


def _other_threads_call(gateway) -> None:
    other = threading.Thread(target=lambda: gateway.jvm.java.lang.System.nanoTime())
    other.start()
    other.join(60)


def _overlapping_call(gateway) -> None:
    """The state another Python thread's call leaves when it overlaps one of the session's and ends after it
    (py4j's clean-up of a Java reference on the garbage collector's thread, a watchdog): py4j's pool gives the
    session's connection back first and the other one last, and hands the session the other one next."""
    pool = gateway._gateway_client.deque
    session_connection = pool.pop()  # in use by the session's call
    _other_threads_call(gateway)  # meanwhile: no connection free, so a new one, given back on top
    pool.appendleft(session_connection)  # the session's call ended first


def _interrupted_call(gateway) -> None:
    """What Ctrl-C during a call leaves: py4j closes the interrupted connection, and the next call opens a new
    one."""
    pool = gateway._gateway_client.deque
    while pool:
        pool.pop().close()


@pytest.mark.parametrize("move", [_overlapping_call, _interrupted_call], ids=["overlapping-call", "ctrl-c"])
def test_a_query_plans_after_the_session_moved_to_another_connection(t_env, move):
    from pyflink.java_gateway import get_gateway

    from clicklab import flink

    gateway = get_gateway()
    flink.collect(flink.execute(t_env, QUERY), max_changes=10, timeout_s=60)  # plans where it is now
    before = _java_thread(gateway)
    move(gateway)
    after = _java_thread(gateway)
    assert after != before, f"the session stayed on Java thread {before}: the test did not move it"
    got = flink.collect(flink.execute(t_env, QUERY), max_changes=10, timeout_s=60)
    assert {("+I", (2, 1)), ("+U", (1, 2))} <= set(got.changes), got.changes
