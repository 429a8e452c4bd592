/*
 * One streaming Random Cut Forest per key: the Java twin of udf/clicklab_udf/forest.py (KeyedForests).
 *
 * Same parameters, defaults, ranges and warm-up as the Python UDF's ForestParams; same mapping onto
 * AWS's library as the Python "aws" backend (krcf): internal shingling, lambda = 1 / time_decay
 * (0: no decay), outputAfter 1 (the warm-up is ours), sequential execution. Each value is scored
 * against its key's forest as it is, then inserted (score-then-update). While a key warms up (its
 * first max(warmup, shingle_size - 1) values) the score is 0.0 and warmingUp is true.
 */
package clicklab.udf;

import com.amazon.randomcutforest.RandomCutForest;

import java.io.Serializable;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HashMap;
import java.util.Map;

public final class KeyedForests {

    /** Parameters of every key's forest (names and defaults as forest.py's ForestParams). */
    public static final class Params implements Serializable {
        private static final long serialVersionUID = 1L;

        /** Prefix of the Flink job parameters (pipeline.global-job-parameters) the UDF reads. */
        public static final String PREFIX = "rcf.";

        public final int numberOfTrees;
        public final int subSampleSize;
        public final double timeDecay;
        public final int shingleSize;
        public final long seed;
        public final int warmup;

        public Params(int numberOfTrees, int subSampleSize, double timeDecay, int shingleSize, long seed, int warmup) {
            this.numberOfTrees = atLeast("number_of_trees", numberOfTrees, 1);
            this.subSampleSize = atLeast("sub_sample_size", subSampleSize, 2);
            if (!Double.isFinite(timeDecay) || timeDecay < 0) {
                throw new IllegalArgumentException(
                        "RANDOM_CUT_FOREST parameter time_decay must be a finite number >= 0, got " + timeDecay);
            }
            this.timeDecay = timeDecay;
            this.shingleSize = atLeast("shingle_size", shingleSize, 1);
            this.seed = seed;
            this.warmup = atLeast("warmup", warmup, 0);
        }

        /** The warm-up when none is given: 1 + sub_sample_size / 4 values, as AWS's outputAfter default. */
        public static int defaultWarmup(int subSampleSize) {
            return 1 + subSampleSize / 4;
        }

        /** The defaults: 100 trees, 256 samples, time_decay 100000, shingle 1, seed 42, warm-up 65. */
        public static Params defaults() {
            return new Params(100, 256, 100_000.0, 1, 42L, defaultWarmup(256));
        }

        /** Parameters from a lookup of job parameters (key -> value or the given default). */
        public static Params from(java.util.function.BiFunction<String, String, String> lookup) {
            Params d = defaults();
            int subSampleSize = parse(lookup, "sub_sample_size", d.subSampleSize, Integer::valueOf, "an integer");
            return new Params(
                    parse(lookup, "number_of_trees", d.numberOfTrees, Integer::valueOf, "an integer"),
                    subSampleSize,
                    parse(lookup, "time_decay", d.timeDecay, Double::valueOf, "a number"),
                    parse(lookup, "shingle_size", d.shingleSize, Integer::valueOf, "an integer"),
                    parse(lookup, "seed", d.seed, Long::valueOf, "an integer"),
                    parse(lookup, "warmup", defaultWarmup(subSampleSize), Integer::valueOf, "an integer"));
        }

        /** Values a key sees before its first emitted score: warmup, at least a full shingle. */
        public int warmupPoints() {
            return Math.max(warmup, shingleSize - 1);
        }

        /** AWS's lambda: 1 / time_decay, 0 (no decay) when time_decay is 0. */
        public double lambda() {
            return timeDecay > 0 ? 1.0 / timeDecay : 0.0;
        }

        @Override
        public String toString() {
            return "number_of_trees=" + numberOfTrees + ", sub_sample_size=" + subSampleSize + ", time_decay="
                    + timeDecay + ", shingle_size=" + shingleSize + ", seed=" + seed + ", warmup=" + warmup;
        }

        private static int atLeast(String name, int value, int low) {
            if (value < low) {
                throw new IllegalArgumentException(
                        "RANDOM_CUT_FOREST parameter " + name + " must be an integer >= " + low + ", got " + value);
            }
            return value;
        }

