#!/usr/bin/env python3
"""End-to-end test of alknet-agent's Prometheus exporter against a real Prometheus.

Runs the agent with metrics on, drives SSH traffic through it with stock OpenSSH (a forwarded echo
round trip, a failed login, a refused channel, a per-source pre-auth rejection, login grace
timeouts), lets a real Prometheus scrape it, and then:
  * evaluates every PromQL expression of deploy/grafana/alknet.json and asserts each returns data;
  * loads deploy/prometheus/alerts.yaml into that Prometheus and asserts the rules evaluate;
  * lints a raw /metrics scrape with `promtool check metrics`;
  * checks no label value carries a tunnel destination (privacy);
  * scale: 1,000 concurrent channels in one session (times a scrape), then channels to thousands of
    distinct destinations, asserting the number of series stays bounded;
  * SIGTERM: /readyz goes 503 while draining (or refuses once the agent has exited).

Stdlib only. Usage:
  prometheus_scrape_test.py --agent PATH/alknet-agent --repo REPO_ROOT
Prints "SKIP: ..." and exits 77 (skipped in CTest) only when Prometheus/promtool cannot be installed.
"""

import argparse
import concurrent.futures
import json
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import test_ports  # noqa: E402  (tests/support/test_ports.py)

MAX_SERIES = 500
FAILURES = []


def log(message):
    print(message, flush=True)


def check(condition, message):
    """A non-fatal assertion: records the failure and goes on."""
    if condition:
        log("  ok: " + message)
    else:
        log("  FAIL: " + message)
        FAILURES.append(message)
    return condition


