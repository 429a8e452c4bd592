/*
 * What the keyed process table functions RANDOM_CUT_FOREST (KeyedRandomCutForest) and
 * RANDOM_CUT_FOREST_WITH_EXPLANATION (KeyedRandomCutForestWithExplanation) share: the scored columns and the
 * partition keys resolved from the call, a row's point and key, the forests a task keeps decoded, and the forest's
 * bytes in Flink state. Errors name the function and the column.
 *
 * The state of a key is the function's ForestState (its forest as CompactForest bytes, and the count of values
 * seen). A task keeps every forest it has decoded and takes it again when its count of updates equals the state's
 * count (after a restore or a rescale the state's forest is decoded once), so a row costs one encoding of the
 * forest (CompactForest.toBytes: one pass into a new array of the exact size), not a decoding.
 *
 * A new array each row, rather than writing into the one the state holds: that array is the very object in Flink's
 * heap state (the state's row keeps the POJO's byte[]), so writing into it would be safe only through the heap
 * backend's copy-on-write (a state read during a snapshot is copied first), an internal of one backend, and would
 * save little: with Java Flight Recorder on the TaskManager during `clicklab bench --sites 10000 --parallelism 1`
 * (jcmd PID JFR.start, then `jfr print --events jdk.ExecutionSample`) the encoding is a few percent of the task's
 * samples and the forest most of the rest.
 */
package clicklab.udf;

import org.apache.flink.table.functions.ProcessTableFunction;
import org.apache.flink.table.functions.TableSemantics;
import org.apache.flink.table.types.logical.LogicalTypeFamily;
import org.apache.flink.table.types.logical.RowType;
import org.apache.flink.types.ColumnList;
import org.apache.flink.types.Row;

import java.io.ByteArrayInputStream;
import java.io.DataInputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

final class KeyedForestState {

    private final String function;
    private final KeyedForests.Params jobParams;
    private final Map<String, CompactForest> decoded = new HashMap<>();
    private int[] valueFields;
    private String[] valueNames;
    private int[] keyFields;
    /** The current row's point (the forests copy it: reused from row to row). */
    private double[] point;
    /** Values a key sees before its first score, once the call's arguments are known (-1: not yet). */
    private int warmup = -1;

    /** {@code function}: the SQL name, in errors; {@code jobParams}: the job's rcf.* parameters. */
    KeyedForestState(String function, KeyedForests.Params jobParams) {
        this.function = function;
        this.jobParams = jobParams;
    }

    /** Whether {@link #resolve} has run (it runs at the first row of a task). */
    boolean resolved() {
        return valueFields != null;
    }

    /**
     * The scored columns (those of {@code columns}, else every numeric column but the partition keys) and the
     * partition keys of the table argument.
     *
     * @throws IllegalArgumentException naming the function and the column
     */
    void resolve(TableSemantics semantics, ColumnList columns) {
        RowType type = (RowType) semantics.dataType().getLogicalType();
        List<String> names = type.getFieldNames();
        keyFields = semantics.partitionByColumns();
        List<Integer> fields = new ArrayList<>();
        if (columns != null && !columns.getNames().isEmpty()) {
            for (String name : columns.getNames()) {
                int i = names.indexOf(name);
                if (i < 0) {
                    throw new IllegalArgumentException(function + ": columns names '" + name
                            + "', which the input table does not have; it has " + names);
                }
                if (!type.getTypeAt(i).is(LogicalTypeFamily.NUMERIC)) {
                    throw new IllegalArgumentException(function + ": column '" + name + "' is "
                            + type.getTypeAt(i) + ", not a number");
                }
                fields.add(i);
            }
        } else {
            for (int i = 0; i < names.size(); i++) {
                if (type.getTypeAt(i).is(LogicalTypeFamily.NUMERIC) && !isKey(i)) {
                    fields.add(i);
                }
            }
            if (fields.isEmpty()) {
                throw new IllegalArgumentException(function + ": the input table has no numeric column to score "
                        + "besides its partition keys: " + names);
            }
        }
        valueFields = fields.stream().mapToInt(Integer::intValue).toArray();
        valueNames = new String[valueFields.length];
        for (int i = 0; i < valueFields.length; i++) {
            valueNames[i] = names.get(valueFields[i]);
        }
        point = new double[valueFields.length];
    }

