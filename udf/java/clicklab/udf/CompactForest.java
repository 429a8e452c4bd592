package clicklab.udf;

import java.io.DataInput;
import java.io.DataOutput;
import java.io.IOException;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * A compact, exactly restorable streaming Random Cut Forest (Guha, Mishra, Roy and Schrijvers, ICML 2016), small
 * enough to keep one per key in Flink keyed state.
 *
 * <p><b>Design.</b> AWS's library keeps, per tree, its own time-decayed reservoir of {@code sampleSize} points and an
 * explicit tree over it. This forest keeps <b>one pool</b>: a time-decayed weighted reservoir of
 * {@code poolSize = max(POOL_FACTOR * sampleSize, MIN_POOL)} points (values and sequence indexes; 4 x 256 = 1024 at
 * 100 x 256, 256 at 100 x 12), and <b>no trees at all</b>.
 * Tree {@code j} holds the {@code min(sampleSize, pool count)} pool points with the smallest keys
 * {@code key_j(t) = mix64(root_j + t * GOLDEN)} (unsigned; a bijection of {@code t}, so keys never tie): so every tree
 * has its own sample, a uniform subsample of the pool (bagging, as AWS's trees have independent samples), and the
 * membership is a pure function of the pool, recomputed on restore and never stored. While the stream is shorter
 * than the pool, every point is in the pool and the trees' samples are independent uniform samples of the stream,
 * as in AWS's library without decay; later two trees share about {@code 1/POOL_FACTOR} of their points (AWS's:
 * {@code sampleSize / points seen}). With strong decay the trees remember as far back as the pool does (about
 * {@code POOL_FACTOR} times AWS's per-tree memory).
 *
 * <p><b>Why this design</b> (measured against AWS's randomcutforest-core 4.3.0 on the lab replay's CTR series,
 * {@code /tmp/aws/validate.py}): version 1 of this class let all trees share one sample; its trees were correlated
 * (Spearman with AWS 0.86-0.90 at 100 x 256, AWS vs AWS 0.90-0.97), ordinary values scored above 2 two to three
 * times as often as AWS's at 100 x 12 and the labelled click-bot scored 2.22 against AWS's 2.53. A per-tree
 * reservoir over the whole stream (AWS's own sampler with implicit trees) matches AWS's distribution exactly, but
 * the union of 100 trees' samples grows towards {@code 100 * sampleSize} points (400 KB at 100 x 256). A pool
 * with per-tree membership keeps the state at {@code 16 * poolSize} bytes (16 KB at 100 x 256, 4 KB at
 * 100 x 12) and the heap at {@code 24 * poolSize + 2 * trees * sampleSize} bytes plus the speed-ups' caches below
 * (146 KB, 24 KB; 78 KB, 11 KB without them), and the scores agree with AWS's about as well as AWS's agree with another seed of AWS's: at 100 x 256
 * Spearman 0.95-0.97 (AWS vs AWS 0.90-0.97), click-bot 2.48 (AWS 2.53); at 100 x 12 ordinary values above 2:
 * 10, 12, 10 (AWS 11, 13, 10). A pool of 4 x 12 points gave 17, 15, 21 at 100 x 12, hence {@link #MIN_POOL}.
 * The figures per design are in the Python twin's module docstring ({@code clicklab_udf/compact.py}).
 *
 * <p>Tree {@code j} is the random cut tree over its sample that a counter-based generator defines. At a node
 * holding the point multiset {@code P}, with bounding box {@code B(P)}, the cut dimension is chosen with
 * probability proportional to the side lengths of {@code B(P)} and the cut value uniform over that side, both from
 * one uniform {@code u = hash(seed, j, node)} where the node's identity is a hash of the left/right path from the
 * root; points {@code <= cut} go left. A node whose points are all equal is a leaf. Scoring a point {@code x}
 * follows {@code x}'s path only, so a tree is never built.
 *
 * <p>Score: AWS's anomaly score ({@code AnomalyScoreVisitor} with {@code CommonUtils}' defaults) on the implicit
 * tree: at the leaf, {@code damp(m, M) * 1/(depth + log2(m + 1))} if {@code x} equals the leaf point (leaf mass
 * {@code m}, tree mass {@code M}), else {@code 1/(depth + 1)}; going up, at each node whose box does not contain
 * {@code x}, {@code score = p/(depth + 1) + (1 - p) * score} with {@code p} the probability that a random cut of
 * the box extended by {@code x} separates {@code x}; nodes whose box contains {@code x} (and all above them) leave
 * the score unchanged. The result is scaled by {@code log2(M + 1)} and averaged over the trees. This class
 * evaluates the same recursion top-down (as a running sum and product) so that it needs no stack.
 *
 * <p>Pool sampler: the point with sequence index {@code t} (the number of inputs before it) has the weight
 * {@code log(-log(u_t)) - lambda * t}, {@code lambda = 1/timeDecay} (0: no decay) and {@code u_t} a uniform of
 * {@code hash(seed, t)}, as in AWS's {@code CompactSampler}; until the pool is full every point is taken, then
 * a point replaces the pool's largest weight (in its slot) when its own weight is smaller. Weights are recomputed
 * from the sequence indexes on restore. Only {@link StrictMath} is used, so scores are the same on every JVM.
 *
 * <p>Each tree's member list ({@code char} slot numbers) is kept sorted by value in one input dimension without
 * shingling (a CTR): a node's points are a contiguous index range and each level is one binary search. Any other
 * shape scans the node's points.
 *
 * <p>Speed-ups that change no score and no state byte (all derived, never stored, rebuilt or refilled on restore):
 * in 1-D, each tree caches the split positions of its top {@code min(8, ceil(log2 sampleSize))} levels
 * ({@code trees * 2^levels} bytes, 26 KB at 100 x 256; two bytes an entry above 256 samples), filled while scoring and, when the tree's sample
 * changes, updated along the changed point's path (only the subtree of the first node whose box changes is
 * forgotten), so most top levels cost no search even while every point changes every tree's sample (the first
 * {@code sampleSize} points; with 1,000 forests of 300 points interleaved, {@code CompactForestMain --bench 300000
 * --keys 1000}, about 1.2x the points per second of clearing the tree's cache at every change); each tree keeps a
 * sorted window of the {@code sampleSize / 8} (8..32) keys around its membership boundary (its largest members and
 * the next non-members, 10 bytes a key), so a replacement finds a tree's new largest key or its replacement member
 * without scanning the pool or the sample (while the pool grows the window is mostly members, which is what a
 * growing pool uses up: about 1.2x at 200 forests of 1,100 points, {@code --bench 220000 --keys 200}). {@link #writeTo} and {@link #readFrom} move the pool as one block through a
 * per-thread buffer (no heap per forest). At 100 x 256 with a full pool (CPU time, one thread) they give about 2x
 * the points per second of the code before them when replacements are rare (25k to 48k), 2.7x just after the pool
 * filled (12k to 33k) and 3x with a replacement per point ({@code timeDecay} 1000: 8k to 25k); {@code writeTo}
 * takes about 2 microseconds (was 35), {@code readFrom} about 1 millisecond (was 6; it rebuilds every tree's
 * sample: a selection of the smallest keys per tree).
 *
 * <p>Not thread-safe; one instance per key.
 */
public final class CompactForest {

    /** Format of {@link #writeTo}: magic "CRCF" then a version byte. */
    public static final int MAGIC = 0x43524346;
    public static final int FORMAT_VERSION = 2;
    /** The pool holds this many times {@code sampleSize} points, at least {@link #MIN_POOL}, at most {@link #MAX_POOL}. */
    public static final int POOL_FACTOR = 4;
    /** The smallest default pool (small samples: 100 x 12 matches AWS's false-alarm rate only with a larger pool). */
    public static final int MIN_POOL = 256;
    /** Member lists hold slot numbers as {@code char}. */
    public static final int MAX_POOL = 65536;
    /** Largest capacity of a tree's membership window (keys around its membership boundary). */
    private static final int MAX_WINDOW = 32;

    private static final long GOLDEN = 0x9E3779B97F4A7C15L;
    private static final long SAMPLER_SALT = 0x5851F42D4C957F2DL;
    private static final long TREE_SALT = 0x2545F4914F6CDD1DL;
    private static final long MEMBER_SALT = 0x7F4A7C159E3779B9L;
    private static final long LEFT = 0x632BE59BD9B4E019L;
    private static final long RIGHT = 0x8CB92BA72F3D8DD7L;
    private static final double TWO_POW_M53 = 0x1.0p-53;
    private static final double LOG2 = StrictMath.log(2.0);
    /** Levels of the implicit tree whose split positions are cached per tree (at most). */
    private static final int MAX_CACHED_LEVELS = 8;
    /** {@code 1.0 / (d + 1.0)} for small depths d. */
    private static final double[] INV_DEPTH = new double[128];
    /** {@code StrictMath.log(m + 1.0) / LOG2} for small masses m. */
    private static final double[] LOG2_1P = new double[4097];
    /** Big-endian longs in a byte array, as {@link DataOutput#writeLong} writes them. */
    private static final VarHandle LONG_BE = MethodHandles.byteArrayViewVarHandle(long[].class, ByteOrder.BIG_ENDIAN);
    /** Big-endian ints in a byte array, as {@link DataOutput#writeInt} writes them. */
    private static final VarHandle INT_BE = MethodHandles.byteArrayViewVarHandle(int[].class, ByteOrder.BIG_ENDIAN);
    /** Scratch for {@link #writeTo} and {@link #readFrom}, one per thread (not per forest: no heap per key). */
    private static final ThreadLocal<byte[]> IO_BUFFER = new ThreadLocal<>();

    static {
        for (int d = 0; d < INV_DEPTH.length; d++) {
            INV_DEPTH[d] = 1.0 / (d + 1.0);
        }
        for (int m = 0; m < LOG2_1P.length; m++) {
            LOG2_1P[m] = StrictMath.log(m + 1.0) / LOG2;
        }
    }

    private final int numberOfTrees;
    private final int sampleSize;
    private final double timeDecay;
    private final int shingleSize;
    private final int inputDimensions;
    private final long seed;
    private final int poolSize;

    private final int dims;
    private final double lambda;
    private final boolean sorted1d;
    private final long samplerKey;
    private final long treeKey;
    private final long memberKey;

    /** Inputs seen. */
    private long updates;
    /** The last {@code shingleSize} inputs, oldest first ({@code shingleFill} of them so far). */
    private final double[] shingle;
    private int shingleFill;
    /** The current point (a copy of the full shingle), scratch of {@link #scoreThenUpdate}. */
    private final double[] point;

    /** Pool: {@code poolCount} slots of {@code dims} values, their sequence indexes and weights. */
    private int poolCount;
    private final double[] values;
    private final long[] sequence;
    private final double[] weight;
    /** Slot of the largest weight (the next to go), valid when the pool is full. */
    private int worst = -1;

    /** Points per tree: {@code min(sampleSize, poolCount)}. */
    private int count;
    /** Tree j's member slots at {@code [j * sampleSize, j * sampleSize + count)}; sorted by (value, slot) in 1-D. */
    private final char[] members;
    /** Per tree: the largest member key (sign-flipped for signed comparison) and its slot. */
    private final long[] maxKey;
    private final int[] maxSlot;
    /** Per tree: the member key root. */
    private final long[] memberRoot;
    /** Per tree: the identity of its root node. */
    private final long[] treeRoot;
    /**
     * 1-D only, per tree {@code cacheNodes} entries: the size of the left part (split position minus the node's
     * first position; 0: not known) of the node with heap index {@code h} (root 1, children {@code 2h},
     * {@code 2h + 1}) of the top levels. Filled while scoring, kept up to date when the tree's list changes
     * ({@link #splitsOnAdd}, {@link #splitsOnRemove}). One byte an entry when {@code sampleSize <= 256} (a left part
     * has 1 to {@code sampleSize - 1} points), else two ({@link #wideSplits}): {@link #split} and {@link #setSplit}.
     */
    private final byte[] splitCache;
    private final char[] wideSplits;
    private final int cacheNodes;

    /** Per tree: its membership window (see {@link #enter}): keys, slots, size (0: to be refilled), rank of the first. */
    private final long[] winKey;
    private final char[] winSlot;
    private final int[] winSize;
    private final int[] winBelow;
    /** Capacity of each window: {@code sampleSize / 8} in {@code [8, MAX_WINDOW]}. */
    private final int window;

    private boolean forceGeneral;

    // scratch (not state)
    private boolean[] removed;
    private int[] scratchIdx;
    private double[] scratchMin;
    private double[] scratchMax;
    private long[] keyScratch;

    public CompactForest(int numberOfTrees, int sampleSize, double timeDecay, int shingleSize, int inputDimensions,
                         long seed) {
        this(numberOfTrees, sampleSize, timeDecay, shingleSize, inputDimensions, seed, defaultPool(sampleSize));
    }

    /** As the other constructor, with a pool of {@code poolSize} points ({@code sampleSize..MAX_POOL}). */
    public CompactForest(int numberOfTrees, int sampleSize, double timeDecay, int shingleSize, int inputDimensions,
                         long seed, int poolSize) {
        if (numberOfTrees < 1) {
            throw new IllegalArgumentException("numberOfTrees must be >= 1, got " + numberOfTrees);
        }
        if (sampleSize < 2 || sampleSize > MAX_POOL) {
            throw new IllegalArgumentException("sampleSize must be >= 2 and <= " + MAX_POOL + ", got " + sampleSize);
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
        if (poolSize < sampleSize || poolSize > MAX_POOL) {
            throw new IllegalArgumentException("poolSize must be >= sampleSize and <= " + MAX_POOL + ", got "
                    + poolSize);
        }
        if ((long) shingleSize * inputDimensions * poolSize > Integer.MAX_VALUE
                || (long) numberOfTrees * sampleSize > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("shingleSize * inputDimensions * sampleSize is too large");
        }
        this.numberOfTrees = numberOfTrees;
        this.sampleSize = sampleSize;
        this.timeDecay = timeDecay;
        this.shingleSize = shingleSize;
        this.inputDimensions = inputDimensions;
        this.seed = seed;
        this.poolSize = poolSize;
        this.dims = shingleSize * inputDimensions;
        this.lambda = timeDecay == 0 ? 0.0 : 1.0 / timeDecay;
        this.sorted1d = dims == 1;
        this.samplerKey = mix64(seed ^ SAMPLER_SALT);
        this.treeKey = mix64(seed ^ TREE_SALT);
        this.memberKey = mix64(seed ^ MEMBER_SALT);
        this.shingle = new double[dims];
        this.point = new double[dims];
        this.values = new double[poolSize * dims];
        this.sequence = new long[poolSize];
        this.weight = new double[poolSize];
        this.members = new char[numberOfTrees * sampleSize];
        this.maxKey = new long[numberOfTrees];
        this.maxSlot = new int[numberOfTrees];
        this.window = Math.min(MAX_WINDOW, Math.max(8, sampleSize / 8));
        this.winKey = new long[numberOfTrees * window];
        this.winSlot = new char[numberOfTrees * window];
        this.winSize = new int[numberOfTrees];
        this.winBelow = new int[numberOfTrees];
        this.memberRoot = new long[numberOfTrees];
        this.treeRoot = new long[numberOfTrees];
        for (int j = 0; j < numberOfTrees; j++) {
            memberRoot[j] = mix64(memberKey + (j + 1L) * GOLDEN);
            treeRoot[j] = rootOf(j);
        }
        int levels = Math.min(MAX_CACHED_LEVELS, 32 - Integer.numberOfLeadingZeros(sampleSize - 1));
        this.cacheNodes = sorted1d ? 1 << levels : 0;
        boolean narrow = sampleSize <= 256;
        this.splitCache = narrow ? new byte[numberOfTrees * cacheNodes] : null;
        this.wideSplits = narrow ? null : new char[numberOfTrees * cacheNodes];
    }

    /** Split-cache entry {@code i} (see {@link #splitCache}). */
    private int split(int i) {
        return splitCache != null ? splitCache[i] & 0xFF : wideSplits[i];
    }

    private void setSplit(int i, int c) {
        if (splitCache != null) {
            splitCache[i] = (byte) c;
        } else {
            wideSplits[i] = (char) c;
        }
    }

    /** {@code max(POOL_FACTOR * sampleSize, MIN_POOL)}, at most {@link #MAX_POOL} (and at least {@code sampleSize}). */
    public static int defaultPool(int sampleSize) {
        long pool = Math.min(Math.max((long) POOL_FACTOR * sampleSize, MIN_POOL), MAX_POOL);
        return (int) Math.max(sampleSize, pool);
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

    /** Capacity of the shared pool. */
    public int poolSize() {
        return poolSize;
    }

    /** Inputs seen so far (calls of {@link #scoreThenUpdate}). */
    public long updates() {
        return updates;
    }

    /** Points in each tree's sample (at most {@code sampleSize}). */
    public int sampleCount() {
        return count;
    }

    /** Points in the pool (at most {@code poolSize}). */
    public int poolCount() {
        return poolCount;
    }

    /** The sequence indexes of tree j's sample, ascending (a testing aid). */
    public long[] treeSequences(int j) {
        long[] out = new long[count];
        for (int i = 0; i < count; i++) {
            out[i] = sequence[members[j * sampleSize + i]];
        }
        Arrays.sort(out);
        return out;
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

    /** The pool weight of the point with sequence index {@code t} (smaller is better). */
    double weightOf(long t) {
        double u = ((mix64(samplerKey + t * GOLDEN) >>> 11) + 0.5) * TWO_POW_M53; // in (0, 1)
        return StrictMath.log(-StrictMath.log(u)) - lambda * (double) t;
    }

    /** Tree j's key of the point with sequence index t, sign-flipped so that signed order is unsigned order. */
    private long keyOf(int j, long t) {
        return mix64(memberRoot[j] + t * GOLDEN) ^ Long.MIN_VALUE;
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
        if (shingleFill + 1 < shingleSize || count == 0) {
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
        if (count == 0) {
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
        return log2OnePlus(count);
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

    /** Shift the input into the shingle; the point ({@link #point}, reused) when the shingle is full, else null. */
    private double[] nextPoint(double[] input) {
        checkInput(input);
        if (shingleFill == shingleSize) {
            System.arraycopy(shingle, inputDimensions, shingle, 0, dims - inputDimensions);
            System.arraycopy(input, 0, shingle, dims - inputDimensions, inputDimensions);
        } else {
            System.arraycopy(input, 0, shingle, shingleFill * inputDimensions, inputDimensions);
            shingleFill++;
        }
        if (shingleFill < shingleSize) {
            return null;
        }
        System.arraycopy(shingle, 0, point, 0, dims);
        return point;
    }

    // ------------------------------------------------------------------ pool and tree membership

    private void insert(double[] point, long t) {
        double w = weightOf(t);
        if (poolCount < poolSize) {
            int slot = poolCount++;
            System.arraycopy(point, 0, values, slot * dims, dims);
            sequence[slot] = t;
            weight[slot] = w;
            grow(slot);
            if (poolCount == poolSize) {
                findWorst();
            }
        } else if (w < weight[worst]) {
            replace(worst, point, t, w);
            findWorst();
        }
    }

    /** A point was appended to the pool in {@code slot} (no eviction). */
    private void grow(int slot) {
        long t = sequence[slot];
        if (count < sampleSize) {
            for (int j = 0; j < numberOfTrees; j++) {
                long k = keyOf(j, t);
                add(j, slot, count);
                if (count == 0 || k > maxKey[j]) {
                    maxKey[j] = k;
                    maxSlot[j] = slot;
                }
            }
            count++;
            return;
        }
        for (int j = 0; j < numberOfTrees; j++) {
            enter(j, slot, keyOf(j, t), false);
        }
    }

    /** The point in slot {@code e} (the pool is full) is replaced by a new one. */
    private void replace(int e, double[] point, long t, double w) {
        long old = sequence[e];
        double oldValue = values[e * dims];
        if (removed == null) {
            removed = new boolean[numberOfTrees];
        }
        // phase 1, with the old point still in slot e: take it out of the trees and windows that hold it
        for (int j = 0; j < numberOfTrees; j++) {
            long kOld = keyOf(j, old);
            boolean member = kOld <= maxKey[j];
            removed[j] = member;
            if (member) {
                remove(j, e, oldValue, count);
            }
            leaveWindow(j, kOld);
        }
        System.arraycopy(point, 0, values, e * dims, dims);
        sequence[e] = t;
        weight[e] = w;
        // phase 2: each tree takes its count smallest keys again
        for (int j = 0; j < numberOfTrees; j++) {
            enter(j, e, keyOf(j, t), removed[j]);
        }
    }

    // ------------------------------------------------------------------ membership windows
    //
    // Per tree j, the window holds the pool points of ranks [below, below + size) in tree j's key order, sorted by
    // key: the largest members (rank < count) and the next non-members (a reserve), so that the tree's largest
    // member and the point that replaces a lost member are known without scanning the pool. Every pool point below
    // the window is a member, every point above it is not. A window that is empty (also: not yet built, after a
    // restore) or no longer holds the largest member (rank count - 1) is refilled from the pool: about once per few
    // hundred replacements per tree (the boundary does a random walk in the window).

    /** Phase 1 of a replacement: the point with key {@code k} leaves the pool. */
    private void leaveWindow(int j, long k) {
        int size = winSize[j];
        if (size <= 0) {
            return; // refilled in phase 2
        }
        int base = j * window;
        if (k < winKey[base]) {
            winBelow[j]--;
        } else if (k <= winKey[base + size - 1]) {
            int at = Arrays.binarySearch(winKey, base, base + size, k);
            System.arraycopy(winKey, at + 1, winKey, at, base + size - at - 1);
            System.arraycopy(winSlot, at + 1, winSlot, at, base + size - at - 1);
            winSize[j] = size - 1;
        }
    }

    /**
     * The point in {@code slot} with key {@code k} (tree j's) has entered the pool; {@code lostMember}: the point
     * that left (if any) was one of tree j's and is already out of its list. Makes tree j's list its
     * {@code count} smallest keys again and updates its largest key.
     */
    private void enter(int j, int slot, long k, boolean lostMember) {
        int base = j * window;
        int size = winSize[j];
        if (size <= 0) {
            refillWindow(j);
        } else {
            if (k < winKey[base]) {
                winBelow[j]++;
            } else if (k < winKey[base + size - 1]) {
                int at = -Arrays.binarySearch(winKey, base, base + size, k) - 1;
                // a full window drops its largest key (above the window again; a member only if the window held
                // nothing else, and then it is refilled below)
                int kept = Math.min(size, window - 1);
                System.arraycopy(winKey, at, winKey, at + 1, base + kept - at);
                System.arraycopy(winSlot, at, winSlot, at + 1, base + kept - at);
                winKey[at] = k;
                winSlot[at] = (char) slot;
                winSize[j] = kept + 1;
            }
            int h = count - winBelow[j]; // members in the window
            if (h < 1 || h > winSize[j]) {
                refillWindow(j);
            }
        }
        int top = base + count - winBelow[j] - 1; // the largest member
        long max = winKey[top];
        boolean member = k <= max;
        if (lostMember) {
            add(j, member ? slot : winSlot[top], count - 1);
        } else if (member) {
            int m = maxSlot[j];
            remove(j, m, values[m * dims], count);
            add(j, slot, count - 1);
        }
        maxKey[j] = max;
        maxSlot[j] = winSlot[top];
    }

    /**
     * Tree j's window from the pool: ranks about {@code count - window / 2 ... count + window / 2} (while the pool
     * is not full, {@code count + 2 - window ... count + 2}).
     */
    private void refillWindow(int j) {
        int n = poolCount;
        if (keyScratch == null) {
            keyScratch = new long[poolSize];
        }
        long[] keys = keyScratch;
        for (int s = 0; s < n; s++) {
            keys[s] = keyOf(j, sequence[s]);
        }
        // while the pool grows no point leaves it: the boundary only moves down (a key below the window makes a
        // member of the window a non-member), so the window is mostly members; once it is full, about half
        int hi = Math.min(n, count + (n < poolSize ? 2 : window / 2));
        int lo = Math.max(0, hi - window);
        long lowKey = select(keys, 0, n, lo);
        long highKey = select(keys, lo, n, hi - 1);
        int base = j * window;
        int size = 0;
        for (int s = 0; s < n; s++) {
            long k = keyOf(j, sequence[s]);
            if (k >= lowKey && k <= highKey) {
                int at = base + size;
                while (at > base && winKey[at - 1] > k) {
                    winKey[at] = winKey[at - 1];
                    winSlot[at] = winSlot[at - 1];
                    at--;
                }
                winKey[at] = k;
                winSlot[at] = (char) s;
                size++;
            }
        }
        winBelow[j] = lo;
        winSize[j] = size;
    }

    /** Add {@code slot} to tree j's list that holds {@code n} members. */
    private void add(int j, int slot, int n) {
        int base = j * sampleSize;
        if (!sorted1d) {
            members[base + n] = (char) slot;
            return;
        }
        double v = values[slot];
        int lo = base;
        int hi = base + n;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            int s = members[mid];
            double y = values[s];
            if (y < v || (y == v && s < slot)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        splitsOnAdd(j, v, n);
        System.arraycopy(members, lo, members, lo + 1, base + n - lo);
        members[lo] = (char) slot;
    }

    /** Remove {@code slot} (whose value is {@code v}) from tree j's list that holds {@code n} members. */
    private void remove(int j, int slot, double v, int n) {
        int base = j * sampleSize;
        int at;
        if (sorted1d) {
            int lo = base;
            int hi = base + n;
            while (lo < hi) {
                int mid = (lo + hi) >>> 1;
                int s = members[mid];
                double y = values[s];
                if (y < v || (y == v && s < slot)) {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            at = lo;
            splitsOnRemove(j, at, v, n);
            System.arraycopy(members, at + 1, members, at, base + n - at - 1);
        } else {
            at = base;
            while (members[at] != slot) {
                at++;
            }
            members[at] = members[base + n - 1];
        }
    }

    // ------------------------------------------------------------------ the split cache under changes
    //
    // Tree j's entry of node h in splitCache is the size of h's left part (its split position minus its first
    // position), or 0: not known. An entry is valid (that of the tree as it is now) when its ancestors' entries are
    // all known; below an entry of 0 they are left over and ignored (score1d, filling an entry, forgets its
    // children's). A point added to or removed from a tree changes the nodes on its path only: those whose box stays
    // the same keep their cut (a cut is a function of the box and the node's identity) and their left part gains or
    // loses the point when it goes left; the first whose box changes gets another cut, so its entry is forgotten
    // (and with it everything below). The scores are those of a cache cleared at every change, with fewer searches.

    /** Tree j's cached splits for {@code v} being added to its list of {@code n} members (before the list moves). */
    private void splitsOnAdd(int j, double v, int n) {
        if (cacheNodes == 0) {
            return;
        }
        final int cb = j * cacheNodes;
        if (n == 0) {
            setSplit(cb + 1, 0);
            return;
        }
        int lo = j * sampleSize;
        int hi = lo + n;
        long node = treeRoot[j];
        int heap = 1;
        while (heap < cacheNodes) {
            int c = split(cb + heap);
            if (c == 0) {
                return; // not known here, nothing known below
            }
            double a = values[members[lo]];
            double b = values[members[hi - 1]];
            if (v < a || v > b) {
                setSplit(cb + heap, 0); // v extends this node's box: another cut
                return;
            }
            // a != b: a node with a known split is not a leaf, and v inside its box leaves it so
            double cut = a + unit(node) * (b - a);
            if (cut >= b) {
                cut = Math.nextDown(b);
            }
            boolean left = v <= cut;
            if (left) {
                setSplit(cb + heap, c + 1);
                hi = lo + c;
                heap = 2 * heap;
            } else {
                lo += c;
                heap = 2 * heap + 1;
            }
            node = child(node, left);
        }
    }

    /**
     * Tree j's cached splits for its member at position {@code p} (absolute, value {@code v}) being removed from its
     * list of {@code n} members (before the list moves).
     */
    private void splitsOnRemove(int j, int p, double v, int n) {
        if (cacheNodes == 0) {
            return;
        }
        final int cb = j * cacheNodes;
        int lo = j * sampleSize;
        int hi = lo + n;
        long node = treeRoot[j];
        int heap = 1;
        while (heap < cacheNodes) {
            int c = split(cb + heap);
            if (c == 0) {
                return;
            }
            double a = values[members[lo]];
            double b = values[members[hi - 1]];
            if ((p == lo && values[members[lo + 1]] != a) || (p == hi - 1 && values[members[hi - 2]] != b)) {
                setSplit(cb + heap, 0); // v is this node's only smallest or largest point: another box, another cut
                return;
            }
            double cut = a + unit(node) * (b - a);
            if (cut >= b) {
                cut = Math.nextDown(b);
            }
            boolean left = v <= cut;
            if (left) {
                setSplit(cb + heap, c - 1); // v was not alone on the left: it would be the node's only smallest
                hi = lo + c;
                heap = 2 * heap;
            } else {
                lo += c;
                heap = 2 * heap + 1;
            }
            node = child(node, left);
        }
    }

    private void findWorst() {
        int best = 0;
        for (int i = 1; i < poolCount; i++) {
            if (weight[i] > weight[best]) {
                best = i;
            }
        }
        worst = best;
    }

    /**
     * Rebuild every tree's members from the pool (on restore): its {@code count} smallest keys, listed in the
     * order of {@link #add} (1-D: by (value, slot), else by slot).
     */
    private void rebuildTrees() {
        count = Math.min(sampleSize, poolCount);
        if (count == 0) {
            return;
        }
        int[] order = new int[poolCount];
        for (int s = 0; s < poolCount; s++) {
            order[s] = s;
        }
        if (sorted1d) {
            sortByValue(order);
        }
        long[] keys = new long[poolCount];
        long[] work = new long[poolCount];
        char[] picked = new char[poolCount];
        double expected = count + 4 * Math.sqrt(count) + 16;
        long bound = expected >= poolCount ? Long.MAX_VALUE
                : (long) (expected / poolCount * 0x1.0p64 - 0x1.0p63); // keys are uniform over the longs
        for (int j = 0; j < numberOfTrees; j++) {
            // the count smallest of poolCount uniform keys: select among those below a bound that about
            // count + 4 sd + 16 of them are under (among all when fewer are); the loops do not branch on keys
            int m = 0;
            for (int s = 0; s < poolCount; s++) {
                long k = keyOf(j, sequence[s]);
                keys[s] = k;
                work[m] = k;
                m += k < bound ? 1 : 0;
            }
            if (m < count) {
                System.arraycopy(keys, 0, work, 0, poolCount);
                m = poolCount;
            }
            long threshold = select(work, 0, m, count - 1);
            int n = 0;
            for (int i = 0; i < poolCount; i++) {
                int s = order[i];
                picked[n] = (char) s;
                n += keys[s] <= threshold ? 1 : 0;
            }
            int base = j * sampleSize;
            System.arraycopy(picked, 0, members, base, count);
            for (int i = 0; i < count; i++) {
                if (keys[picked[i]] == threshold) {
                    maxKey[j] = threshold;
                    maxSlot[j] = picked[i];
                }
            }
        }
    }

    /** Sort pool slots by (value, slot), the order of the 1-D member lists (a merge sort; stable, so by slot on ties). */
    private void sortByValue(int[] slots) {
        int n = slots.length;
        int[] from = slots;
        int[] to = new int[n];
        for (int width = 1; width < n; width *= 2) {
            for (int lo = 0; lo < n; lo += 2 * width) {
                int mid = Math.min(lo + width, n);
                int hi = Math.min(lo + 2 * width, n);
                int i = lo;
                int k = mid;
                int o = lo;
                while (i < mid && k < hi) {
                    // take the right one only when strictly smaller: equal values keep slot order
                    to[o++] = values[from[k]] < values[from[i]] ? from[k++] : from[i++];
                }
                while (i < mid) {
                    to[o++] = from[i++];
                }
                while (k < hi) {
                    to[o++] = from[k++];
                }
            }
            int[] t = from;
            from = to;
            to = t;
        }
        if (from != slots) {
            System.arraycopy(from, 0, slots, 0, n);
        }
    }

    /**
     * The k-th smallest (0-based, {@code from <= k < to}) of {@code a[from, to)} (distinct values); reorders that
     * range so that {@code a[from, k)} are smaller and {@code a(k, to)} larger.
     */
    private static long select(long[] a, int from, int to, int k) {
        int lo = from;
        int hi = to - 1;
        while (lo < hi) {
            long pivot = a[(lo + hi) >>> 1];
            int i = lo;
            int r = hi;
            while (i <= r) {
                while (a[i] < pivot) {
                    i++;
                }
                while (a[r] > pivot) {
                    r--;
                }
                if (i <= r) {
                    long t = a[i];
                    a[i] = a[r];
                    a[r] = t;
                    i++;
                    r--;
                }
            }
            if (k <= r) {
                hi = r;
            } else if (k >= i) {
                lo = i;
            } else {
                return a[k];
            }
        }
        return a[k];
    }

    /**
     * First index in [lo, hi) of a tree list whose value is > v (hi if none; {@code lo < hi}). Branch-free halving
     * (a fixed number of steps, no mispredicted branches): the answer stays in {@code [at, at + n]}.
     */
    private int upperBound(int lo, int hi, double v) {
        final char[] m = members;
        final double[] a = values;
        int at = lo;
        int n = hi - lo;
        while (n > 1) {
            int half = n >>> 1;
            at = a[m[at + half]] <= v ? at + half : at;
            n -= half;
        }
        return a[m[at]] <= v ? at + 1 : at;
    }

    // ------------------------------------------------------------------ scoring one tree

    /** Allocate the general path's scratch. */
    private void prepareGeneral() {
        if (scratchIdx == null) {
            scratchIdx = new int[sampleSize];
            scratchMin = new double[dims];
            scratchMax = new double[dims];
        }
    }

    /**
     * The unnormalised score of x in tree j, 1-D sorted member list: the node's points are {@code [lo, hi)}, its box
     * {@code [v[lo], v[hi - 1]]}; the split position of the top levels comes from {@link #splitCache}.
     */
    private double score1d(double x, int j) {
        final double[] v = values;
        final char[] mem = members;
        final int base = j * sampleSize;
        final int cacheBase = j * cacheNodes;
        int lo = base;
        int hi = base + count;
        long node = treeRoot[j];
        int heap = 1;
        int depth = 0;
        double sum = 0.0;
        double keep = 1.0;
        double a = v[mem[lo]];
        double b = v[mem[hi - 1]];
        while (a != b) {
            double range = b - a;
            double gap = x < a ? a - x : (x > b ? x - b : 0.0);
            if (gap > 0) {
                double p = gap / (range + gap);
                sum += keep * p * invDepth(depth);
                keep *= 1.0 - p;
            }
            double cut = a + unit(node) * range;
            if (cut >= b) {
                cut = Math.nextDown(b);
            }
            int split;
            if (heap < cacheNodes) {
                int c = split(cacheBase + heap);
                if (c == 0) {
                    split = upperBound(lo, hi, cut);
                    setSplit(cacheBase + heap, split - lo);
                    int below = 2 * heap;
                    if (below < cacheNodes) { // the children's entries are left over from another tree
                        setSplit(cacheBase + below, 0);
                        setSplit(cacheBase + below + 1, 0);
                    }
                } else {
                    split = lo + c;
                }
            } else {
                split = upperBound(lo, hi, cut);
            }
            boolean left = x <= cut;
            if (left) {
                hi = split;
                b = v[mem[hi - 1]];
                heap = 2 * heap;
            } else {
                lo = split;
                a = v[mem[lo]];
                heap = 2 * heap + 1;
            }
            if (heap >= cacheNodes) {
                heap = cacheNodes; // below the cached levels (and never overflows)
            }
            node = child(node, left);
            depth++;
        }
        int mass = hi - lo;
        if (x == a) {
            return sum + keep * seenScore(depth, mass);
        }
        return sum + keep * invDepth(depth);
    }

    private static double invDepth(int depth) {
        return depth < INV_DEPTH.length ? INV_DEPTH[depth] : 1.0 / (depth + 1.0);
    }

    /** {@code StrictMath.log(m + 1.0) / LOG2}. */
    private static double log2OnePlus(int m) {
        return m < LOG2_1P.length ? LOG2_1P[m] : StrictMath.log(m + 1.0) / LOG2;
    }

    private double seenScore(int depth, int mass) {
        double damp = 1.0 - mass / (2.0 * count);
        return damp * (1.0 / (depth + log2OnePlus(mass)));
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
        int m = count;
        int base = j * sampleSize;
        Arrays.fill(mn, Double.POSITIVE_INFINITY);
        Arrays.fill(mx, Double.NEGATIVE_INFINITY);
        for (int i = 0; i < m; i++) {
            int p = members[base + i];
            idx[i] = p;
            int o = p * d;
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
        long node = treeRoot[j];
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
                double unseen = invDepth(depth);
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
        double unseen = invDepth(depth);
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

    /** The forest's complete state: parameters, counters, shingle and pool (the trees follow from the pool). */
    public void writeTo(DataOutput out) throws IOException {
        out.writeInt(MAGIC);
        out.writeByte(FORMAT_VERSION);
        out.writeInt(numberOfTrees);
        out.writeInt(sampleSize);
        out.writeDouble(timeDecay);
        out.writeInt(shingleSize);
        out.writeInt(inputDimensions);
        out.writeLong(seed);
        out.writeInt(poolSize);
        out.writeLong(updates);
        out.writeInt(shingleFill);
        for (int i = 0; i < shingleFill * inputDimensions; i++) {
            out.writeDouble(shingle[i]);
        }
        out.writeInt(poolCount);
        // the bulk as DataOutput would write it (big-endian longs, doubleToLongBits), in one write
        int n = 8 * (poolCount + poolCount * dims);
        byte[] b = ioBuffer(n);
        int o = 0;
        for (int i = 0; i < poolCount; i++, o += 8) {
            LONG_BE.set(b, o, sequence[i]);
        }
        for (int i = 0; i < poolCount * dims; i++, o += 8) {
            LONG_BE.set(b, o, Double.doubleToLongBits(values[i]));
        }
        out.write(b, 0, n);
    }

    /**
     * The bytes {@link #writeTo} writes, in a new array of {@link #serializedSize} bytes, written in one pass (no
     * stream, no intermediate buffer): what the keyed functions put in Flink state after every row.
     */
    public byte[] toBytes() {
        byte[] b = new byte[serializedSize()];
        INT_BE.set(b, 0, MAGIC);
        b[4] = (byte) FORMAT_VERSION;
        INT_BE.set(b, 5, numberOfTrees);
        INT_BE.set(b, 9, sampleSize);
        LONG_BE.set(b, 13, Double.doubleToLongBits(timeDecay));
        INT_BE.set(b, 21, shingleSize);
        INT_BE.set(b, 25, inputDimensions);
        LONG_BE.set(b, 29, seed);
        INT_BE.set(b, 37, poolSize);
        LONG_BE.set(b, 41, updates);
        INT_BE.set(b, 49, shingleFill);
        int o = 53;
        for (int i = 0; i < shingleFill * inputDimensions; i++, o += 8) {
            LONG_BE.set(b, o, Double.doubleToLongBits(shingle[i]));
        }
        INT_BE.set(b, o, poolCount);
        o += 4;
        for (int i = 0; i < poolCount; i++, o += 8) {
            LONG_BE.set(b, o, sequence[i]);
        }
        for (int i = 0; i < poolCount * dims; i++, o += 8) {
            LONG_BE.set(b, o, Double.doubleToLongBits(values[i]));
        }
        return b;
    }

    /** This thread's I/O scratch, at least {@code n} bytes. */
    private static byte[] ioBuffer(int n) {
        byte[] b = IO_BUFFER.get();
        if (b == null || b.length < n) {
            b = new byte[Math.max(n, 1024)];
            IO_BUFFER.set(b);
        }
        return b;
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
        int pool = in.readInt();
        CompactForest f;
        try {
            f = new CompactForest(trees, sample, decay, shingleSize, inputDims, seed, pool);
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
        if (n < 0 || n > pool) {
            throw new IOException("corrupt CompactForest state: pool count " + n);
        }
        f.poolCount = n;
        byte[] b = ioBuffer(8 * (n + n * f.dims));
        in.readFully(b, 0, 8 * (n + n * f.dims));
        int o = 0;
        for (int i = 0; i < n; i++, o += 8) {
            f.sequence[i] = (long) LONG_BE.get(b, o);
            f.weight[i] = f.weightOf(f.sequence[i]);
        }
        for (int i = 0; i < n * f.dims; i++, o += 8) {
            f.values[i] = Double.longBitsToDouble((long) LONG_BE.get(b, o));
        }
        if (n == pool) {
            f.findWorst();
        }
        f.rebuildTrees();
        return f;
    }

    /** An independent copy with the same state (later scores are identical). */
    public CompactForest copy() {
        CompactForest f = new CompactForest(numberOfTrees, sampleSize, timeDecay, shingleSize, inputDimensions, seed,
                poolSize);
        f.updates = updates;
        f.shingleFill = shingleFill;
        System.arraycopy(shingle, 0, f.shingle, 0, shingle.length);
        f.poolCount = poolCount;
        System.arraycopy(values, 0, f.values, 0, values.length);
        System.arraycopy(sequence, 0, f.sequence, 0, sequence.length);
        System.arraycopy(weight, 0, f.weight, 0, weight.length);
        f.worst = worst;
        f.count = count;
        System.arraycopy(members, 0, f.members, 0, members.length);
        System.arraycopy(maxKey, 0, f.maxKey, 0, maxKey.length);
        System.arraycopy(maxSlot, 0, f.maxSlot, 0, maxSlot.length);
        if (splitCache != null) {
            System.arraycopy(splitCache, 0, f.splitCache, 0, splitCache.length);
        } else {
            System.arraycopy(wideSplits, 0, f.wideSplits, 0, wideSplits.length);
        }
        System.arraycopy(winKey, 0, f.winKey, 0, winKey.length);
        System.arraycopy(winSlot, 0, f.winSlot, 0, winSlot.length);
        System.arraycopy(winSize, 0, f.winSize, 0, winSize.length);
        System.arraycopy(winBelow, 0, f.winBelow, 0, winBelow.length);
        return f;
    }

    /** Bytes {@link #writeTo} writes now. */
    public int serializedSize() {
        return 4 + 1 + 4 + 4 + 8 + 4 + 4 + 8 + 4 + 8 + 4 + shingleFill * inputDimensions * 8 + 4 + poolCount * 8
                + poolCount * dims * 8;
    }

    /** A rough estimate of the heap this object holds (64-bit JVM, compressed oops). */
    public long approximateHeapBytes() {
        long arrays = 16L * 16 + 16L * shingle.length + 8L * values.length + 8L * sequence.length
                + 8L * weight.length + 2L * members.length + 8L * maxKey.length + 4L * maxSlot.length
                + 16L * memberRoot.length + (splitCache != null ? splitCache.length : 2L * wideSplits.length)
                + 10L * winKey.length + 8L * winSize.length;
        if (removed != null) {
            arrays += 16 + removed.length;
        }
        if (keyScratch != null) {
            arrays += 16 + 8L * keyScratch.length;
        }
        if (scratchIdx != null) {
            arrays += 16L * 3 + 4L * scratchIdx.length + 16L * dims;
        }
        return 120 + arrays;
    }
}
