package clicklab.udf;

import java.io.BufferedReader;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.Locale;

/**
 * Command line of {@link CompactForest}: reads one input per line from stdin (one value, or comma-separated values
 * for {@code --dims > 1}) and prints one score per line ({@link Double#toString}, exact).
 *
 * <pre>
 * java -cp CLASSES clicklab.udf.CompactForestMain [--trees 100] [--sample 256] [--decay 100000] [--shingle 1]
 *      [--dims 1] [--seed 42] [--pool P] [--roundtrip-every K] [--copy-every K] [--general] [--attribution] [--state]
 * java -cp CLASSES clicklab.udf.CompactForestMain --bench N [--keys K] [--trees 100] [--sample 256] [--pool P]
 * </pre>
 *
 * {@code --pool P} sets the pool's capacity (default {@link CompactForest#defaultPool}); {@code --roundtrip-every K} replaces the forest by {@code readFrom(writeTo(forest))} after every K inputs,
 * {@code --copy-every K} by {@code forest.copy()}; {@code --general} scores 1-D forests without the sorted fast
 * path; {@code --attribution} prints, after the score, the attribution's values (tab-separated);
 * {@code --state} prints the final state's bytes as hex on stderr. {@code --bench N} scores N points of noise and
 * prints points per second, serialized bytes, approximate heap and the microseconds of one {@code writeTo} (into a
 * reused buffer) and one {@code readFrom}. {@code --keys K} (with {@code --bench}) spreads the N points over K forests
 * in turn, as the keyed function meets them with K sites interleaved (each forest cold in the CPU cache, and at
 * {@code N / K} points per forest, before the pool is full, most points change every tree's sample): points per
 * second only, no warm-up (the time of a key's first points is what it measures).
 */
public final class CompactForestMain {

    private CompactForestMain() {
    }

