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
import org.apache.flink.types.ColumnList;
import org.apache.flink.types.Row;

import java.util.Locale;

@DataTypeHint("ROW<anomaly_score DOUBLE, anomaly_explanation STRING, warming_up BOOLEAN>")
public class KeyedRandomCutForestWithExplanation extends ProcessTableFunction<Row> {
    private static final long serialVersionUID = 1L;
    private static final String NAME = "RANDOM_CUT_FOREST_WITH_EXPLANATION";

    /** The keyed state of one partition: its forest, encoded, and how many values it has seen. */
    public static class ForestState {
        public byte[] forest;
        public Long seen;
    }

    private transient KeyedForestState keyed;

    @Override
    public void open(FunctionContext context) throws Exception {
        keyed = new KeyedForestState(NAME, KeyedForests.Params.from(context::getJobParameter));
    }

    public void eval(
            Context ctx,
            @StateHint ForestState state,
            @ArgumentHint(value = {ArgumentTrait.SET_SEMANTIC_TABLE, ArgumentTrait.PASS_COLUMNS_THROUGH}, name = "input") Row input,
            @ArgumentHint(name = "columns", isOptional = true) ColumnList columns,
            @ArgumentHint(name = "numberOfTrees", isOptional = true) Integer numberOfTrees,
            @ArgumentHint(name = "subSampleSize", isOptional = true) Integer subSampleSize,
            @ArgumentHint(name = "timeDecay", isOptional = true) Integer timeDecay,
            @ArgumentHint(name = "shingleSize", isOptional = true) Integer shingleSize,
            @ArgumentHint(name = "withDirectionality", isOptional = true) Boolean withDirectionality) {
        CompactForest forest = keyed.forRow(ctx, columns, input, state.forest, state.seen, numberOfTrees,
                subSampleSize, timeDecay, shingleSize);
        if (forest == null) {
            collect(Row.of(null, null, null)); // not a number: no score, not learned, the job goes on
            return;
        }
        double[] point = keyed.point();
        boolean warming = forest.updates() + 1 <= keyed.warmup(subSampleSize, shingleSize);
        double[] attribution = warming ? null : forest.attribution(point); // before the point is learned
        double score = forest.scoreThenUpdate(point);
        state.seen = forest.updates();
        state.forest = KeyedForestState.encode(forest);
        if (warming) {
            collect(Row.of(0.0, null, true));
        } else {
            collect(Row.of(score, explanation(attribution, Boolean.TRUE.equals(withDirectionality)), false));
        }
    }

    /** The explanation JSON of an attribution (high parts, then low parts, per column). */
    String explanation(double[] attribution, boolean directionality) {
        String[] names = keyed.valueNames();
        int n = names.length;
        StringBuilder b = new StringBuilder(64 * n).append('{');
        for (int i = 0; i < n; i++) {
            double high = attribution[i];
            double low = attribution[n + i];
            double total = high + low;
            if (i > 0) {
                b.append(',');
            }
            b.append('"').append(jsonEscape(names[i])).append("\":{");
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
}
