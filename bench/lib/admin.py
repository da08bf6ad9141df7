#!/usr/bin/env python3
"""Admin API benchmark: key changes per second with 10,000 keys loaded, and authentication
latency with 10 vs 10,000 keys (the agent looks keys up by blob hash, so the ratio should be
about 1.0). Python grpcio client over the agent's Unix socket; stubs generated from proto/ into
the temp dir; the CLI (alknet-admin) is timed too.

Knobs: KEYS (10000), CHANGES (300 adds + removes through gRPC), CLI_CHANGES (50), HANDSHAKES
(60 per key count), CIPHER (chacha20-poly1305@openssh.com).
"""
import base64
import os
import shutil
import statistics
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

try:
    import grpc
except ImportError:
    sys.exit("bench/admin needs Python grpcio (Debian: apt-get install python3-grpcio)")


def public_key_line(index):
    # A random 32-byte Ed25519 public key; the agent checks type and length, not the point.
    blob = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + os.urandom(32)
    return "ssh-ed25519 %s bench-%d" % (base64.b64encode(blob).decode(), index)


def generate_stubs(out_dir):
    proto_dir = os.path.join(bl.REPO_DIR, "proto")
    plugin = shutil.which("grpc_python_plugin")
    os.makedirs(out_dir, exist_ok=True)
    subprocess.run(["protoc", "-I", proto_dir, "--python_out", out_dir, "--grpc_python_out", out_dir,
                    "--plugin=protoc-gen-grpc_python=" + plugin] +
                   ["alknet/admin/v1/%s.proto" % n for n in ("keys", "policy", "sessions", "agent", "forwards")],
                   check=True)
    sys.path.insert(0, out_dir)


def rate(count, seconds):
    return count / seconds if seconds > 0 else float("inf")


def main():
    n_keys = bl.env_int("KEYS", 10000)
    changes = bl.env_int("CHANGES", 300)
    cli_changes = bl.env_int("CLI_CHANGES", 50)
    handshakes = bl.env_int("HANDSHAKES", 60)
    cipher = os.environ.get("CIPHER", "chacha20-poly1305@openssh.com")
    admin_cli = os.environ.get("ALKNET_ADMIN", os.path.join(bl.BUILD_DIR, "admin-cli", "alknet-admin"))
    with bl.Bench("admin") as bench:
        generate_stubs(bench.path("stubs"))
        from alknet.admin.v1 import keys_pb2, keys_pb2_grpc  # noqa: E402

        bench.start_agent()
        closer = bench.endpoint("closer")
        socket_path = bench.path("agent-state/admin.sock")
        channel = grpc.insecure_channel("unix:" + socket_path,
                                        options=[("grpc.max_receive_message_length", 64 << 20),
                                                 ("grpc.max_send_message_length", 64 << 20)])
        keys = keys_pb2_grpc.KeysStub(channel)
        print("== alknet admin API benchmark ==")
        print(bl.machine_line())
        print(f"  alknet: negotiated {bench.negotiated(bench.agent_port, cipher, closer, 'alknet')}")
        foreign = bl.ForeignLoad()

        def handshake_ms():
            times, failed = [], 0
            for _ in range(handshakes):
                t0 = time.perf_counter()
                r = subprocess.run(bench.ssh_argv(bench.agent_port, cipher, "-W", f"127.0.0.1:{closer}",
                                                  "-o", "ConnectTimeout=10"),
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   timeout=60)
                times.append((time.perf_counter() - t0) * 1000)
                failed += r.returncode != 0
            return statistics.median(times), failed

        # 10 keys: the bench key (authorized_keys file) + 9 API keys.
        keys.ImportKeys(keys_pb2.ImportKeysRequest(authorized_keys="\n".join(public_key_line(i) for i in range(9))))
        for _ in range(3):
            handshake_ms()  # warm-up
        small_ms, small_failed = handshake_ms()

        lines = [public_key_line(i) for i in range(9, n_keys - 1)]
        t0 = time.perf_counter()
        keys.ImportKeys(keys_pb2.ImportKeysRequest(authorized_keys="\n".join(lines)))
        import_s = time.perf_counter() - t0
        listed = keys.ListKeys(keys_pb2.ListKeysRequest()).keys
        loaded = len(listed)
        t0 = time.perf_counter()
        keys.ListKeys(keys_pb2.ListKeysRequest())
        list_s = time.perf_counter() - t0
        state_bytes = os.path.getsize(bench.path("agent-state/state.pb"))

        big_ms, big_failed = handshake_ms()

        extra = [public_key_line(100000 + i) for i in range(changes)]
        t0 = time.perf_counter()
        fingerprints = [keys.AddKey(keys_pb2.AddKeyRequest(public_key=line)).key.fingerprint for line in extra]
        add_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for fp in fingerprints:
            keys.RemoveKey(keys_pb2.RemoveKeyRequest(fingerprint=fp))
        remove_s = time.perf_counter() - t0

        cli_s = None
        if os.access(admin_cli, os.X_OK) and cli_changes > 0:
            key_file = bench.path("cli.pub")
            t0 = time.perf_counter()
            for i in range(cli_changes):
                with open(key_file, "w") as f:
                    f.write(public_key_line(200000 + i) + "\n")
                subprocess.run([admin_cli, "--socket", socket_path, "keys", "add", key_file], check=True,
                               stdout=subprocess.DEVNULL)
            cli_s = time.perf_counter() - t0

        print(f"keys loaded: {loaded} ({n_keys} wanted), state file {state_bytes / 1e6:.2f} MB")
        print()
        bl.print_table(
            ["operation", "count", "seconds", "per second"],
            [["ImportKeys (one RPC)", str(len(lines)), f"{import_s:.2f}", f"{rate(len(lines), import_s):.0f}"],
             ["ListKeys (one RPC)", str(loaded), f"{list_s:.3f}", "-"],
             [f"AddKey (gRPC, {loaded} loaded)", str(changes), f"{add_s:.2f}", f"{rate(changes, add_s):.1f}"],
             [f"RemoveKey (gRPC, {loaded} loaded)", str(changes), f"{remove_s:.2f}", f"{rate(changes, remove_s):.1f}"]] +
            ([[f"alknet-admin keys add (CLI)", str(cli_changes), f"{cli_s:.2f}", f"{rate(cli_changes, cli_s):.1f}"]]
             if cli_s is not None else []))
        print()
        bl.print_table(
            ["keys loaded", "median ssh -W handshake (ms)", "failed"],
            [["10", f"{small_ms:.1f}", str(small_failed)],
             [str(loaded), f"{big_ms:.1f}", str(big_failed)]])
        print(f"\nauth latency ratio ({loaded} keys / 10 keys): {big_ms / small_ms:.2f}  "
              f"(lookup is O(1) by key blob hash)")
        print(foreign.report())
        if small_failed or big_failed:
            print("PROBLEMS: handshakes failed")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(bl.run(main))
