"""SOCKS5 through an established SSH session: alknet's client role (`alknet-agent connect
--socks5`) into alknet-agent and into sshd, against `ssh -N -D` into sshd, side by side.

Measures, per path: SOCKS5 CONNECT latency (TCP connect to the SOCKS port until the success
reply, which comes after the channel to the target is open) as p50/p99 over N sequential
requests, and bulk throughput (download and upload of SIZE_MB through one SOCKS5 connection).

Environment: N (300), SIZE_MB (256), RUNS (3), WARMUP_MB (16, pattern-checked),
CIPHER (chacha20-poly1305@openssh.com, the ssh -D client; libssh's default is the same),
WORKERS (2), STALL_TIMEOUT (120 s).
"""

import os
import re
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402
import endpoints  # noqa: E402

MIB = 1 << 20


def socks_connect(socks_port, target_port, timeout):
    """Returns a socket through the SOCKS5 proxy to 127.0.0.1:target_port."""
    s = socket.create_connection(("127.0.0.1", socks_port), timeout=timeout)
    s.sendall(b"\x05\x01\x00")
    if endpoints._recv_exact(s, 2) != b"\x05\x00":
        s.close()
        raise OSError("SOCKS5 method refused")
    s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", target_port))
    reply = endpoints._recv_exact(s, 10)
    if reply is None or reply[1] != 0:
        s.close()
        raise OSError(f"SOCKS5 CONNECT failed: {reply!r}")
    return s


def connect_latency(socks_port, target_port, n):
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        s = socks_connect(socks_port, target_port, 30)
        samples.append(time.perf_counter() - t0)
        s.close()
    samples.sort()
    return samples


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * (len(sorted_values) - 1)))))
    return sorted_values[k]


def download(socks_port, proto, size, verify, timeout):
    t0 = time.perf_counter()
    with socks_connect(socks_port, proto, timeout) as s:
        s.sendall(endpoints.HEADER.pack(b"D", size, 0))
        got, ok = endpoints._receive(s, size, verify)
    return time.perf_counter() - t0, got, ok


def upload(socks_port, proto, size, verify, timeout):
    t0 = time.perf_counter()
    with socks_connect(socks_port, proto, timeout) as s:
        s.sendall(endpoints.HEADER.pack(b"U", size, 1 if verify else 0))
        endpoints._send_pattern(s, size)
        reply = endpoints._recv_exact(s, endpoints.REPLY.size)
    if reply is None:
        return time.perf_counter() - t0, 0, False
    got, ok = endpoints.REPLY.unpack(reply)
    return time.perf_counter() - t0, got, bool(ok)


def start_client(bench, label, server_port):
    """alknet-agent connect with a SOCKS5 listener on a free port; returns (proc, socks_port,
    what its SSH session negotiated, from its 'ssh negotiated' log line)."""
    logfile = bench.path(f"client-{label}.log")
    with open(logfile, "w") as out:
        proc = bench.spawn([bl.agent_binary(), "connect", "--server", f"tcp://127.0.0.1:{server_port}",
                            "--user", bench.user, "--identity", bench.key,
                            "--insecure-accept-any-host-key", "--socks5", "127.0.0.1:0",
                            "--metrics-listen", "off", "--log-level", "info"],
                           f"client-{label}", stdout=out, stderr=subprocess.STDOUT,
                           start_new_session=True)
    socks = re.compile(r"socks5 listening .*address=127\.0\.0\.1:(\d+)")
    port = [None]

    def ready():
        if proc.poll() is not None:
            raise RuntimeError(f"alknet-agent connect exited: {open(logfile).read()}")
        text = open(logfile).read()
        m = socks.search(text)
        if m:
            port[0] = int(m.group(1))
        return port[0] is not None and "upstream connected" in text

    bl.wait_until(ready, 30, f"alknet client ({label}) to connect")
    return proc, port[0], bl.log_negotiated(logfile, f"alknet client -> {label}")


