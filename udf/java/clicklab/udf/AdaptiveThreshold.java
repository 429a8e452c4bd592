/*
 * The adaptive threshold of udf/clicklab_udf/threshold.py (AdaptiveThreshold), in Java for the keyed
 * ANOMALY_DECISIONS function: same parameters, same arithmetic, same decisions (tests/test_keyed.py
 * compares them row by row). Per key it keeps an exponentially weighted mean and variance of the key's
 * ordinary scores, a short moving average of its scores (each capped at the floor) with the long-run
 * mean and variance of that average, and the bar a spike must clear after an anomaly. A row is an
 * anomaly when the key's previous row was over level = max(floor, mean + z * sd) and the row is over
 * max(floor, mean + run_z * sd) (a run); or when it is over the spike level max(level, spike_ratio * mean,
 * spike_floor, bar), never more than max(floor, spike_ceiling) unless spike_ceiling is 0 (a spike); or
 * when the short average exceeds its long mean by more than sustained_z * its sd and by more than 1.5 x
 * what one capped score can add (a sustained change, once the key has ceil(2 / smoothing) rows). After an
 * anomaly the next refractory rows are not anomalies (threshold infinity) unless a row tops spike_ceiling
 * after an anomaly that did not (an escalation: reported, threshold spike_ceiling, its own refractory
 * period), and the bar rises to repeat_ratio x the anomaly's score, sinking back to the floor by a factor
 * (1 - alpha) per row. Decide first, then learn; unusual rows are not learned into the mean and
 * variance of scores; warming-up rows are neither judged nor learned. See threshold.py's docstring for
 * the reasons. With the scored value (a CTR), a decision also carries the key's usual value and range
 * before the row (the mean of its ordinary values, learned like the scores' mean, -/+ USUAL_Z standard
 * deviations; warming-up rows are learned too) and an anomaly's grade (0-1, grade()).
 */
package clicklab.udf;

public final class AdaptiveThreshold {

    /** What the threshold remembers of one key (the fields of the keyed state). */
    public static final class State {
        public long n;
        public double mean;
        public double var;
        public boolean previousOver;
        public long avgN;
        public double avg;
        public double avgMean;
        public double avgVar;
        public long quiet;
        public double bar;
        public double peak;
        public long valueN;
        public double valueMean;
        public double valueVar;
    }

    /**
     * Whether a score is an anomaly, the threshold it was compared with (infinity while warming up), its grade
     * (0 unless an anomaly), and the key's expected value and usual range before the row (NaN: none known).
     */
    public static final class Decision {
        public final boolean isAnomaly;
        public final double threshold;
        public final double grade;
        public final double expected;
        public final double low;
        public final double high;

        Decision(boolean isAnomaly, double threshold, double grade, double[] usual) {
            this.isAnomaly = isAnomaly;
            this.threshold = threshold;
            this.grade = grade;
            this.expected = usual[0];
            this.low = usual[1];
            this.high = usual[2];
        }
    }

    /** The usual range is the expected value -/+ this many standard deviations of the key's ordinary values. */
    public static final double USUAL_Z = 2.0;
    private static final double[] NO_VALUE = {Double.NaN, Double.NaN, Double.NaN};

    public static final double DEFAULT_FLOOR = 2.0;
    public static final double DEFAULT_Z = 3.0;
    public static final double DEFAULT_SPIKE_RATIO = 6.0;
    public static final double DEFAULT_ALPHA = 0.003;
    public static final double DEFAULT_SMOOTHING = 0.05;
    public static final double DEFAULT_SUSTAINED_Z = 4.0;
    public static final long DEFAULT_REFRACTORY = 30;
    public static final double DEFAULT_RUN_Z = 5.0;
    public static final double DEFAULT_SPIKE_FLOOR = 5.0;
    public static final double DEFAULT_REPEAT_RATIO = 2.0;
    public static final double DEFAULT_SPIKE_CEILING = 7.2;

    public final double floor;
    public final double z;
    public final double spikeRatio;
    public final double alpha;
    public final double smoothing;
    public final double sustainedZ;
    public final long refractory;
    public final double runZ;
    public final double spikeFloor;
    public final double repeatRatio;
    public final double spikeCeiling;
    /** Rows of the short average before a sustained change can be reported. */
    public final long sustainedAfter;

    public AdaptiveThreshold(double floor, double z, double spikeRatio, double alpha, double smoothing,
                             double sustainedZ, double refractory, double runZ, double spikeFloor,
                             double repeatRatio, double spikeCeiling) {
        this.floor = check("floor", floor, floor > 0, "a finite number > 0");
        this.z = check("z", z, z >= 0, "a finite number >= 0");
        this.spikeRatio = check("spike_ratio", spikeRatio, spikeRatio >= 1, "a finite number >= 1");
        this.alpha = check("alpha", alpha, alpha > 0 && alpha <= 1, "a number in (0, 1]");
        this.smoothing = check("smoothing", smoothing, smoothing > 0 && smoothing <= 1, "a number in (0, 1]");
        this.sustainedZ = check("sustained_z", sustainedZ, sustainedZ >= 0, "a finite number >= 0");
        this.refractory = (long) check("refractory", refractory,
                refractory >= 0 && refractory == Math.rint(refractory) && refractory < 1e15, "an integer >= 0");
        this.runZ = check("run_z", runZ, runZ >= 0, "a finite number >= 0");
        this.spikeFloor = check("spike_floor", spikeFloor, spikeFloor >= 0, "a finite number >= 0");
        this.repeatRatio = check("repeat_ratio", repeatRatio, repeatRatio >= 0, "a finite number >= 0");
        this.spikeCeiling = check("spike_ceiling", spikeCeiling, spikeCeiling >= 0, "a finite number >= 0");
        this.sustainedAfter = (long) Math.ceil(2.0 / this.smoothing);
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
        double spikeLevel = Math.max(Math.max(level, spikeRatio * s.mean), Math.max(spikeFloor, s.bar));
        if (spikeCeiling > 0) {
            spikeLevel = Math.max(floor, Math.min(spikeLevel, spikeCeiling));
        }
        return new double[] {level, spikeLevel};
    }