class Fatal(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Tools


def ensure_prometheus():
    """Returns (prometheus, promtool) paths, installing Debian's package if needed; None if not possible."""
    def found():
        prom = shutil.which("prometheus") or ("/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None)
        tool = shutil.which("promtool") or ("/usr/bin/promtool" if os.access("/usr/bin/promtool", os.X_OK) else None)
        return (prom, tool) if prom and tool else None

    if found():
        return found()
    if not shutil.which("apt-get"):
        return None
    prefix = []
    if os.geteuid() != 0:
        if not shutil.which("sudo") or subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode != 0:
            return None
        prefix = ["sudo", "-n"]
    log("prometheus/promtool not found: installing Debian package 'prometheus'")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = prefix + ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(prefix + ["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(install, env=env, capture_output=True)
    return found()


def free_port():
    """A port for a program that cannot bind port 0 (ssh -L/-D, prometheus): never one the
    kernel hands out, and never one another concurrent test holds (tests/support/test_ports.py)."""
    return test_ports.pick_free_port()


def listening_ports():
    """TCP ports something listens on (any address)."""
    return test_ports.listening_ports()


def http_get(url, timeout=5.0):
    """(status, body) of a GET; status None when the connection fails."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, ConnectionError, socket.timeout, OSError):
        return None, b""


def wait_for(predicate, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# Echo server: one thread, many connections.


class EchoServer:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4096)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.sock, selectors.EVENT_READ, None)
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        pending = {}  # socket -> bytearray still to send
        while not self.stopping:
            for key, events in self.selector.select(timeout=0.2):
                if key.fileobj is self.sock:
                    try:
                        while True:
                            conn, _ = self.sock.accept()
                            conn.setblocking(False)
                            pending[conn] = bytearray()
                            self.selector.register(conn, selectors.EVENT_READ, None)
                    except (BlockingIOError, OSError):
                        pass
                    continue
                conn = key.fileobj
                buffer = pending[conn]
                try:
                    if events & selectors.EVENT_READ:
                        data = conn.recv(65536)
                        if not data:
                            raise ConnectionResetError
                        buffer += data
                    if buffer:
                        sent = conn.send(buffer)
                        del buffer[:sent]
                except BlockingIOError:
                    pass
                except OSError:
                    self.selector.unregister(conn)
                    conn.close()
                    del pending[conn]
                    continue
                self.selector.modify(conn, selectors.EVENT_READ | (selectors.EVENT_WRITE if buffer else 0), None)
        for conn in list(pending):
            conn.close()

    def close(self):
        self.stopping = True
        self.thread.join(timeout=5)
        self.sock.close()


# ---------------------------------------------------------------------------------------------
# Prometheus text format


LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_samples(text):
    """[(name, {label: value}, value_string)] of every sample line."""
    samples = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            name, rest = line.split("{", 1)
            labels_text, value = rest.rsplit("}", 1)
            labels = {k: v.encode().decode("unicode_escape") for k, v in LABEL_RE.findall(labels_text)}
        else:
            name, value = line.split(None, 1)
            labels = {}
        samples.append((name.strip(), labels, value.split()[0]))
    return samples


def sample_value(samples, name, **labels):
    total = None
    for n, l, v in samples:
        if n == name and all(l.get(k) == want for k, want in labels.items()):
            total = (total or 0.0) + float(v)
    return total


# ---------------------------------------------------------------------------------------------
# The test


class Harness:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="alknet-prom-test-")
        self.processes = []  # Popen objects we started, killed at the end
        self.agent = None
        self.agent_log = None  # name of the agent's log of the last start attempt
        self.echo = None
        self.env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "SSH_AGENT_PID", "DISPLAY")}

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def spawn(self, argv, name, **kwargs):
        out = open(self.path(name + ".out"), "wb")
        err = open(self.path(name + ".err"), "wb")
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                   start_new_session=True, env=self.env, **kwargs)
        out.close()
        err.close()
        process.log_name = name
        self.processes.append(process)
        return process

    def read_log(self, name, which="err"):
        try:
            with open(self.path("%s.%s" % (name, which)), "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def cleanup(self):
        for process in reversed(self.processes):
            if process.poll() is None:
                try:
                    process.kill()
                except OSError:
                    pass
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        if self.echo:
            self.echo.close()
        if self.args.keep:
            log("kept temp dir " + self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # --- ssh ---------------------------------------------------------------------------------

    def ssh_args(self, key, extra):
        return ["ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
                "-o", "ConnectTimeout=10", "-i", key, "-p", str(self.ssh_port)] + extra + ["tester@127.0.0.1"]

    def ssh_run(self, key, extra, payload=b"", timeout=30):
        return subprocess.run(self.ssh_args(key, extra), input=payload, capture_output=True, timeout=timeout,
                              env=self.env, start_new_session=True)

    # --- agent -------------------------------------------------------------------------------

    def make_key(self, name):
        path = self.path(name)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path], check=True,
                       capture_output=True)
        line = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", path + ".pub"], check=True,
                              capture_output=True, text=True).stdout
        return path, line.split()[1]

    def start_agent(self):
        self.key, fingerprint = self.make_key("alice_key")
        self.bad_key, _ = self.make_key("stranger_key")
        with open(self.key + ".pub") as f, open(self.path("authorized_keys"), "w") as out:
            out.write(f.read())
        # metrics.key_labels: the agent's schema takes a list of LABEL=FINGERPRINT; an older draft
        # took a fingerprint -> label map. Try the list first.
        # The agent is also its own upstream (client role into its own SSH listener), so the
        # dashboard's upstream panels have real series to show (no "or vector(0)" needed).
        ssh_port = test_ports.pick_free_port()
        upstream = ("upstreams:\n  - name: self\n    server: tcp://127.0.0.1:%d\n    identity: %s\n"
                    "    insecure_accept_any_host_key: true\n" % (ssh_port, self.key))
        variants = [
            upstream + "metrics:\n  listen: 127.0.0.1:0\n  key_labels:\n    - \"alice=%s\"\n" % fingerprint,
            upstream + "metrics:\n  listen: 127.0.0.1:0\n  key_labels:\n    \"%s\": alice\n" % fingerprint,
        ]
        argv_tail = ["--state-dir", self.path("state"), "--listen", "tcp://127.0.0.1:%d" % ssh_port,
                     "--authorized-keys", self.path("authorized_keys"), "--login-grace-time", "1s",
                     "--per-source-max-startups", "2", "--max-channels-per-session", "2000", "--workers", "2",
                     "--forwarding-allow-loopback", "true",  # loopback echo server (ADR 0014)
                     "--penalties", "false"]  # it fails logins from 127.0.0.1 on purpose
        engine_re = re.compile(r"engine: listening address=tcp://127\.0\.0\.1:(\d+)")
        metrics_re = re.compile(r"metrics: listening address=http://([0-9.]+):(\d+)")
        last_log = ""
        for attempt, config in enumerate(variants):
            config_path = self.path("agent-%d.yaml" % attempt)
            with open(config_path, "w") as f:
                f.write(config)
            name = "agent-%d" % attempt
            self.agent_log = name
            process = self.spawn([self.args.agent, "--config", config_path] + argv_tail, name)

            def started():
                text = self.read_log(name)
                if engine_re.search(text) and metrics_re.search(text):
                    return True
                return process.poll() is not None

            wait_for(started, 20)
            text = self.read_log(name)
            last_log = text
            if process.poll() is not None:
                if "key_labels" in text and attempt + 1 < len(variants):
                    log("agent refused key_labels form %d; trying the next one" % attempt)
                    continue
                raise Fatal("agent exited with %s before listening:\n%s" % (process.returncode, text))
            engine = engine_re.search(text)
            metrics = metrics_re.search(text)
            if not engine:
                raise Fatal("agent never logged 'engine: listening address=tcp://127.0.0.1:PORT':\n" + text)
            if not metrics:
                raise Fatal("agent never logged 'metrics: listening address=http://HOST:PORT' "
                            "(is the exporter in this build?):\n" + text)
            self.agent = process
            self.ssh_port = int(engine.group(1))
            self.metrics_base = "http://%s:%s" % (metrics.group(1), metrics.group(2))
            self.metrics_addr = "%s:%s" % (metrics.group(1), metrics.group(2))
            log("agent pid %d: ssh on 127.0.0.1:%d, metrics on %s (config form %d)"
                % (process.pid, self.ssh_port, self.metrics_base, attempt))
            return
        raise Fatal("agent did not start:\n" + last_log)

    def scrape(self):
        status, body = http_get(self.metrics_base + "/metrics", timeout=10)
        if status != 200:
            raise Fatal("GET /metrics returned %s" % status)
        return body.decode()

    # --- prometheus ----------------------------------------------------------------------------

    def start_prometheus(self, prometheus_bin):
        self.prom_port = free_port()
        self.prom_base = "http://127.0.0.1:%d" % self.prom_port
        config = self.path("prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "rule_files:\n  - %s\n"
                    "scrape_configs:\n"
                    "  - job_name: alknet\n    scrape_interval: 1s\n    scrape_timeout: 1s\n"
                    "    static_configs:\n      - targets: ['%s']\n"
                    % (json.dumps(os.path.join(self.args.repo, "deploy/prometheus/alerts.yaml")), self.metrics_addr))
        self.prometheus = self.spawn(
            [prometheus_bin, "--config.file=" + config, "--storage.tsdb.path=" + self.path("tsdb"),
             "--web.listen-address=127.0.0.1:%d" % self.prom_port, "--log.level=warn"], "prometheus")
        log("prometheus pid %d on %s" % (self.prometheus.pid, self.prom_base))

        def scraped():
            if self.prometheus.poll() is not None:
                raise Fatal("prometheus exited:\n" + self.read_log("prometheus"))
            if not test_ports.listens_on(self.prometheus.pid, self.prom_port):
                return False  # not up yet (or the port is another program's: never ask it)
            try:
                result = self.query('up{job="alknet"}')
            except Fatal:
                return False
            return any(r["value"][1] == "1" for r in result)

        if not wait_for(scraped, 60, 0.5):
            raise Fatal("prometheus never scraped the agent (up{job=\"alknet\"} != 1):\n"
                        + self.read_log("prometheus") + json.dumps(self.api("/api/v1/targets")))
        log("prometheus scrapes the agent: up{job=\"alknet\"} == 1")

    def api(self, path, params=None):
        url = self.prom_base + path + ("?" + urllib.parse.urlencode(params, doseq=True) if params else "")
        status, body = http_get(url, timeout=10)
        if status is None:
            raise Fatal("prometheus API %s: no connection" % path)
        try:
            data = json.loads(body)
        except ValueError:
            raise Fatal("prometheus API %s: HTTP %s, not JSON: %r" % (path, status, body[:200]))
        if data.get("status") != "success":
            raise Fatal("prometheus API %s %s: %s" % (path, params, data.get("error", data)))
        return data["data"]

    def query(self, expr):
        return self.api("/api/v1/query", {"query": expr})["result"]


# ---------------------------------------------------------------------------------------------
# Steps


def dashboard_expressions(repo):
    with open(os.path.join(repo, "deploy/grafana/alknet.json")) as f:
        dashboard = json.load(f)
    variables = dashboard.get("templating", {}).get("list", [])
    subst = {"__rate_interval": "1m", "__interval": "1m", "__range": "1m"}
    for v in variables:
        if v.get("type") in ("query", "custom"):
            subst[v["name"]] = v.get("allValue") or ".+"

    def substitute(expr):
        return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", lambda m: subst.get(m.group(1) or m.group(2), "1m"), expr)

    def walk(panels):
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels", []))

    exprs = []
    for panel in walk(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                exprs.append((panel.get("title", "?"), substitute(target["expr"])))
    return exprs, variables


def drive_traffic(h):
    log("\n== traffic")
    # 1. A forwarded round trip with the labelled key.
    payload = b"hello through alknet\n" * 64
    result = h.ssh_run(h.key, ["-W", "127.0.0.1:%d" % h.echo.port], payload)
    check(result.returncode == 0 and result.stdout == payload,
          "ssh -W echo round trip with the good key (rc=%d, %d bytes back) %s"
          % (result.returncode, len(result.stdout), result.stderr.decode(errors="replace").strip()))
    # The workers' byte tallies are folded in at scrape time (issue 17): the round trip's bytes
    # are counted exactly, per transport and for the labelled key.
    seen = {}

    def bytes_counted():
        samples = parse_samples(h.scrape())
        for family, labels in (("alknet_forwarded_bytes_total", {"transport": "tcp"}),
                               ("alknet_key_forwarded_bytes_total", {"key": "alice"})):
            for direction in ("upstream", "downstream"):
                seen[family, direction] = sample_value(samples, family, direction=direction, **labels)
        return all(v == len(payload) for v in seen.values())
    check(wait_for(bytes_counted, 5), "forwarded bytes counted exactly, %d each way, per transport "
          "and for the labelled key: %s" % (len(payload), seen))
    # 2. A failed login with a key the agent does not know.
    result = h.ssh_run(h.bad_key, ["-W", "127.0.0.1:%d" % h.echo.port], b"x")
    check(result.returncode != 0, "login with an unknown key fails (rc=%d)" % result.returncode)
    # 3. A channel the agent cannot connect: a closed port.
    closed = free_port()
    result = h.ssh_run(h.key, ["-W", "127.0.0.1:%d" % closed], b"x")
    check(result.returncode != 0, "ssh -W to a closed port is refused (rc=%d)" % result.returncode)
    # 4. Pre-auth: two idle connections from 127.0.0.1 hold the per-source cap (2); the third is
    #    turned away before any SSH byte. The two then hit the 1s login grace time.
    held = []
    for _ in range(2):
        s = socket.create_connection(("127.0.0.1", h.ssh_port), timeout=10)
        banner = s.recv(256)
        check(banner.startswith(b"SSH-2.0-"), "idle pre-auth connection got the banner %r" % banner[:40])
        held.append(s)
    third = socket.create_connection(("127.0.0.1", h.ssh_port), timeout=10)
    try:
        data = third.recv(256)
    except (ConnectionResetError, socket.timeout):
        data = b""
    check(data == b"", "third connection from the same source is closed without a banner (got %r)" % data[:40])
    third.close()
    for s in held:
        start = time.monotonic()
        try:
            while s.recv(4096):
                pass
        except (ConnectionResetError, socket.timeout):
            pass
        check(time.monotonic() - start < 10, "idle connection dropped by the login grace time")
        s.close()
    agent_log = wait_for(lambda: "login-grace-timeout" in h.read_log(h.agent_log) and h.read_log(h.agent_log), 5)
    check(bool(agent_log), "agent logged a login-grace-timeout")


def check_dashboard(h):
    log("\n== dashboard expressions against Prometheus")
    exprs, variables = dashboard_expressions(h.args.repo)
    check(len(exprs) > 0, "dashboard has %d expressions" % len(exprs))
    for title, expr in exprs:
        try:
            result = h.query(expr)
        except Fatal as e:
            check(False, "[%s] %s: %s" % (title, expr, e))
            continue
        values = sorted({r["value"][1] for r in result})
        shown = ", ".join(values[:4]) + (" ..." if len(values) > 4 else "")
        check(len(result) > 0, "%3d series  [%s] %s  (values: %s)" % (len(result), title, expr, shown))
    # The query variables' label_values(metric, label) must find values too.
    for v in variables:
        if v.get("type") != "query":
            continue
        m = re.match(r"label_values\((.*),\s*(\w+)\)\s*$", v.get("definition", ""))
        if not m:
            continue
        selector = re.sub(r"\$(\w+)", lambda x: ".+", m.group(1))
        values = h.api("/api/v1/label/%s/values" % m.group(2), {"match[]": selector})
        check(len(values) > 0, "variable $%s: label_values(%s, %s) = %s" % (v["name"], selector, m.group(2), values))


def check_alert_rules(h):
    log("\n== alert rules loaded in Prometheus")
    def evaluated():
        rules = [r for g in h.api("/api/v1/rules")["groups"] for r in g["rules"]]
        return rules if rules and all(not r.get("lastEvaluation", "0001").startswith("0001") for r in rules) else None

    rules = wait_for(evaluated, 15, 0.5) or [r for g in h.api("/api/v1/rules")["groups"] for r in g["rules"]]
    check(len(rules) >= 4, "%d alert rules loaded from deploy/prometheus/alerts.yaml" % len(rules))
    for r in rules:
        check(r.get("health") == "ok", "rule %s health=%s %s" % (r["name"], r.get("health"), r.get("lastError", "")))
    firing = [a for r in rules for a in r.get("alerts", []) if a["labels"].get("alertname") == "AlknetNoReadyListener"]
    check(not firing, "AlknetNoReadyListener is not pending/firing while the agent listens")


def check_metrics_text(h, promtool, text, forbidden_ports, label):
    log("\n== /metrics lint and privacy (%s)" % label)
    lint = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    report = (lint.stdout + lint.stderr).decode(errors="replace").strip()
    check(lint.returncode == 0 and not report,
          "promtool check metrics reports no problems (rc=%d)%s" % (lint.returncode, ("\n" + report) if report else ""))
    samples = parse_samples(text)
    leaks = []
    for name, labels, _ in samples:
        for key, value in labels.items():
            if key == "listener":
                continue
            if "127.0.0.1:" in value or re.search(r"(^|[^0-9])(%s)([^0-9]|$)" % "|".join(map(str, forbidden_ports)), value):
                leaks.append("%s{%s=%r}" % (name, key, value))
    check(not leaks, "no label value names a tunnel destination%s" % (": " + ", ".join(leaks[:10]) if leaks else ""))
    return samples


def scale_checks(h):
    log("\n== scale: one session, %d concurrent channels" % h.args.channels)
    lport, dport = free_port(), free_port()
    session = h.spawn(h.ssh_args(h.key, ["-N", "-o", "ExitOnForwardFailure=yes",
                                         "-L", "127.0.0.1:%d:127.0.0.1:%d" % (lport, h.echo.port),
                                         "-D", "127.0.0.1:%d" % dport]), "ssh-scale")

    def forwarding():
        if session.poll() is not None:
            raise Fatal("ssh -L/-D session exited: " + h.read_log("ssh-scale"))
        # ssh itself must hold both: another program on the port would take our traffic.
        return test_ports.listens_on(session.pid, lport) and test_ports.listens_on(session.pid, dport)

    if not wait_for(forwarding, 30):
        raise Fatal("ssh -L/-D session did not start forwarding: " + h.read_log("ssh-scale"))
    h.scale_session = session

    sockets = []
    batch = 100
    started = time.monotonic()
    try:
        while len(sockets) < h.args.channels:
            fresh = []
            for i in range(min(batch, h.args.channels - len(sockets))):
                s = socket.create_connection(("127.0.0.1", lport), timeout=30)
                s.sendall(b"ch%05d\n" % (len(sockets) + i))
                fresh.append(s)
            for i, s in enumerate(fresh):
                want = b"ch%05d\n" % (len(sockets) + i)
                got = b""
                while len(got) < len(want):
                    chunk = s.recv(len(want) - len(got))
                    if not chunk:
                        break
                    got += chunk
                if got != want:
                    raise Fatal("channel %d did not echo (%r)" % (len(sockets) + i, got))
            sockets.extend(fresh)
        log("  %d channels open and echoing after %.1fs" % (len(sockets), time.monotonic() - started))
        samples = parse_samples(h.scrape())
        active = sample_value(samples, "alknet_channels_active", kind="direct_tcpip") or 0
        check(active >= h.args.channels, "alknet_channels_active{kind=\"direct_tcpip\"} = %d with %d open"
              % (active, h.args.channels))
        timings = []
        for _ in range(5):
            t0 = time.monotonic()
            text = h.scrape()
            timings.append((time.monotonic() - t0) * 1000)
        timings.sort()
        log("  RESULT scrape of /metrics at %d channels: min %.2f ms, median %.2f ms, max %.2f ms (%d bytes)"
            % (h.args.channels, timings[0], timings[2], timings[-1], len(text)))
        h.scrape_ms = timings[2]
    finally:
        for s in sockets:
            s.close()

    log("\n== scale: channels to many distinct destinations (closed ports)")
    before = parse_samples(h.scrape())
    failed_before = sample_value(before, "alknet_channels_opened_total", kind="direct_tcpip", result="connect_failed") or 0
    busy = listening_ports() | {h.ssh_port, h.echo.port, h.prom_port, lport, dport}
    candidates = [p for p in range(10000, 65536) if p not in busy]
    target, minimum, budget = h.args.destinations, min(2000, h.args.destinations), 60.0

    def socks_connect(port):
        # SOCKS5 through ssh -D: one direct-tcpip channel to 127.0.0.1:port. OpenSSH closes the
        # connection without a reply when the channel open fails, and answers REP=0 when it
        # opens: then something listened there after all (another test running in parallel got
        # the port after the snapshot above), and the agent rightly counts no failure for it.
        # Returns "refused", "open", or None when the SOCKS handshake itself failed.
        with socket.create_connection(("127.0.0.1", dport), timeout=20) as s:
            s.sendall(b"\x05\x01\x00")
            if s.recv(2) != b"\x05\x00":
                return None
            s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + port.to_bytes(2, "big"))
            try:
                reply = s.recv(4096)
            except (ConnectionResetError, socket.timeout):
                reply = b""
            return "open" if reply[:2] == b"\x05\x00" else "refused"

    started = time.monotonic()
    used = refused = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        index = 0
        while index < min(target, len(candidates)):
            elapsed = time.monotonic() - started
            if elapsed > budget and used >= minimum:
                break
            chunk = candidates[index:index + 500]
            chunk = chunk[:target - index]
            results = list(pool.map(socks_connect, chunk))
            used += sum(1 for r in results if r)
            refused += sum(1 for r in results if r == "refused")
            index += len(chunk)
    elapsed = time.monotonic() - started
    log("  %d distinct destinations (127.0.0.1:%d..%d) in %.1fs, %d of them refused (the rest were "
        "listening by the time: other tests' ports)" % (used, candidates[0], candidates[index - 1], elapsed, refused))
    h.destinations_used = used
    check(used >= minimum, "used at least %d distinct destinations (%d)" % (minimum, used))
    # A few may have been taken meanwhile; many open ones would mean channels confirmed unconnected.
    check(used - refused <= 50, "at most 50 destinations answered as open (%d)" % (used - refused))

    def counted():
        samples = parse_samples(h.scrape())
        failed = sample_value(samples, "alknet_channels_opened_total", kind="direct_tcpip", result="connect_failed") or 0
        return (failed - failed_before >= refused) and samples

    wait_for(counted, 10, 0.5)
    text = h.scrape()
    samples = parse_samples(text)
    failed = sample_value(samples, "alknet_channels_opened_total", kind="direct_tcpip", result="connect_failed") or 0
    check(failed - failed_before >= refused, "channels_opened_total{result=\"connect_failed\"} grew by %d for %d refused "
          "destinations" % (failed - failed_before, refused))
    log("  RESULT series in /metrics after %d distinct destinations: %d (limit %d)" % (used, len(samples), MAX_SERIES))
    h.series_after = len(samples)
    check(len(samples) < MAX_SERIES, "series count %d stays below %d" % (len(samples), MAX_SERIES))
    return text, candidates[:index]


def shutdown_checks(h):
    log("\n== SIGTERM: /readyz while draining an open channel")
    status, _ = http_get(h.metrics_base + "/readyz")
    check(status == 200, "/readyz is 200 before SIGTERM (%s)" % status)
    # An open channel keeps the agent draining (up to limits.shutdown_grace, 10 s) instead of
    # exiting at once, so the drain itself must be visible as 503, not only a refusal after exit.
    held = subprocess.Popen(h.ssh_args(h.key, ["-W", "127.0.0.1:%d" % h.echo.port]), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=h.env, start_new_session=True)
    h.processes.append(held)
    held.stdin.write(b"ping\n")
    held.stdin.flush()
    check(held.stdout.readline() == b"ping\n", "a channel is open through the agent before SIGTERM")
    sigterm_at = time.monotonic()
    h.agent.send_signal(signal.SIGTERM)
    seen = []  # (seconds after SIGTERM, status or None for no connection), on every change
    while time.monotonic() < sigterm_at + 30:
        status, _ = http_get(h.metrics_base + "/readyz", timeout=2)
        if not seen or seen[-1][1] != status:
            seen.append((time.monotonic() - sigterm_at, status))
        if status == 503 and held.stdin and not held.stdin.closed:
            held.stdin.close()  # drain observed: let the channel end so the agent can exit
        if status is None and h.agent.poll() is not None:
            break
        time.sleep(0.1)
    log("  /readyz after SIGTERM: %s" % ", ".join(
        "%s at +%.1fs" % ("refused" if s is None else s, t) for t, s in seen))
    not_ready = [(t, s) for t, s in seen if s != 200]
    check(bool(not_ready) and not_ready[0][0] < 5, "/readyz stops answering 200 within 5s of SIGTERM")
    check(bool(not_ready) and not_ready[0][1] == 503,
          "/readyz answers 503 while the agent drains an open channel (first answer after SIGTERM: %s)"
          % (not_ready[0][1] if not_ready else "always 200"))
    if not_ready:
        after = [s for t, s in seen if t >= not_ready[0][0]]
        check(all(s in (503, None) for s in after), "/readyz never answers 200 again after SIGTERM")
    try:
        code = h.agent.wait(timeout=30)
        check(code == 0, "agent exited after draining (exit code %s)" % code)
    except subprocess.TimeoutExpired:
        check(False, "agent exited within 30s of SIGTERM")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", required=True, help="path of the alknet-agent binary")
    parser.add_argument("--repo", required=True, help="source root (reads deploy/)")
    parser.add_argument("--channels", type=int, default=1000, help="concurrent channels for the scrape timing")
    parser.add_argument("--destinations", type=int, default=10000, help="distinct destinations for the series bound")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs) for debugging")
    args = parser.parse_args()
    args.repo = os.path.abspath(args.repo)

    for tool in ("ssh", "ssh-keygen"):
        if not shutil.which(tool):
            log("FAIL: %s is not installed (Debian package openssh-client)" % tool)
            return 1
    tools = ensure_prometheus()
    if not tools:
        log("SKIP: prometheus/promtool are not installed and could not be installed "
            "(apt-get install prometheus failed or is not permitted)")
        return 77  # CTest reports it as skipped (SKIP_RETURN_CODE), not passed
    prometheus_bin, promtool = tools
    log(subprocess.run([prometheus_bin, "--version"], capture_output=True, text=True).stdout.splitlines()[0])

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    log("RLIMIT_NOFILE %d (was %d)" % (resource.getrlimit(resource.RLIMIT_NOFILE)[0], soft))

    h = Harness(args)
    try:
        h.echo = EchoServer()
        h.start_agent()
        log("\n== health endpoints")
        ready = wait_for(lambda: http_get(h.metrics_base + "/readyz")[0] == 200, 10)
        check(ready, "/readyz returns 200 once the agent listens")
        status, _ = http_get(h.metrics_base + "/healthz")
        check(status == 200, "/healthz returns 200 (%s)" % status)

        h.start_prometheus(prometheus_bin)
        drive_traffic(h)
        time.sleep(3)  # a few scrapes after the traffic
        check_dashboard(h)
        check_alert_rules(h)
        check_metrics_text(h, promtool, h.scrape(), [h.echo.port], "after traffic")

        text, ports = scale_checks(h)
        check_metrics_text(h, promtool, text, [h.echo.port] + ports, "after %d destinations" % h.destinations_used)

        # The -L/-D session is still open: the agent has something to drain.
        shutdown_checks(h)
    except Fatal as e:
        log("FAIL: " + str(e))
        FAILURES.append(str(e))
    except Exception:
        import traceback
        traceback.print_exc()
        FAILURES.append("exception")
    finally:
        if FAILURES and h.agent_log:
            log("\n---- agent log (tail) ----\n" + h.read_log(h.agent_log)[-6000:])
            log("---- prometheus log (tail) ----\n" + h.read_log("prometheus")[-3000:])
        h.cleanup()

    log("\nsummary:")
    if hasattr(h, "scrape_ms"):
        log("  scrape at %d channels: %.2f ms (median of 5)" % (args.channels, h.scrape_ms))
    if hasattr(h, "series_after"):
        log("  series after %d distinct destinations: %d" % (h.destinations_used, h.series_after))
    if FAILURES:
        log("%d check(s) failed:" % len(FAILURES))
        for f in FAILURES:
            log("  - " + f.splitlines()[0])
        return 1
    log("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