    public static void main(String[] args) throws IOException {
        int trees = 100;
        int sample = 256;
        double decay = 100000;
        int shingle = 1;
        int dims = 1;
        long seed = 42;
        int pool = 0;
        int roundtripEvery = 0;
        int copyEvery = 0;
        boolean general = false;
        boolean attribution = false;
        boolean state = false;
        long bench = 0;
        int keys = 0;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            switch (a) {
                case "--trees": trees = Integer.parseInt(args[++i]); break;
                case "--sample": sample = Integer.parseInt(args[++i]); break;
                case "--decay": decay = Double.parseDouble(args[++i]); break;
                case "--shingle": shingle = Integer.parseInt(args[++i]); break;
                case "--dims": dims = Integer.parseInt(args[++i]); break;
                case "--seed": seed = Long.parseLong(args[++i]); break;
                case "--pool": pool = Integer.parseInt(args[++i]); break;
                case "--roundtrip-every": roundtripEvery = Integer.parseInt(args[++i]); break;
                case "--copy-every": copyEvery = Integer.parseInt(args[++i]); break;
                case "--general": general = true; break;
                case "--attribution": attribution = true; break;
                case "--state": state = true; break;
                case "--bench": bench = Long.parseLong(args[++i]); break;
                case "--keys": keys = Integer.parseInt(args[++i]); break;
                default:
                    System.err.println("unknown argument " + a);
                    System.exit(2);
            }
        }
        CompactForest forest;
        try {
            forest = new CompactForest(trees, sample, decay, shingle, dims, seed,
                    pool > 0 ? pool : CompactForest.defaultPool(sample));
        } catch (IllegalArgumentException e) {
            System.err.println(e.getMessage());
            System.exit(2);
            return;
        }
        if (bench > 0 && keys > 0) {
            benchKeys(trees, sample, decay, shingle, dims, seed, pool > 0 ? pool : CompactForest.defaultPool(sample),
                    keys, bench);
            return;
        }
        if (bench > 0) {
            bench(forest, bench);
            return;
        }
        forest.setForceGeneral(general);
        PrintStream out = new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), false, "UTF-8");
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        StringBuilder line = new StringBuilder();
        long n = 0;
        for (String text = in.readLine(); text != null; text = in.readLine()) {
            text = text.trim();
            if (text.isEmpty()) {
                continue;
            }
            String[] parts = text.split(",");
            double[] input = new double[parts.length];
            for (int k = 0; k < parts.length; k++) {
                input[k] = Double.parseDouble(parts[k].trim());
            }
            line.setLength(0);
            double[] attr = attribution ? forest.attribution(input) : null;
            line.append(forest.scoreThenUpdate(input));
            if (attr != null) {
                for (double v : attr) {
                    line.append('\t').append(v);
                }
            }
            out.println(line);
            n++;
            if (roundtripEvery > 0 && n % roundtripEvery == 0) {
                forest = roundTrip(forest);
                forest.setForceGeneral(general);
            }
            if (copyEvery > 0 && n % copyEvery == 0) {
                forest = forest.copy();
                forest.setForceGeneral(general);
            }
        }
        out.flush();
        if (state) {
            System.err.println(hex(bytes(forest)));
        }
    }

    /** The forest's state bytes; {@link CompactForest#toBytes} checked against {@link CompactForest#writeTo}. */
    static byte[] bytes(CompactForest forest) throws IOException {
        ByteArrayOutputStream buffer = new ByteArrayOutputStream();
        try (DataOutputStream data = new DataOutputStream(buffer)) {
            forest.writeTo(data);
        }
        byte[] streamed = buffer.toByteArray();
        if (!java.util.Arrays.equals(streamed, forest.toBytes()) || streamed.length != forest.serializedSize()) {
            throw new IllegalStateException("CompactForest.toBytes differs from writeTo");
        }
        return streamed;
    }

    static CompactForest roundTrip(CompactForest forest) throws IOException {
        try (DataInputStream data = new DataInputStream(new ByteArrayInputStream(bytes(forest)))) {
            return CompactForest.readFrom(data);
        }
    }

    private static String hex(byte[] b) {
        StringBuilder s = new StringBuilder(b.length * 2);
        for (byte x : b) {
            s.append(Character.forDigit((x >> 4) & 0xF, 16)).append(Character.forDigit(x & 0xF, 16));
        }
        return s.toString();
    }

    /** {@code n} points of noise over {@code keys} forests in turn (see the class comment). */
    private static void benchKeys(int trees, int sample, double decay, int shingle, int dims, long seed, int pool,
                                  int keys, long n) {
        CompactForest[] forests = new CompactForest[keys];
        for (int k = 0; k < keys; k++) {
            forests[k] = new CompactForest(trees, sample, decay, shingle, dims, seed + k, pool);
        }
        long state = 12345;
        double[] input = new double[dims];
        double checksum = 0;
        long start = System.nanoTime();
        for (long i = 0; i < n; i++) {
            for (int k = 0; k < input.length; k++) {
                double s = 0;
                for (int r = 0; r < 4; r++) {
                    state = CompactForest.mix64(state + 0x9E3779B97F4A7C15L);
                    s += CompactForest.unit(state);
                }
                input[k] = 10 + (s - 2);
            }
            checksum += forests[(int) (i % keys)].scoreThenUpdate(input);
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        System.out.println(String.format(Locale.ROOT,
                "trees=%d sample=%d pool=%d keys=%d points=%d points_per_key=%d seconds=%.3f points_per_second=%.0f "
                        + "checksum=%.6f", trees, sample, pool, keys, n, n / keys, seconds, n / seconds, checksum));
    }

    /** Gaussian-ish noise around 10 (sum of uniforms), deterministic. */
    private static void bench(CompactForest forest, long n) throws IOException {
        long state = 12345;
        double[] input = new double[forest.inputDimensions()];
        double checksum = 0;
        long warm = Math.min(n / 5, 20000);
        long start = 0;
        for (long i = 0; i < n + warm; i++) {
            if (i == warm) {
                start = System.nanoTime();
            }
            for (int k = 0; k < input.length; k++) {
                double s = 0;
                for (int r = 0; r < 4; r++) {
                    state = CompactForest.mix64(state + 0x9E3779B97F4A7C15L);
                    s += CompactForest.unit(state);
                }
                input[k] = 10 + (s - 2);
            }
            checksum += forest.scoreThenUpdate(input);
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        byte[] b = bytes(forest);
        // writeTo into a reused buffer (as the keyed function does) and readFrom: the best of 5 batches, per call
        ByteArrayOutputStream buffer = new ByteArrayOutputStream(b.length);
        DataOutputStream data = new DataOutputStream(buffer);
        double writeUs = Double.MAX_VALUE;
        double readUs = Double.MAX_VALUE;
        for (int batch = 0; batch < 5; batch++) {
            long t0 = System.nanoTime();
            for (int i = 0; i < 1000; i++) {
                buffer.reset();
                forest.writeTo(data);
            }
            long t1 = System.nanoTime();
            for (int i = 0; i < 20; i++) {
                checksum += CompactForest.readFrom(new DataInputStream(new ByteArrayInputStream(b))).updates();
            }
            long t2 = System.nanoTime();
            writeUs = Math.min(writeUs, (t1 - t0) / 1e3 / 1000);
            readUs = Math.min(readUs, (t2 - t1) / 1e3 / 20);
        }
        System.out.println(String.format(Locale.ROOT,
                "trees=%d sample=%d pool=%d dims=%d shingle=%d points=%d seconds=%.3f points_per_second=%.0f "
                        + "serialized_bytes=%d approx_heap_bytes=%d write_us=%.1f read_us=%.1f",
                forest.numberOfTrees(), forest.sampleSize(), forest.poolSize(), forest.inputDimensions(), forest.shingleSize(), n,
                seconds, n / seconds, b.length, forest.approximateHeapBytes(), writeUs, readUs));
    }
}
