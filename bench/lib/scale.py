"""Memory and CPU of many idle sessions and many concurrent channels in alknet-agent.

Uses alknet-bench-scale-client (libssh client, one process) to open SESSIONS authenticated
sessions to the agent, then CHANNELS direct-tcpip channels across them to a local echo server
(16 bytes echoed and checked on each), sampling the agent's VmRSS and PSS at each step. For
comparison, the same client opens 1 session (then CHANNELS/SESSIONS channels) to OpenSSH sshd and
the RSS of sshd's per-session processes is measured and multiplied by SESSIONS; and then
SSHD_SESSIONS sessions, to measure sshd's marginal cost the way the agent's is measured: the
PSS of the whole sshd process tree (master included) with the sessions open minus with none,
divided by the sessions.

Environment: SESSIONS (1000), CHANNELS (10000), SSHD_SESSIONS (100), WORKERS (2), CIPHER
(chacha20-poly1305@openssh.com), KEX (curve25519-sha256), SETTLE (1.0 s), PHASE_TIMEOUT (600 s).
"""

import os
import re
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402


class Helper:
    """One alknet-bench-scale-client run, driven over its stdin/stdout."""

    def __init__(self, bench, port, sessions, channels, echo_port, cipher, label, user=None,
                 gate=False):
        binary = os.environ.get("SCALE_CLIENT",
                                os.path.join(bl.BUILD_DIR, "bench", "alknet-bench-scale-client"))
        if not os.access(binary, os.X_OK):
            raise RuntimeError(f"{binary} not found: ninja -C build alknet-bench-scale-client")
        self.bench = bench
        self.label = label
        self.errfile = bench.path(f"scale-client-{label}.err")
        self.negotiated_line = ""
        self.pending = b""  # stdout read but not yet split into lines
        argv = [binary, "--port", str(port), "--key", bench.key, "--user", user or bench.user,
                "--sessions", str(sessions), "--channels", str(channels),
                "--target-port", str(echo_port), "--ciphers", cipher]
        if bench.kex and bench.kex != "default":
            argv += ["--kex", bench.kex]
        if gate:  # prints STARTED and connects only after a line on stdin
            argv += ["--gate", "1"]
        with open(self.errfile, "w") as err:
            self.proc = bench.spawn(argv, f"scale-client-{label}", stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=err, bufsize=0)

    def expect(self, prefix, timeout):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{self.label}: no '{prefix}' line after {timeout}s")
            if b"\n" not in self.pending:
                # Unbuffered reads into our own buffer: several lines may arrive in one read,
                # and select() knows nothing of lines already buffered.
                ready, _, _ = select.select([self.proc.stdout], [], [], min(left, 1.0))
                if not ready:
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise RuntimeError(f"{self.label}: scale client exited "
                                       f"(rc={self.proc.wait()}): {self.stderr_tail()}")
                self.pending += chunk
                continue
            raw, self.pending = self.pending.split(b"\n", 1)
            line = raw.decode(errors="replace")
            if line.startswith("NEGOTIATED"):
                self.negotiated_line = line
            if line.startswith(prefix):
                return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}

    def negotiated(self):
        """What the client's first session negotiated ('kex=... cipher=...')."""
        return bl.format_negotiated(bl.parse_negotiated(
            self.negotiated_line, bl.SSH_KEYS, f"{self.label}: alknet-bench-scale-client stdout"))

    def send(self, text):
        self.proc.stdin.write(text.encode())

    def finish(self, timeout=120):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.bench.stop(self.proc)
        self.bench.procs = [(p, l) for (p, l) in self.bench.procs if p is not self.proc]

    def stderr_tail(self, lines=10):
        with open(self.errfile) as f:
            return " | ".join(f.read().splitlines()[-lines:])


def nonroot_users(current):
    """A non-root account sshd can log in with -N (shell need not be usable), if any."""
    import pwd
    if current != "root":
        return []
    name = os.environ.get("SSHD_NONROOT_USER", "nobody")
    if not name:
        return []
    try:
        pwd.getpwnam(name)
    except KeyError:
        return []
    return [name]