def main():
    n = bl.env_int("N", 300)
    size_mb = bl.env_int("SIZE_MB", 256)
    runs = bl.env_int("RUNS", 3)
    warmup_mb = bl.env_int("WARMUP_MB", 16)
    stall = float(os.environ.get("STALL_TIMEOUT", "120"))
    cipher = os.environ.get("CIPHER", "chacha20-poly1305@openssh.com")
    size = size_mb * MIB

    with bl.Bench("socks5") as bench:
        bench.start_agent(extra=("--metrics-listen", "127.0.0.1:0"))
        bench.start_sshd()
        proto = bench.endpoint("proto")
        closer = bench.endpoint("closer")
        print("== alknet SOCKS5 benchmark: alknet client role vs ssh -D, through an established session ==")
        print(bl.machine_line())
        foreign = bl.ForeignLoad()
        print(f"connects={n} sequential, size={size_mb} MiB per transfer, runs={runs}, "
              f"ssh -D cipher={cipher}, alknet client: libssh defaults, agent workers="
              f"{os.environ.get('WORKERS', '2')}")

        paths = []  # (label, socks_port, client_pid, server_pid)
        negotiated = []
        proc, port, algos = start_client(bench, "agent", bench.agent_port)
        paths.append(("alknet client -> alknet-agent", port, proc.pid, bench.agent.pid))
        negotiated.append((paths[-1][0], algos, "client log"))
        proc, port, algos = start_client(bench, "sshd", bench.sshd_port)
        paths.append(("alknet client -> sshd", port, proc.pid, bench.sshd.pid))
        negotiated.append((paths[-1][0], algos, "client log"))
        dport = bl.free_port()
        ssh = bench.spawn(bench.ssh_argv(bench.sshd_port, cipher, "-N", "-D", f"127.0.0.1:{dport}"),
                          "ssh-D", stdin=subprocess.DEVNULL)
        bl.wait_until(lambda: bl.listening(dport) or ssh.poll() is not None, 30, "ssh -D")
        if ssh.poll() is not None:
            raise RuntimeError(f"ssh -N -D exited with {ssh.returncode}")
        paths.append(("ssh -D -> sshd", dport, ssh.pid, bench.sshd.pid))
        negotiated.append((paths[-1][0], bench.negotiated(bench.sshd_port, cipher, closer,
                                                          paths[-1][0]), "ssh -v probe"))
        for label, algos, source in negotiated:
            print(f"  {label:32} negotiated {algos}  ({source})")
        baseline = paths[-1][0]
        time.sleep(0.5)

        problems = []
        latency = {}
        for label, socks, _cpid, _spid in paths:
            connect_latency(socks, closer, 20)  # warm-up
        for label, socks, _cpid, _spid in paths:
            try:
                latency[label] = connect_latency(socks, closer, n)
            except OSError as e:
                problems.append(f"{label} latency: {e!r}")
            print(f"  latency {label:32} done", flush=True)

        rates = {}
        for direction, fn in (("download", download), ("upload", upload)):
            for label, socks, _cpid, _spid in paths:
                secs, got, ok = fn(socks, proto, warmup_mb * MIB, True, stall)
                if got != warmup_mb * MIB or not ok:
                    problems.append(f"{label} {direction} warm-up: {got} bytes, pattern ok={ok}")
            for run in range(runs):
                order = paths if run % 2 == 0 else list(reversed(paths))
                for label, socks, cpid, spid in order:
                    try:
                        secs, got, ok = fn(socks, proto, size, False, stall)
                    except OSError as e:
                        problems.append(f"{label} {direction} run {run + 1}: {e!r}")
                        continue
                    if got != size or not ok:
                        problems.append(f"{label} {direction} run {run + 1}: {got} of {size} bytes")
                        continue
                    rate = size / MIB / secs
                    rates.setdefault((direction, label), []).append(rate)
                    print(f"  {direction:8} {label:32} run {run + 1}: {rate:8.1f} MiB/s", flush=True)

        print()
        print(f"SOCKS5 CONNECT latency (ms; connect to the SOCKS port until the success reply; "
              f"{n} sequential requests, target accepts at once)")
        rows = []
        base = latency.get(baseline)
        for label, *_ in paths:
            lat = latency.get(label)
            if not lat:
                rows.append([label, "-", "-", "-", "-"])
                continue
            p50, p99 = percentile(lat, 50) * 1e3, percentile(lat, 99) * 1e3
            r50 = bl.fmt_ratio(p50, percentile(base, 50) * 1e3) if base else "-"
            r99 = bl.fmt_ratio(p99, percentile(base, 99) * 1e3) if base else "-"
            rows.append([label, f"{p50:.3f}", f"{p99:.3f}", r50, r99])
        bl.print_table(["path", "p50 ms", "p99 ms", f"p50 / ({baseline})", f"p99 / ({baseline})"], rows)

        print()
        print(f"Throughput through one SOCKS5 connection (MiB/s, best and median of {runs})")
        rows = []
        for direction in ("download", "upload"):
            b = rates.get((direction, baseline), [])
            for label, *_ in paths:
                r = rates.get((direction, label), [])
                if not r:
                    rows.append([direction, label, "-", "-", "-"])
                    continue
                best, med = max(r), bl.median(r)
                ratio = bl.fmt_ratio(med, bl.median(b)) if b else "-"
                rows.append([direction, label, f"{best:.1f}", f"{med:.1f}", ratio])
        bl.print_table(["direction", "path", "best", "median", f"median / ({baseline})"], rows)
        print(f"finished {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  {bl.loadavg()}; {foreign.report()}")
        return bl.report_problems(problems)


if __name__ == "__main__":
    sys.exit(bl.run(main))
