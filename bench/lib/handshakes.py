"""SSH connection setups per second: alknet-agent vs OpenSSH sshd, sequential and parallel.

Each connection is a complete `ssh -W 127.0.0.1:CLOSER` run: TCP connect, key exchange, host key
check, publickey auth, one direct-tcpip channel to a server that closes at once, clean exit.

Environment: N (300), PARALLEL (8), CIPHER (chacha20-poly1305@openssh.com), WORKERS (2),
KEX (curve25519-sha256), WARMUP (5).
"""

import concurrent.futures
import os
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

        failures = []

        def one(port):
            t0 = time.perf_counter()
            r = subprocess.run(bench.ssh_argv(port, cipher, "-W", f"127.0.0.1:{closer}",
                                              "-o", "ConnectTimeout=10"),
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, timeout=60)
            if r.returncode != 0:
                failures.append((port, r.returncode, r.stderr.decode(errors="replace").strip()))
            return time.perf_counter() - t0

        results = {}  # (mode, label) -> (conn_per_s, server_ms, client_ms, failed)
        for label, port, _pid in bench.servers():
            print(f"  {label:6}: negotiated {bench.negotiated(port, cipher, closer)}")
            for _ in range(warmup):
                one(port)
        for mode in ("sequential", f"parallel-{parallel}"):
            for label, port, _pid in bench.servers():
                settle(bench, label)
                before_fail = len(failures)
                s0, c0 = server_cpu(bench, label), bl.children_cpu_seconds()
                t0 = time.perf_counter()
                if mode == "sequential":
                    for _ in range(n):
                        one(port)
                else:
                    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
                        list(pool.map(lambda _: one(port), range(n)))
                wall = time.perf_counter() - t0
                settle(bench, label)
                s1, c1 = server_cpu(bench, label), bl.children_cpu_seconds()
                failed = len(failures) - before_fail
                results[(mode, label)] = (n / wall, (s1 - s0) * 1000 / n, (c1 - c0) * 1000 / n,
                                          failed)
                print(f"  {mode:12} {label:6}: {n / wall:7.1f} conn/s  wall {wall:6.2f} s  "
                      f"server cpu {(s1 - s0) * 1000 / n:6.2f} ms/conn  "
                      f"client cpu {(c1 - c0) * 1000 / n:6.2f} ms/conn  failed {failed}",
                      flush=True)
                if bench.agent.poll() is not None:
                    raise RuntimeError(f"alknet-agent died (rc={bench.agent.returncode})")

        print()
        print("Handshakes (connect + kex + publickey auth + 1 channel + close). The ssh client's "
              "own CPU dominates wall time on 2 cores;\nserver CPU per handshake is the main figure.")
        rows = []
        for mode in ("sequential", f"parallel-{parallel}"):
            a, s = results[(mode, "alknet")], results[(mode, "sshd")]
            rows.append([mode, f"{a[0]:.1f}", f"{s[0]:.1f}", bl.fmt_ratio(a[0], s[0]),
                         f"{a[1]:.2f}", f"{s[1]:.2f}", bl.fmt_ratio(a[1], s[1]),
                         bl.fmt_ratio(s[1], a[1]) + "x", f"{a[2]:.2f} / {s[2]:.2f}",
                         f"{a[3]} / {s[3]}"])
        bl.print_table(["mode", "alknet conn/s", "sshd conn/s", "ratio", "alknet srv ms/conn",
                        "sshd srv ms/conn", "ratio", "sshd÷alknet", "client ms/conn (alk/sshd)",
                        "failed (alk/sshd)"], rows)
        print(f"finished {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  {bl.loadavg()}; "
              f"{foreign.report()}")
        shown = [f"{'alknet' if port == bench.agent_port else 'sshd'}: rc={rc} {err}"
                 for port, rc, err in failures[:5]]
        return bl.report_problems(shown, bench.agent_log, "FAILED CONNECTIONS (first 5):")


if __name__ == "__main__":
    sys.exit(main())
