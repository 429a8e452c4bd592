"""When a live KDG session starts: on the next window boundary, so that its windows are whole.

The pipeline counts events in tumbling windows of :data:`~clicklab.settings.WINDOW_SECONDS` seconds that start
on multiples of the window length (epoch time). A session sent at an arbitrary moment, say 3.6 s into a window,
fills that window only partly: the Studio lab's burst (1 impression and 5 clicks a second for 30 s, CTR 500 %)
would then span four windows, the first a mix of normal traffic and burst (CTR 112.9 %, say), and with the
alert threshold's refractory period (one alert per burst, for its first flagged window) the e-mail would quote
that mixed window. :func:`clicklab.live.send.send` therefore asks the generator to start a session at
:func:`next_window_start_ms`: the burst's 30 seconds are then exactly three whole windows of CTR 500 %.
"""

from __future__ import annotations

import math
from datetime import datetime

from clicklab import settings


def next_window_start_ms(now_ms: int, window_s: float = settings.WINDOW_SECONDS) -> int:
    """The first window boundary at or after ``now_ms`` (epoch milliseconds): a multiple of the window length.

    ``window_s`` 0 (or less) means no alignment: ``now_ms`` itself.

    >>> next_window_start_ms(1_796_000_003_600), next_window_start_ms(1_796_000_010_000)
    (1796000010000, 1796000010000)
    """
    window_ms = round(window_s * 1000)
    if window_ms <= 0:
        return int(now_ms)
    return int(math.ceil(now_ms / window_ms) * window_ms)


def on_window_boundary(moment: datetime, window_s: float = settings.WINDOW_SECONDS) -> bool:
    """Whether ``moment`` (an aware datetime) is a window boundary."""
    window_ms = round(window_s * 1000)
    return window_ms > 0 and round(moment.timestamp() * 1000) % window_ms == 0


def describe_start(moment: datetime, window_s: float = settings.WINDOW_SECONDS) -> str:
    """What a session's description adds about its start: ``""`` unless it starts on a window boundary.

    >>> from datetime import UTC
    >>> describe_start(datetime(2026, 12, 1, 18, 0, 10, tzinfo=UTC))
    ' (starts on a 10-second window boundary: its windows are whole)'
    """
    if not on_window_boundary(moment, window_s):
        return ""
    return f" (starts on a {window_s:g}-second window boundary: its windows are whole)"
