"""A/B throughput: several alknet-agent binaries and OpenSSH sshd in one run, optionally profiled.

Like throughput.py (same client, same target, same tunnels), but runs any number of agent
binaries side by side, so a change can be compared with its baseline under the same load:

  BENCH_NICE=-15 AGENTS="base=/tmp/a/alknet-agent new=build/agent/alknet-agent" \
    setsid python3 bench/lib/ab_throughput.py      # as root, from the checkout; builds nothing

Every run goes through every server, in an order that rotates from run to run. Environment:
AGENTS (label=path[:NAME=VALUE,...] ..., default: build/agent/alknet-agent as "alknet"), SSHD (1; 0 = skip sshd),
SIZE_MB (1024), RUNS (5), CIPHERS (aes128-gcm@openssh.com), DIRECTIONS ("download upload"),
WORKERS (2), WARMUP_MB (32), STALL_TIMEOUT (120), BENCH_NICE (autogroup nice for this script and
every server, as in bench/throughput; needs `setsid`),
PROFILE: a command run against the server process(es) during one extra transfer per server and
direction, e.g. 'perf record -g -o {out} -p {pids}', 'strace -c -f -o {out} -p {pids}' or
'perf stat -o {out} -p {pids}' ({pids}: comma-separated; {pid_args}: '-p A -p B' for strace);
it is stopped with SIGINT after the transfer and its output kept under PROFILE_DIR
(default /tmp/alknet-profile), named LABEL-CIPHER-DIRECTION.
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


def start_agent(bench, label, binary, workers):
    import re
    env = dict(os.environ)
    if ":" in binary:  # path:NAME=VALUE,NAME=VALUE sets environment variables for that agent only
        binary, assignments = binary.split(":", 1)
        env.update(a.split("=", 1) for a in assignments.split(",") if a)
    logfile = bench.path(f"agent-{label}.log")
    with open(logfile, "w") as out:
        proc = bench.spawn(
            [binary, "--state-dir", bench.path(f"agent-state-{label}"), "--listen",
             "tcp://127.0.0.1:0", "--authorized-keys", bench.path("authorized_keys"),
             "--workers", str(workers), "--metrics-listen", "127.0.0.1:0",
             "--forwarding-allow-loopback", "true",  # loopback targets (ADR 0014)
             "--log-level", os.environ.get("AGENT_LOG_LEVEL", "info")],
            f"alknet-agent-{label}", stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env=env)
    pattern = re.compile(r"engine: listening address=tcp://127\.0\.0\.1:(\d+)")
    port = []

    def ready():
        if proc.poll() is not None:
            raise RuntimeError(f"alknet-agent {label} exited: {open(logfile).read()}")
        m = pattern.search(open(logfile).read())
        if m:
            port.append(int(m.group(1)))
        return bool(port)

    bl.wait_until(ready, 15, f"alknet-agent {label} to listen")
    return proc, port[0]


def print_ratios(results, ciphers, directions, labels):
    """Each agent after the first against the first agent and against sshd: median MiB/s and
    median server CPU s/GiB as ratios (1.00 = the same)."""
    if len(labels) < 2:
        return
    base = labels[0]
    others = [l for l in labels[1:] if l != "sshd"]
    if not others:
        return
    print()
    print(f"ratios: MiB/s and server CPU s/GiB of each agent vs {base} and vs sshd (medians)")
    rows = []
    for cipher in ciphers:
        for direction in directions:
            def med(label, i):
                r = results.get((cipher, direction, label), [])
                return bl.median([x[i] for x in r]) if r else None
            for label in others:
                row = [cipher.split("@")[0], direction, label]
                for ref in (base, "sshd"):
                    a, b = med(label, 0), med(ref, 0)
                    ca, cb = med(label, 1), med(ref, 1)
                    row.append(f"{a / b:.2f}" if a and b else "-")
                    row.append(f"{ca / cb:.2f}" if ca and cb else "-")
                rows.append(row)
    bl.print_table(["cipher", "direction", "agent", f"MiB/s vs {base}", f"CPU vs {base}",
                    "MiB/s vs sshd", "CPU vs sshd"], rows)


def main():
    nice = os.environ.get("BENCH_NICE", "").strip()
    if nice:  # run under `setsid` so that this is an autogroup of its own
        with open("/proc/self/autogroup", "w") as f:
            f.write(nice)
    size = bl.env_int("SIZE_MB", 1024) * MIB
    runs = bl.env_int("RUNS", 5)
    warmup = bl.env_int("WARMUP_MB", 32) * MIB
    stall = float(os.environ.get("STALL_TIMEOUT", "120"))
    workers = bl.env_int("WORKERS", 2)
    ciphers = os.environ.get("CIPHERS", "aes128-gcm@openssh.com").split()
    directions = os.environ.get("DIRECTIONS", "download upload").split()
    agents = [a.split("=", 1) for a in os.environ.get(
        "AGENTS", f"alknet={bl.agent_binary()}").split()]
    profile = os.environ.get("PROFILE", "")
    profile_dir = os.environ.get("PROFILE_DIR", "/tmp/alknet-profile")

    with bl.Bench("ab-throughput") as bench:
        servers = []  # (label, port, proc or None for sshd)
        for label, binary in agents:
            proc, port = start_agent(bench, label, binary, workers)
            servers.append((label, port, proc))
        if os.environ.get("SSHD", "1") == "1":
            bench.start_sshd()
            servers.append(("sshd", bench.sshd_port, None))
        proto = bench.endpoint("proto")
        closer = bench.endpoint("closer")
        print("== alknet A/B throughput: " + ", ".join(f"{l}={b}" for l, b in agents) + " ==")
        print(bl.machine_line())
        foreign = bl.ForeignLoad()
        print(f"size={size // MIB} MiB, runs={runs}, workers={workers}", flush=True)

        def server_pids(proc):
            if proc is not None:
                return [proc.pid]
            return bl.descendants_of(bench.sshd.pid)

        def server_cpu(proc):
            if proc is not None:
                return bl.cpu_seconds(proc.pid)
            return bl.tree_cpu_seconds(bench.sshd.pid)

        results = {}
        problems = []
        for cipher in ciphers:
            tunnels = []
            for label, port, proc in servers:
                print(f"  {label:8} {cipher}: negotiated "
                      f"{bench.negotiated(port, cipher, closer, label)}", flush=True)
                lport = bl.free_port()
                ssh = bench.spawn(bench.ssh_argv(port, cipher, "-N", "-L",
                                                 f"127.0.0.1:{lport}:127.0.0.1:{proto}"),
                                  f"ssh-L-{label}", stdin=subprocess.DEVNULL)
                bl.wait_until(lambda: bl.listening(lport) or ssh.poll() is not None, 30,
                              f"ssh -L into {label}")
                tunnels.append((label, lport, ssh, proc))
            time.sleep(0.5)
            nice = os.environ.get("BENCH_NICE", "").strip()
            if nice:  # same autogroup nice for every server, as bench/throughput does
                for pid in [p.pid for _, _, p in servers if p] + (
                        bl.descendants_of(bench.sshd.pid) if bench.sshd else []):
                    try:
                        with open(f"/proc/{pid}/autogroup", "w") as f:
                            f.write(nice)
                    except OSError as e:
                        print(f"  cannot renice autogroup of {pid}: {e}")
            for direction in directions:
                fn = endpoints.download if direction == "download" else endpoints.upload
                for label, lport, ssh, proc in tunnels:
                    secs, got, ok = fn(lport, warmup, verify=True, timeout=stall)
                    if got != warmup or not ok:
                        problems.append(f"{label} {cipher} {direction} warm-up: {got} ok={ok}")
                if profile:
                    os.makedirs(profile_dir, exist_ok=True)
                    for label, lport, ssh, proc in tunnels:
                        pids = server_pids(proc)
                        out = os.path.join(profile_dir,
                                           f"{label}-{cipher.split('@')[0]}-{direction}")
                        s0, c0 = server_cpu(proc), bl.cpu_seconds(ssh.pid)
                        secs, got, ok = bl.profiled(profile, out, pids,
                                                    lambda: fn(lport, size, timeout=stall))
                        s1, c1 = server_cpu(proc), bl.cpu_seconds(ssh.pid)
                        print(f"  profiled {label:8} {cipher:24} {direction:8} "
                              f"{size / MIB / secs:7.1f} MiB/s server cpu {s1 - s0:5.2f} s "
                              f"client cpu {c1 - c0:5.2f} s -> {out}", flush=True)
                for run in range(runs):
                    k = run % len(tunnels)
                    order = tunnels[k:] + tunnels[:k]
                    if run % 2:
                        order.reverse()
                    for label, lport, ssh, proc in order:
                        s0, c0 = server_cpu(proc), bl.cpu_seconds(ssh.pid)
                        secs, got, ok = fn(lport, size, timeout=stall)
                        s1, c1 = server_cpu(proc), bl.cpu_seconds(ssh.pid)
                        if got != size or not ok:
                            problems.append(f"{label} {cipher} {direction} run {run + 1}: {got}")
                            continue
                        rate = size / MIB / secs
                        results.setdefault((cipher, direction, label), []).append(
                            (rate, (s1 - s0) * GIB / size, (c1 - c0) * GIB / size))
                        print(f"  {cipher:24} {direction:8} {label:8} run {run + 1}: "
                              f"{rate:7.1f} MiB/s  server cpu {(s1 - s0) * GIB / size:5.2f} s/GiB",
                              flush=True)
            for label, lport, ssh, proc in tunnels:
                bench.stop(ssh)

        print()
        print(f"median MiB/s [min-max], server CPU s/GiB (median) 's' / ssh client CPU s/GiB 'c', "
              f"over {runs} runs")
        labels = [s[0] for s in servers]
        rows = []
        for cipher in ciphers:
            for direction in directions:
                row = [cipher.split("@")[0], direction]
                for label in labels:
                    r = results.get((cipher, direction, label), [])
                    if not r:
                        row.append("-")
                        continue
                    rates = [x[0] for x in r]
                    row.append(f"{bl.median(rates):.1f} [{min(rates):.0f}-{max(rates):.0f}] "
                               f"{bl.median([x[1] for x in r]):.2f}s/"
                               f"{bl.median([x[2] for x in r]):.2f}c")
                rows.append(row)
        bl.print_table(["cipher", "direction"] + labels, rows)
        print_ratios(results, ciphers, directions, labels)
        print(f"finished {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  {bl.loadavg()}; "
              f"{foreign.report()}")
        return bl.report_problems(problems)


if __name__ == "__main__":
    sys.exit(bl.run(main))
