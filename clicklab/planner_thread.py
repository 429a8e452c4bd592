"""Let every Java thread that serves this process plan Flink SQL, not only the one that made the session.

PyFlink reaches its JVM through py4j: a pool of socket connections, each served by a Java thread of its own, and
a call takes the connection given back last. Flink's planner keeps Calcite's metadata provider in a thread-local
(``RelMetadataQueryBase.THREAD_PROVIDERS``), set once, on the Java thread that created the
``TableEnvironment``. When a call from another Python thread overlaps one of the session's and ends after it
(py4j's clean-up of a Java reference, run by whichever thread the garbage collector runs on, is enough; so is
a watchdog cancelling a job, or Ctrl-C, which closes the connection), the session's next call takes that other
connection, and its next query fails with ``java.lang.NullPointerException: metadataHandlerProvider``: at
random, long after the cause (FLINK-36298; the browser test met it in ``23`` on a loaded CI machine).

:func:`share_planner_metadata` sets that thread-local on every connection's Java thread, once, before the
connection's first call: whichever connection a statement gets, it plans. ``tests/test_planner_thread.py``
makes the switch happen on purpose and runs a query after it.
"""

from __future__ import annotations

import threading
from typing import Any

from py4j import protocol
from pyflink.java_gateway import get_gateway

_PROVIDERS_CLASS = "org.apache.calcite.rel.metadata.RelMetadataQueryBase"
_JANINO_CLASS = "org.apache.calcite.rel.metadata.JaninoRelMetadataProvider"
_PROVIDER_CLASS = "org.apache.calcite.rel.metadata.RelMetadataProvider"
_FLINK_PROVIDER_CLASS = "org.apache.flink.table.planner.plan.metadata.FlinkDefaultRelMetadataProvider"

_lock = threading.Lock()


class PlannerThreadError(RuntimeError):
    """A py4j connection's Java thread could not be given the planner's metadata provider."""


def share_planner_metadata(t_env: Any) -> None:
    """Make each py4j connection's Java thread able to plan ``t_env``'s statements (see the module's docstring).

    Idempotent; a later session's call replaces an earlier one's (the provider is the same for every session
    of a JVM: Flink's default, compiled by Janino, as ``FlinkRelOptClusterFactory`` sets it).
    """
    gateway = get_gateway()._gateway_client
    thread_local, provider = _planner_thread_local(t_env)
    command = (
        protocol.CALL_COMMAND_NAME + thread_local._target_id + "\nset\n"
        + protocol.get_command_part(provider, gateway.gateway_property.pool) + protocol.END_COMMAND_PART
    )
    with _lock:
        take = getattr(gateway, "_clicklab_pooled_get", None) or gateway._get_connection

        def get_connection() -> Any:
            connection = take()
            if getattr(connection, "_clicklab_planner", None) is not command:
                answer = connection.send_command(command)
                if protocol.is_error(answer)[0]:  # raising a py4j error here would call the gateway again
                    connection.close()
                    raise PlannerThreadError(f"could not set the planner's metadata provider: {answer!r}")
                connection._clicklab_planner = command
            return connection

        get_connection.keep_alive = (thread_local, provider)  # type: ignore[attr-defined]  # their ids are in `command`
        gateway._clicklab_pooled_get = take
        gateway._get_connection = get_connection


def _planner_thread_local(t_env: Any) -> tuple[Any, Any]:
    """Calcite's ``THREAD_PROVIDERS`` and Flink's provider, loaded by the planner's own class loader (the planner
    jar is isolated from the client's class path)."""
    planner = t_env._j_tenv.getPlanner()
    jvm = get_gateway()
    loader = planner.getClass().getClassLoader()

    def load(name: str) -> Any:
        return jvm.jvm.java.lang.Class.forName(name, True, loader)

    no_classes = jvm.new_array(jvm.jvm.java.lang.Class, 0)
    no_args = jvm.new_array(jvm.jvm.java.lang.Object, 0)
    flink_provider = load(_FLINK_PROVIDER_CLASS).getMethod("INSTANCE", no_classes).invoke(None, no_args)
    of_args = jvm.new_array(jvm.jvm.java.lang.Class, 1)
    of_args[0] = load(_PROVIDER_CLASS)
    values = jvm.new_array(jvm.jvm.java.lang.Object, 1)
    values[0] = flink_provider
    provider = load(_JANINO_CLASS).getMethod("of", of_args).invoke(None, values)
    thread_local = load(_PROVIDERS_CLASS).getField("THREAD_PROVIDERS").get(None)
    return thread_local, provider
