"""Fixtures for running real Kafka clients against the real tidelog binary.

Each test gets its own broker: `tidelog serve --listen 127.0.0.1:0 --data-dir <tmp>`, ready
when it prints `listening on 127.0.0.1:PORT`. The binary comes from $TIDELOG_BIN (scripts/test.sh
sets it to target/debug/tidelog).
"""

import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 30
REPO = pathlib.Path(__file__).resolve().parents[2]


def tidelog_bin():
    path = os.environ.get("TIDELOG_BIN") or str(REPO / "target" / "debug" / "tidelog")
    if not os.access(path, os.X_OK):
        pytest.exit(f"tidelog binary not found at {path}: build it and set TIDELOG_BIN", returncode=2)
    return path


class Broker:
    """One tidelog broker process; restarts keep its data dir and port."""

    def __init__(self, data_dir, shards=None, sets=()):
        self.data_dir = str(data_dir)
        self.shards = shards
        self.sets = list(sets)
        self.proc = None
        self.port = 0
        self.output = []  # every line the broker printed, for failure reports
        self._start()

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def _start(self):
        cmd = [tidelog_bin(), "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir]
        if self.shards:
            cmd += ["--shards", str(self.shards)]
        for kv in self.sets:
            cmd += ["--set", kv]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        ready = threading.Event()
        addr = []

        def pump(stream, watch):
            for line in stream:
                self.output.append(line.rstrip("\n"))
                if watch and not addr and line.startswith("listening on "):
                    addr.append(line[len("listening on "):].strip())
                    ready.set()
            if watch:
                ready.set()  # EOF: the broker exited

        threading.Thread(target=pump, args=(self.proc.stdout, True), daemon=True).start()
        threading.Thread(target=pump, args=(self.proc.stderr, False), daemon=True).start()
        if not ready.wait(START_TIMEOUT_S) or not addr:
            self.proc.kill()
            self.proc.wait()
            log = "\n".join(self.output[-50:])
            raise RuntimeError(f"broker {cmd} did not start (exit {self.proc.returncode}):\n{log}")
        self.port = int(addr[0].rsplit(":", 1)[1])

    def stop(self):
        """SIGTERM and wait: a clean shutdown."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"broker did not exit within {STOP_TIMEOUT_S}s of SIGTERM")

    def kill(self):
        """SIGKILL: a crash."""
        self.proc.kill()
        self.proc.wait()

    def restart(self):
        code = self.stop()
        assert code == 0, f"broker exited with {code} on SIGTERM"
        self._start()

    def cli(self, *args, input=b""):
        """Runs a `tidelog` client command against this broker."""
        cmd = [tidelog_bin(), *args, "--bootstrap-server", self.bootstrap]
        return subprocess.run(cmd, input=input, capture_output=True, timeout=60, check=True)

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def broker(tmp_path, request):
    b = Broker(tmp_path / "data")
    yield b
    b.close()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        sys.stderr.write("---- broker output ----\n" + "\n".join(b.output[-200:]) + "\n")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def topic():
    """A fresh topic name."""
    return f"t-{uuid.uuid4().hex[:10]}"


def wait_for(predicate, timeout_s=10.0, interval_s=0.1):
    """Polls `predicate` until it returns something truthy, which is returned."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval_s)
