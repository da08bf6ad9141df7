"""Bulk throughput of SSH inside TLS: alknet-agent on tls:// vs stunnel4 in front of OpenSSH sshd.

Both are reached by the same stock ssh client through the same TLS client (ProxyCommand, socat
by default), with the same SSH cipher; the agent's plain tcp:// figure is measured in the same
run (the TLS path should keep >= 0.9x of it), and its quic:// one (issue 14), reached through
`alknet-agent proxy quic://` (aim: >= 0.8x of tcp).

Environment: SIZE_MB (1024), RUNS (3), CIPHERS (aes128-gcm@openssh.com), DIRECTIONS
("download upload"), WORKERS (2), WARMUP_MB (32, pattern-checked), KEX (curve25519-sha256),
STALL_TIMEOUT (120 s), TLS_CLIENT (socat | openssl).
"""

import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402
import endpoints  # noqa: E402

MIB = 1 << 20
GIB = 1 << 30


def proxy_command(client):
    if client == "openssl":
        return "openssl s_client -quiet -connect 127.0.0.1:%p -servername example.com"
    return "socat - OPENSSL:127.0.0.1:%p,verify=0"


def start_stunnel(bench):
    cert, key = bench.path("stunnel_cert.pem"), bench.path("stunnel_key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = bl.free_port()
    config = bench.path("stunnel.conf")
    with open(config, "w") as f:
        f.write(f"""foreground = yes
pid =
debug = 4
output = {bench.path('stunnel.log')}
[ssh]
accept = 127.0.0.1:{port}
connect = 127.0.0.1:{bench.sshd_port}
cert = {cert}
key = {key}
sslVersionMin = TLSv1.2
""")
    proc = bench.spawn(["stunnel4", config], "stunnel4", stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    bl.wait_until(lambda: bl.listening(port) or proc.poll() is not None, 15, "stunnel4 to listen")
    if proc.poll() is not None:
        raise RuntimeError(f"stunnel4 exited: {open(bench.path('stunnel.log')).read()}")
    bl.log(f"stunnel4 pid={proc.pid} port={port} -> sshd {bench.sshd_port}")
    return proc, port


def agent_port(bench, scheme):
    pattern = re.compile(rf"engine: listening address={scheme}://127\.0\.0\.1:(\d+)")
    found = []

    def ready():
        m = pattern.search(open(bench.agent_log).read())
        if m:
            found.append(int(m.group(1)))
        return bool(found)

    bl.wait_until(ready, 15, f"alknet-agent {scheme}:// listener")
    return found[0]


def agent_pin(bench):
    m = re.search(r"sha256=([0-9A-F:]{95})", open(bench.agent_log).read())
    if not m:
        raise RuntimeError("the agent logged no certificate fingerprint")
    return m.group(1)


def main():
    size_mb = bl.env_int("SIZE_MB", 1024)
    runs = bl.env_int("RUNS", 3)
    warmup_mb = bl.env_int("WARMUP_MB", 32)
    stall = float(os.environ.get("STALL_TIMEOUT", "120"))
    ciphers = os.environ.get("CIPHERS", "aes128-gcm@openssh.com").split()
    directions = os.environ.get("DIRECTIONS", "download upload").split()
    client = os.environ.get("TLS_CLIENT", "socat")
    # PROFILE: as in ab_throughput.py, a command ('perf record -g -o {out}.perf.data -p {pids}')
    # attached to the route's server processes for one extra transfer per route and direction;
    # outputs under PROFILE_DIR, named ROUTE-CIPHER-DIRECTION.
    profile = os.environ.get("PROFILE", "")
    profile_dir = os.environ.get("PROFILE_DIR", "/tmp/alknet-profile")
    size = size_mb * MIB

    # QUIC_MAX_UDP_PAYLOAD=N: the agent and its proxy send datagrams up to N bytes (the loopback
    # carries 65507), as TCP's segments are up to 64 KiB here; 0 (default): 1200, discovery to 1452.
    quic_payload = bl.env_int("QUIC_MAX_UDP_PAYLOAD", 0)
    quic_flags = ("--quic-max-udp-payload", str(quic_payload)) if quic_payload else ()
    # QUIC_CC=bbr|cubic: the congestion control of the agent and its proxy (default: the agent's).
    quic_cc = os.environ.get("QUIC_CC", "")
    if quic_cc:
        quic_flags += ("--quic-congestion-control", quic_cc)

    with bl.Bench("throughput-tls") as bench:
        bench.start_agent(extra=("--listen", "tls://127.0.0.1:0", "--listen", "quic://127.0.0.1:0",
                                 "--metrics-listen", "off") + quic_flags)
        tls_port = agent_port(bench, "tls")
        quic_port = agent_port(bench, "quic")
        quic_proxy = (f"{bl.agent_binary()} proxy quic://127.0.0.1:%p --tls-fingerprint {agent_pin(bench)} "
                      + " ".join(quic_flags))
        bench.start_sshd()
        stunnel, stunnel_port = start_stunnel(bench)
        if os.environ.get("BENCH_IN_NETNS") and os.environ.get("LOSS_SCOPE", "transport") != "all":
            # The lossy link is the servers' transport hop (bench/throughput_tls made the set).
            ports = ", ".join(str(p) for p in (bench.agent_port, tls_port, quic_port, stunnel_port))
            subprocess.run(["nft", "add", "element", "inet", "bench_loss", "transport_ports",
                            "{ " + ports + " }"], check=True)
            print(f"loss on the transport hop only: ports {ports}")
        proto = bench.endpoint("proto")
        closer = bench.endpoint("closer")
        proxy = proxy_command(client)
        print("== alknet TLS throughput benchmark: ssh -N -L inside TLS, "
              "alknet-agent tls:// vs stunnel4 + OpenSSH sshd ==")
        print(bl.machine_line())
        foreign = bl.ForeignLoad()
        print(f"size={size_mb} MiB per transfer, runs={runs}, agent workers="
              f"{os.environ.get('WORKERS', '2')}, client kex={bench.kex}, TLS client: {proxy}, "
              f"quic max UDP payload: {quic_payload or 'discovered (1200..1452)'}, "
              f"quic congestion control: {quic_cc or 'default'}")
        # route label -> (port, ProxyCommand or None, the server's CPU seconds, its pids)
        agent_pids = lambda: [bench.agent.pid]  # noqa: E731
        routes = {
            "alknet-tls": (tls_port, proxy, lambda: bl.cpu_seconds(bench.agent.pid), agent_pids),
            "stunnel+sshd": (stunnel_port, proxy,
                             lambda: bl.cpu_seconds(stunnel.pid) + bl.tree_cpu_seconds(bench.sshd.pid),
                             lambda: [stunnel.pid] + bl.descendants_of(bench.sshd.pid)),
            "alknet-tcp": (bench.agent_port, None, lambda: bl.cpu_seconds(bench.agent.pid), agent_pids),
            "alknet-quic": (quic_port, quic_proxy, lambda: bl.cpu_seconds(bench.agent.pid), agent_pids),
        }
        results = {}  # (cipher, direction, route) -> [(MiB/s, server cpu s per GiB)]
        problems = []
        for cipher in ciphers:
            tunnels = {}
            for label, (port, proxy_cmd, _cpu, _pids) in routes.items():
                # What this route negotiates: SSH kex and cipher, and for the TLS routes the TLS
                # version and suite, as the same TLS client reports them (a verbose probe).
                if label == "alknet-quic":  # the verbose TLS probe knows socat/openssl only
                    print(f"  {label:12} {cipher}: TLS 1.3 in QUIC (alknet-agent proxy)", flush=True)
                else:
                    print(f"  {label:12} {cipher}: negotiated "
                          f"{bench.negotiated(port, cipher, closer, label, proxy=proxy_cmd)}",
                          flush=True)
                extra = ["-o", f"ProxyCommand={proxy_cmd}"] if proxy_cmd else []
                lport = bl.free_port()
                ssh = bench.spawn(bench.ssh_argv(port, cipher, *extra, "-N", "-L",
                                                 f"127.0.0.1:{lport}:127.0.0.1:{proto}"),
                                  f"ssh-L-{label}", stdin=subprocess.DEVNULL)
                bl.wait_until(lambda: bl.listening(lport) or ssh.poll() is not None, 30,
                              f"ssh -L via {label}")
                if ssh.poll() is not None:
                    raise RuntimeError(f"ssh -N -L via {label} exited with {ssh.returncode}")
                tunnels[label] = (lport, ssh)
            for direction in directions:
                fn = endpoints.download if direction == "download" else endpoints.upload
                for label, (lport, _ssh) in tunnels.items():
                    _secs, got, ok = fn(lport, warmup_mb * MIB, verify=True, timeout=stall)
                    if got != warmup_mb * MIB or not ok:
                        problems.append(f"{label} {cipher} {direction} warm-up: received {got} "
                                        f"of {warmup_mb * MIB} bytes, pattern ok={ok}")
                if profile:  # one extra transfer per route with the profiler attached
                    os.makedirs(profile_dir, exist_ok=True)
                    for label, (lport, _ssh) in tunnels.items():
                        out = os.path.join(profile_dir, f"{label}-{cipher.split('@')[0]}-{direction}")
                        cpu = routes[label][2]
                        s0 = cpu()
                        secs, got, ok = bl.profiled(profile, out, routes[label][3](),
                                                    lambda: fn(lport, size, timeout=stall))
                        print(f"  profiled {label:12} {cipher:24} {direction:8} "
                              f"{size / MIB / secs:7.1f} MiB/s server cpu {cpu() - s0:5.2f} s -> {out}",
                              flush=True)
                for run in range(runs):
                    order = list(tunnels.items())
                    if run % 2:
                        order.reverse()
                    for label, (lport, _ssh) in order:
                        cpu = routes[label][2]
                        s0 = cpu()
                        try:
                            secs, got, ok = fn(lport, size, timeout=stall)
                        except OSError as e:
                            problems.append(f"{label} {cipher} {direction} run {run + 1}: {e!r}")
                            continue
                        s1 = cpu()
                        if got != size or not ok:
                            problems.append(f"{label} {cipher} {direction} run {run + 1}: "
                                            f"received {got} of {size} bytes, ok={ok}")
                            continue
                        rate = size / MIB / secs
                        results.setdefault((cipher, direction, label), []).append(
                            (rate, (s1 - s0) * GIB / size))
                        print(f"  {cipher:24} {direction:8} {label:12} run {run + 1}: "
                              f"{rate:8.1f} MiB/s  {secs:6.2f} s  server cpu {s1 - s0:5.2f} s",
                              flush=True)
                    if bench.agent.poll() is not None:
                        raise RuntimeError(f"alknet-agent died (rc={bench.agent.returncode})")
            for _label, (_lport, ssh) in tunnels.items():
                bench.stop(ssh)

        print()
        print(f"Throughput (MiB/s, best / median of {runs}); server CPU s/GiB (median)")
        rows = []
        for cipher in ciphers:
            for direction in directions:
                def stats(label):
                    r = results.get((cipher, direction, label), [])
                    if not r:
                        return None
                    return (max(x[0] for x in r), bl.median([x[0] for x in r]),
                            bl.median([x[1] for x in r]))
                a, s, t = stats("alknet-tls"), stats("stunnel+sshd"), stats("alknet-tcp")
                q = stats("alknet-quic")
                if not a or not s or not t or not q:
                    rows.append([cipher, direction] + ["-"] * 11)
                    continue
                rows.append([cipher, direction, f"{a[0]:.1f} / {a[1]:.1f}", f"{s[0]:.1f} / {s[1]:.1f}",
                             f"{t[0]:.1f} / {t[1]:.1f}", f"{q[0]:.1f} / {q[1]:.1f}",
                             bl.fmt_ratio(a[1], s[1]), bl.fmt_ratio(a[1], t[1]),
                             bl.fmt_ratio(q[1], t[1]), f"{a[2]:.2f}", f"{s[2]:.2f}", f"{t[2]:.2f}",
                             f"{q[2]:.2f}"])
        bl.print_table(["cipher", "direction", "alknet tls", "stunnel+sshd", "alknet tcp",
                        "alknet quic", "tls/stunnel", "tls/tcp", "quic/tcp", "cpu tls",
                        "cpu stunnel+sshd", "cpu tcp", "cpu quic"], rows)
        print("ratios use the medians; aims: tls/stunnel >= 1.0, tls/tcp >= 0.9, quic/tcp >= 0.8")
        print(f"finished {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  {bl.loadavg()}; "
              f"{foreign.report()}")
        return bl.report_problems(problems, bench.agent_log)


if __name__ == "__main__":
    sys.exit(bl.run(main))