    /** What the key's next row must be over to end a run (the row before it over its level). */
    public double runLevel(State s) {
        if (s.n == 0) {
            return floor;
        }
        return Math.max(floor, s.mean + runZ * Math.sqrt(s.var));
    }

    /** How unusual an anomaly's score is, 0-1: from the key's mean ordinary score toward the ceiling. */
    public double grade(double mean, double score) {
        double top = spikeCeiling > 0 ? spikeCeiling : Math.max(floor, spikeFloor);
        if (top <= mean) {
            return 1.0;
        }
        return Math.min(1.0, Math.max(0.0, (score - mean) / (top - mean)));
    }

    /** Decide whether score is an anomaly for the key whose state is s, then learn it (no value). */
    public Decision update(State s, double score, boolean warmingUp) {
        return update(s, score, warmingUp, Double.NaN);
    }

    /**
     * Decide whether score is an anomaly for the key whose state is s, then learn it; value (NaN: none) is the
     * scored value, learned when the row is ordinary or warming up.
     */
    public Decision update(State s, double score, boolean warmingUp, double value) {
        boolean hasValue = !Double.isNaN(value);
        if (hasValue && Double.isInfinite(value)) {
            throw new IllegalArgumentException("adaptive threshold: value " + value + " is not a finite number");
        }
        if (warmingUp) {
            if (!hasValue) {
                return new Decision(false, Double.POSITIVE_INFINITY, 0.0, NO_VALUE);
            }
            double[] usual = usual(s);
            learnValue(s, value);
            return new Decision(false, Double.POSITIVE_INFINITY, 0.0, usual);
        }
        if (!Double.isFinite(score)) {
            throw new IllegalArgumentException("adaptive threshold: score " + score + " is not a finite number");
        }
        double[] usual = hasValue ? usual(s) : NO_VALUE;
        double mean = s.mean;
        double[] lv = levels(s);
        double threshold = s.previousOver ? Math.min(runLevel(s), lv[1]) : lv[1];
        s.previousOver = score > lv[0];
        if (!s.previousOver) {
            s.n += 1;
            double weight = Math.max(alpha, 1.0 / s.n);
            double delta = score - s.mean;
            s.mean += weight * delta;
            s.var = (1.0 - weight) * (s.var + weight * delta * delta);
            if (hasValue) {
                learnValue(s, value);
            }
        }
        double capped = Math.min(score, floor);
        s.avg = s.avgN == 0 ? capped : s.avg + smoothing * (capped - s.avg);
        double oneScore = 1.5 * smoothing * (floor - s.avgMean); // half again what one score adds
        boolean sustained = s.avgN >= sustainedAfter
                && s.avg - s.avgMean > Math.max(sustainedZ * Math.sqrt(s.avgVar), oneScore);
        s.avgN += 1;
        double weight = Math.max(alpha, 1.0 / s.avgN);
        double delta = s.avg - s.avgMean;
        s.avgMean += weight * delta;
        s.avgVar = (1.0 - weight) * (s.avgVar + weight * delta * delta);
        if (s.bar > floor) { // the bar after an anomaly sinks back to the floor at the long memory's pace
            s.bar = floor + (s.bar - floor) * (1.0 - alpha);
        }
        boolean anomaly;
        if (s.quiet > 0) {
            s.quiet -= 1;
            if (!(spikeCeiling > 0 && score > spikeCeiling) || s.peak > spikeCeiling) {
                return new Decision(false, Double.POSITIVE_INFINITY, 0.0, usual);
            }
            anomaly = true; // an escalation
            threshold = spikeCeiling;
        } else {
            anomaly = score > threshold || sustained;
        }
        if (anomaly) {
            s.quiet = refractory;
            s.peak = score;
            s.bar = Math.max(s.bar, repeatRatio * score);
        }
        return new Decision(anomaly, threshold, anomaly ? grade(mean, score) : 0.0, usual);
    }

    private static double[] usual(State s) {
        if (s.valueN == 0) {
            return NO_VALUE;
        }
        double spread = USUAL_Z * Math.sqrt(s.valueVar);
        return new double[] {s.valueMean, s.valueMean - spread, s.valueMean + spread};
    }

    private void learnValue(State s, double value) {
        s.valueN += 1;
        double weight = Math.max(alpha, 1.0 / s.valueN);
        double delta = value - s.valueMean;
        s.valueMean += weight * delta;
        s.valueVar = (1.0 - weight) * (s.valueVar + weight * delta * delta);
    }
}
