/*
 * RANDOM_CUT_FOREST_WITH_FLAG(value [, key [, time]]) -> ROW<score DOUBLE, warming_up BOOLEAN>: as
 * RANDOM_CUT_FOREST, with a flag that tells a warm-up 0.0 from a real score.
 */
package clicklab.udf;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.table.annotation.InputGroup;
import org.apache.flink.types.Row;

@FunctionHint(output = @DataTypeHint("ROW<score DOUBLE, warming_up BOOLEAN>"))
public class RandomCutForestWithFlagUDF extends ForestFunction {
    private static final long serialVersionUID = 1L;

    public Row eval(Double value) {
        return row(score(value, null, null));
    }

    public Row eval(Double value, @DataTypeHint(inputGroup = InputGroup.ANY) Object key) {
        return row(score(value, key, null));
    }

    public Row eval(Double value, @DataTypeHint(inputGroup = InputGroup.ANY) Object key,
                    @DataTypeHint(inputGroup = InputGroup.ANY) Object time) {
        return row(score(value, key, time));
    }

    private static Row row(KeyedForests.Scored s) {
        return Row.of(s.score, s.warmingUp);
    }
}
