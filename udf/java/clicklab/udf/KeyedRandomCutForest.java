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
 * --sites N` measures it from a checkpoint) and the count of values seen. A task
 * keeps the forests it has decoded in memory and checks them against the state's count, so a row costs
 * one encode of the forest, not a decode.
 */
package clicklab.udf;

import org.apache.flink.table.annotation.ArgumentHint;
import org.apache.flink.table.annotation.ArgumentTrait;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.StateHint;
import org.apache.flink.table.functions.FunctionContext;
import org.apache.flink.table.functions.ProcessTableFunction;
import org.apache.flink.table.functions.TableSemantics;
import org.apache.flink.table.types.logical.LogicalType;
import org.apache.flink.table.types.logical.LogicalTypeFamily;
import org.apache.flink.table.types.logical.RowType;
import org.apache.flink.types.ColumnList;
import org.apache.flink.types.Row;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

@DataTypeHint("ROW<anomaly_score DOUBLE, warming_up BOOLEAN>")
public class KeyedRandomCutForest extends ProcessTableFunction<Row> {
    private static final long serialVersionUID = 1L;

    /** The keyed state of one partition: its forest, encoded, and how many values it has seen. */
    public static class ForestState {
        public byte[] forest;
        public Long seen;
    }

    private transient KeyedForests.Params jobParams;
    private transient Map<String, CompactForest> decoded;
    private transient int[] valueFields;
    private transient int[] keyFields;
    private transient ByteArrayOutputStream buffer;

    @Override
    public void open(FunctionContext context) throws Exception {
        jobParams = KeyedForests.Params.from(context::getJobParameter);
        decoded = new HashMap<>();
        buffer = new ByteArrayOutputStream(8192);
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
            @ArgumentHint(name = "timeDecay", isOptional = true) Integer timeDecayArg,
            @ArgumentHint(name = "shingleSize", isOptional = true) Integer shingleSize) {
        Double timeDecay = timeDecayArg == null ? null : timeDecayArg.doubleValue();
        if (valueFields == null) {
            resolveColumns(ctx.tableSemanticsFor("input"), columns);
        }
        double[] point = new double[valueFields.length];
        for (int i = 0; i < valueFields.length; i++) {
            Object v = input.getField(valueFields[i]);
            double d = v instanceof Number ? ((Number) v).doubleValue() : Double.NaN;
            if (!Double.isFinite(d)) {
                collect(Row.of(null, null)); // not a number: no score, not learned, the job goes on
                return;
            }
            point[i] = d;
        }
        String key = keyOf(input);
        long seen = state.seen == null ? 0L : state.seen;
        CompactForest forest = decoded.get(key);
        if (forest == null || forest.updates() != seen) {
            forest = state.forest == null
                    ? newForest(key, numberOfTrees, subSampleSize, timeDecay, shingleSize, point.length)
                    : decode(state.forest);
            decoded.put(key, forest);
        }
        double score = forest.scoreThenUpdate(point);
        seen++;
        state.seen = seen;
        state.forest = encode(forest);
        int warmup = warmupOf(subSampleSize, shingleSize);
        if (seen <= warmup) {
            collect(Row.of(0.0, true));
        } else {
            collect(Row.of(score, false));
        }
    }

    private int warmupOf(Integer subSampleSize, Integer shingleSize) {
        int sample = subSampleSize != null ? subSampleSize : jobParams.subSampleSize;
        int shingle = shingleSize != null ? shingleSize : jobParams.shingleSize;
        int warmup = subSampleSize != null && subSampleSize != jobParams.subSampleSize
                ? KeyedForests.Params.defaultWarmup(sample) : jobParams.warmup;
        return Math.max(warmup, shingle - 1);
    }

    private CompactForest newForest(String key, Integer numberOfTrees, Integer subSampleSize, Double timeDecay,
                                    Integer shingleSize, int dimensions) {
        KeyedForests.Params p = new KeyedForests.Params(
                numberOfTrees != null ? numberOfTrees : jobParams.numberOfTrees,
                subSampleSize != null ? subSampleSize : jobParams.subSampleSize,
                timeDecay != null ? timeDecay : jobParams.timeDecay,
                shingleSize != null ? shingleSize : jobParams.shingleSize,
                jobParams.seed, jobParams.warmup);
        return new CompactForest(p.numberOfTrees, p.subSampleSize, p.timeDecay, p.shingleSize, dimensions,
                KeyedForests.keySeed(p.seed, key));
    }

    private void resolveColumns(TableSemantics semantics, ColumnList columns) {
        RowType type = (RowType) semantics.dataType().getLogicalType();
        List<String> names = type.getFieldNames();
        keyFields = semantics.partitionByColumns();
        List<Integer> fields = new ArrayList<>();
        if (columns != null && !columns.getNames().isEmpty()) {
            for (String name : columns.getNames()) {
                int i = names.indexOf(name);
                if (i < 0) {
                    throw new IllegalArgumentException("RANDOM_CUT_FOREST: columns names '" + name
                            + "', which the input table does not have; it has " + names);
                }
                if (!isNumeric(type.getTypeAt(i))) {
                    throw new IllegalArgumentException("RANDOM_CUT_FOREST: column '" + name + "' is "
                            + type.getTypeAt(i) + ", not a number");
                }
                fields.add(i);
            }
        } else {
            for (int i = 0; i < names.size(); i++) {
                if (isNumeric(type.getTypeAt(i)) && !isKey(i)) {
                    fields.add(i);
                }
            }
            if (fields.isEmpty()) {
                throw new IllegalArgumentException("RANDOM_CUT_FOREST: the input table has no numeric column to "
                        + "score besides its partition keys: " + names);
            }
        }
        valueFields = fields.stream().mapToInt(Integer::intValue).toArray();
    }

    private boolean isKey(int field) {
        for (int k : keyFields) {
            if (k == field) {
                return true;
            }
        }
        return false;
    }

    private static boolean isNumeric(LogicalType type) {
        return type.is(LogicalTypeFamily.NUMERIC);
    }

    private String keyOf(Row input) {
        if (keyFields.length == 1) {
            Object k = input.getField(keyFields[0]);
            return k == null ? "" : String.valueOf(k);
        }
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < keyFields.length; i++) {
            if (i > 0) {
                b.append('\u001f');
            }
            b.append(input.getField(keyFields[i]));
        }
        return b.toString();
    }

    private byte[] encode(CompactForest forest) {
        buffer.reset();
        try (DataOutputStream out = new DataOutputStream(buffer)) {
            forest.writeTo(out);
        } catch (IOException e) {
            throw new UncheckedIOException("RANDOM_CUT_FOREST: encoding a forest failed", e);
        }
        return buffer.toByteArray();
    }

    private static CompactForest decode(byte[] bytes) {
        try {
            return CompactForest.readFrom(new DataInputStream(new ByteArrayInputStream(bytes)));
        } catch (IOException e) {
            throw new UncheckedIOException("RANDOM_CUT_FOREST: the forest in state cannot be read", e);
        }
    }

}
