"""Bulk throughput through `ssh -N -L` into alknet-agent and into OpenSSH sshd, side by side.

Environment: SIZE_MB (1024), RUNS (3), CIPHERS (both), DIRECTIONS ("download upload"),
WORKERS (2), WARMUP_MB (32, pattern-checked), KEX (curve25519-sha256), STALL_TIMEOUT (120 s).
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402
import endpoints  # noqa: E402

DEFAULT_CIPHERS = "chacha20-poly1305@openssh.com aes128-gcm@openssh.com"
MIB = 1 << 20
GIB = 1 << 30


def server_cpu(bench, label):
    if label == "alknet":
        return bl.cpu_seconds(bench.agent.pid)
    return bl.tree_cpu_seconds(bench.sshd.pid)


def main():
    size_mb = bl.env_int("SIZE_MB", 1024)
    runs = bl.env_int("RUNS", 3)
    warmup_mb = bl.env_int("WARMUP_MB", 32)
    stall = float(os.environ.get("STALL_TIMEOUT", "120"))
    ciphers = os.environ.get("CIPHERS", DEFAULT_CIPHERS).split()
    directions = os.environ.get("DIRECTIONS", "download upload").split()
    size = size_mb * MIB

    with bl.Bench("throughput") as bench:
        bench.start_agent()
        bench.start_sshd()
        proto = bench.endpoint("proto")
        closer = bench.endpoint("closer")
        print("== alknet throughput benchmark: ssh -N -L, alknet-agent vs OpenSSH sshd ==")
        print(bl.machine_line())
        foreign = bl.ForeignLoad()
        print(f"size={size_mb} MiB per transfer, runs={runs}, agent workers={os.environ.get('WORKERS', '2')}, "
              f"client kex={bench.kex}, target=python3 source/sink on 127.0.0.1:{proto}")

        results = {}   # (cipher, direction, label) -> list of (mib_per_s, server_cpu_s, client_cpu_s)
        problems = []
        for cipher in ciphers:
            tunnels = {}
            for label, port, _pid in bench.servers():
                print(f"  {label:6} {cipher}: negotiated {bench.negotiated(port, cipher, closer, label)}")
                lport = bl.free_port()
                ssh = bench.spawn(bench.ssh_argv(port, cipher, "-N", "-L",
                                                 f"127.0.0.1:{lport}:127.0.0.1:{proto}"),
                                  f"ssh-L-{label}", stdin=subprocess.DEVNULL)
                bl.wait_until(lambda: bl.listening(lport) or ssh.poll() is not None, 30,
                              f"ssh -L into {label}")
                if ssh.poll() is not None:
                    raise RuntimeError(f"ssh -N -L into {label} exited with {ssh.returncode}")
                tunnels[label] = (lport, ssh)
            time.sleep(0.5)  # let sshd's post-auth processes settle before touching them
            print(f"  priority: {bench.boost_servers()}")

            for direction in directions:
                fn = endpoints.download if direction == "download" else endpoints.upload
                # Warm-up transfer with the data checked end to end.
                for label, (lport, ssh) in tunnels.items():
                    secs, got, ok = fn(lport, warmup_mb * MIB, verify=True, timeout=stall)
                    if got != warmup_mb * MIB or not ok:
                        problems.append(f"{label} {cipher} {direction} warm-up: received {got} of "
                                        f"{warmup_mb * MIB} bytes, pattern ok={ok}")
                for run in range(runs):
                    order = list(tunnels.items())
                    if run % 2:
                        order.reverse()
                    for label, (lport, ssh) in order:
                        s0, c0 = server_cpu(bench, label), bl.cpu_seconds(ssh.pid)
                        try:
                            secs, got, ok = fn(lport, size, timeout=stall)
                        except OSError as e:
                            problems.append(f"{label} {cipher} {direction} run {run + 1}: {e!r}")
                            continue
                        s1, c1 = server_cpu(bench, label), bl.cpu_seconds(ssh.pid)
                        if got != size or not ok:
                            problems.append(f"{label} {cipher} {direction} run {run + 1}: received "
                                            f"{got} of {size} bytes, ok={ok}")
                            continue
                        rate = size / MIB / secs
                        results.setdefault((cipher, direction, label), []).append(
                            (rate, (s1 - s0) * GIB / size, (c1 - c0) * GIB / size))
                        print(f"  {cipher:30} {direction:8} {label:6} run {run + 1}: "
                              f"{rate:8.1f} MiB/s  {secs:6.2f} s  server cpu {s1 - s0:5.2f} s",
                              flush=True)
                    if bench.agent.poll() is not None:
                        raise RuntimeError(f"alknet-agent died (rc={bench.agent.returncode})")
            for label, (lport, ssh) in tunnels.items():
                bench.stop(ssh)

        print()
        print("Throughput (MiB/s = 2^20 bytes/s, client wall time from connect to last byte; "
              f"best and median of {runs})")
        rows = []
        for cipher in ciphers:
            for direction in directions:
                a = results.get((cipher, direction, "alknet"), [])
                s = results.get((cipher, direction, "sshd"), [])
                if not a or not s:
                    rows.append([cipher, direction] + ["-"] * 6)
                    continue
                ab, am = max(r[0] for r in a), bl.median([r[0] for r in a])
                sb, sm = max(r[0] for r in s), bl.median([r[0] for r in s])
                rows.append([cipher, direction, f"{ab:.1f}", f"{am:.1f}", f"{sb:.1f}", f"{sm:.1f}",
                             bl.fmt_ratio(ab, sb), bl.fmt_ratio(am, sm)])
        bl.print_table(["cipher", "direction", "alknet best", "alknet median", "sshd best",
                        "sshd median", "ratio best", "ratio median"], rows)

        print()
        print("CPU seconds per GiB moved (median of runs). server: alknet-agent process / sshd "
              "per-connection processes; client: the ssh -L process")
        rows = []
        for cipher in ciphers:
            for direction in directions:
                a = results.get((cipher, direction, "alknet"), [])
                s = results.get((cipher, direction, "sshd"), [])
                if not a or not s:
                    rows.append([cipher, direction] + ["-"] * 5)
                    continue
                acpu, scpu = bl.median([r[1] for r in a]), bl.median([r[1] for r in s])
                rows.append([cipher, direction, f"{acpu:.2f}", f"{scpu:.2f}",
                             bl.fmt_ratio(acpu, scpu),
                             f"{bl.median([r[2] for r in a]):.2f}",
                             f"{bl.median([r[2] for r in s]):.2f}"])
        bl.print_table(["cipher", "direction", "alknet cpu s/GiB", "sshd cpu s/GiB",
                        "ratio", "client cpu (alknet)", "client cpu (sshd)"], rows)

        print(f"finished {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  {bl.loadavg()}; "
              f"{foreign.report()}")
        return bl.report_problems(problems, bench.agent_log)


if __name__ == "__main__":
    sys.exit(bl.run(main))