def measure_sshd(bench, user, channels, echo, cipher, settle, phase_timeout, problems):
    """RSS/PSS of sshd's per-session processes with 1 session, then with `channels` channels."""
    sh = Helper(bench, bench.sshd_port, 1, channels, echo, cipher, f"sshd-{user}", user=user)
    got = sh.expect("SESSIONS", phase_timeout)
    if got["failed"] or not got["sessions"]:
        problems.append(f"sshd session as {user} failed: {sh.stderr_tail()}")
        sh.finish()
        return None
    time.sleep(settle)
    procs = bl.descendants_of(bench.sshd.pid)
    m = {"rss1": sum(bl.rss_kib(p) for p in procs), "pss1": sum(bl.pss_kib(p) for p in procs),
         "names": "; ".join(f"'{bl.cmdline(p)}' {bl.rss_kib(p)} KiB" for p in procs),
         "negotiated": sh.negotiated()}
    if channels:
        sh.send("go\n")
        ready = sh.expect("READY", phase_timeout)
        time.sleep(settle)
        procs = bl.descendants_of(bench.sshd.pid)
        m["rss2"] = sum(bl.rss_kib(p) for p in procs)
        m["pss2"] = sum(bl.pss_kib(p) for p in procs)
        if ready["echo_ok"] != channels:
            problems.append(f"sshd ({user}) channels: {ready}")
    sh.finish()
    return m


def tree_pss_kib(pid):
    """PSS of a process and every process under it (smaps_rollup), summed."""
    total = 0
    for p in [pid] + bl.descendants_of(pid):
        try:
            total += bl.pss_kib(p)
        except OSError:  # exited meanwhile
            pass
    return total


def per_session_delta(before_kib, after_kib, sessions):
    """Marginal KiB per session: (total at N sessions - total at 0) / N; None without sessions."""
    return (after_kib - before_kib) / sessions if sessions else None


def measure_sshd_delta(bench, user, sessions, channels_each, echo, cipher, settle,
                       phase_timeout, problems):
    """PSS of sshd's whole process tree (master included) with no session, with `sessions`
    sessions, and with `channels_each` channels on each; returns the deltas per session."""
    bench.wait_sshd_idle()
    sh = Helper(bench, bench.sshd_port, sessions, sessions * channels_each, echo, cipher,
                f"sshd-{user}-x{sessions}", user=user, gate=True)
    sh.expect("STARTED", phase_timeout)
    time.sleep(settle)
    # Baseline with the client already running: it maps libcrypto too, which lowers every
    # sharer's PSS; measured before that, the client's start would count as negative cost.
    pss0 = tree_pss_kib(bench.sshd.pid)
    sh.send("go\n")
    got = sh.expect("SESSIONS", phase_timeout)
    opened = int(got["sessions"])
    if got["failed"] or opened != sessions:
        problems.append(f"sshd ({user}) x{sessions}: {opened} sessions opened, "
                        f"{int(got['failed'])} failed: {sh.stderr_tail()}")
    time.sleep(settle)
    m = {"sessions": opened, "pss0": pss0, "pss1": tree_pss_kib(bench.sshd.pid),
         "procs": len(bl.descendants_of(bench.sshd.pid))}
    if channels_each and opened:
        sh.send("go\n")
        ready = sh.expect("READY", phase_timeout)
        time.sleep(settle)
        m["pss2"] = tree_pss_kib(bench.sshd.pid)
        if ready["echo_ok"] != opened * channels_each:
            problems.append(f"sshd ({user}) x{sessions} channels: {ready}")
    sh.finish()
    return m


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def threads(pid):
    return bl.status_kib(pid, "Threads")