    /**
     * The forest to score the row with, as of its key's state ({@code bytes}, {@code seen}), its point in
     * {@link #point()}; null when one of the row's scored values is not a finite number (then it is not learned).
     * Resolves the columns at a task's first row (from the table argument {@code input}).
     */
    CompactForest forRow(ProcessTableFunction.Context ctx, ColumnList columns, Row input, byte[] bytes, Long seen,
                         Integer numberOfTrees, Integer subSampleSize, Integer timeDecay, Integer shingleSize) {
        if (!resolved()) {
            resolve(ctx.tableSemanticsFor("input"), columns);
        }
        if (point(input) == null) {
            return null;
        }
        return forest(key(input), bytes, seen == null ? 0L : seen, numberOfTrees, subSampleSize, timeDecay,
                shingleSize);
    }

    /** The point of the row {@link #forRow} took last. */
    double[] point() {
        return point;
    }

    /** The scored columns' names, in the order of the point's values. */
    String[] valueNames() {
        return valueNames;
    }

    /** The row's scored values (an array reused for the next row), or null if one is not a finite number. */
    double[] point(Row input) {
        for (int i = 0; i < valueFields.length; i++) {
            Object v = input.getField(valueFields[i]);
            double d = v instanceof Number ? ((Number) v).doubleValue() : Double.NaN;
            if (!Double.isFinite(d)) {
                return null;
            }
            point[i] = d;
        }
        return point;
    }

    /** The row's partition key: its key column as text, several joined by U+001F ("" for a NULL key alone). */
    String key(Row input) {
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

    /**
     * Key's forest as of its state ({@code bytes}, {@code seen} values): the one this task holds if it has seen as
     * many, else the state's decoded, else a new one from the call's arguments and the job parameters.
     */
    CompactForest forest(String key, byte[] bytes, long seen, Integer numberOfTrees, Integer subSampleSize,
                         Integer timeDecay, Integer shingleSize) {
        CompactForest forest = decoded.get(key);
        if (forest == null || forest.updates() != seen) {
            forest = bytes == null
                    ? newForest(key, numberOfTrees, subSampleSize, timeDecay, shingleSize)
                    : decode(bytes);
            decoded.put(key, forest);
        }
        return forest;
    }

    /** Values a key sees before its first score: the job's warm-up, or the default one of the call's sample size. */
    int warmup(Integer subSampleSize, Integer shingleSize) {
        if (warmup < 0) { // the arguments are the call's literals: the same for every row
            int sample = subSampleSize != null ? subSampleSize : jobParams.subSampleSize;
            int shingle = shingleSize != null ? shingleSize : jobParams.shingleSize;
            int w = subSampleSize != null && subSampleSize != jobParams.subSampleSize
                    ? KeyedForests.Params.defaultWarmup(sample) : jobParams.warmup;
            warmup = Math.max(w, shingle - 1);
        }
        return warmup;
    }

    /** The forest's state bytes (a new array: see the file's comment). */
    static byte[] encode(CompactForest forest) {
        return forest.toBytes();
    }

    private CompactForest newForest(String key, Integer numberOfTrees, Integer subSampleSize, Integer timeDecay,
                                    Integer shingleSize) {
        KeyedForests.Params p = new KeyedForests.Params(
                numberOfTrees != null ? numberOfTrees : jobParams.numberOfTrees,
                subSampleSize != null ? subSampleSize : jobParams.subSampleSize,
                timeDecay != null ? timeDecay.doubleValue() : jobParams.timeDecay,
                shingleSize != null ? shingleSize : jobParams.shingleSize,
                jobParams.seed, jobParams.warmup);
        return new CompactForest(p.numberOfTrees, p.subSampleSize, p.timeDecay, p.shingleSize, point.length,
                KeyedForests.keySeed(p.seed, key));
    }

    private CompactForest decode(byte[] bytes) {
        try {
            return CompactForest.readFrom(new DataInputStream(new ByteArrayInputStream(bytes)));
        } catch (IOException e) {
            throw new UncheckedIOException(function + ": the forest in state cannot be read", e);
        }
    }

    private boolean isKey(int field) {
        for (int k : keyFields) {
            if (k == field) {
                return true;
            }
        }
        return false;
    }
}
