/*
 * RANDOM_CUT_FOREST(value [, key [, time]]) -> DOUBLE: a streaming AWS Random Cut Forest per key.
 *
 * Named like the lab's software.amazon.flink.example.RandomCutForestUDF, but a real streaming forest:
 * the lab's jar built a new forest on every call. Each value is scored against its key's forest
 * (in the lab: the site's), then inserted; 0.0 while the key warms up: its first
 * max(warmup, shingle_size - 1) values, warmup being 1 + sub_sample_size / 4 by default (65 values at
 * 256 samples, 4 at 12; job parameter rcf.warmup sets it; see KeyedForests.Params).
 * A null, NaN or infinite value fails the job with a message naming the key and time.
 *
 * Register (Studio, or locally with the jar on pipeline.jars):
 *   CREATE TEMPORARY FUNCTION RANDOM_CUT_FOREST AS 'clicklab.udf.RandomCutForestUDF' LANGUAGE JAVA;
 *   SELECT site, ctr, RANDOM_CUT_FOREST(ctr, site) AS score FROM ctrstream;
 */
package clicklab.udf;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.InputGroup;

public class RandomCutForestUDF extends ForestFunction {
    private static final long serialVersionUID = 1L;

    /** One forest for all rows (key ""). */
    public Double eval(Double value) {
        return score(value, null, null).score;
    }

    /** One forest per key. */
    public Double eval(Double value, @DataTypeHint(inputGroup = InputGroup.ANY) Object key) {
        return score(value, key, null).score;
    }

    /** One forest per key; time only names the row in error messages. */
    public Double eval(Double value, @DataTypeHint(inputGroup = InputGroup.ANY) Object key,
                       @DataTypeHint(inputGroup = InputGroup.ANY) Object time) {
        return score(value, key, time).score;
    }
}
