"""Shared machinery of the alknet benchmarks (python3 stdlib only).

Starts alknet-agent and a private OpenSSH sshd side by side on loopback, builds the ssh client
command lines both use, reads process CPU and memory from /proc, and cleans everything up.
"""

import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_DIR = os.path.dirname(BENCH_DIR)
BUILD_DIR = os.environ.get("BUILD_DIR", os.path.join(REPO_DIR, "build"))
ENDPOINTS = os.path.join(BENCH_DIR, "lib", "endpoints.py")
SSHD = "/usr/sbin/sshd"


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def env_int(name, default):
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    """True when something listens on 127.0.0.1:port (read from /proc/net/tcp)."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if parts[1] == want and parts[3] == "0A":
                return True
    return False


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


def agent_port_and_pin(bench, scheme):
    """The port of the agent's `scheme`:// listener (tls, quic) and its certificate's SHA-256 pin,
    from the agent's log, waited for up to 15 s."""
    listen = re.compile(rf"engine: listening address={scheme}://127\.0\.0\.1:(\d+)")
    pin = re.compile(r"sha256=([0-9A-F:]{95})")
    found = {}

    def ready():
        text = open(bench.agent_log).read()
        m, p = listen.search(text), pin.search(text)
        if m and p:
            found["port"], found["pin"] = int(m.group(1)), p.group(1)
        return bool(found)

    wait_until(ready, 15, f"alknet-agent {scheme}:// listener and its certificate pin")
    return found["port"], found["pin"]


# ----------------------------------------------------------------------------------- /proc


def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # Fields after "(comm)"; index 0 is field 3 (state) of proc(5).
    return data[data.rindex(")") + 2:].split()


def cpu_seconds(pid, children=False):
    """utime+stime of a process (all threads); with children, plus cutime+cstime (reaped)."""
    f = _stat_fields(pid)
    ticks = int(f[11]) + int(f[12])
    if children:
        ticks += int(f[13]) + int(f[14])
    return ticks / CLK_TCK


