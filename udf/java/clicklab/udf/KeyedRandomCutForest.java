/*
 * RANDOM_CUT_FOREST as a process table function: one streaming Random Cut Forest per partition key,
 * held in Flink's keyed state (checkpointed with the job, restored after a failure, redistributed on
 * rescale). The shape of Kinesis Data Analytics' function:
 *
 *   SELECT * FROM RANDOM_CUT_FOREST(TABLE ctr_in_time_order PARTITION BY site, DESCRIPTOR(ctr));
 *   SELECT * FROM RANDOM_CUT_FOREST(input => TABLE t PARTITION BY site, columns => DESCRIPTOR(ctr),
 *                                   numberOfTrees => 100, subSampleSize => 12, timeDecay => 100000,
 *                                   shingleSize => 1);
 *
 * Output: every input column (passed through), then anomaly_score DOUBLE and warming_up BOOLEAN.
 * Each row is scored against its key's forest as it is, then inserted (score-then-update), in the order
 * the rows arrive for that key: feed it a table in event-time order per key (the lab's
 * ctr_in_time_order view sorts per site with an OVER window). While a key warms up (its first
 * max(warmup, shingleSize - 1) values) the score is 0.0 and warming_up is true. A row whose scored
 * values are not all finite numbers gets a NULL score and is not learned: the job does not fail.
 *
 * Parameters: the call's arguments, else the job parameters rcf.number_of_trees, rcf.sub_sample_size,
 * rcf.time_decay, rcf.shingle_size, rcf.seed, rcf.warmup (pipeline.global-job-parameters, set by
 * clicklab.javaudf), else the defaults of KeyedForests.Params. columns: the columns scored together as
 * one point; absent: every numeric column but the partition keys (as Kinesis Data Analytics does).
 *
 * State per key: the forest as CompactForest bytes (about 16 KB at 100 trees x 256 samples; `clicklab bench
 * --sites N` measures it from a checkpoint) and the count of values seen. A task keeps the forests it has decoded
 * in memory and checks them against the state's count, so a row costs one encoding of the forest, not a decoding
 * (KeyedForestState, shared with RANDOM_CUT_FOREST_WITH_EXPLANATION).
 */
package clicklab.udf;

import org.apache.flink.table.annotation.ArgumentHint;
import org.apache.flink.table.annotation.ArgumentTrait;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.StateHint;
import org.apache.flink.table.functions.FunctionContext;
import org.apache.flink.table.functions.ProcessTableFunction;
import org.apache.flink.types.ColumnList;
import org.apache.flink.types.Row;

@DataTypeHint("ROW<anomaly_score DOUBLE, warming_up BOOLEAN>")
public class KeyedRandomCutForest extends ProcessTableFunction<Row> {
    private static final long serialVersionUID = 1L;

    /** The keyed state of one partition: its forest, encoded, and how many values it has seen. */
    public static class ForestState {
        public byte[] forest;
        public Long seen;
    }

    private transient KeyedForestState keyed;

    @Override
    public void open(FunctionContext context) throws Exception {
        keyed = new KeyedForestState("RANDOM_CUT_FOREST", KeyedForests.Params.from(context::getJobParameter));
    }

    public void eval(
            Context ctx,
            @StateHint ForestState state,
            @ArgumentHint(value = {ArgumentTrait.SET_SEMANTIC_TABLE, ArgumentTrait.PASS_COLUMNS_THROUGH}, name = "input") Row input,
            @ArgumentHint(name = "columns", isOptional = true) ColumnList columns,
            // integers, as Kinesis Data Analytics' list is (100, 12, 100000, 1); a process table function's
            // signature is static, and Flink 2.3 cannot cast an INT literal to a DOUBLE argument
            @ArgumentHint(name = "numberOfTrees", isOptional = true) Integer numberOfTrees,
            @ArgumentHint(name = "subSampleSize", isOptional = true) Integer subSampleSize,
            @ArgumentHint(name = "timeDecay", isOptional = true) Integer timeDecay,
            @ArgumentHint(name = "shingleSize", isOptional = true) Integer shingleSize) {
        CompactForest forest = keyed.forRow(ctx, columns, input, state.forest, state.seen, numberOfTrees,
                subSampleSize, timeDecay, shingleSize);
        if (forest == null) {
            collect(Row.of(null, null)); // not a number: no score, not learned, the job goes on
            return;
        }
        double score = forest.scoreThenUpdate(keyed.point());
        long seen = forest.updates(); // the state's count, and this row
        state.seen = seen;
        state.forest = KeyedForestState.encode(forest);
        if (seen <= keyed.warmup(subSampleSize, shingleSize)) {
            collect(Row.of(0.0, true));
        } else {
            collect(Row.of(score, false));
        }
    }
}
