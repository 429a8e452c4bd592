/*
 * What RANDOM_CUT_FOREST and RANDOM_CUT_FOREST_WITH_FLAG share: the forests of one task, created in open()
 * from the Flink job parameters (pipeline.global-job-parameters rcf.number_of_trees, rcf.sub_sample_size,
 * rcf.time_decay, rcf.shingle_size, rcf.seed, rcf.warmup; the defaults when absent, as in Studio).
 */
package clicklab.udf;

import org.apache.flink.table.functions.FunctionContext;
import org.apache.flink.table.functions.ScalarFunction;

public abstract class ForestFunction extends ScalarFunction {
    private static final long serialVersionUID = 1L;

    private transient KeyedForests forests;

    @Override
    public void open(FunctionContext context) throws Exception {
        forests = new KeyedForests(KeyedForests.Params.from(context::getJobParameter), "site");
    }

    /** Score value against key's forest, then insert it (score-then-update). */
    protected KeyedForests.Scored score(Double value, Object key, Object time) {
        if (forests == null) {
            throw new IllegalStateException("RANDOM_CUT_FOREST called before open(): no forests yet");
        }
        return forests.score(key == null ? "" : String.valueOf(key), value, time);
    }

    /** The forests keep state: the planner must call the function exactly once per row. */
    @Override
    public boolean isDeterministic() {
        return false;
    }
}
