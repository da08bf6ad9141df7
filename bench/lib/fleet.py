#!/usr/bin/env python3
"""Fleet benchmark (issue 16): two agents sharing state through a three-member etcd on loopback.

1. Propagation: a key added through agent A's admin API (gRPC), then polled on agent B until B
   lists it (ListKeys every 2 ms) and until the stock ssh logs in through B with it: median and
   p99 over KEYS (100) keys.
2. Admin writes per second (AddKey, sequential, WRITES of them) on an etcd replica and on an agent
   with the file backend, side by side in one run, and the ratio.
Prints numbers; never fails on timing.
"""
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402
from admin import generate_stubs, public_key_line  # noqa: E402

import grpc  # noqa: E402


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100.0 * (len(ordered) - 1))))]


def start_etcd(bench, members):
    ports = [(bl.free_port(), bl.free_port()) for _ in range(members)]
    cluster = ",".join(f"m{i}=http://127.0.0.1:{peer}" for i, (_, peer) in enumerate(ports))
    for i, (client, peer) in enumerate(ports):
        bench.spawn(["etcd", "--name", f"m{i}", "--data-dir", bench.path(f"etcd{i}"),
                     "--listen-client-urls", f"http://127.0.0.1:{client}",
                     "--advertise-client-urls", f"http://127.0.0.1:{client}",
                     "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                     "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                     "--initial-cluster", cluster, "--initial-cluster-state", "new"],
                    f"etcd{i}", stdout=subprocess.DEVNULL, stderr=open(bench.path(f"etcd{i}.log"), "w"))
    endpoints = ",".join(f"127.0.0.1:{client}" for client, _ in ports)
    bl.wait_until(lambda: subprocess.run(["etcdctl", "--endpoints", endpoints, "endpoint", "health"],
                                         env=dict(os.environ, ETCDCTL_API="3"), capture_output=True)
                  .returncode == 0, 30, "etcd to be healthy")
    return endpoints


def start_agent(bench, name, extra):
    log = bench.path(f"{name}.log")
    with open(log, "w") as out:
        proc = bench.spawn([bl.agent_binary(), "--state-dir", bench.path(f"{name}-state"),
                            "--listen", "tcp://127.0.0.1:0", "--workers", "2",
                            "--metrics-listen", "127.0.0.1:0", "--forwarding-allow-loopback", "true",
                            *extra], name, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    port = {}

    def ready():
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited: {open(log).read()}")
        m = re.search(r"engine: listening address=tcp://127\.0\.0\.1:(\d+)", open(log).read())
        if m:
            port["p"] = int(m.group(1))
        return "p" in port

    bl.wait_until(ready, 20, f"{name} to listen")
    socket_path = bench.path(f"{name}-state/admin.sock")
    bl.wait_until(lambda: os.path.exists(socket_path), 10, f"{name}'s admin socket")
    return port["p"], grpc.insecure_channel("unix:" + socket_path)


def main():
    n_keys = bl.env_int("KEYS", 100)
    writes = bl.env_int("WRITES", 200)
    with bl.Bench("fleet") as bench:
        generate_stubs(bench.path("stubs"))
        from alknet.admin.v1 import keys_pb2, keys_pb2_grpc  # noqa: E402

        endpoints = start_etcd(bench, 3)
        state = ["--state", f"etcd://{endpoints}/bench"]
        _, channel_a = start_agent(bench, "agent-a", state)
        port_b, channel_b = start_agent(bench, "agent-b", state)
        _, channel_file = start_agent(bench, "agent-file", [])
        keys_a = keys_pb2_grpc.KeysStub(channel_a)
        keys_b = keys_pb2_grpc.KeysStub(channel_b)
        keys_file = keys_pb2_grpc.KeysStub(channel_file)
        closer = bench.endpoint("closer")
        print("== alknet fleet benchmark (issue 16) ==")
        print(bl.machine_line())
        print(f"  etcd: {subprocess.run(['etcd', '--version'], capture_output=True, text=True).stdout.split(chr(10))[0]}"
              f", 3 members on loopback; agents A and B with --state etcd://.../bench")

        listed, logged_in = [], []
        for i in range(n_keys):
            key = bench.path(f"user{i}")
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"fleet-{i}", "-f", key],
                           check=True)
            line = open(key + ".pub").read().strip()
            t0 = time.perf_counter()
            keys_a.AddKey(keys_pb2.AddKeyRequest(public_key=line))
            while True:
                present = keys_b.ListKeys(keys_pb2.ListKeysRequest())
                if any(k.comment == f"fleet-{i}" for k in present.keys):
                    break
                if time.perf_counter() - t0 > 10:
                    raise RuntimeError(f"key {i} never reached B")
                time.sleep(0.002)
            listed.append(time.perf_counter() - t0)
            argv = bench.ssh_argv(port_b, "chacha20-poly1305@openssh.com", "-W", f"127.0.0.1:{closer}")
            argv[argv.index(bench.key)] = key
            while subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, timeout=30).returncode != 0:
                if time.perf_counter() - t0 > 20:
                    raise RuntimeError(f"key {i} never logged in on B")
            logged_in.append(time.perf_counter() - t0)

        def ms(values, p=None):
            return f"{1000 * (statistics.median(values) if p is None else percentile(values, p)):.1f} ms"

        print(f"\n  keys add on A -> listed on B ({n_keys} keys): median {ms(listed)}, p99 {ms(listed, 99)}")
        print(f"  keys add on A -> first ssh login through B succeeded: median {ms(logged_in)}, "
              f"p99 {ms(logged_in, 99)} (includes one ssh handshake)")

        def write_rate(stub):
            t0 = time.perf_counter()
            for i in range(writes):
                stub.AddKey(keys_pb2.AddKeyRequest(public_key=public_key_line(i)))
            return writes / (time.perf_counter() - t0)

        etcd_rate = write_rate(keys_a)
        file_rate = write_rate(keys_file)
        rows = [["AddKey writes/s (sequential)", f"{etcd_rate:.0f}", f"{file_rate:.0f}",
                 bl.fmt_ratio(etcd_rate, file_rate)]]
        print()
        bl.print_table(["", "etcd backend", "file backend", "etcd/file"], rows)


if __name__ == "__main__":
    bl.run(main)