        private static String text(java.util.function.BiFunction<String, String, String> lookup, String name,
                                   String fallback) {
            String value = lookup.apply(PREFIX + name, fallback);
            return value == null ? fallback : value.trim();
        }

        private static IllegalArgumentException bad(String name, String value, String what) {
            return new IllegalArgumentException("RANDOM_CUT_FOREST job parameter " + PREFIX + name + " must be "
                    + what + ", got '" + value + "'");
        }

        private static <T> T parse(java.util.function.BiFunction<String, String, String> lookup, String name,
                                   T fallback, java.util.function.Function<String, T> parser, String what) {
            String value = text(lookup, name, String.valueOf(fallback));
            try {
                return parser.apply(value);
            } catch (NumberFormatException e) {
                throw bad(name, value, what);
            }
        }
    }

    /** The score of one value, and whether its key was still warming up (then the score is 0.0). */
    public static final class Scored {
        public final double score;
        public final boolean warmingUp;

        Scored(double score, boolean warmingUp) {
            this.score = score;
            this.warmingUp = warmingUp;
        }
    }

    private static final class Forest {
        final RandomCutForest forest;
        final float[] point = new float[1]; // the library works in 32-bit floats, as krcf does
        long seen;

        Forest(RandomCutForest forest) {
            this.forest = forest;
        }
    }

    private final Params params;
    private final String keyName;
    private final Map<String, Forest> forests = new HashMap<>();

    public KeyedForests(Params params, String keyName) {
        this.params = params;
        this.keyName = keyName;
    }

    public Params params() {
        return params;
    }

    /** How many keys have a forest. */
    public int size() {
        return forests.size();
    }

    /**
     * Score value against key's forest, then insert it. time only names the row in errors.
     *
     * @throws IllegalArgumentException naming the key (and time) when value is null, NaN or infinite
     */
    public Scored score(String key, Double value, Object time) {
        String k = key == null ? "" : key;
        if (value == null || !Double.isFinite(value)) {
            String where = keyName + " '" + k + "'" + (time != null ? " at " + time : "");
            throw new IllegalArgumentException(
                    "RANDOM_CUT_FOREST: " + where + ": value " + value + " is not a finite number");
        }
        if (Math.abs(value) > Float.MAX_VALUE) { // the library works in 32-bit floats
            throw new IllegalArgumentException("RANDOM_CUT_FOREST: " + keyName + " '" + k + "'"
                    + (time != null ? " at " + time : "") + ": value " + value + " is out of the float range");
        }
        Forest f = forests.get(k);
        if (f == null) {
            f = new Forest(build(params, keySeed(params.seed, k)));
            forests.put(k, f);
        }
        f.point[0] = (float) value.doubleValue();
        double score = f.forest.getAnomalyScore(f.point);
        f.forest.update(f.point);
        f.seen++;
        if (f.seen <= params.warmupPoints()) {
            return new Scored(0.0, true);
        }
        return new Scored(score, false);
    }

    /** One key's forest, configured like forest.py's aws_options (krcf). */
    static RandomCutForest build(Params p, long seed) {
        return RandomCutForest.builder()
                .dimensions(p.shingleSize) // one value per call; internal shingling builds the shingle
                .shingleSize(p.shingleSize)
                .internalShinglingEnabled(true)
                .numberOfTrees(p.numberOfTrees)
                .sampleSize(p.subSampleSize)
                .timeDecay(p.lambda())
                .outputAfter(1) // the warm-up is ours
                .randomSeed(seed)
                .parallelExecutionEnabled(false)
                .build();
    }

    /**
     * The random seed of key's forest: the first 8 bytes of SHA-256("seed\u001fkey"), shifted to 63 bits.
     * Stable across JVMs and independent of other keys. (The Python UDF uses BLAKE2b, which the JDK
     * lacks; the two libraries draw different random numbers from a seed anyway.)
     */
    public static long keySeed(long seed, String key) {
        try {
            byte[] digest = MessageDigest.getInstance("SHA-256")
                    .digest((seed + "\u001f" + key).getBytes(StandardCharsets.UTF_8));
            long value = 0;
            for (int i = 0; i < 8; i++) {
                value = (value << 8) | (digest[i] & 0xff);
            }
            return value >>> 1;
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is missing from this JVM", e);
        }
    }
}
