"""QUIC tunnels across a binary upgrade: what a session left in the old process carries while it
drains (its packets reach the new process, which passes them back over the upgrade link),
against the same session before the upgrade and a fresh session in the new process, one run.

Each route is stock `ssh -N -L` through `alknet-agent proxy quic://` to one alknet-agent
(2 workers); the upgrade is SIGUSR2 with the same binary on disk.

Environment: SIZE_MB (256), RUNS (3), DIRECTIONS ("download upload"), WARMUP_MB (8, pattern-
checked), STALL_TIMEOUT (120 s).
"""

import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402
import endpoints  # noqa: E402

MIB = 1 << 20


def main():
    size_mb = bl.env_int("SIZE_MB", 256)
    runs = bl.env_int("RUNS", 3)
    warmup_mb = bl.env_int("WARMUP_MB", 8)
    stall = float(os.environ.get("STALL_TIMEOUT", "120"))
    directions = os.environ.get("DIRECTIONS", "download upload").split()
    size = size_mb * MIB

    with bl.Bench("quic_upgrade") as bench:
        bench.start_agent(workers=2, extra=("--listen", "quic://127.0.0.1:0", "--metrics-listen", "off"))
        port, pin = bl.agent_port_and_pin(bench, "quic")
        proto = bench.endpoint("proto")
        proxy = f"{bl.agent_binary()} proxy quic://127.0.0.1:%p --tls-fingerprint {pin}"
        print("== QUIC tunnels across a binary upgrade: stock ssh -N -L through alknet-agent proxy "
              "quic:// ==")
        print(bl.machine_line())
        foreign = bl.ForeignLoad()
        print(f"size={size_mb} MiB per transfer, runs={runs}")

        def tunnel(label):
            lport = bl.free_port()
            ssh = bench.spawn(bench.ssh_argv(port, "aes128-gcm@openssh.com", "-o", f"ProxyCommand={proxy}",
                                             "-N", "-L", f"127.0.0.1:{lport}:127.0.0.1:{proto}"),
                              f"ssh-{label}", stdin=subprocess.DEVNULL)
            bl.wait_until(lambda: bl.listening(lport) or ssh.poll() is not None, 30, f"ssh -L ({label})")
            if ssh.poll() is not None:
                raise RuntimeError(f"ssh -N -L ({label}) exited with {ssh.returncode}")
            return lport

        results = {}  # (direction, route) -> [MiB/s]
        problems = []

        def transfer(direction):
            return endpoints.download if direction == "download" else endpoints.upload

        def warm_up(route, lport, direction):
            _secs, got, ok = transfer(direction)(lport, warmup_mb * MIB, verify=True, timeout=stall)
            if got != warmup_mb * MIB or not ok:
                problems.append(f"{route} warm-up {direction}: received {got} bytes, pattern ok={ok}")

        def measure(route, lport, direction, run):
            secs, got, ok = transfer(direction)(lport, size, timeout=stall)
            if got != size or not ok:
                problems.append(f"{route} {direction} run {run + 1}: received {got} of {size} bytes")
                return
            rate = size / MIB / secs
            results.setdefault((direction, route), []).append(rate)
            print(f"  {direction:8} {route:28} run {run + 1}: {rate:8.1f} MiB/s", flush=True)

        old = tunnel("old")
        for direction in directions:
            warm_up("old process, before", old, direction)
            for run in range(runs):
                measure("old process, before", old, direction, run)

        bench.agent.send_signal(signal.SIGUSR2)
        served = re.compile(r"the new process serves pid=(\d+)")
        bl.wait_until(lambda: "handed over; keeping" in open(bench.agent_log).read(), 60, "the handover")
        new_pid = int(served.search(open(bench.agent_log).read()).group(1))
        fresh = tunnel("new")
        routes = {"old process, relayed": old, "new process": fresh}
        for direction in directions:
            warm_up("old process, relayed", old, direction)
            for run in range(runs):
                order = list(routes.items()) if run % 2 == 0 else list(reversed(routes.items()))
                for route, lport in order:
                    measure(route, lport, direction, run)
        try:
            os.kill(new_pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

        print()
        print(f"Throughput (MiB/s, median of {runs})")
        rows = []
        for direction in directions:
            before, relayed, new = (
                bl.median(results[(direction, r)]) if results.get((direction, r)) else None
                for r in ("old process, before", "old process, relayed", "new process"))
            if None in (before, relayed, new):
                rows.append([direction, "-", "-", "-", "-"])
                continue
            rows.append([direction, f"{before:.1f}", f"{relayed:.1f}", f"{new:.1f}",
                         bl.fmt_ratio(relayed, before)])
        bl.print_table(["direction", "old, before", "old, relayed", "new process", "relayed/before"], rows)
        print(f"finished {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  {bl.loadavg()}; {foreign.report()}")
        return bl.report_problems(problems, bench.agent_log)


if __name__ == "__main__":
    sys.exit(bl.run(main))
