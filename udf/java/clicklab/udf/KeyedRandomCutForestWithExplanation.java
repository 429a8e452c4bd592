/*
 * RANDOM_CUT_FOREST_WITH_EXPLANATION as a process table function: Kinesis Data Analytics'
 *
 *   RANDOM_CUT_FOREST_WITH_EXPLANATION(CURSOR(SELECT STREAM clicks, impressions FROM s), 100, 12, 100000, 1, true)
 *
 * in Flink SQL (2.1+), one compact forest per partition key in Flink's keyed state, over several columns
 * scored together as one point:
 *
 *   SELECT * FROM RANDOM_CUT_FOREST_WITH_EXPLANATION(
 *       TABLE counts PARTITION BY site, DESCRIPTOR(clicks, impressions), 100, 12, 100000, 1, TRUE);
 *
 * Output: every input column (passed through), then anomaly_score DOUBLE, anomaly_explanation STRING and
 * warming_up BOOLEAN. anomaly_explanation is JSON in the form of Kinesis Data Analytics' ANOMALY_EXPLANATION,
 * one object per scored column, in the order of DESCRIPTOR:
 *
 *   {"clicks":{"DIRECTION":"HIGH","STRENGTH":"0.9817","ATTRIBUTION_SCORE":"3.1021"},
 *    "impressions":{"DIRECTION":"LOW","STRENGTH":"0.2001","ATTRIBUTION_SCORE":"0.4210"}}
 *
 * ATTRIBUTION_SCORE: the column's share of the score (CompactForest.attribution: the column's "high" part plus
 * its "low" part, summed over the shingle); the columns' shares add up to anomaly_score (to rounding).
 * DIRECTION: HIGH when the column's "high" part (the value lying above what the trees' boxes hold) outweighs its
 * "low" part, else LOW. STRENGTH: how one-sided that is, |high - low| / (high + low), from 0 (either way) to 1
 * (entirely one way); Kinesis Data Analytics does not publish its formula, this one is ours. DIRECTION and
 * STRENGTH are given when withDirectionality is true (its default is false, as in Kinesis Data Analytics).
 * Numbers are strings with four decimals, as Kinesis Data Analytics writes them.
 *
 * As RANDOM_CUT_FOREST (KeyedRandomCutForest): score-then-update in the order rows arrive per key; while a key
 * warms up the score is 0.0, the explanation NULL and warming_up true; a row whose scored values are not all
 * finite numbers gets NULLs and is not learned; parameters from the call, else the job parameters rcf.*, else
 * the defaults; the forest of a key is seeded as RANDOM_CUT_FOREST seeds it. Without PARTITION BY the whole
 * table is one key (one forest), as in a Kinesis Data Analytics application.
 */
package clicklab.udf;

import org.apache.flink.table.annotation.ArgumentHint;
import org.apache.flink.table.annotation.ArgumentTrait;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.StateHint;
import org.apache.flink.table.functions.FunctionContext;
import org.apache.flink.table.functions.ProcessTableFunction;
import org.apache.flink.table.functions.TableSemantics;
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
import java.util.Locale;
import java.util.Map;

@DataTypeHint("ROW<anomaly_score DOUBLE, anomaly_explanation STRING, warming_up BOOLEAN>")
public class KeyedRandomCutForestWithExplanation extends ProcessTableFunction<Row> {
    private static final long serialVersionUID = 1L;
    private static final String NAME = "RANDOM_CUT_FOREST_WITH_EXPLANATION";

    /** The keyed state of one partition: its forest, encoded, and how many values it has seen. */
    public static class ForestState {
        public byte[] forest;
        public Long seen;
    }

