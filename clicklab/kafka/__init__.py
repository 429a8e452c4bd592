"""The lab's streams on Apache Kafka: the broker (:mod:`.broker`), its jars and the Flink connector's
(:mod:`.jars`)."""
