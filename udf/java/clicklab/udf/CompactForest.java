package clicklab.udf;

import java.io.DataInput;
import java.io.DataOutput;
import java.io.IOException;
import java.util.Arrays;

/**
 * A compact, exactly restorable streaming Random Cut Forest (Guha, Mishra, Roy and Schrijvers, ICML 2016), small
 * enough to keep one per key in Flink keyed state.
 *
 * <p>Unlike AWS's library, which keeps one sample and one explicit tree per tree, this forest keeps <b>one</b>
 * time-decayed weighted reservoir sample of {@code sampleSize} points that all trees share, and <b>no trees at
 * all</b>: tree {@code j} is the random cut tree over the current sample that a counter-based generator defines.
 * At a node holding the point multiset {@code P}, with bounding box {@code B(P)}, the cut dimension is chosen with
 * probability proportional to the side lengths of {@code B(P)} and the cut value uniform over that side, both from
 * one uniform {@code u = hash(seed, j, node)} where the node's identity is a hash of the left/right path from the
 * root; points {@code <= cut} go left. A node whose points are all equal is a leaf. Scoring a point {@code x}
 * follows {@code x}'s path only, so a tree is never built; the state is the sample (values and sequence indexes),
 * the shingle and the parameters.
 *
 * <p>Score: AWS's anomaly score ({@code AnomalyScoreVisitor} with {@code CommonUtils}' defaults) on the implicit
 * tree: at the leaf, {@code damp(m, M) * 1/(depth + log2(m + 1))} if {@code x} equals the leaf point (leaf mass
 * {@code m}, tree mass {@code M}), else {@code 1/(depth + 1)}; going up, at each node whose box does not contain
 * {@code x}, {@code score = p/(depth + 1) + (1 - p) * score} with {@code p} the probability that a random cut of
 * the box extended by {@code x} separates {@code x}; nodes whose box contains {@code x} (and all above them) leave
 * the score unchanged. The result is scaled by {@code log2(M + 1)} and averaged over the trees. This class
 * evaluates the same recursion top-down (as a running sum and product) so that it needs no stack.
 *
 * <p>Sampler: the point with sequence index {@code t} (the number of inputs before it) has the weight
 * {@code log(-log(u_t)) - lambda * t}, {@code lambda = 1/timeDecay} (0: no decay) and {@code u_t} a uniform of
 * {@code hash(seed, t)}, as in AWS's {@code CompactSampler}; until the sample is full every point is taken, then
 * a point replaces the sample's largest weight when its own weight is smaller. Weights are recomputed from the
 * sequence indexes on restore. Only {@link StrictMath} is used, so scores are the same on every JVM.
 *
 * <p>One input dimension without shingling (a CTR) has a fast path: the sample is kept sorted, a node's points are
 * a contiguous index range and each level is one binary search. Any other shape scans the node's points.
 *
 * <p>Not thread-safe; one instance per key.
 */
public final class CompactForest {

    /** Format of {@link #writeTo}: magic "CRCF" then a version byte. */
    public static final int MAGIC = 0x43524346;
    public static final int FORMAT_VERSION = 1;

    private static final long GOLDEN = 0x9E3779B97F4A7C15L;
    private static final long SAMPLER_SALT = 0x5851F42D4C957F2DL;
    private static final long TREE_SALT = 0x2545F4914F6CDD1DL;
    private static final long LEFT = 0x632BE59BD9B4E019L;
    private static final long RIGHT = 0x8CB92BA72F3D8DD7L;
    private static final double TWO_POW_M53 = 0x1.0p-53;
    private static final double LOG2 = StrictMath.log(2.0);

    private final int numberOfTrees;
    private final int sampleSize;
    private final double timeDecay;
    private final int shingleSize;
    private final int inputDimensions;
    private final long seed;

    private final int dims;
    private final double lambda;
    private final boolean sorted1d;
    private final long samplerKey;
    private final long treeKey;

