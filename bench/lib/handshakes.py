"""SSH connection setups per second: alknet-agent vs OpenSSH sshd, sequential and parallel.

Each connection is a complete `ssh -W 127.0.0.1:CLOSER` run: TCP connect, key exchange, host key
check, publickey auth, one direct-tcpip channel to a server that closes at once, clean exit.

Environment: N (300), PARALLEL (8), CIPHER (chacha20-poly1305@openssh.com), WORKERS (2),
KEX (curve25519-sha256), WARMUP (5).
"""

import collections
import concurrent.futures
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402


def server_cpu(bench, label):
    if label == "alknet":
        return bl.cpu_seconds(bench.agent.pid)
    # The master's own CPU plus every per-connection process it has reaped (each reaped the
    # processes under it), so the per-connection cost counts once all connections are closed.
    return bl.cpu_seconds(bench.sshd.pid, children=True)


def settle(bench, label):
    time.sleep(0.3)
    if label == "sshd":
        bench.wait_sshd_idle()


def run_connections(one, n, parallel):
    """Runs one() n times (parallel=1: one after another), returns (succeeded, failures, wall).
    one() returns None on success or a one-line reason for a failed connection."""
    t0 = time.perf_counter()
    if parallel <= 1:
        outcomes = [one() for _ in range(n)]
    else:
        with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
            outcomes = list(pool.map(lambda _: one(), range(n)))
    wall = time.perf_counter() - t0
    failures = [o for o in outcomes if o is not None]
    return n - len(failures), failures, wall


def failure_reason(returncode, stderr):
    """One line per kind of failure: the exit status and ssh's last message, ports blanked."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    message = re.sub(r"port \d+", "port N", lines[-1]) if lines else "(no message)"
    return f"rc={returncode}: {message[:160]}"


def summarize_failures(failures, limit=3):
    """'12 failed: 10x rc=255: ...; 2x ...' (most frequent reasons first), or 'failed 0'."""
    if not failures:
        return "failed 0"
    counts = collections.Counter(failures).most_common()
    shown = "; ".join(f"{count}x {reason}" for reason, count in counts[:limit])
    more = f"; {len(counts) - limit} other reasons" if len(counts) > limit else ""
    return f"failed {len(failures)}: {shown}{more}"


def per_success(value, succeeded, scale=1.0):
    return f"{value * scale / succeeded:.2f}" if succeeded else "n/a"


def main():
    n = bl.env_int("N", 300)
    parallel = bl.env_int("PARALLEL", 8)
    warmup = bl.env_int("WARMUP", 5)
    cipher = os.environ.get("CIPHER", "chacha20-poly1305@openssh.com")

    with bl.Bench("handshakes") as bench:
        bench.start_agent()
        bench.start_sshd()
        closer = bench.endpoint("closer")
        print("== alknet handshake benchmark: full ssh connection setups, alknet-agent vs OpenSSH sshd ==")
        print(bl.machine_line())
        foreign = bl.ForeignLoad()
        print(f"N={n} connections per mode, parallel={parallel}, cipher={cipher}, "
              f"client kex={bench.kex}, hostkey=ssh-ed25519, user key=ssh-ed25519, "
              f"agent workers={os.environ.get('WORKERS', '2')}")
        print(f"each connection: ssh -W 127.0.0.1:{closer} </dev/null (target closes at once)")
        print("priority: both servers at default priority (agent: one scheduler autogroup; sshd: "
              "one autogroup per connection, as it calls setsid)")

        failures = []  # (label, reason) of every failed connection, for the problem report

        def one(port):
            """One connection; None when it succeeded, else why it failed."""
            try:
                r = subprocess.run(bench.ssh_argv(port, cipher, "-W", f"127.0.0.1:{closer}",
                                                  "-o", "ConnectTimeout=10"),
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, timeout=60)
            except subprocess.TimeoutExpired:
                return "ssh did not finish within 60 s"
            if r.returncode == 0:
                return None
            return failure_reason(r.returncode, r.stderr.decode(errors="replace"))

        # (mode, label) -> (succeeded, conn_per_s, server_ms, client_ms, failures)
        results = {}
        for label, port, _pid in bench.servers():
            print(f"  {label:6}: negotiated {bench.negotiated(port, cipher, closer, label)}")
            for _ in range(warmup):
                one(port)
        for mode in ("sequential", f"parallel-{parallel}"):
            for label, port, _pid in bench.servers():
                settle(bench, label)
                s0, c0 = server_cpu(bench, label), bl.children_cpu_seconds()
                ok, failed, wall = run_connections(lambda: one(port), n,
                                                   1 if mode == "sequential" else parallel)
                settle(bench, label)
                s1, c1 = server_cpu(bench, label), bl.children_cpu_seconds()
                failures.extend((label, reason) for reason in failed)
                # Rates and CPU are per *successful* connection; failures are reported beside.
                results[(mode, label)] = (ok, ok / wall, (s1 - s0) * 1000 / ok if ok else None,
                                          (c1 - c0) * 1000 / ok if ok else None, failed)
                print(f"  {mode:12} {label:6}: {ok / wall:7.1f} conn/s  ({ok} of {n} succeeded)  "
                      f"wall {wall:6.2f} s  server cpu {per_success(s1 - s0, ok, 1000):>6} "
                      f"ms/conn  client cpu {per_success(c1 - c0, ok, 1000):>6} ms/conn  "
                      f"{summarize_failures(failed)}", flush=True)
                if bench.agent.poll() is not None:
                    raise bl.BenchError(f"alknet-agent died (rc={bench.agent.returncode}); "
                                        f"{summarize_failures(failed)}")

        print()
        print("Handshakes (connect + kex + publickey auth + 1 channel + close). The ssh client's "
              "own CPU dominates wall time on 2 cores;\nserver CPU per handshake is the main figure.")
        rows = []

        def ms(v):
            return "n/a" if v is None else f"{v:.2f}"

        for mode in ("sequential", f"parallel-{parallel}"):
            a, s = results[(mode, "alknet")], results[(mode, "sshd")]
            rows.append([mode, f"{a[1]:.1f}", f"{s[1]:.1f}", bl.fmt_ratio(a[1], s[1]),
                         ms(a[2]), ms(s[2]),
                         bl.fmt_ratio(a[2], s[2]) if a[2] is not None and s[2] is not None else "n/a",
                         (bl.fmt_ratio(s[2], a[2]) + "x") if a[2] and s[2] is not None else "n/a",
                         f"{ms(a[3])} / {ms(s[3])}", f"{len(a[4])} / {len(s[4])}"])
        bl.print_table(["mode", "alknet conn/s", "sshd conn/s", "ratio", "alknet srv ms/conn",
                        "sshd srv ms/conn", "ratio", "sshd÷alknet", "client ms/conn (alk/sshd)",
                        "failed (alk/sshd)"], rows)
        print("(conn/s and CPU per connection count successful connections only; failed "
              "connections are listed beside them)")
        print(f"finished {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  {bl.loadavg()}; "
              f"{foreign.report()}")
        shown = [f"{label}: {count}x {reason}" for (label, reason), count in
                 collections.Counter(failures).most_common(5)]
        return bl.report_problems(shown, bench.agent_log, "FAILED CONNECTIONS (most frequent reasons):")


if __name__ == "__main__":
    sys.exit(bl.run(main))
