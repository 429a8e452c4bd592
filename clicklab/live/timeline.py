"""The live generator's timeline: its senders laid out over event time, and their records window by window.

Offsets are milliseconds from the *origin*, the first event time written: time offset 0 of the
scenario (the drift's phase). The scenario's normal senders run from there for ever, their rates
multiplied by ``scale``; a session (:mod:`clicklab.live.sessions`) adds rate factors on the normal
senders of its site and plans of its own senders, which are forgotten once the session is over.
The records are made by the replay's machinery (:mod:`clicklab.generator`): each sender has its own
random stream per interval, keyed by the seed, the sender and the interval's offset, so the same
seed and start time give the same records.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from clicklab.generator import _Formatter, _merge_window, _name_key, _Plan, _start_block, _window_size_ms
from clicklab.live.options import _EPOCH, WINDOW_S
from clicklab.scenario import Anomaly, Scenario

__all__ = ["Timeline"]

_FOREVER_MS = 2**62


class Timeline:
    """The plans of a live generator's senders from :meth:`start`'s origin; :meth:`records` moves the cursor.

    ``cursor`` (epoch ms) is the first moment not yet made; ``window_ms`` the most event time
    :meth:`records` should be asked for at a time (:data:`~clicklab.live.options.WINDOW_S`, fewer at
    high rates: bounded memory).
    """

    def __init__(self, scenario: Scenario, seed: int, scale: float) -> None:
        self.scenario = scenario
        self.seed = seed
        self.scale = scale
        self.origin = 0
        self.cursor = 0
        self.window_ms = round(WINDOW_S * 1000)
        self._plans: list[_Plan] = []
        self._n_normal = 0
        self._extras: list[_Plan] = []
        self._fmt: _Formatter | None = None

    def start(self, origin: int) -> None:
        """Lay out the normal senders from ``origin`` (epoch ms), where the cursor starts."""
        self.origin = self.cursor = origin
        self._plans = [
            _Plan(index=i, sender=replace(s, rate=s.rate * self.scale), start_ms=0, end_ms=_FOREVER_MS,
                  key=_name_key(s.name), factors=[])
            for i, s in enumerate(self.scenario.senders)
        ]
        self._n_normal = len(self._plans)
        self._rebuild()
        self.window_ms = min(round(WINDOW_S * 1000), _window_size_ms(self.scenario, self._plans))

    @property
    def senders(self) -> int:
        """How many senders are active (the normal ones, then those of running sessions)."""
        return len(self._plans)

    @property
    def rate(self) -> float:
        """The sum of the active senders' rates (records/s, before sessions' rate factors)."""
        return sum(p.sender.rate for p in self._plans)

    def records(self, hi: int) -> tuple[int, bytes]:
        """The records of ``[cursor, hi)`` (record count and bytes, in time order); moves the cursor to ``hi``."""
        lo_off, hi_off = self.cursor - self.origin, hi - self.origin
        live = []
        for plan in self._plans:
            if plan.start_ms < hi_off and plan.end_ms > lo_off:
                _start_block(plan, self.seed, lo_off, lo_off, hi_off)
                live.append(plan)
        assert self._fmt is not None
        count, data = _merge_window(live, self._fmt, lo_off, hi_off)
        self.cursor = hi
        self._end_sessions(hi_off)
        return count, data

    def add_session(self, anomaly: Anomaly, start: int, end: int, rate_scale: float, number: int) -> None:
        """Play ``anomaly`` (a session) during ``[start, end)`` (epoch ms): its rate factors on the normal senders
        of its site, its own senders (rates times ``rate_scale``; ``number`` keeps their random streams apart)."""
        s_off, e_off = start - self.origin, end - self.origin
        for plan in self._plans[: self._n_normal]:
            action = plan.sender.browseraction
            if plan.sender.site == anomaly.site and isinstance(action, str) and action in anomaly.rate_factor:
                plan.factors.append((s_off, e_off, anomaly.rate_factor[action]))
        for s in anomaly.senders:
            begin = s_off + round(s.start * 1000)
            self._extras.append(
                _Plan(index=0, sender=replace(s, rate=s.rate * rate_scale),
                      start_ms=begin, end_ms=begin + round(s.duration * 1000),
                      key=_name_key(f"{s.name}#{number}"), factors=[])
            )
        self._rebuild()

    def _end_sessions(self, hi_off: int) -> None:
        """Forget the senders and rate factors of sessions that ended before ``hi_off``."""
        for plan in self._plans[: self._n_normal]:
            plan.factors = [f for f in plan.factors if f[1] > hi_off]
        ended = [p for p in self._extras if p.end_ms <= hi_off]
        if ended:
            self._extras = [p for p in self._extras if p.end_ms > hi_off]
            self._rebuild()

    def _rebuild(self) -> None:
        """Renumber the plans (normal senders, then active sessions' senders) and rebuild the formatter."""
        self._plans = self._plans[: self._n_normal] + self._extras
        for i, plan in enumerate(self._plans):
            plan.index = i
        self._fmt = _Formatter(replace(self.scenario, start_time=_EPOCH + timedelta(milliseconds=self.origin)),
                               self._plans)