    /** Inputs seen. */
    private long updates;
    /** The last {@code shingleSize} inputs, oldest first ({@code shingleFill} of them so far). */
    private final double[] shingle;
    private int shingleFill;

    /** Sample: {@code size} points of {@code dims} values; sorted by value when {@code sorted1d}. */
    private int size;
    private final double[] values;
    private final long[] sequence;
    private final double[] weight;
    /** Index of the largest weight (the next to go), valid when {@code size == sampleSize}. */
    private int worst = -1;

    private boolean forceGeneral;

    // scratch for the general path (not state)
    private int[] scratchIdx;
    private double[] scratchMin;
    private double[] scratchMax;
    private double[] scratchRoot;

    public CompactForest(int numberOfTrees, int sampleSize, double timeDecay, int shingleSize, int inputDimensions,
                         long seed) {
        if (numberOfTrees < 1) {
            throw new IllegalArgumentException("numberOfTrees must be >= 1, got " + numberOfTrees);
        }
        if (sampleSize < 2) {
            throw new IllegalArgumentException("sampleSize must be >= 2, got " + sampleSize);
        }
        if (!(timeDecay >= 0) || Double.isInfinite(timeDecay)) {
            throw new IllegalArgumentException("timeDecay must be a finite number >= 0 (0: no decay), got " + timeDecay);
        }
        if (shingleSize < 1) {
            throw new IllegalArgumentException("shingleSize must be >= 1, got " + shingleSize);
        }
        if (inputDimensions < 1) {
            throw new IllegalArgumentException("inputDimensions must be >= 1, got " + inputDimensions);
        }
        if ((long) shingleSize * inputDimensions * sampleSize > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("shingleSize * inputDimensions * sampleSize is too large");
        }
        this.numberOfTrees = numberOfTrees;
        this.sampleSize = sampleSize;
        this.timeDecay = timeDecay;
        this.shingleSize = shingleSize;
        this.inputDimensions = inputDimensions;
        this.seed = seed;
        this.dims = shingleSize * inputDimensions;
        this.lambda = timeDecay == 0 ? 0.0 : 1.0 / timeDecay;
        this.sorted1d = dims == 1;
        this.samplerKey = mix64(seed ^ SAMPLER_SALT);
        this.treeKey = mix64(seed ^ TREE_SALT);
        this.shingle = new double[dims];
        this.values = new double[sampleSize * dims];
        this.sequence = new long[sampleSize];
        this.weight = new double[sampleSize];
    }

    // ------------------------------------------------------------------ parameters and state

    public int numberOfTrees() {
        return numberOfTrees;
    }

    public int sampleSize() {
        return sampleSize;
    }

    public double timeDecay() {
        return timeDecay;
    }

    public int shingleSize() {
        return shingleSize;
    }

    public int inputDimensions() {
        return inputDimensions;
    }

    public long seed() {
        return seed;
    }

    /** Inputs seen so far (calls of {@link #scoreThenUpdate}). */
    public long updates() {
        return updates;
    }

    /** Points in the sample (at most {@code sampleSize}). */
    public int sampleCount() {
        return size;
    }

    /** Testing aid: score 1-D forests with the general path too (results are identical). */
    void setForceGeneral(boolean force) {
        this.forceGeneral = force;
    }

    // ------------------------------------------------------------------ hashing

