"""Code that Flink ships to its Python workers: the streaming Random Cut Forest, the anomaly
threshold, and their thin Flink adapters (``functions``). ``forest`` and ``threshold`` need only
numpy and the backend library, and are tested without Flink."""
