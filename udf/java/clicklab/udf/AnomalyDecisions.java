/*
 * ANOMALY_DECISIONS: which scored rows are anomalies, per partition key, in Flink's keyed state.
 *
 *   SELECT * FROM ANOMALY_DECISIONS(TABLE scores_in_time_order PARTITION BY site, DESCRIPTOR(score));
 *
 * Output: every input column (passed through), then is_anomaly BOOLEAN, threshold DOUBLE (what the
 * score was compared with; infinity while the key warms up, NULL for a row without a score), grade DOUBLE
 * (0 unless an anomaly, else 0-1: AdaptiveThreshold.grade), and expected, usual_low, usual_high DOUBLE: the
 * key's usual value and range before the row (NULL before its first ordinary value, or without a value
 * column). Adaptive (the default): AdaptiveThreshold over the floor, with the key's history kept in keyed
 * state; fixed: score > floor (the history is still kept, for the grade and the usual range).
 * value: the column whose usual range is kept (DESCRIPTOR(ctr)); absent: the column named ctr, else
 * ctrpercent, else none. A row warms up when the input has a warming_up column that is true, or, without one,
 * when its score is exactly 0.0 (what RANDOM_CUT_FOREST gives while a key warms up).
 *
 * Parameters: the call's arguments, else the job parameters threshold.floor, threshold.adaptive,
 * threshold.z, threshold.spike_ratio, threshold.alpha, threshold.smoothing, threshold.sustained_z,
 * threshold.refractory, threshold.run_z, threshold.spike_floor, threshold.repeat_ratio,
 * threshold.spike_ceiling (set by clicklab.javaudf), else AdaptiveThreshold's defaults (2.0, true, 3.0,
 * 6.0, 0.003, 0.05, 4.0, 30, 5.0, 5.0, 2.0, 7.2). score: the column to judge; absent: the column named score, else anomaly_score. floor is a
 * DOUBLE: write it as a DOUBLE literal (2E0) or CAST(2.5 AS DOUBLE); Flink 2.3 fails to cast a DECIMAL
 * literal (2.5) to a process table function's DOUBLE argument.
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

import java.util.List;

@DataTypeHint("ROW<is_anomaly BOOLEAN, threshold DOUBLE, grade DOUBLE, expected DOUBLE, usual_low DOUBLE, "
        + "usual_high DOUBLE>")
public class AnomalyDecisions extends ProcessTableFunction<Row> {
    private static final long serialVersionUID = 1L;

    /** Prefix of the job parameters read in open(). */
    public static final String PREFIX = "threshold.";

    /** The keyed state of one partition: AdaptiveThreshold.State's fields. */
    public static class ThresholdState {
        public Long n;
        public Double mean;
        public Double var;
        public Boolean previousOver;
        public Long avgN;
        public Double avg;
        public Double avgMean;
        public Double avgVar;
        public Long quiet;
        public Double bar;
        public Double peak;
        public Long valueN;
        public Double valueMean;
        public Double valueVar;
    }

    private transient double floor;
    private transient boolean adaptive;
    private transient double z;
    private transient double spikeRatio;
    private transient double alpha;
    private transient double smoothing;
    private transient double sustainedZ;
    private transient double refractory;
    private transient double runZ;
    private transient double spikeFloor;
    private transient double repeatRatio;
    private transient double spikeCeiling;
    private transient AdaptiveThreshold rule;
    private transient int scoreField = -1;
    private transient int warmingUpField = -1;
    private transient int valueField = -1;

    @Override
    public void open(FunctionContext context) throws Exception {
        floor = number(context, "floor", AdaptiveThreshold.DEFAULT_FLOOR);
        adaptive = Boolean.parseBoolean(context.getJobParameter(PREFIX + "adaptive", "true").trim());
        z = number(context, "z", AdaptiveThreshold.DEFAULT_Z);
        spikeRatio = number(context, "spike_ratio", AdaptiveThreshold.DEFAULT_SPIKE_RATIO);
        alpha = number(context, "alpha", AdaptiveThreshold.DEFAULT_ALPHA);
        smoothing = number(context, "smoothing", AdaptiveThreshold.DEFAULT_SMOOTHING);
        sustainedZ = number(context, "sustained_z", AdaptiveThreshold.DEFAULT_SUSTAINED_Z);
        refractory = number(context, "refractory", AdaptiveThreshold.DEFAULT_REFRACTORY);
        runZ = number(context, "run_z", AdaptiveThreshold.DEFAULT_RUN_Z);
        spikeFloor = number(context, "spike_floor", AdaptiveThreshold.DEFAULT_SPIKE_FLOOR);
        repeatRatio = number(context, "repeat_ratio", AdaptiveThreshold.DEFAULT_REPEAT_RATIO);
        spikeCeiling = number(context, "spike_ceiling", AdaptiveThreshold.DEFAULT_SPIKE_CEILING);
    }

    private static double number(FunctionContext context, String name, double fallback) {
        String text = context.getJobParameter(PREFIX + name, String.valueOf(fallback)).trim();
        try {
            return Double.parseDouble(text);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("ANOMALY_DECISIONS job parameter " + PREFIX + name
                    + " must be a number, got '" + text + "'");
        }
    }

    public void eval(
            Context ctx,
            @StateHint ThresholdState state,
            @ArgumentHint(value = {ArgumentTrait.SET_SEMANTIC_TABLE, ArgumentTrait.PASS_COLUMNS_THROUGH},
                    name = "input") Row input,
            @ArgumentHint(name = "score", isOptional = true) ColumnList score,
            @ArgumentHint(name = "floor", isOptional = true) Double floorArg,
            @ArgumentHint(name = "adaptive", isOptional = true) Boolean adaptiveArg,
            @ArgumentHint(name = "value", isOptional = true) ColumnList valueColumn) {
        if (rule == null) {
            resolve(ctx.tableSemanticsFor("input"), score, valueColumn);
            if (floorArg != null) {
                floor = floorArg;
            }
            if (adaptiveArg != null) {
                adaptive = adaptiveArg;
            }
            rule = new AdaptiveThreshold(floor, z, spikeRatio, alpha, smoothing, sustainedZ, refractory, runZ,
                    spikeFloor, repeatRatio, spikeCeiling);
        }
        Object value = input.getField(scoreField);
        double s = value instanceof Number ? ((Number) value).doubleValue() : Double.NaN;
        if (!Double.isFinite(s)) {
            // no score (e.g. a value the forest could not score): not judged
            collect(Row.of(false, null, null, null, null, null));
            return;
        }
        double v = Double.NaN;
        if (valueField >= 0 && input.getField(valueField) instanceof Number) {
            v = ((Number) input.getField(valueField)).doubleValue();
            if (!Double.isFinite(v)) {
                v = Double.NaN; // not learned, no range
            }
        }
        boolean warmingUp = warmingUpField >= 0 ? Boolean.TRUE.equals(input.getField(warmingUpField)) : s == 0.0;
        AdaptiveThreshold.State st = new AdaptiveThreshold.State();
        st.n = state.n == null ? 0L : state.n;
        st.mean = state.mean == null ? 0.0 : state.mean;
        st.var = state.var == null ? 0.0 : state.var;
        st.previousOver = Boolean.TRUE.equals(state.previousOver);
        st.avgN = state.avgN == null ? 0L : state.avgN;
        st.avg = state.avg == null ? 0.0 : state.avg;
        st.avgMean = state.avgMean == null ? 0.0 : state.avgMean;
        st.avgVar = state.avgVar == null ? 0.0 : state.avgVar;
        st.quiet = state.quiet == null ? 0L : state.quiet;
        st.bar = state.bar == null ? 0.0 : state.bar;
        st.peak = state.peak == null ? 0.0 : state.peak;
        st.valueN = state.valueN == null ? 0L : state.valueN;
        st.valueMean = state.valueMean == null ? 0.0 : state.valueMean;
        st.valueVar = state.valueVar == null ? 0.0 : state.valueVar;
        double mean = st.mean;
        AdaptiveThreshold.Decision d = rule.update(st, s, warmingUp, v);
        state.n = st.n;
        state.mean = st.mean;
        state.var = st.var;
        state.previousOver = st.previousOver;
        state.avgN = st.avgN;
        state.avg = st.avg;
        state.avgMean = st.avgMean;
        state.avgVar = st.avgVar;
        state.quiet = st.quiet;
        state.bar = st.bar;
        state.peak = st.peak;
        state.valueN = st.valueN;
        state.valueMean = st.valueMean;
        state.valueVar = st.valueVar;
        if (adaptive) {
            collect(Row.of(d.isAnomaly, d.threshold, d.grade, orNull(d.expected), orNull(d.low), orNull(d.high)));
        } else {
            boolean over = s > floor;
            collect(Row.of(over, floor, over ? rule.grade(mean, s) : 0.0, orNull(d.expected), orNull(d.low),
                    orNull(d.high)));
        }
    }

    private static Double orNull(double x) {
        return Double.isNaN(x) ? null : x;
    }

    private void resolve(TableSemantics semantics, ColumnList score, ColumnList value) {
        RowType type = (RowType) semantics.dataType().getLogicalType();
        List<String> names = type.getFieldNames();
        String name;
        if (score != null && !score.getNames().isEmpty()) {
            if (score.getNames().size() != 1) {
                throw new IllegalArgumentException("ANOMALY_DECISIONS: score names one column, got " + score.getNames());
            }
            name = score.getNames().get(0);
        } else {
            name = names.contains("score") ? "score" : "anomaly_score";
        }
        scoreField = names.indexOf(name);
        if (scoreField < 0) {
            throw new IllegalArgumentException("ANOMALY_DECISIONS: the input table has no column '" + name
                    + "' to judge; it has " + names + " (name it: DESCRIPTOR(<column>))");
        }
        if (!type.getTypeAt(scoreField).is(LogicalTypeFamily.NUMERIC)) {
            throw new IllegalArgumentException("ANOMALY_DECISIONS: column '" + name + "' is "
                    + type.getTypeAt(scoreField) + ", not a number");
        }
        warmingUpField = names.indexOf("warming_up");
        if (value != null && !value.getNames().isEmpty()) {
            if (value.getNames().size() != 1) {
                throw new IllegalArgumentException("ANOMALY_DECISIONS: value names one column, got " + value.getNames());
            }
            String valueName = value.getNames().get(0);
            valueField = names.indexOf(valueName);
            if (valueField < 0) {
                throw new IllegalArgumentException("ANOMALY_DECISIONS: the input table has no column '" + valueName
                        + "' for the usual range; it has " + names);
            }
        } else {
            valueField = names.contains("ctr") ? names.indexOf("ctr") : names.indexOf("ctrpercent");
        }
        if (valueField >= 0 && !type.getTypeAt(valueField).is(LogicalTypeFamily.NUMERIC)) {
            throw new IllegalArgumentException("ANOMALY_DECISIONS: value column '" + names.get(valueField) + "' is "
                    + type.getTypeAt(valueField) + ", not a number");
        }
    }
}