    /** splitmix64's finaliser. */
    static long mix64(long z) {
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    /** A uniform in [0, 1) from the top 53 bits. */
    static double unit(long h) {
        return (h >>> 11) * TWO_POW_M53;
    }

    /** The identity of tree j's root. */
    private long rootOf(int j) {
        return mix64(treeKey + (j + 1L) * GOLDEN);
    }

    private static long child(long node, boolean left) {
        return mix64(node + (left ? LEFT : RIGHT));
    }

    /** The sampler weight of the point with sequence index {@code t} (smaller is better). */
    double weightOf(long t) {
        double u = ((mix64(samplerKey + t * GOLDEN) >>> 11) + 0.5) * TWO_POW_M53; // in (0, 1)
        return StrictMath.log(-StrictMath.log(u)) - lambda * (double) t;
    }

    // ------------------------------------------------------------------ streaming

    /**
     * Score the input against the forest as it is, then learn it. Returns 0 while the shingle is not yet full and
     * while the sample is empty.
     */
    public double scoreThenUpdate(double[] input) {
        double[] point = nextPoint(input);
        updates++;
        if (point == null) {
            return 0.0;
        }
        double score = score(point);
        insert(point, updates - 1);
        return score;
    }

    /**
     * Per-input-dimension contributions to the score the next {@link #scoreThenUpdate} of {@code input} would
     * return (without changing the state): an array of {@code 2 * inputDimensions}, first the contributions of the
     * input being above the boxes ("high") for each input dimension, then those of it being below ("low"), each
     * summed over the shingle. Their sum is the score (to rounding).
     */
    public double[] attribution(double[] input) {
        checkInput(input);
        double[] out = new double[2 * inputDimensions];
        if (shingleFill + 1 < shingleSize || size == 0) {
            return out;
        }
        double[] point = new double[dims];
        int keep = (shingleSize - 1) * inputDimensions;
        System.arraycopy(shingle, dims - keep, point, 0, keep);
        System.arraycopy(input, 0, point, keep, inputDimensions);
        double[] attr = new double[2 * dims];
        double[] tree = new double[2 * dims];
        prepareGeneral();
        for (int j = 0; j < numberOfTrees; j++) {
            Arrays.fill(tree, 0.0);
            scoreGeneral(point, j, tree);
            for (int k = 0; k < 2 * dims; k++) {
                attr[k] += tree[k];
            }
        }
        double scale = normaliser() / numberOfTrees;
        for (int k = 0; k < dims; k++) {
            int i = k % inputDimensions;
            out[i] += attr[2 * k] * scale;
            out[inputDimensions + i] += attr[2 * k + 1] * scale;
        }
        return out;
    }

    /** The score of a full point (length shingleSize * inputDimensions) against the forest as it is. */
    public double score(double[] point) {
        if (point.length != dims) {
            throw new IllegalArgumentException("point must have " + dims + " values, got " + point.length);
        }
        if (size == 0) {
            return 0.0;
        }
        double sum = 0.0;
        if (sorted1d && !forceGeneral) {
            double x = point[0];
            for (int j = 0; j < numberOfTrees; j++) {
                sum += score1d(x, j);
            }
        } else {
            prepareGeneral();
            for (int j = 0; j < numberOfTrees; j++) {
                sum += scoreGeneral(point, j, null);
            }
        }
        return (sum / numberOfTrees) * normaliser();
    }

    private double normaliser() {
        return StrictMath.log(size + 1.0) / LOG2;
    }

    private void checkInput(double[] input) {
        if (input == null || input.length != inputDimensions) {
            throw new IllegalArgumentException("input must have inputDimensions=" + inputDimensions + " values, got "
                    + (input == null ? "null" : String.valueOf(input.length)));
        }
        for (double v : input) {
            if (Double.isNaN(v) || Double.isInfinite(v)) {
                throw new IllegalArgumentException("input values must be finite, got " + Arrays.toString(input));
            }
        }
    }

    /** Shift the input into the shingle; the point (a new array) when the shingle is full, else null. */
    private double[] nextPoint(double[] input) {
        checkInput(input);
        if (shingleFill == shingleSize) {
            System.arraycopy(shingle, inputDimensions, shingle, 0, dims - inputDimensions);
            System.arraycopy(input, 0, shingle, dims - inputDimensions, inputDimensions);
        } else {
            System.arraycopy(input, 0, shingle, shingleFill * inputDimensions, inputDimensions);
            shingleFill++;
        }
        return shingleFill == shingleSize ? shingle.clone() : null;
    }

    private void insert(double[] point, long t) {
        double w = weightOf(t);
        if (size < sampleSize) {
            place(point, t, w, -1);
            if (size == sampleSize) {
                findWorst();
            }
        } else if (w < weight[worst]) {
            place(point, t, w, worst);
            findWorst();
        }
    }

    /** Put a point into the sample, evicting slot {@code evict} (or appending when -1). */
    private void place(double[] point, long t, double w, int evict) {
        if (!sorted1d) {
            int slot = evict < 0 ? size++ : evict;
            System.arraycopy(point, 0, values, slot * dims, dims);
            sequence[slot] = t;
            weight[slot] = w;
            return;
        }
        if (evict >= 0) {
            int tail = size - evict - 1;
            System.arraycopy(values, evict + 1, values, evict, tail);
            System.arraycopy(sequence, evict + 1, sequence, evict, tail);
            System.arraycopy(weight, evict + 1, weight, evict, tail);
            size--;
        }
        double x = point[0];
        int at = upperBound(values, 0, size, x);
        int tail = size - at;
        System.arraycopy(values, at, values, at + 1, tail);
        System.arraycopy(sequence, at, sequence, at + 1, tail);
        System.arraycopy(weight, at, weight, at + 1, tail);
        values[at] = x;
        sequence[at] = t;
        weight[at] = w;
        size++;
    }

    private void findWorst() {
        int best = 0;
        for (int i = 1; i < size; i++) {
            if (weight[i] > weight[best]) {
                best = i;
            }
        }
        worst = best;
    }

    /** First index in [lo, hi) whose value is > v (hi if none). */
    private static int upperBound(double[] a, int lo, int hi, double v) {
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (a[mid] <= v) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        return lo;
    }

    // ------------------------------------------------------------------ scoring one tree

    /** Allocate the general path's scratch and compute the sample's box (the root's, the same in every tree). */
    private void prepareGeneral() {
        final int d = dims;
        if (scratchIdx == null) {
            scratchIdx = new int[sampleSize];
            scratchMin = new double[d];
            scratchMax = new double[d];
            scratchRoot = new double[2 * d];
        }
        for (int k = 0; k < d; k++) {
            scratchRoot[k] = Double.POSITIVE_INFINITY;
            scratchRoot[d + k] = Double.NEGATIVE_INFINITY;
        }
        for (int i = 0; i < size; i++) {
            int o = i * d;
            for (int k = 0; k < d; k++) {
                double y = values[o + k];
                if (y < scratchRoot[k]) {
                    scratchRoot[k] = y;
                }
                if (y > scratchRoot[d + k]) {
                    scratchRoot[d + k] = y;
                }
            }
        }
    }

    /** The unnormalised score of x in tree j, 1-D sorted sample. */
    private double score1d(double x, int j) {
        final double[] v = values;
        int lo = 0;
        int hi = size;
        long node = rootOf(j);
        int depth = 0;
        double sum = 0.0;
        double keep = 1.0;
        while (true) {
            double a = v[lo];
            double b = v[hi - 1];
            if (a == b) {
                break;
            }
            double range = b - a;
            double gap = x < a ? a - x : (x > b ? x - b : 0.0);
            if (gap > 0) {
                double p = gap / (range + gap);
                sum += keep * p * (1.0 / (depth + 1.0));
                keep *= 1.0 - p;
            }
            double cut = a + unit(node) * range;
            if (cut >= b) {
                cut = Math.nextDown(b);
            }
            int split = upperBound(v, lo, hi, cut);
            boolean left = x <= cut;
            if (left) {
                hi = split;
            } else {
                lo = split;
            }
            node = child(node, left);
            depth++;
        }
        double leafValue = v[lo];
        int mass = hi - lo;
        if (x == leafValue) {
            return sum + keep * seenScore(depth, mass);
        }
        return sum + keep * (1.0 / (depth + 1.0));
    }

    private double seenScore(int depth, int mass) {
        double damp = 1.0 - mass / (2.0 * size);
        return damp * (1.0 / (depth + StrictMath.log(mass + 1.0) / LOG2));
    }

    /**
     * The unnormalised score of x in tree j by scanning the node's points; adds the per-dimension contributions
     * (index 2k: x above the box in dimension k, 2k+1: below) to {@code attr} when it is not null.
     */
    private double scoreGeneral(double[] x, int j, double[] attr) {
        final int d = dims;
        int[] idx = scratchIdx;
        double[] mn = scratchMin;
        double[] mx = scratchMax;
        int m = size;
        for (int i = 0; i < m; i++) {
            idx[i] = i;
        }
        System.arraycopy(scratchRoot, 0, mn, 0, d);
        System.arraycopy(scratchRoot, d, mx, 0, d);
        long node = rootOf(j);
        int depth = 0;
        double sum = 0.0;
        double keep = 1.0;
        while (true) {
            double rangeSum = 0.0;
            double gapSum = 0.0;
            for (int k = 0; k < d; k++) {
                rangeSum += mx[k] - mn[k];
                double xk = x[k];
                gapSum += xk < mn[k] ? mn[k] - xk : (xk > mx[k] ? xk - mx[k] : 0.0);
            }
            if (rangeSum == 0.0) {
                break;
            }
            if (gapSum > 0) {
                double p = gapSum / (rangeSum + gapSum);
                double unseen = 1.0 / (depth + 1.0);
                sum += keep * p * unseen;
                if (attr != null) {
                    double f = keep * unseen / (rangeSum + gapSum);
                    for (int k = 0; k < d; k++) {
                        double xk = x[k];
                        if (xk > mx[k]) {
                            attr[2 * k] += f * (xk - mx[k]);
                        } else if (xk < mn[k]) {
                            attr[2 * k + 1] += f * (mn[k] - xk);
                        }
                    }
                }
                keep *= 1.0 - p;
            }
            double acc = unit(node) * rangeSum;
            int cutDim = -1;
            double cut = 0.0;
            int lastPositive = -1;
            for (int k = 0; k < d; k++) {
                if (mx[k] > mn[k]) {
                    lastPositive = k;
                }
            }
            for (int k = 0; k < d; k++) {
                double r = mx[k] - mn[k];
                if (r > 0) {
                    if (acc < r || k == lastPositive) {
                        cutDim = k;
                        cut = mn[k] + acc;
                        break;
                    }
                    acc -= r;
                }
            }
            if (cut >= mx[cutDim]) {
                cut = Math.nextDown(mx[cutDim]);
            }
            boolean left = x[cutDim] <= cut;
            // keep x's side and compute its box in the same pass
            Arrays.fill(mn, Double.POSITIVE_INFINITY);
            Arrays.fill(mx, Double.NEGATIVE_INFINITY);
            int kept = 0;
            for (int i = 0; i < m; i++) {
                int p = idx[i];
                int o = p * d;
                if ((values[o + cutDim] <= cut) == left) {
                    idx[kept++] = p;
                    for (int k = 0; k < d; k++) {
                        double y = values[o + k];
                        if (y < mn[k]) {
                            mn[k] = y;
                        }
                        if (y > mx[k]) {
                            mx[k] = y;
                        }
                    }
                }
            }
            m = kept;
            node = child(node, left);
            depth++;
        }
        int leaf = idx[0] * d;
        boolean seen = true;
        double leafGap = 0.0;
        for (int k = 0; k < d; k++) {
            double g = x[k] - values[leaf + k];
            if (g != 0) {
                seen = false;
            }
            leafGap += Math.abs(g);
        }
        if (seen) {
            double s = seenScore(depth, m);
            if (attr != null) {
                double share = keep * s / (2.0 * d);
                for (int k = 0; k < 2 * d; k++) {
                    attr[k] += share;
                }
            }
            return sum + keep * s;
        }
        double unseen = 1.0 / (depth + 1.0);
        if (attr != null) {
            double f = keep * unseen / leafGap;
            for (int k = 0; k < d; k++) {
                double g = x[k] - values[leaf + k];
                if (g > 0) {
                    attr[2 * k] += f * g;
                } else if (g < 0) {
                    attr[2 * k + 1] -= f * g;
                }
            }
        }
        return sum + keep * unseen;
    }

    // ------------------------------------------------------------------ state

    /** The forest's complete state: parameters, counters, shingle and sample. */
    public void writeTo(DataOutput out) throws IOException {
        out.writeInt(MAGIC);
        out.writeByte(FORMAT_VERSION);
        out.writeInt(numberOfTrees);
        out.writeInt(sampleSize);
        out.writeDouble(timeDecay);
        out.writeInt(shingleSize);
        out.writeInt(inputDimensions);
        out.writeLong(seed);
        out.writeLong(updates);
        out.writeInt(shingleFill);
        for (int i = 0; i < shingleFill * inputDimensions; i++) {
            out.writeDouble(shingle[i]);
        }
        out.writeInt(size);
        for (int i = 0; i < size; i++) {
            out.writeLong(sequence[i]);
        }
        for (int i = 0; i < size * dims; i++) {
            out.writeDouble(values[i]);
        }
    }

    /** A forest from the bytes of {@link #writeTo}. */
    public static CompactForest readFrom(DataInput in) throws IOException {
        int magic = in.readInt();
        if (magic != MAGIC) {
            throw new IOException("not a CompactForest state (magic " + Integer.toHexString(magic) + ")");
        }
        int version = in.readUnsignedByte();
        if (version != FORMAT_VERSION) {
            throw new IOException("unsupported CompactForest state version " + version);
        }
        int trees = in.readInt();
        int sample = in.readInt();
        double decay = in.readDouble();
        int shingleSize = in.readInt();
        int inputDims = in.readInt();
        long seed = in.readLong();
        CompactForest f;
        try {
            f = new CompactForest(trees, sample, decay, shingleSize, inputDims, seed);
        } catch (IllegalArgumentException e) {
            throw new IOException("corrupt CompactForest state: " + e.getMessage(), e);
        }
        f.updates = in.readLong();
        int fill = in.readInt();
        if (fill < 0 || fill > shingleSize) {
            throw new IOException("corrupt CompactForest state: shingle fill " + fill);
        }
        f.shingleFill = fill;
        for (int i = 0; i < fill * inputDims; i++) {
            f.shingle[i] = in.readDouble();
        }
        int n = in.readInt();
        if (n < 0 || n > sample) {
            throw new IOException("corrupt CompactForest state: sample count " + n);
        }
        f.size = n;
        for (int i = 0; i < n; i++) {
            f.sequence[i] = in.readLong();
            f.weight[i] = f.weightOf(f.sequence[i]);
        }
        for (int i = 0; i < n * f.dims; i++) {
            f.values[i] = in.readDouble();
        }
        if (n == sample) {
            f.findWorst();
        }
        return f;
    }

    /** An independent copy with the same state (later scores are identical). */
    public CompactForest copy() {
        CompactForest f = new CompactForest(numberOfTrees, sampleSize, timeDecay, shingleSize, inputDimensions, seed);
        f.updates = updates;
        f.shingleFill = shingleFill;
        System.arraycopy(shingle, 0, f.shingle, 0, shingle.length);
        f.size = size;
        System.arraycopy(values, 0, f.values, 0, values.length);
        System.arraycopy(sequence, 0, f.sequence, 0, sequence.length);
        System.arraycopy(weight, 0, f.weight, 0, weight.length);
        f.worst = worst;
        return f;
    }

    /** Bytes {@link #writeTo} writes now. */
    public int serializedSize() {
        return 4 + 1 + 4 + 4 + 8 + 4 + 4 + 8 + 8 + 4 + shingleFill * inputDimensions * 8 + 4 + size * 8
                + size * dims * 8;
    }

    /** A rough estimate of the heap this object holds (64-bit JVM, compressed oops). */
    public long approximateHeapBytes() {
        long arrays = 16L * 5 + 8L * shingle.length + 8L * values.length + 8L * sequence.length
                + 8L * weight.length;
        if (scratchIdx != null) {
            arrays += 16L * 4 + 4L * scratchIdx.length + 32L * dims;
        }
        return 96 + arrays;
    }
}
