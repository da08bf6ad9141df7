"""Memory and CPU of many idle sessions and many concurrent channels in alknet-agent.

Uses alknet-bench-scale-client (libssh client, one process) to open SESSIONS authenticated
sessions to the agent, then CHANNELS direct-tcpip channels across them to a local echo server
(16 bytes echoed and checked on each), sampling the agent's VmRSS at each step. For comparison,
the same client opens 1 session (then CHANNELS/SESSIONS channels) to OpenSSH sshd and the RSS of
sshd's per-session processes is measured and multiplied by SESSIONS.

Environment: SESSIONS (1000), CHANNELS (10000), WORKERS (2), CIPHER
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

    def __init__(self, bench, port, sessions, channels, echo_port, cipher, label, user=None):
        binary = os.environ.get("SCALE_CLIENT",
                                os.path.join(bl.BUILD_DIR, "bench", "alknet-bench-scale-client"))
        if not os.access(binary, os.X_OK):
            raise RuntimeError(f"{binary} not found: ninja -C build alknet-bench-scale-client")
        self.bench = bench
        self.label = label
        self.errfile = bench.path(f"scale-client-{label}.err")
        argv = [binary, "--port", str(port), "--key", bench.key, "--user", user or bench.user,
                "--sessions", str(sessions), "--channels", str(channels),
                "--target-port", str(echo_port), "--ciphers", cipher]
        if bench.kex and bench.kex != "default":
            argv += ["--kex", bench.kex]
        with open(self.errfile, "w") as err:
            self.proc = bench.spawn(argv, f"scale-client-{label}", stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=err, text=True, bufsize=1)

    def expect(self, prefix, timeout):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{self.label}: no '{prefix}' line after {timeout}s")
            ready, _, _ = select.select([self.proc.stdout], [], [], min(left, 1.0))
            if not ready:
                continue
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.label}: scale client exited "
                                   f"(rc={self.proc.wait()}): {self.stderr_tail()}")
            if line.startswith(prefix):
                return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}

    def send(self, text):
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

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
         "names": "; ".join(f"'{bl.cmdline(p)}' {bl.rss_kib(p)} KiB" for p in procs)}
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

        rss0, cpu0 = bl.rss_kib(agent), bl.cpu_seconds(agent)
        fds0 = fd_count(agent)
        helper = Helper(bench, bench.agent_port, sessions, channels, echo, cipher, "alknet")
        got = helper.expect("SESSIONS", phase_timeout)
        cpu1 = bl.cpu_seconds(agent)
        time.sleep(settle)
        rss1, fds1 = bl.rss_kib(agent), fd_count(agent)
        opened = int(got["sessions"])
        if got["failed"]:
            problems.append(f"{int(got['failed'])} of {sessions} sessions failed to connect: "
                            f"{helper.stderr_tail()}")
        print(f"  ramp: {opened} sessions in {got['ms'] / 1000:.1f} s "
              f"({opened / max(got['ms'], 1) * 1000:.0f}/s), agent cpu {cpu1 - cpu0:.2f} s, "
              f"rss {rss0} -> {rss1} KiB, fds {fds0} -> {fds1}", flush=True)

        rss2 = None
        ready = None
        if channels:
            cpu2 = bl.cpu_seconds(agent)
            helper.send("go\n")
            ready = helper.expect("READY", phase_timeout)
            cpu3 = bl.cpu_seconds(agent)
            time.sleep(settle)
            rss2, fds2 = bl.rss_kib(agent), fd_count(agent)
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

        print(f"finished {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  {bl.loadavg()}; "
              f"{foreign.report()}")
        return bl.report_problems(problems, bench.agent_log)


if __name__ == "__main__":
    sys.exit(main())
