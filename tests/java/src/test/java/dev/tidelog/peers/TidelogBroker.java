package dev.tidelog.peers;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * The real tidelog binary, started the way a user starts it:
 * {@code tidelog serve --listen 127.0.0.1:PORT --data-dir DIR}. It is ready when it prints exactly
 * one stdout line, {@code listening on 127.0.0.1:PORT}. A restart keeps the data directory and the
 * port, so clients that already know the address reconnect to the same broker.
 *
 * <p>The binary comes from the {@code tidelog.bin} system property (pom.xml passes it through) or the
 * {@code TIDELOG_BIN} environment variable.
 */
final class TidelogBroker implements AutoCloseable {
    private static final long START_TIMEOUT_S = 30;
    private static final long STOP_TIMEOUT_S = 30;

    private final Path dataDir;
    private final List<String> extraArgs;
    private final Path logFile;
    private Process process;
    private int port;

    private TidelogBroker(Path dataDir, List<String> extraArgs) {
        this.dataDir = dataDir;
        this.extraArgs = extraArgs;
        this.logFile = dataDir.resolveSibling(dataDir.getFileName() + ".log");
    }

    static TidelogBroker start(String... extraArgs) throws IOException {
        TidelogBroker broker =
                new TidelogBroker(Files.createTempDirectory("tidelog-java-"), List.of(extraArgs));
        broker.spawn();
        return broker;
    }

    static String binary() {
        String bin = System.getProperty("tidelog.bin");
        if (bin == null || bin.isEmpty()) {
            bin = System.getenv("TIDELOG_BIN");
        }
        if (bin == null || !Files.isExecutable(Path.of(bin))) {
            throw new IllegalStateException(
                    "tidelog binary not found at " + bin + ": build it and pass -Dtidelog.bin=PATH");
        }
        return bin;
    }

    String bootstrap() {
        return "127.0.0.1:" + port;
    }

    /** The broker's output so far, for assertion messages. */
    String lastOutput() {
        try {
            List<String> lines = Files.readAllLines(logFile, StandardCharsets.UTF_8);
            return "(" + logFile + ")\n" + String.join("\n", lines.subList(Math.max(0, lines.size() - 40), lines.size()));
        } catch (IOException e) {
            return "(no output: " + e + ")";
        }
    }

    private void spawn() throws IOException {
        List<String> cmd = new ArrayList<>(List.of(binary(), "serve", "--listen", "127.0.0.1:" + port,
                "--data-dir", dataDir.toString()));
        cmd.addAll(extraArgs);
        // The broker's output goes to a file, not a pipe: a pipe that the JVM stops draining
        // (or closes) makes the broker's own writes fail. The file is also the log to read when
        // a flow fails; its path is printed then.
        Files.writeString(logFile, "");
        process = new ProcessBuilder(cmd).redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(logFile.toFile())).start();
        String addr = null;
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(START_TIMEOUT_S);
        long seen = 0;
        // Readiness is one line in a file written by another process; it is checked every 50 ms
        // until it appears, the process exits, or the start timeout passes.
        while (addr == null && process.isAlive() && System.nanoTime() < deadline) {
            for (String line : Files.readAllLines(logFile, StandardCharsets.UTF_8)) {
                if (line.startsWith("listening on ")) {
                    addr = line.substring("listening on ".length()).trim();
                }
            }
            if (addr == null) {
                try {
                    Thread.sleep(50);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    break;
                }
            }
        }
        if (addr == null) {
            process.destroyForcibly();
            throw new IllegalStateException("tidelog did not start: " + cmd + "\n" + lastOutput());
        }
        port = Integer.parseInt(addr.substring(addr.lastIndexOf(':') + 1));
    }

    /** SIGTERM (a clean shutdown), then a start on the same data directory and port. */
    void restart() throws Exception {
        stop();
        spawn();
    }

    /** SIGKILL (a crash), then a start on the same data directory and port. */
    void killAndRestart() throws Exception {
        process.destroyForcibly().waitFor();
        spawn();
    }

    /** SIGTERM and wait; fails the caller if the broker does not exit cleanly. */
    void stop() throws InterruptedException {
        process.destroy();
        if (!process.waitFor(STOP_TIMEOUT_S, TimeUnit.SECONDS)) {
            process.destroyForcibly().waitFor();
            throw new IllegalStateException("tidelog did not exit within " + STOP_TIMEOUT_S + " s of SIGTERM");
        }
        if (process.exitValue() != 0) {
            throw new IllegalStateException(
                    "tidelog exited with " + process.exitValue() + " on SIGTERM\n" + lastOutput());
        }
    }

    @Override
    public void close() throws IOException {
        if (process != null && !process.isAlive() && process.exitValue() != 0) {
            // A broker that died under a test is the finding; its last words go to the report.
            System.err.println("tidelog exited with " + process.exitValue() + " during the test:\n" + lastOutput());
        }
        if (process != null && process.isAlive()) {
            process.destroyForcibly();
            try {
                process.waitFor(STOP_TIMEOUT_S, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        try (Stream<Path> paths = Files.walk(dataDir)) {
            paths.sorted(Collections.reverseOrder()).forEach(p -> p.toFile().delete());
        }
    }
}
