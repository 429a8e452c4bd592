"""The lab's figures: events per second, and CTR per site with the labelled anomalies shaded."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure


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


def events_per_second(per_minute: pd.DataFrame, labels: pd.DataFrame | None = None) -> Figure:
    """One panel per site: events per second of each type, averaged per minute.

    ``per_minute`` has columns ``site``, ``browseraction``, ``minute`` (window start) and
    ``events_per_s``.
    """
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
