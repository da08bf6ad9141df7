"""Handshakes per second from a legitimate source while one penalised source floods connections.

alknet-agent with per-source penalties: 127.0.0.2 fails one login (penalties.authfail 10m,
min 1s: one failure is enough), then floods TCP connections as fast as it can (FLOOD_PROCS
processes, each connect + close in a loop, aim ~10,000/s) while 127.0.0.3 runs sequential full
`ssh -W` handshakes. Both rates are reported, without and with the flood. OpenSSH sshd runs the
same test side by side as the reference: Debian 12's sshd is 9.2, which has no
PerSourcePenalties (9.8+), so it runs plain (its flood connections reach MaxStartups and fork).

Environment: DURATION (10 s per phase), FLOOD_PROCS (2), CIPHER, WORKERS (2), KEX.
"""

import multiprocessing
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

LEGIT = "127.0.0.3"
FLOODER = "127.0.0.2"


def flood(port, seconds, counts, index):
    """Connect from FLOODER and close at once (RST), as fast as possible; counts[index] =
    attempts."""
    attempts = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        try:
            s.bind((FLOODER, 0))
            s.connect(("127.0.0.1", port))
        except OSError:
            pass
        finally:
            s.close()
        attempts += 1
    counts[index] = attempts


def handshakes(bench, port, cipher, closer, seconds):
    """Sequential ssh -W handshakes from LEGIT for `seconds`: (succeeded, failed, rate)."""
    ok = failed = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        r = subprocess.run(bench.ssh_argv(port, cipher, "-b", LEGIT, "-W", f"127.0.0.1:{closer}",
                                          "-o", "ConnectTimeout=10"),
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)
        ok, failed = (ok + 1, failed) if r.returncode == 0 else (ok, failed + 1)
    wall = time.perf_counter() - t0
    return ok, failed, ok / wall


def main():
    seconds = bl.env_int("DURATION", 10)
    procs = bl.env_int("FLOOD_PROCS", 2)
    cipher = os.environ.get("CIPHER", "chacha20-poly1305@openssh.com")
    with bl.Bench("penalties") as bench:
        bench.start_agent(extra=["--penalties", "true", "--penalty-authfail", "10m",
                                 "--penalty-min", "1s", "--penalty-max", "10m"])
        bench.start_sshd()
        closer = bench.endpoint("closer")
        print("== alknet penalties benchmark: legitimate handshakes while a penalised source floods ==")
        print(bl.machine_line())
        print(f"{seconds} s per phase; legitimate: sequential ssh -W from {LEGIT}; flood: {procs} "
              f"process(es) connect+close from {FLOODER}; cipher={cipher}")
        print("sshd: Debian 12's OpenSSH 9.2 has no PerSourcePenalties (added in 9.8): it runs "
              "plain, as the reference")
        # The flooder earns its penalty with one failed login (an unknown key) on the agent.
        stranger = bench.path("stranger")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", stranger], check=True)
        argv = bench.ssh_argv(bench.agent_port, cipher, "-b", FLOODER)
        argv[argv.index(bench.key)] = stranger
        subprocess.run(argv + ["true"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30)
        time.sleep(0.5)
        rows = []
        results = {}
        for label, port, _pid in bench.servers():
            base_ok, base_failed, base_rate = handshakes(bench, port, cipher, closer, seconds)
            counts = multiprocessing.Array("q", procs)
            flooders = [multiprocessing.Process(target=flood, args=(port, seconds, counts, i))
                        for i in range(procs)]
            for f in flooders:
                f.start()
            ok, failed, rate = handshakes(bench, port, cipher, closer, seconds)
            for f in flooders:
                f.join()
            attempts = sum(counts[i] for i in range(procs))
            if label == "sshd":
                bench.wait_sshd_idle(timeout=60)
            results[label] = (base_rate, rate, attempts / seconds)
            print(f"  {label:6}: alone {base_rate:6.1f} hs/s ({base_failed} failed)  under flood "
                  f"{rate:6.1f} hs/s ({failed} failed)  flood {attempts / seconds:8.0f} conn/s",
                  flush=True)
            rows.append([label, f"{base_rate:.1f}", f"{rate:.1f}", bl.fmt_ratio(rate, base_rate),
                         f"{attempts / seconds:.0f}", f"{failed}"])
        bl.print_table(["server", "hs/s alone", "hs/s under flood", "kept", "flood conn/s",
                        "legit failed"], rows)
        a, s = results["alknet"], results["sshd"]
        print(f"under flood, alknet÷sshd handshakes/s: {bl.fmt_ratio(a[1], s[1])}; "
              f"flood rate alknet÷sshd: {bl.fmt_ratio(a[2], s[2])}")
        print(f"finished {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  {bl.loadavg()}")
        return 0


if __name__ == "__main__":
    sys.exit(bl.run(main))
