"""The client side of ssh-in-TLS: `alknet-agent proxy` as the stock ssh client's ProxyCommand,
against socat and openssl s_client in the same place, to the same alknet-agent tls:// listener.

Each route is `ssh -N -L` through one ProxyCommand; the figure that differs between them is the
client side's CPU (ssh plus its ProxyCommand) per GiB, and the throughput.

Environment: SIZE_MB (512), RUNS (3), CIPHER (aes128-gcm@openssh.com), DIRECTIONS
("download upload"), WARMUP_MB (16, pattern-checked), STALL_TIMEOUT (120 s).
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402
import endpoints  # noqa: E402

MIB = 1 << 20
GIB = 1 << 30


def main():
    size_mb = bl.env_int("SIZE_MB", 512)
    runs = bl.env_int("RUNS", 3)
    warmup_mb = bl.env_int("WARMUP_MB", 16)
    stall = float(os.environ.get("STALL_TIMEOUT", "120"))
    cipher = os.environ.get("CIPHER", "aes128-gcm@openssh.com")
    directions = os.environ.get("DIRECTIONS", "download upload").split()
    size = size_mb * MIB

    with bl.Bench("proxy") as bench:
        bench.start_agent(extra=("--listen", "tls://127.0.0.1:0", "--metrics-listen", "off"))
        tls_port, pin = bl.agent_port_and_pin(bench, "tls")
        proto = bench.endpoint("proto")
        routes = {
            "alknet proxy": f"{bl.agent_binary()} proxy tls://127.0.0.1:%p --tls-fingerprint {pin}",
            "socat": "socat - OPENSSL:127.0.0.1:%p,verify=0",
            "openssl": "openssl s_client -quiet -connect 127.0.0.1:%p",
        }
        print("== alknet proxy benchmark: stock ssh -N -L to an alknet-agent tls:// listener "
              "through three ProxyCommands ==")
        print(bl.machine_line())
        foreign = bl.ForeignLoad()
        print(f"size={size_mb} MiB per transfer, runs={runs}, cipher={cipher}, kex={bench.kex}; "
              "client cpu = ssh + its ProxyCommand")
        tunnels = {}
        for label, proxy in routes.items():
            lport = bl.free_port()
            ssh = bench.spawn(bench.ssh_argv(tls_port, cipher, "-o", f"ProxyCommand={proxy}", "-N",
                                             "-L", f"127.0.0.1:{lport}:127.0.0.1:{proto}"),
                              f"ssh-{label.replace(' ', '-')}", stdin=subprocess.DEVNULL)
            bl.wait_until(lambda: bl.listening(lport) or ssh.poll() is not None, 30,
                          f"ssh -L via {label}")
            if ssh.poll() is not None:
                raise RuntimeError(f"ssh -N -L via {label} exited with {ssh.returncode}")
            tunnels[label] = (lport, ssh)
        results = {}  # (direction, label) -> [(MiB/s, client cpu s per GiB)]
        problems = []
        for direction in directions:
            fn = endpoints.download if direction == "download" else endpoints.upload
            for label, (lport, _ssh) in tunnels.items():
                _secs, got, ok = fn(lport, warmup_mb * MIB, verify=True, timeout=stall)
                if got != warmup_mb * MIB or not ok:
                    problems.append(f"{label} {direction} warm-up: received {got} of "
                                    f"{warmup_mb * MIB} bytes, pattern ok={ok}")
            for run in range(runs):
                order = list(tunnels.items())
                if run % 2:
                    order.reverse()
                for label, (lport, ssh) in order:
                    c0 = bl.tree_cpu_seconds(ssh.pid)
                    secs, got, ok = fn(lport, size, timeout=stall)
                    c1 = bl.tree_cpu_seconds(ssh.pid)
                    if got != size or not ok:
                        problems.append(f"{label} {direction} run {run + 1}: received {got} of "
                                        f"{size} bytes, ok={ok}")
                        continue
                    rate = size / MIB / secs
                    results.setdefault((direction, label), []).append((rate, (c1 - c0) * GIB / size))
                    print(f"  {direction:8} {label:13} run {run + 1}: {rate:8.1f} MiB/s  "
                          f"{secs:6.2f} s  client cpu {c1 - c0:5.2f} s", flush=True)
        for _label, (_lport, ssh) in tunnels.items():
            bench.stop(ssh)

        print()
        print(f"Throughput (MiB/s, median of {runs}) and client CPU s/GiB (median)")
        rows = []
        for direction in directions:
            def median(label, i):
                r = results.get((direction, label), [])
                return bl.median([x[i] for x in r]) if r else None
            a, s, o = (median(label, 0) for label in routes)
            ca, cs, co = (median(label, 1) for label in routes)
            if None in (a, s, o, ca, cs, co):
                rows.append([direction] + ["-"] * 8)
                continue
            rows.append([direction, f"{a:.1f}", f"{s:.1f}", f"{o:.1f}", bl.fmt_ratio(a, s),
                         bl.fmt_ratio(a, o), f"{ca:.2f}", f"{cs:.2f}", f"{co:.2f}"])
        bl.print_table(["direction", "alknet proxy", "socat", "openssl", "alknet/socat",
                        "alknet/openssl", "cpu alknet", "cpu socat", "cpu openssl"], rows)
        print("ratios use the medians; aim: alknet/socat >= 1.0 (socat checks no certificate here, "
              "alknet checks the pin)")
        print(f"finished {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  {bl.loadavg()}; "
              f"{foreign.report()}")
        return bl.report_problems(problems, bench.agent_log)


if __name__ == "__main__":
    sys.exit(bl.run(main))