def children_of(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if int(_stat_fields(entry)[1]) == pid:
                kids.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return kids


def descendants_of(pid):
    out, todo = [], [pid]
    while todo:
        for kid in children_of(todo.pop()):
            out.append(kid)
            todo.append(kid)
    return out


def tree_cpu_seconds(pid):
    """CPU of a process and everything under it, live (utime+stime) and reaped (cutime+cstime)."""
    total = 0.0
    for p in [pid] + descendants_of(pid):
        try:
            total += cpu_seconds(p, children=True)
        except OSError:
            pass
    return total


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def rss_kib(pid):
    return status_kib(pid, "VmRSS")


def pss_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise RuntimeError(f"Pss not in /proc/{pid}/smaps_rollup")


def cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode(errors="replace").strip()


def children_cpu_seconds():
    """CPU of this process's reaped children (the ssh clients we ran)."""
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# ----------------------------------------------------------------------------------- helpers


def profiled(profile, out, pids, transfer):
    """Runs `transfer()` once with the PROFILE command attached to `pids`: `profile` is a
    command template ({out}: output path, {pids}: comma-separated, {pid_args}: '-p A -p B'),
    started a second before the transfer and stopped with SIGINT after it. Returns what
    `transfer()` returned."""
    cmd = profile.format(out=out, pids=",".join(map(str, pids)),
                         pid_args=" ".join(f"-p {p}" for p in pids))
    prof = subprocess.Popen(shlex.split(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    try:
        return transfer()
    finally:
        prof.send_signal(signal.SIGINT)
        prof.wait(timeout=120)


def median(values):
    return statistics.median(values)


def fmt_ratio(a, b):
    if not b:
        return "n/a"
    return f"{a / b:.2f}"


def print_table(headers, rows, out=sys.stdout):
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(str(cell)))
    line = "  ".join(h.ljust(widths[i]) for i, h in enumerate(headers))
    print(line.rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    def numeric(cell):
        return bool(re.fullmatch(r"[-+]?[\d.,]+[x%]?|n/a|-|[\d.]+ / [\d.]+", str(cell)))

    for row in rows:
        print("  ".join(str(c).rjust(widths[i]) if i and numeric(c) else str(c).ljust(widths[i])
                        for i, c in enumerate(row)).rstrip(), file=out)
    out.flush()


class Bench:
    """Owns the temp dir, the key, the servers and every process started; cleans up on exit."""

    def __init__(self, name):
        self.name = name
        self.procs = []          # (Popen, label), killed in reverse order on close
        self.tmp = tempfile.mkdtemp(prefix=f"alknet-bench-{name}-")
        self.key = os.path.join(self.tmp, "id_ed25519")
        self.agent = None
        self.agent_port = None
        self.sshd = None
        self.sshd_port = None
        self.user = os.environ.get("BENCH_USER", "root")
        self.kex = os.environ.get("KEX", "curve25519-sha256")
        self._closed = False
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alknet-bench",
                        "-f", self.key], check=True)
        shutil.copy(self.key + ".pub", os.path.join(self.tmp, "authorized_keys"))
        # sshd reads authorized_keys as the logged-in user: let a non-root login reach it.
        os.chmod(self.tmp, 0o711)
        os.chmod(os.path.join(self.tmp, "authorized_keys"), 0o644)

    def _on_signal(self, signum, frame):
        log(f"signal {signum}: cleaning up")
        raise SystemExit(128 + signum)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def path(self, name):
        return os.path.join(self.tmp, name)

    # ------------------------------------------------------------------ processes

    def spawn(self, argv, label, **kwargs):
        p = subprocess.Popen(argv, **kwargs)
        self.procs.append((p, label))
        return p

    def stop(self, proc, timeout=5.0):
        """Stops one process we started, and any of its descendants, by pid."""
        if proc.poll() is None:
            kids = descendants_of(proc.pid)
            try:
                proc.terminate()
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for kid in kids:
                try:
                    os.kill(kid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        self.procs = [(p, l) for (p, l) in self.procs if p is not proc]

    def close(self):
        if self._closed:
            return
        self._closed = True
        for proc, label in reversed(list(self.procs)):
            try:
                self.stop(proc)
            except Exception as e:  # keep cleaning up
                log(f"stopping {label}: {e}")
        if os.environ.get("KEEP_TMP") == "1":
            log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def endpoint(self, mode, *args):
        """Starts a target server from endpoints.py on a free port; returns its port."""
        port = free_port()
        self.spawn([sys.executable, ENDPOINTS, mode, "--port", str(port), *map(str, args)],
                   f"endpoint-{mode}")
        wait_until(lambda: listening(port), 10, f"{mode} endpoint on port {port}")
        return port

    # ------------------------------------------------------------------ servers

    def start_agent(self, workers=None, extra=()):
        binary = agent_binary()
        if not os.access(binary, os.X_OK):
            raise RuntimeError(f"{binary} not found: build it (ninja -C build alknet-agent)")
        workers = workers if workers is not None else env_int("WORKERS", 2)
        logfile = self.path("agent.log")
        self.agent_log = logfile
        with open(logfile, "w") as out:
            # A session of its own, hence its own scheduler autogroup: sshd's per-connection
            # processes call setsid() too, so both servers compete for CPU on the same terms.
            self.agent = self.spawn(
                [binary, "--state-dir", self.path("agent-state"), "--listen", "tcp://127.0.0.1:0",
                 "--authorized-keys", self.path("authorized_keys"), "--workers", str(workers),
                 # the targets are loopback servers: lift the built-in loopback deny (ADR 0014)
                 "--forwarding-allow-loopback", "true",
                 "--log-level", os.environ.get("AGENT_LOG_LEVEL", "info"), *extra],
                "alknet-agent", stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        pattern = re.compile(r"engine: listening address=tcp://127\.0\.0\.1:(\d+)")

        def ready():
            if self.agent.poll() is not None:
                raise RuntimeError(f"alknet-agent exited: {open(logfile).read()}")
            m = pattern.search(open(logfile).read())
            if m:
                self.agent_port = int(m.group(1))
            return self.agent_port is not None

        wait_until(ready, 15, "alknet-agent to listen")
        log(f"alknet-agent pid={self.agent.pid} port={self.agent_port} workers={workers}")
        return self.agent

    def start_sshd(self):
        hostkey = self.path("sshd_host_ed25519_key")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostkey], check=True)
        self.sshd_port = free_port()
        config = self.path("sshd_config")
        with open(config, "w") as f:
            f.write(f"""Port {self.sshd_port}
ListenAddress 127.0.0.1
HostKey {hostkey}
AuthorizedKeysFile {self.path('authorized_keys')}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
PidFile {self.path('sshd.pid')}
LogLevel {os.environ.get('SSHD_LOG_LEVEL', 'INFO')}
""")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        subprocess.run([SSHD, "-t", "-f", config], check=True)
        logfile = self.path("sshd.log")
        self.sshd_log = logfile
        with open(logfile, "w") as out:
            self.sshd = self.spawn([SSHD, "-D", "-e", "-f", config], "sshd",
                                   stdout=out, stderr=subprocess.STDOUT)

        def ready():
            if self.sshd.poll() is not None:
                raise RuntimeError(f"sshd exited: {open(logfile).read()}")
            return listening(self.sshd_port)

        wait_until(ready, 15, "sshd to listen")
        log(f"sshd pid={self.sshd.pid} port={self.sshd_port}")
        return self.sshd

    def servers(self):
        """[(label, port, pid)] of both servers."""
        return [("alknet", self.agent_port, self.agent.pid), ("sshd", self.sshd_port, self.sshd.pid)]

    # ------------------------------------------------------------------ ssh client

    def ssh_argv(self, port, cipher, *extra, log_level="ERROR"):
        argv = ["ssh", "-F", "/dev/null", "-i", self.key, "-p", str(port), "-c", cipher,
                "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", f"LogLevel={log_level}", "-o", "ExitOnForwardFailure=yes",
                "-o", "HostKeyAlgorithms=ssh-ed25519", "-o", "Compression=no"]
        if self.kex and self.kex != "default":
            argv += ["-o", f"KexAlgorithms={self.kex}"]
        return argv + list(extra) + [f"{self.user}@127.0.0.1"]

    def negotiated(self, port, cipher, closer_port, label, proxy=None):
        """Runs one verbose ssh -W to 127.0.0.1:closer_port (a target that closes at once) and
        returns what it negotiated, as printed by format_negotiated: 'kex=... cipher=...', plus
        'tls=... suite=...' when proxy (a TLS ProxyCommand, see tls_probe_proxy) is given.
        Raises NegotiationError when a line is missing from the client's output."""
        extra = ["-o", f"ProxyCommand={tls_probe_proxy(proxy)}"] if proxy else []
        r = subprocess.run(self.ssh_argv(port, cipher, *extra, "-W", f"127.0.0.1:{closer_port}",
                                         log_level="DEBUG1"),
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=30, text=True)
        keys = SSH_KEYS + (TLS_KEYS if proxy else ())
        found = parse_negotiated(r.stderr, keys, f"{label}: ssh -v probe to port {port}")
        if r.returncode != 0:
            raise BenchError(f"{label}: probe ssh to port {port} failed (rc={r.returncode}):\n"
                             f"{r.stderr[-2000:]}")
        return format_negotiated(found)

    def boost_servers(self):
        """With BENCH_NICE, gives the agent's autogroup and the autogroup of each live sshd
        per-connection process that nice value (call once the connections are up)."""
        value = os.environ.get("BENCH_NICE", "").strip()
        if not value:
            return "servers at default priority"
        done = 0
        for pid in [self.agent.pid] + descendants_of(self.sshd.pid):
            try:
                with open(f"/proc/{pid}/autogroup", "w") as f:
                    f.write(value)
                done += 1
            except OSError as e:
                log(f"cannot set autogroup nice of {pid}: {e}")
        return f"autogroup nice {value} for the agent and the sshd connection processes ({done} set)"

    def wait_sshd_idle(self, timeout=10.0):
        """Waits until the sshd master has no per-connection children left."""
        wait_until(lambda: not children_of(self.sshd.pid), timeout, "sshd children to exit")


class BenchError(RuntimeError):
    """Something the benchmark needs broke: run() prints it and exits 2 (no traceback)."""


class NegotiationError(BenchError):
    """A negotiated algorithm could not be read from a client's output."""


# What each client prints about the negotiation. ssh -v (OpenSSH 9.2): "debug1: kex: algorithm:
# curve25519-sha256", "debug1: kex: server->client cipher: aes128-gcm@openssh.com MAC: <implicit>
# compression: none". alknet-agent connect (info log): "client: ssh negotiated ... kex=K
# cipher=C". alknet-bench-scale-client: "NEGOTIATED kex=K cipher=C". TLS ProxyCommand: socat
# -d -d ("N SSL proto version used: TLSv1.3", "N SSL connection using TLS_AES_256_GCM_SHA384") or
# openssl s_client -brief ("Protocol version: TLSv1.3", "Ciphersuite: TLS_AES_256_GCM_SHA384").
NEGOTIATION_PATTERNS = {  # key -> ((regex, what it is), ...)
    "kex": ((r"kex: algorithm: (\S+)", "ssh -v 'kex: algorithm:'"),
            (r"(?:ssh negotiated|NEGOTIATED)\b.*?\bkex=\"?([^\s\"]+)",
             "alknet client 'ssh negotiated kex=' / scale client 'NEGOTIATED kex='")),
    "cipher": ((r"kex: server->client cipher: (\S+)", "ssh -v 'kex: server->client cipher:'"),
               (r"(?:ssh negotiated|NEGOTIATED)\b.*?\bcipher=\"?([^\s\"]+)",
                "alknet client / scale client 'cipher='")),
    "tls": ((r"SSL proto version used: (\S+)", "socat -d -d 'SSL proto version used:'"),
            (r"Protocol version: (\S+)", "openssl s_client -brief 'Protocol version:'")),
    "suite": ((r"SSL connection using (\S+)", "socat -d -d 'SSL connection using'"),
              (r"Ciphersuite: (\S+)", "openssl s_client -brief 'Ciphersuite:'")),
}
SSH_KEYS = ("kex", "cipher")
TLS_KEYS = ("tls", "suite")


def parse_negotiated(text, keys, source):
    """{key: value} for each of keys (NEGOTIATION_PATTERNS), read from a client's output; raises
    NegotiationError naming every missing one and where it was looked for."""
    found, missing = {}, []
    for key in keys:
        value = None
        for pattern, _what in NEGOTIATION_PATTERNS[key]:
            m = re.search(pattern, text)
            if m and m.group(1) not in ("", "?"):
                value = m.group(1)
                break
        if value is None:
            missing.append(key)
        else:
            found[key] = value
    if missing:
        tail = "\n".join("    | " + line for line in text.splitlines()[-15:])
        wanted = "; ".join(what for k in missing for _p, what in NEGOTIATION_PATTERNS[k])
        raise NegotiationError(f"{source}: no negotiated {' / '.join(missing)} in its output "
                               f"(looked for: {wanted}); its last lines:\n{tail or '    (empty)'}")
    return found


def format_negotiated(found):
    return " ".join(f"{k}={found[k]}" for k in SSH_KEYS + TLS_KEYS if k in found)


def tls_probe_proxy(proxy):
    """The TLS ProxyCommand of a run, made to print the TLS version and suite on stderr."""
    if proxy.startswith("socat "):
        return "socat -d -d " + proxy[len("socat "):]
    if proxy.startswith("openssl s_client") and "-brief" not in proxy:
        return proxy.replace("openssl s_client", "openssl s_client -brief", 1)
    return proxy


def log_negotiated(path, label):
    """What alknet-agent connect negotiated, from its log ('ssh negotiated' line)."""
    with open(path) as f:
        text = f.read()
    return format_negotiated(parse_negotiated(text, SSH_KEYS, f"{label}: {path}"))


def run(main):
    """Runs a benchmark's main(); a BenchError is printed as one clear ERROR line, exit 2."""
    try:
        return main()
    except BenchError as e:
        print(f"ERROR: {e}", flush=True)
        print(f"[bench] ERROR: {str(e).splitlines()[0]}", file=sys.stderr, flush=True)
        return 2


def report_problems(problems, agent_log=None, header="PROBLEMS:"):
    """Prints what broke (and the agent log's tail); returns the script's exit status."""
    if not problems:
        return 0
    print()
    print(header)
    for p in problems:
        print(f"  {p}")
    if agent_log:
        print(f"agent log tail ({agent_log}; set KEEP_TMP=1 to keep it):")
        for line in open(agent_log).read().splitlines()[-20:]:
            print(f"  | {line}")
    return 1


def loadavg():
    with open("/proc/loadavg") as f:
        return "loadavg=" + " ".join(f.read().split()[:3])


def system_busy(seconds=2.0):
    """Fraction of all CPUs busy over `seconds` (from /proc/stat)."""
    def sample():
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
        idle = vals[3] + vals[4]
        return sum(vals[:8]), idle
    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return 1 - (i1 - i0) / max(t1 - t0, 1)


def _busy_seconds():
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    return (sum(vals[:8]) - vals[3] - vals[4]) / CLK_TCK, sum(vals[:8]) / CLK_TCK


class ForeignLoad:
    """CPU used on the machine by processes outside this benchmark's own tree, over a span."""

    def __init__(self):
        self.busy0, self.total0 = _busy_seconds()
        self.ours0 = tree_cpu_seconds(os.getpid())

    def report(self):
        busy1, total1 = _busy_seconds()
        ours = tree_cpu_seconds(os.getpid()) - self.ours0
        foreign = max(0.0, (busy1 - self.busy0) - ours)
        span = max(total1 - self.total0, 1e-9)
        return (f"cpu used by other processes during the run: {foreign:.1f} s "
                f"({foreign / span:.0%} of the machine; the benchmark itself {ours / span:.0%})")


def wait_for_quiet():
    """With QUIET_WAIT=S, waits up to S seconds for the machine to be <QUIET_BUSY% busy (10)."""
    limit = float(os.environ.get("QUIET_WAIT", "0"))
    threshold = float(os.environ.get("QUIET_BUSY", "10")) / 100
    deadline = time.monotonic() + limit
    busy = system_busy()
    while busy > threshold and time.monotonic() < deadline:
        log(f"machine {busy:.0%} busy with other work; waiting for it to calm down")
        time.sleep(10)
        busy = system_busy()
    return busy


def autogroup():
    try:
        with open("/proc/self/autogroup") as f:
            return f.read().strip().lstrip("/")
    except OSError:
        return ""


def agent_binary():
    return os.environ.get("AGENT_BIN", os.path.join(BUILD_DIR, "agent", "alknet-agent"))


def machine_line():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ssh_v = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    rev = os.environ.get("BENCH_REV") or subprocess.run(
        ["git", "-C", REPO_DIR, "describe", "--always", "--dirty"],
        capture_output=True, text=True).stdout.strip() or "?"
    libssh = "?"
    try:
        libssh = subprocess.run(["pkg-config", "--modversion", "libssh"], capture_output=True,
                                text=True).stdout.strip() or "?"
    except OSError:
        pass
    busy = wait_for_quiet()
    return (f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}  host={socket.gethostname()}  "
            f"cpus={os.cpu_count()}  cpu={cpu}  {loadavg()}  busy-before-start={busy:.0%}  nice={os.nice(0)} {autogroup()}\n"
            f"alknet: {rev} (libssh {libssh}) agent={agent_binary()}\nclient/sshd: {ssh_v}")