def main():
    sessions = bl.env_int("SESSIONS", 1000)
    channels = bl.env_int("CHANNELS", 10000)
    cipher = os.environ.get("CIPHER", "chacha20-poly1305@openssh.com")
    settle = float(os.environ.get("SETTLE", "1.0"))
    phase_timeout = float(os.environ.get("PHASE_TIMEOUT", "600"))
    sshd_sessions = bl.env_int("SSHD_SESSIONS", 100)
    per_session_channels = max(1, channels // sessions) if channels else 0
    problems = []

    with bl.Bench("scale") as bench:
        bench.start_agent()
        bench.start_sshd()
        echo = bench.endpoint("echo")
        agent = bench.agent.pid
        print("== alknet scale benchmark: idle sessions and concurrent channels, one libssh client ==")
        print(bl.machine_line())
        foreign = bl.ForeignLoad()
        print(f"sessions={sessions} channels={channels} cipher={cipher} client kex={bench.kex} "
              f"agent workers={os.environ.get('WORKERS', '2')} open-files limit="
              f"{os.sysconf('SC_OPEN_MAX')}")

        # Warm-up: a few sessions and channels, closed again, so one-time allocations (thread
        # caches, libssh/OpenSSL init) are not charged to the measured sessions.
        warm = Helper(bench, bench.agent_port, 4, 8, echo, cipher, "warmup")
        warm.expect("SESSIONS", phase_timeout)
        warm.send("go\n")
        warm.expect("READY", phase_timeout)
        warm.finish()
        time.sleep(settle)

        helper = Helper(bench, bench.agent_port, sessions, channels, echo, cipher, "alknet",
                        gate=True)
        helper.expect("STARTED", phase_timeout)
        time.sleep(settle)
        # Baseline with the client started but not connected (see measure_sshd_delta).
        rss0, cpu0, pss0 = bl.rss_kib(agent), bl.cpu_seconds(agent), bl.pss_kib(agent)
        fds0 = fd_count(agent)
        helper.send("go\n")
        got = helper.expect("SESSIONS", phase_timeout)
        cpu1 = bl.cpu_seconds(agent)
        time.sleep(settle)
        rss1, fds1, pss1 = bl.rss_kib(agent), fd_count(agent), bl.pss_kib(agent)
        opened = int(got["sessions"])
        print(f"  alknet: negotiated {helper.negotiated()}  (scale client, first session)")
        if got["failed"]:
            problems.append(f"{int(got['failed'])} of {sessions} sessions failed to connect: "
                            f"{helper.stderr_tail()}")
        print(f"  ramp: {opened} sessions in {got['ms'] / 1000:.1f} s "
              f"({opened / max(got['ms'], 1) * 1000:.0f}/s), agent cpu {cpu1 - cpu0:.2f} s, "
              f"rss {rss0} -> {rss1} KiB, fds {fds0} -> {fds1}", flush=True)

        rss2 = pss2 = None
        ready = None
        if channels:
            cpu2 = bl.cpu_seconds(agent)
            helper.send("go\n")
            ready = helper.expect("READY", phase_timeout)
            cpu3 = bl.cpu_seconds(agent)
            time.sleep(settle)
            rss2, fds2, pss2 = bl.rss_kib(agent), fd_count(agent), bl.pss_kib(agent)
            print(f"  channels: {int(ready['channels'])} open ({int(ready['failed'])} failed) in "
                  f"{ready['open_ms'] / 1000:.1f} s, echo ok {int(ready['echo_ok'])} in "
                  f"{ready['echo_ms'] / 1000:.1f} s, agent cpu {cpu3 - cpu2:.2f} s, "
                  f"rss -> {rss2} KiB, fds -> {fds2}, threads {threads(agent)}", flush=True)
            if ready["failed"] or ready["echo_ok"] != ready["channels"] or \
                    ready["channels"] != channels:
                problems.append(f"channels: wanted {channels}, opened {int(ready['channels'])}, "
                                f"failed {int(ready['failed'])}, echo ok {int(ready['echo_ok'])}: "
                                f"{helper.stderr_tail()}")
        client_rss = bl.rss_kib(helper.proc.pid)
        helper.finish()
        time.sleep(settle * 2)
        rss3, fds3 = bl.rss_kib(agent), fd_count(agent)
        if bench.agent.poll() is not None:
            raise RuntimeError(f"alknet-agent died (rc={bench.agent.returncode})")

        # sshd: one session, measured per process (as root, as the agent test; and as a non-root
        # user when one exists, since sshd then keeps a privileged monitor per session as well).
        sshd_rows = []
        for user in [bench.user] + nonroot_users(bench.user):
            bench.wait_sshd_idle()
            m = measure_sshd(bench, user, per_session_channels, echo, cipher, settle,
                             phase_timeout, problems)
            if m:
                sshd_rows.append((user, m))
                print(f"  sshd ({user}): negotiated {m['negotiated']}  (scale client)")
        # sshd measured like the agent: whole-tree PSS with SSHD_SESSIONS sessions minus none.
        sshd_deltas = []
        if sshd_sessions > 0:
            for user in [bench.user] + nonroot_users(bench.user):
                d = measure_sshd_delta(bench, user, sshd_sessions, per_session_channels, echo,
                                       cipher, settle, phase_timeout, problems)
                sshd_deltas.append((user, d))
                print(f"  sshd ({user}) x{d['sessions']}: tree PSS {d['pss0']} -> {d['pss1']} KiB"
                      + (f" -> {d['pss2']} KiB with channels" if d.get("pss2") is not None else "")
                      + f", {d['procs']} processes under the master", flush=True)

        print()
        print(f"alknet-agent memory (VmRSS of the agent process; baseline after a warm-up)")
        rows = [["baseline (idle, warmed up)", f"{rss0}", "", ""],
                [f"{opened} idle sessions", f"{rss1}", f"{(rss1 - rss0) / max(opened, 1):.1f}",
                 "per session"]]
        if rss2 is not None and ready is not None:
            nch = int(ready["channels"])
            rows.append([f"+ {nch} channels (echo checked)", f"{rss2}",
                         f"{(rss2 - rss1) / max(nch, 1):.1f}", "per channel"])
            rows.append(["  sessions + channels", "", f"{(rss2 - rss0) / max(opened, 1):.1f}",
                         f"per session (with {nch // max(opened, 1)} channels each)"])
        rows.append(["after the client disconnected", f"{rss3}", "",
                     f"(agent fds {fds3}, {fds0} before the ramp)"])
        bl.print_table(["state", "agent RSS KiB", "delta KiB", "per"], rows)
        if fds3 > fds0 + 2:
            problems.append(f"agent still holds {fds3} fds after the client left ({fds0} before)")
        print(f"agent CPU per handshake during the {opened}-session ramp: "
              f"{(cpu1 - cpu0) * 1000 / max(opened, 1):.2f} ms "
              f"(sequential libssh client, {got['ms'] / max(opened, 1):.1f} ms wall per session)")
        print(f"scale client (libssh) RSS while holding everything: {client_rss} KiB")

        print()
        print("OpenSSH sshd for comparison: one process tree per session, so the cost multiplies.")
        alk_idle = (rss1 - rss0) / max(opened, 1)
        alk_busy = (rss2 - rss0) / max(opened, 1) if rss2 is not None else None
        rows = []
        for user, m in sshd_rows:
            print(f"  login {user}: per-session processes with 1 session open: {m['names']}")
            rows.append([f"{user}: 1 idle session", f"{m['rss1']}", f"{m['pss1']}",
                         f"{m['rss1'] * sessions}", f"{alk_idle:.1f}",
                         bl.fmt_ratio(m['rss1'], alk_idle) + "x",
                         bl.fmt_ratio(m['pss1'], alk_idle) + "x"])
            if m.get("rss2") is not None and alk_busy is not None:
                rows.append([f"{user}: 1 session + {per_session_channels} channels", f"{m['rss2']}",
                             f"{m['pss2']}", f"{m['rss2'] * sessions}", f"{alk_busy:.1f}",
                             bl.fmt_ratio(m['rss2'], alk_busy) + "x",
                             bl.fmt_ratio(m['pss2'], alk_busy) + "x"])
        bl.print_table(["sshd per session", "RSS KiB", "PSS KiB", f"RSS x {sessions} KiB",
                        "alknet KiB/session", "sshd RSS÷alknet", "sshd PSS÷alknet"], rows)
        print(f"  ('RSS x {sessions}' is extrapolated from one session, not measured. RSS counts "
              "pages shared with the sshd master and\n  libraries in every process; PSS splits "
              "them, so sshd's real marginal cost lies between the two.)")


        print()
        print("Marginal memory per session, both servers measured the same way: PSS (KiB) of the "
              "server's\nprocesses with N sessions open minus with none, divided by N (agent: its "
              "process; sshd: master + all children)")
        alk_pss_idle = per_session_delta(pss0, pss1, opened)
        alk_pss_busy = per_session_delta(pss0, pss2, opened) if pss2 is not None else None
        rows = [["alknet-agent", f"{opened}", f"{pss0}", f"{pss1}", f"{alk_pss_idle:.1f}"
                 if alk_pss_idle is not None else "n/a",
                 f"{alk_pss_busy:.1f}" if alk_pss_busy is not None else "-", "", ""]]
        for user, d in sshd_deltas:
            idle = per_session_delta(d["pss0"], d["pss1"], d["sessions"])
            busy = per_session_delta(d["pss0"], d["pss2"], d["sessions"]) \
                if d.get("pss2") is not None else None
            rows.append([f"sshd ({user})", f"{d['sessions']}", f"{d['pss0']}", f"{d['pss1']}",
                         f"{idle:.1f}" if idle is not None else "n/a",
                         f"{busy:.1f}" if busy is not None else "-",
                         bl.fmt_ratio(idle, alk_pss_idle) + "x"
                         if idle is not None and alk_pss_idle else "n/a",
                         bl.fmt_ratio(busy, alk_pss_busy) + "x"
                         if busy is not None and alk_pss_busy else "-"])
        bl.print_table(["server", "N sessions", "PSS at 0", "PSS at N", "per session",
                        f"per session +{per_session_channels} ch", "sshd÷alknet",
                        "sshd÷alknet +ch"], rows)
        print("  (the sshd÷alknet columns of the table before divide one session's per-process "
              "RSS/PSS, shared pages included, by\n  the agent's RSS delta; these divide delta by "
              "delta, PSS for both)")
        print(f"finished {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  {bl.loadavg()}; "
              f"{foreign.report()}")
        return bl.report_problems(problems, bench.agent_log)


if __name__ == "__main__":
    sys.exit(bl.run(main))
