"""The lab's figures: events per second, and CTR per site with the labelled anomalies shaded."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from clicklab import usual


def _shade(ax: plt.Axes, labels: pd.DataFrame | None, site: str, legend: bool) -> None:
    if labels is None or labels.empty:
        return
    for i, row in enumerate(labels[labels["site"] == site].itertuples()):
        start, end = pd.Timestamp(row.start).tz_localize(None), pd.Timestamp(row.end).tz_localize(None)
        label = "labelled anomaly" if legend and i == 0 else None
        ax.axvspan(start, end, color="tab:red", alpha=0.2, label=label)
        ax.annotate(row.kind, (start, 1.0), xycoords=("data", "axes fraction"), fontsize=7,
                    va="top", rotation=90, color="tab:red")


def _naive(series: pd.Series) -> pd.Series:
    """Timestamps as naive UTC (matplotlib's date axis), whatever came in."""
    out = pd.to_datetime(series, utc=True)
    return out.dt.tz_localize(None)


def nothing_yet(title: str, why: str) -> Figure:
    """A figure that says why there is nothing to draw yet (live, a window may not have closed), instead of failing."""
    fig, ax = plt.subplots(figsize=(11, 1.6))
    ax.axis("off")
    ax.text(0.5, 0.5, why, ha="center", va="center", fontsize=11, wrap=True)
    fig.suptitle(title)
    return fig


def events_per_second(per_minute: pd.DataFrame, labels: pd.DataFrame | None = None) -> Figure:
    """One panel per site: events per second of each type, averaged per minute.

    ``per_minute`` has columns ``site``, ``browseraction``, ``minute`` (window start) and
    ``events_per_s``. Without rows (live, before a minute has closed) the figure says so.
    """
    if per_minute.empty:
        return nothing_yet("Events per second by type and site (1-minute averages)",
                           "No one-minute window has closed yet: live, run the query again in a minute.")
    sites = sorted(per_minute["site"].unique())
    fig, axes = plt.subplots(len(sites), 1, figsize=(11, 2.4 * len(sites)), sharex=True, squeeze=False)
    for ax, site in zip(axes[:, 0], sites, strict=True):
        part = per_minute[per_minute["site"] == site]
        minutes = pd.date_range(_naive(per_minute["minute"]).min(), _naive(per_minute["minute"]).max(), freq="min")
        for action, rows in part.groupby("browseraction"):
            # a minute without events of this type has no row: it is a zero, not a gap to draw across
            rate = pd.Series(rows["events_per_s"].astype(float).to_numpy(), index=_naive(rows["minute"]))
            rate = rate.groupby(level=0).sum().reindex(minutes, fill_value=0.0)
            ax.plot(rate.index, rate.to_numpy(), label=action, lw=1)
        _shade(ax, labels, site, legend=True)
        ax.set_title(site, fontsize=9, loc="left")
        ax.set_ylabel("events/s")
        ax.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("event time (UTC)")
    fig.suptitle("Events per second by type and site (1-minute averages)")
    fig.tight_layout()
    return fig


def ctr_by_site(ctr: pd.DataFrame, labels: pd.DataFrame | None = None) -> Figure:
    """One panel per site: the CTR of every window (``ctrstream``), labelled anomalies shaded."""
    if ctr.empty:
        return nothing_yet("CTR per site", "No CTR window yet: live, is the job of #6 running? Run the query again.")
    sites = sorted(ctr["site"].unique())
    fig, axes = plt.subplots(len(sites), 1, figsize=(11, 2.6 * len(sites)), sharex=True, squeeze=False)
    for ax, site in zip(axes[:, 0], sites, strict=True):
        rows = ctr[ctr["site"] == site].sort_values("time")
        when = pd.to_datetime(rows["time"], unit="s")
        ax.plot(when, rows["ctr"].astype(float), lw=0.8, color="tab:blue", label="CTR per window")
        _shade(ax, labels, site, legend=True)
        ax.set_title(site, fontsize=9, loc="left")
        ax.set_ylabel("CTR %")
        top = float(rows["ctr"].max()) if len(rows) else 0.0
        if top > 100:  # keep normal CTRs readable next to a 500 % burst
            ax.set_yscale("symlog", linthresh=100, linscale=2)
            ticks = [t for t in (0, 25, 50, 100, 200, 500, 1000, 2000, 5000) if t <= top * 1.2]
            ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
            ax.set_yticks([], minor=True)
        ax.legend(loc="upper left", fontsize=8)
    axes[-1, 0].set_xlabel("window start (UTC)")
    fig.suptitle("Click-through rate per 10-second window (panels over 100 %: logarithmic above 100)")
    fig.tight_layout()
    return fig


def series_and_scores(values: list[float], scores: list[float], threshold: float) -> Figure:
    """A series and its anomaly scores, one above the other, with the threshold line."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 4.5), sharex=True)
    top.plot(values, lw=0.8)
    top.set_ylabel("value")
    bottom.plot(scores, lw=0.8, color="tab:purple")
    bottom.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"threshold {threshold:g}")
    bottom.set_ylabel("anomaly score")
    bottom.set_xlabel("point")
    bottom.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def anomalies_by_site(
    scored: pd.DataFrame, flagged: pd.DataFrame, labels: pd.DataFrame | None, threshold: float,
    band: pd.DataFrame | None = None,
) -> Figure:
    """Per site: CTR with flagged windows marked, and the score with the threshold; labels shaded.

    ``scored`` is destinationstream (site, time, ctr, score); ``flagged`` is anomalydetectionstream
    (site, rowtime, ...): the adaptive decisions. Windows over the fixed threshold are marked too. ``band``
    (:func:`clicklab.usual.band`: site, time, usual_low, usual_high) is drawn as the usual CTR range.
    """
    sites = sorted(scored["site"].unique())
    fig, axes = plt.subplots(2 * len(sites), 1, figsize=(11, 3.2 * len(sites)), sharex=True, squeeze=False)
    for i, site in enumerate(sites):
        ctr_ax, score_ax = axes[2 * i, 0], axes[2 * i + 1, 0]
        rows = scored[scored["site"] == site].sort_values("time")
        when = pd.to_datetime(rows["time"], unit="s")
        if band is not None and len(band):
            mine_band = band[band["site"] == site].sort_values("time")
            ctr_ax.fill_between(pd.to_datetime(mine_band["time"], unit="s"), mine_band["usual_low"],
                                mine_band["usual_high"], color="tab:green", alpha=0.18, lw=0, step="post",
                                label="usual range (before the window)")
        ctr_ax.plot(when, rows["ctr"], lw=0.7, color="tab:blue", label="CTR")
        over = rows["score"] > threshold
        ctr_ax.scatter(when[over], rows["ctr"][over], marker="x", color="tab:orange", s=25, zorder=3,
                       label=f"score > {threshold:g} (fixed)")
        mine = flagged[flagged["site"] == site]
        if len(mine):
            ctr_ax.scatter(_naive(mine["rowtime"]), mine["ctrpercent"], facecolors="none", edgecolors="tab:red",
                           s=70, zorder=4, label="anomaly (adaptive)")
        top = float(rows["ctr"].max()) if len(rows) else 0.0
        if top > 100:
            ctr_ax.set_yscale("symlog", linthresh=100, linscale=2)
            ticks = [t for t in (0, 25, 50, 100, 200, 500, 1000, 2000, 5000) if t <= top * 1.2]
            ctr_ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
            ctr_ax.set_yticks([], minor=True)
        ctr_ax.set_ylabel("CTR %")
        ctr_ax.set_title(site, fontsize=9, loc="left")
        ctr_ax.legend(loc="upper left", fontsize=7, ncol=3)
        score_ax.plot(when, rows["score"], lw=0.7, color="tab:purple")
        score_ax.axhline(threshold, color="tab:red", ls="--", lw=1)
        score_ax.set_ylabel("score")
        for ax in (ctr_ax, score_ax):
            _shade(ax, labels, site, legend=ax is ctr_ax)
    axes[-1, 0].set_xlabel("window start (UTC)")
    fig.suptitle("CTR, anomaly score and anomalies per site (labelled anomalies shaded)")
    fig.tight_layout()
    return fig


def live_anomalies_by_site(lab: Any, labels: pd.DataFrame | None, seconds: float = 30.0,
                           every_s: float = 3.0) -> Figure | None:
    """:func:`anomalies_by_site` redrawn in place every ``every_s`` seconds for ``seconds`` (live).

    It reads ``destinationstream`` and ``anomalydetectionstream`` as they grow (``lab.stream``); the
    kernel's stop button ends it early. Returns the last figure (``None`` if nothing was scored yet).
    """
    import io
    import time

    from IPython.display import Image, Markdown, display

    handle = display(Markdown("waiting for scores ..."), display_id=True)
    fig = None
    deadline = time.monotonic() + seconds
    try:
        while True:
            scored = lab.stream("destinationstream")
            if len(scored):
                fig = anomalies_by_site(scored, lab.stream("anomalydetectionstream"), labels, lab.detector.threshold,
                                        band=usual.band(scored, lab.detector))
                png = io.BytesIO()
                fig.savefig(png, format="png", dpi=80)
                plt.close(fig)
                handle.update(Image(png.getvalue()))
            if time.monotonic() + every_s > deadline:
                break
            time.sleep(every_s)
    except KeyboardInterrupt:
        pass  # the stop button: keep the last figure
    return fig
