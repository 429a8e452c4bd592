"""clicklab: the real-time clickstream anomaly detection lab, runnable on a laptop with PyFlink."""

__version__ = "0.1.0"
