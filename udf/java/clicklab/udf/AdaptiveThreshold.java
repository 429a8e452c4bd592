/*
 * The adaptive threshold of udf/clicklab_udf/threshold.py (AdaptiveThreshold), in Java for the keyed
 * ANOMALY_DECISIONS function: same parameters, same arithmetic, same decisions (tests/test_keyed.py
 * compares them row by row). Per key it keeps an exponentially weighted mean and variance of the key's
 * ordinary scores; a score is an anomaly when it is over level = max(floor, mean + z * sd) and either the
 * key's previous row was over its level too (a run), or it is over spike_ratio * mean (a spike). Decide
 * first, then learn; unusual rows are not learned; warming-up rows are neither judged nor learned.
 */
package clicklab.udf;

public final class AdaptiveThreshold {

    /** What the threshold remembers of one key (the fields of the keyed state). */
    public static final class State {
        public long n;
        public double mean;
        public double var;
        public boolean previousOver;
    }

    /** Whether a score is an anomaly, and the threshold it was compared with (infinity while warming up). */
    public static final class Decision {
        public final boolean isAnomaly;
        public final double threshold;

        Decision(boolean isAnomaly, double threshold) {
            this.isAnomaly = isAnomaly;
            this.threshold = threshold;
        }
    }

    public final double floor;
    public final double z;
    public final double spikeRatio;
    public final double alpha;

    public AdaptiveThreshold(double floor, double z, double spikeRatio, double alpha) {
        this.floor = check("floor", floor, floor > 0, "a finite number > 0");
        this.z = check("z", z, z >= 0, "a finite number >= 0");
        this.spikeRatio = check("spike_ratio", spikeRatio, spikeRatio >= 1, "a finite number >= 1");
        this.alpha = check("alpha", alpha, alpha > 0 && alpha <= 1, "a number in (0, 1]");
    }

    private static double check(String name, double value, boolean ok, String rule) {
        if (!Double.isFinite(value) || !ok) {
            throw new IllegalArgumentException("adaptive threshold parameter " + name + " must be " + rule
                    + ", got " + value);
        }
        return value;
    }

    /** The level the key's next row is judged against, and the spike level (before learning it). */
    public double[] levels(State s) {
        if (s.n == 0) {
            return new double[] {floor, Double.POSITIVE_INFINITY};
        }
        double level = Math.max(floor, s.mean + z * Math.sqrt(s.var));
        return new double[] {level, Math.max(level, spikeRatio * s.mean)};
    }

    /** Decide whether score is an anomaly for the key whose state is s, then learn it. */
    public Decision update(State s, double score, boolean warmingUp) {
        if (warmingUp) {
            return new Decision(false, Double.POSITIVE_INFINITY);
        }
        if (!Double.isFinite(score)) {
            throw new IllegalArgumentException("adaptive threshold: score " + score + " is not a finite number");
        }
        double[] lv = levels(s);
        double threshold = s.previousOver ? lv[0] : lv[1];
        s.previousOver = score > lv[0];
        if (!s.previousOver) {
            s.n += 1;
            double weight = Math.max(alpha, 1.0 / s.n);
            double delta = score - s.mean;
            s.mean += weight * delta;
            s.var = (1.0 - weight) * (s.var + weight * delta * delta);
        }
        return new Decision(score > threshold, threshold);
    }
}