    private transient KeyedForests.Params jobParams;
    private transient Map<String, CompactForest> decoded;
    private transient int[] valueFields;
    private transient String[] valueNames;
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
            @ArgumentHint(name = "numberOfTrees", isOptional = true) Integer numberOfTrees,
            @ArgumentHint(name = "subSampleSize", isOptional = true) Integer subSampleSize,
            @ArgumentHint(name = "timeDecay", isOptional = true) Integer timeDecayArg,
            @ArgumentHint(name = "shingleSize", isOptional = true) Integer shingleSize,
            @ArgumentHint(name = "withDirectionality", isOptional = true) Boolean withDirectionality) {
        if (valueFields == null) {
            resolveColumns(ctx.tableSemanticsFor("input"), columns);
        }
        double[] point = new double[valueFields.length];
        for (int i = 0; i < valueFields.length; i++) {
            Object v = input.getField(valueFields[i]);
            double d = v instanceof Number ? ((Number) v).doubleValue() : Double.NaN;
            if (!Double.isFinite(d)) {
                collect(Row.of(null, null, null)); // not a number: no score, not learned, the job goes on
                return;
            }
            point[i] = d;
        }
        String key = keyOf(input);
        long seen = state.seen == null ? 0L : state.seen;
        CompactForest forest = decoded.get(key);
        if (forest == null || forest.updates() != seen) {
            forest = state.forest == null
                    ? newForest(key, numberOfTrees, subSampleSize, timeDecayArg, shingleSize, point.length)
                    : decode(state.forest);
            decoded.put(key, forest);
        }
        int warmup = warmupOf(subSampleSize, shingleSize);
        boolean warming = seen + 1 <= warmup;
        double[] attribution = warming ? null : forest.attribution(point); // before the point is learned
        double score = forest.scoreThenUpdate(point);
        seen++;
        state.seen = seen;
        state.forest = encode(forest);
        if (warming) {
            collect(Row.of(0.0, null, true));
        } else {
            collect(Row.of(score, explanation(attribution, Boolean.TRUE.equals(withDirectionality)), false));
        }
    }

    /** The explanation JSON of an attribution (high parts, then low parts, per column). */
    String explanation(double[] attribution, boolean directionality) {
        int n = valueNames.length;
        StringBuilder b = new StringBuilder(64 * n).append('{');
        for (int i = 0; i < n; i++) {
            double high = attribution[i];
            double low = attribution[n + i];
            double total = high + low;
            if (i > 0) {
                b.append(',');
            }
            b.append('"').append(jsonEscape(valueNames[i])).append("\":{");
            if (directionality) {
                double strength = total > 0 ? Math.abs(high - low) / total : 0.0;
                b.append("\"DIRECTION\":\"").append(high >= low ? "HIGH" : "LOW").append("\",");
                b.append("\"STRENGTH\":\"").append(decimal(strength)).append("\",");
            }
            b.append("\"ATTRIBUTION_SCORE\":\"").append(decimal(total)).append("\"}");
        }
        return b.append('}').toString();
    }

    private static String decimal(double value) {
        return String.format(Locale.ROOT, "%.4f", value);
    }

    private static String jsonEscape(String text) {
        return text.replace("\\", "\\\\").replace("\"", "\\\"");
    }

    private int warmupOf(Integer subSampleSize, Integer shingleSize) {
        int sample = subSampleSize != null ? subSampleSize : jobParams.subSampleSize;
        int shingle = shingleSize != null ? shingleSize : jobParams.shingleSize;
        int warmup = subSampleSize != null && subSampleSize != jobParams.subSampleSize
                ? KeyedForests.Params.defaultWarmup(sample) : jobParams.warmup;
        return Math.max(warmup, shingle - 1);
    }

    private CompactForest newForest(String key, Integer numberOfTrees, Integer subSampleSize, Integer timeDecay,
                                    Integer shingleSize, int dimensions) {
        KeyedForests.Params p = new KeyedForests.Params(
                numberOfTrees != null ? numberOfTrees : jobParams.numberOfTrees,
                subSampleSize != null ? subSampleSize : jobParams.subSampleSize,
                timeDecay != null ? timeDecay.doubleValue() : jobParams.timeDecay,
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
                    throw new IllegalArgumentException(NAME + ": columns names '" + name
                            + "', which the input table does not have; it has " + names);
                }
                if (!type.getTypeAt(i).is(LogicalTypeFamily.NUMERIC)) {
                    throw new IllegalArgumentException(NAME + ": column '" + name + "' is "
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
                throw new IllegalArgumentException(NAME + ": the input table has no numeric column to score "
                        + "besides its partition keys: " + names);
            }
        }
        valueFields = fields.stream().mapToInt(Integer::intValue).toArray();
        valueNames = new String[valueFields.length];
        for (int i = 0; i < valueFields.length; i++) {
            valueNames[i] = names.get(valueFields[i]);
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
            throw new UncheckedIOException(NAME + ": encoding a forest failed", e);
        }
        return buffer.toByteArray();
    }

    private static CompactForest decode(byte[] bytes) {
        try {
            return CompactForest.readFrom(new DataInputStream(new ByteArrayInputStream(bytes)));
        } catch (IOException e) {
            throw new UncheckedIOException(NAME + ": the forest in state cannot be read", e);
        }
    }
}
