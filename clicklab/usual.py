"""The usual CTR of each site's windows: the band notebook 10 draws around the CTR (issue 23).

``ANOMALY_DECISIONS`` writes a site's expected CTR and usual range into each anomaly row only. To draw them
for every window, :func:`band` replays destinationstream's scores per site, in time order, through the Python
twin of the Java threshold (:class:`clicklab_udf.threshold.AdaptiveThreshold`, the same arithmetic, checked row
by row in ``tests/test_keyed.py``): for each window the site's usual CTR and range *before* it, learned from its
ordinary windows (a score at or under the site's level, or a window of the forest's warm-up).
"""

from __future__ import annotations

import pandas as pd

from clicklab import udfs

BAND_COLUMNS = ("expected", "usual_low", "usual_high")


def band(scored: pd.DataFrame, detector: udfs.Detector | None = None) -> pd.DataFrame:
    """``scored`` (destinationstream: site, time, ctr, score) with ``expected``, ``usual_low`` and ``usual_high``
    (NaN before a site's first ordinary window; the low end never below 0 %), sorted by site and time."""
    detector = detector or udfs.Detector()
    rule = udfs.adaptive_threshold(detector)
    rows = scored.sort_values(["site", "time"], kind="stable").reset_index(drop=True)
    usual = []
    for site, ctr, score in zip(rows["site"], rows["ctr"], rows["score"], strict=True):
        if pd.isna(score) or pd.isna(ctr):
            usual.append((None, None, None))
            continue
        d = rule.update(str(site), float(score), warming_up=float(score) == 0.0, value=float(ctr))
        usual.append((d.expected, None if d.low is None else max(d.low, 0.0), d.high))
    out = pd.DataFrame(usual, columns=list(BAND_COLUMNS), index=rows.index, dtype="float64")
    return pd.concat([rows, out], axis=1)
