#!/usr/bin/env python3
"""Drives every admin API service and RPC of a real alknet-agent over its Unix socket with
Python grpcio: Keys, Policy, Sessions, Agent, Forwards, grpc.health.v1 and server reflection.

Stubs are generated from proto/ at test time (protoc --python_out + grpc_python_plugin) into a
temp dir. Health and reflection are called as raw methods with hand-encoded protobuf messages,
so no extra Python packages are needed. Exit status 0 when every test passes.
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

ARGS = None
grpc = None


def run(argv, **kwargs):
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(argv), result.returncode, result.stderr))
    return result


def generate_stubs(proto_dir, out_dir):
    protos = [os.path.join("alknet/admin/v1", name)
              for name in ("keys.proto", "policy.proto", "sessions.proto", "agent.proto", "forwards.proto")]
    os.makedirs(out_dir, exist_ok=True)
    run([ARGS.protoc, "-I", proto_dir, "--python_out", out_dir, "--grpc_python_out", out_dir,
         "--plugin=protoc-gen-grpc_python=" + ARGS.grpc_python_plugin] + protos)
    sys.path.insert(0, out_dir)


# ---- a minimal protobuf wire codec for the health and reflection messages ----

def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_bytes(number, payload):
    return varint((number << 3) | 2) + varint(len(payload)) + payload


def parse(data):
    """[(field number, wire type, value)] of one message; value is int or bytes."""
    fields, i = [], 0
    while i < len(data):
        key, i = read_varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = read_varint(data, i)
        elif wire == 2:
            length, i = read_varint(data, i)
            value, i = data[i:i + length], i + length
        elif wire == 1:
            value, i = data[i:i + 8], i + 8
        elif wire == 5:
            value, i = data[i:i + 4], i + 4
        else:
            raise ValueError("unexpected wire type %d" % wire)
        fields.append((number, wire, value))
    return fields


def read_varint(data, i):
    shift = value = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def identity(x):
    return x


def start_agent(tmp, name, argv):
    """Starts an agent logging to TMP/NAME.log; returns (process, log path, port)."""
    log_path = os.path.join(tmp, name + ".log")
    log = open(log_path, "w")
    agent = subprocess.Popen([ARGS.agent] + argv, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.time() + 15
    while time.time() < deadline:
        m = re.search(r"engine: listening address=tcp://127\.0\.0\.1:(\d+)", open(log_path).read())
        if m:
            return agent, log_path, int(m.group(1))
        if agent.poll() is not None:
            break
        time.sleep(0.02)
    agent.kill()
    raise RuntimeError("agent %s did not start:\n%s" % (name, open(log_path).read()))


def stop_agent(agent, log_path):
    agent.send_signal(signal.SIGTERM)
    try:
        code = agent.wait(timeout=20)
    except subprocess.TimeoutExpired:
        agent.kill()
        code = -9
    if code != 0:
        print(open(log_path).read(), file=sys.stderr)
    return code


class EchoServer:
    """A loopback TCP echo server on a free port (one thread per connection)."""

    def __init__(self):
        import socket
        import threading
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        import threading
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn):
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)


class AdminApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="alknet-admin-py-")
        generate_stubs(ARGS.proto_dir, os.path.join(cls.tmp, "stubs"))
        global keys_pb2, keys_grpc, policy_pb2, policy_grpc, sessions_pb2, sessions_grpc
        global agent_pb2, agent_grpc, forwards_pb2, forwards_grpc
        from alknet.admin.v1 import keys_pb2, policy_pb2, sessions_pb2, agent_pb2, forwards_pb2  # noqa
        from alknet.admin.v1 import keys_pb2_grpc as keys_grpc  # noqa
        from alknet.admin.v1 import policy_pb2_grpc as policy_grpc  # noqa
        from alknet.admin.v1 import sessions_pb2_grpc as sessions_grpc  # noqa
        from alknet.admin.v1 import agent_pb2_grpc as agent_grpc  # noqa
        from alknet.admin.v1 import forwards_pb2_grpc as forwards_grpc  # noqa

        cls.keys = {}
        for name, kind, bits in (("admin", "ed25519", None), ("tunnel", "ed25519", None),
                                 ("file", "ed25519", None), ("small", "rsa", "1024"),
                                 ("upstream", "ed25519", None)):
            path = os.path.join(cls.tmp, name)
            argv = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", name, "-f", path]
            if bits:
                argv += ["-b", bits]
            run(argv)
            line = open(path + ".pub").read().strip()
            fp = run(["ssh-keygen", "-l", "-E", "sha256", "-f", path + ".pub"]).stdout.split()[1]
            cls.keys[name] = (path, line, fp)
        cls.authorized_keys = os.path.join(cls.tmp, "authorized_keys")
        with open(cls.authorized_keys, "w") as f:
            f.write(cls.keys["file"][1] + "\n")
        # The Forwards service needs a client role: this agent's upstream "far" is a second agent.
        far_keys = os.path.join(cls.tmp, "far_authorized_keys")
        with open(far_keys, "w") as f:
            f.write(cls.keys["upstream"][1] + "\n")
        cls.far, cls.far_log, far_port = start_agent(
            cls.tmp, "far", ["--state-dir", os.path.join(cls.tmp, "far_state"), "--listen", "tcp://127.0.0.1:0",
                             "--workers", "1", "--metrics-listen", "off", "--authorized-keys", far_keys,
                             "--forwarding-allow-loopback", "true"])  # its -L targets the loopback echo
        host_key = re.search(r"fingerprint=(SHA256:\S+)", open(cls.far_log).read()).group(1)
        cls.echo = EchoServer()
        config = os.path.join(cls.tmp, "agent.yaml")
        with open(config, "w") as f:
            f.write("upstreams:\n  - name: far\n    server: tcp://127.0.0.1:%d\n    identity: %s\n"
                    "    host_key_fingerprint: %s\n    local_forwards: ['127.0.0.1:0:127.0.0.1:%d']\n"
                    % (far_port, cls.keys["upstream"][0], host_key, cls.echo.port))
        state = os.path.join(cls.tmp, "state")
        cls.socket = os.path.join(state, "admin.sock")
        cls.agent, cls.log_path, cls.port = start_agent(
            cls.tmp, "agent", ["--state-dir", state, "--listen", "tcp://127.0.0.1:0", "--workers", "2",
                               "--metrics-listen", "off", "--authorized-keys", cls.authorized_keys,
                               "--config", config])
        cls.channel = grpc.insecure_channel("unix:" + cls.socket)
        cls.keys_stub = keys_grpc.KeysStub(cls.channel)
        cls.policy_stub = policy_grpc.PolicyStub(cls.channel)
        cls.sessions_stub = sessions_grpc.SessionsStub(cls.channel)
        cls.agent_stub = agent_grpc.AgentStub(cls.channel)
        cls.forwards_stub = forwards_grpc.ForwardsStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        code = stop_agent(cls.agent, cls.log_path)
        far_code = stop_agent(cls.far, cls.far_log)
        cls.echo.sock.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert code == 0 and far_code == 0, "agent exit codes %s, %s" % (code, far_code)

    def assertRpcError(self, call, code, needle):
        with self.assertRaises(grpc.RpcError) as caught:
            call()
        self.assertEqual(caught.exception.code(), code, caught.exception.details())
        self.assertIn(needle, caught.exception.details())

    def fingerprints(self):
        return [k.fingerprint for k in self.keys_stub.ListKeys(keys_pb2.ListKeysRequest()).keys]

    # ---- Keys ----

    def test_keys(self):
        path, line, fp = self.keys["admin"]
        request = keys_pb2.AddKeyRequest(public_key=line, comment="ops", role=keys_pb2.KEY_ROLE_ADMIN,
                                         permit_open=["127.0.0.1:22"], expiry="29991231")
        getattr(request, "from").append("127.0.0.0/8")  # "from" is a Python keyword
        added = self.keys_stub.AddKey(request)
        self.assertEqual(added.key.fingerprint, fp)
        self.assertEqual(added.key.role, keys_pb2.KEY_ROLE_ADMIN)
        self.assertEqual(added.key.source, "api")
        self.assertEqual(list(added.key.options.permit_open), ["127.0.0.1:22"])
        self.assertTrue(added.key.options.HasField("expiry"))
        self.assertEqual(list(getattr(added.key.options, "from")), ["127.0.0.0/8"])
        self.assertRpcError(lambda: self.keys_stub.AddKey(keys_pb2.AddKeyRequest(public_key=line)),
                            grpc.StatusCode.ALREADY_EXISTS, "public_key: key " + fp)
        self.assertRpcError(lambda: self.keys_stub.AddKey(keys_pb2.AddKeyRequest(public_key=self.keys["small"][1])),
                            grpc.StatusCode.INVALID_ARGUMENT, "public_key: RSA key too short (1024 bits")
        self.assertRpcError(
            lambda: self.keys_stub.AddKey(keys_pb2.AddKeyRequest(public_key=self.keys["tunnel"][1],
                                                                 permit_open=["nohost"])),
            grpc.StatusCode.INVALID_ARGUMENT, "permit_open: ")

        listed = self.keys_stub.ListKeys(keys_pb2.ListKeysRequest()).keys
        by_fp = {k.fingerprint: k for k in listed}
        self.assertIn(fp, by_fp)
        file_key = by_fp[self.keys["file"][2]]
        self.assertTrue(file_key.read_only)
        self.assertEqual(file_key.source, "file:%s:1" % self.authorized_keys)

        exported = self.keys_stub.ExportKeys(keys_pb2.ExportKeysRequest()).authorized_keys
        self.assertIn("# alknet-role: admin\n", exported)
        self.assertIn('permitopen="127.0.0.1:22"', exported)
        self.assertNotIn(self.keys["file"][1].split()[1], exported)
        with_files = self.keys_stub.ExportKeys(keys_pb2.ExportKeysRequest(include_files=True)).authorized_keys
        self.assertIn("# file:" + self.authorized_keys + ":1", with_files)

        removed = self.keys_stub.RemoveKey(keys_pb2.RemoveKeyRequest(fingerprint=fp))
        self.assertEqual(removed.key.fingerprint, fp)
        self.assertNotIn(fp, self.fingerprints())
        self.assertRpcError(lambda: self.keys_stub.RemoveKey(keys_pb2.RemoveKeyRequest(fingerprint=fp)),
                            grpc.StatusCode.NOT_FOUND, "fingerprint: no key")
        self.assertRpcError(
            lambda: self.keys_stub.RemoveKey(keys_pb2.RemoveKeyRequest(fingerprint=self.keys["file"][2])),
            grpc.StatusCode.FAILED_PRECONDITION, self.authorized_keys)

        # A user CA key (cert-authority) with principals.
        ca = self.keys_stub.AddKey(keys_pb2.AddKeyRequest(public_key=self.keys["tunnel"][1], comment="user-ca",
                                                          cert_authority=True, principals=["alice", "bob"]))
        self.assertTrue(ca.key.options.cert_authority)
        self.assertEqual(list(ca.key.options.principals), ["alice", "bob"])
        self.assertIn('cert-authority,principals="alice,bob"', ca.key.authorized_keys_line)
        self.keys_stub.RemoveKey(keys_pb2.RemoveKeyRequest(fingerprint=ca.key.fingerprint))

        # The export imports back, role included; a bad line fails the whole import.
        imported = self.keys_stub.ImportKeys(keys_pb2.ImportKeysRequest(authorized_keys=exported))
        self.assertEqual([k.fingerprint for k in imported.keys], [fp])
        self.assertEqual(imported.keys[0].role, keys_pb2.KEY_ROLE_ADMIN)
        skipped = self.keys_stub.ImportKeys(keys_pb2.ImportKeysRequest(authorized_keys=exported, skip_existing=True))
        self.assertEqual(skipped.skipped, 1)
        before = self.fingerprints()
        self.assertRpcError(
            lambda: self.keys_stub.ImportKeys(keys_pb2.ImportKeysRequest(
                authorized_keys=self.keys["tunnel"][1] + "\nssh-ed25519 AAAAC3Nza broken\n")),
            grpc.StatusCode.INVALID_ARGUMENT, "authorized_keys line 2: ")
        self.assertEqual(self.fingerprints(), before)

    # ---- Policy ----

    def test_policy(self):
        policy = self.policy_stub.GetPolicy(policy_pb2.GetPolicyRequest()).policy
        self.assertEqual(policy.limits.login_grace_time, "30s")
        self.assertEqual(policy.limits.max_startups, 100)
        changed = self.policy_stub.SetPolicy(policy_pb2.SetPolicyRequest(
            policy=policy_pb2.PolicySpec(limits=policy_pb2.Limits(max_sessions=50, connect_timeout="1m30s"))))
        self.assertEqual(changed.policy.limits.max_sessions, 50)
        self.assertEqual(changed.policy.limits.connect_timeout, "1m30s")
        self.assertEqual(changed.policy.limits.max_startups, 100)
        self.assertRpcError(
            lambda: self.policy_stub.SetPolicy(policy_pb2.SetPolicyRequest(
                policy=policy_pb2.PolicySpec(limits=policy_pb2.Limits(max_sessions=1, max_startups=0)))),
            grpc.StatusCode.INVALID_ARGUMENT, "limits.max_startups: '0' is out of range (1..100000)")
        self.assertEqual(self.policy_stub.GetPolicy(policy_pb2.GetPolicyRequest()).policy.limits.max_sessions, 50)

        valid = self.policy_stub.ValidatePolicy(policy_pb2.ValidatePolicyRequest(
            policy=policy_pb2.PolicySpec(limits=policy_pb2.Limits(max_sessions=7))))
        self.assertEqual(valid.policy.limits.max_sessions, 7)
        self.assertRpcError(
            lambda: self.policy_stub.ValidatePolicy(policy_pb2.ValidatePolicyRequest(
                policy=policy_pb2.PolicySpec(limits=policy_pb2.Limits(shutdown_grace="5d")))),
            grpc.StatusCode.INVALID_ARGUMENT, "limits.shutdown_grace: ")
        from_yaml = self.policy_stub.ValidatePolicy(policy_pb2.ValidatePolicyRequest(
            config_yaml="limits:\n  max_channels_per_session: 16\n"))
        self.assertEqual(from_yaml.policy.limits.max_channels_per_session, 16)
        self.assertRpcError(
            lambda: self.policy_stub.ValidatePolicy(policy_pb2.ValidatePolicyRequest(
                config_yaml="limits:\n  max_sesions: 3\n")),
            grpc.StatusCode.INVALID_ARGUMENT, "config_yaml:2:3: unknown key 'max_sesions'")
        self.assertEqual(self.policy_stub.GetPolicy(policy_pb2.GetPolicyRequest()).policy.limits.max_sessions, 50)

    # Issue 15: the rate_limits section (PolicySpec field 3), same schema as the YAML.
    def test_rate_limits_policy(self):
        policy = self.policy_stub.GetPolicy(policy_pb2.GetPolicyRequest()).policy
        self.assertEqual(policy.rate_limits.bandwidth_per_key, "0")
        self.assertEqual(policy.rate_limits.max_sessions_per_key, 0)
        changed = self.policy_stub.SetPolicy(policy_pb2.SetPolicyRequest(
            policy=policy_pb2.PolicySpec(rate_limits=policy_pb2.RateLimits(
                bandwidth_per_key="10000000", channels_per_session="30/m", max_sessions_per_key=4))))
        self.assertEqual(changed.policy.rate_limits.bandwidth_per_key, "10MB")
        self.assertEqual(changed.policy.rate_limits.channels_per_session, "30/m")
        self.assertEqual(changed.policy.rate_limits.max_sessions_per_key, 4)
        self.assertRpcError(
            lambda: self.policy_stub.SetPolicy(policy_pb2.SetPolicyRequest(
                policy=policy_pb2.PolicySpec(rate_limits=policy_pb2.RateLimits(
                    max_sessions_per_key=9, sessions_per_key="often")))),
            grpc.StatusCode.INVALID_ARGUMENT, "rate_limits.sessions_per_key: ")
        self.assertEqual(
            self.policy_stub.GetPolicy(policy_pb2.GetPolicyRequest()).policy.rate_limits.max_sessions_per_key, 4)
        from_yaml = self.policy_stub.ValidatePolicy(policy_pb2.ValidatePolicyRequest(
            config_yaml="rate_limits:\n  bandwidth_per_key: 512KiB\n"))
        self.assertEqual(from_yaml.policy.rate_limits.bandwidth_per_key, "512KiB")
        self.assertRpcError(
            lambda: self.policy_stub.ValidatePolicy(policy_pb2.ValidatePolicyRequest(
                policy=policy_pb2.PolicySpec(rate_limits=policy_pb2.RateLimits(max_remote_forwards_per_key=-1)))),
            grpc.StatusCode.INVALID_ARGUMENT, "rate_limits.max_remote_forwards_per_key: ")
        self.policy_stub.SetPolicy(policy_pb2.SetPolicyRequest(
            policy=policy_pb2.PolicySpec(rate_limits=policy_pb2.RateLimits(
                bandwidth_per_key="0", channels_per_session="0", max_sessions_per_key=0))))

    def test_penalties_policy(self):
        # PolicySpec field 2 mirrors the config's `penalties:` section (ADR 0013).
        policy = self.policy_stub.GetPolicy(policy_pb2.GetPolicyRequest()).policy
        self.assertTrue(policy.HasField("penalties"))
        self.assertEqual(policy.penalties.min, "15s")
        self.assertEqual(policy.penalties.exempt, "")
        changed = self.policy_stub.SetPolicy(policy_pb2.SetPolicyRequest(
            policy=policy_pb2.PolicySpec(penalties=policy_pb2.Penalties(
                authfail="30s", exempt="10.0.0.0/8, 192.0.2.7"))))
        self.assertEqual(changed.policy.penalties.authfail, "30s")
        self.assertEqual(changed.policy.penalties.exempt, "10.0.0.0/8,192.0.2.7/32")
        self.assertRpcError(
            lambda: self.policy_stub.SetPolicy(policy_pb2.SetPolicyRequest(
                policy=policy_pb2.PolicySpec(penalties=policy_pb2.Penalties(noauth="2s", min="1h", max="10m")))),
            grpc.StatusCode.INVALID_ARGUMENT, "penalties.min")
        kept = self.policy_stub.GetPolicy(policy_pb2.GetPolicyRequest()).policy.penalties
        self.assertEqual((kept.noauth, kept.min), ("1s", "15s"))
        self.policy_stub.SetPolicy(policy_pb2.SetPolicyRequest(
            policy=policy_pb2.PolicySpec(penalties=policy_pb2.Penalties(authfail="5s", exempt=""))))

    # ---- Sessions ----

    def test_sessions(self):
        path, line, fp = self.keys["tunnel"]
        if fp not in self.fingerprints():
            self.keys_stub.AddKey(keys_pb2.AddKeyRequest(public_key=line))
        ssh = subprocess.Popen(
            ["ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "LogLevel=ERROR",
             "-i", path, "-p", str(self.port), "-l", "pytester", "-N", "127.0.0.1"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            session = None
            deadline = time.time() + 10
            while time.time() < deadline and session is None:
                for s in self.sessions_stub.ListSessions(sessions_pb2.ListSessionsRequest()).sessions:
                    if s.authenticated and s.key_fingerprint == fp:
                        session = s
                time.sleep(0.05)
            self.assertIsNotNone(session, "the ssh session never showed up")
            self.assertEqual(session.user, "pytester")
            self.assertEqual(session.source_address, "127.0.0.1")
            self.assertEqual(session.transport, "tcp")
            self.assertGreater(session.start_time.seconds, 0)
            keys = {k.fingerprint: k for k in self.keys_stub.ListKeys(keys_pb2.ListKeysRequest()).keys}
            self.assertEqual(keys[fp].active_sessions, 1)
            self.assertTrue(keys[fp].HasField("last_used"))

            killed = self.sessions_stub.KillSessions(sessions_pb2.KillSessionsRequest(id=session.id, reason="test"))
            self.assertEqual(killed.killed, 1)
            ssh.wait(timeout=5)
            self.assertRpcError(
                lambda: self.sessions_stub.KillSessions(sessions_pb2.KillSessionsRequest(id=session.id)),
                grpc.StatusCode.NOT_FOUND, "id: no session")
            by_key = self.sessions_stub.KillSessions(sessions_pb2.KillSessionsRequest(key_fingerprint=fp))
            self.assertEqual(by_key.killed, 0)
            self.assertRpcError(
                lambda: self.sessions_stub.KillSessions(sessions_pb2.KillSessionsRequest()),
                grpc.StatusCode.INVALID_ARGUMENT, "target: ")
            # The fleet-wide forms need a fleet (state.store etcd; fleet_test has one).
            self.assertRpcError(
                lambda: self.sessions_stub.ListSessions(sessions_pb2.ListSessionsRequest(all=True)),
                grpc.StatusCode.FAILED_PRECONDITION, "state.store is file")
            self.assertRpcError(
                lambda: self.sessions_stub.KillSessions(
                    sessions_pb2.KillSessionsRequest(key_fingerprint=fp, replica="*")),
                grpc.StatusCode.FAILED_PRECONDITION, "state.store is file")
        finally:
            if ssh.poll() is None:
                ssh.kill()
                ssh.wait()

    # ---- Agent ----

    def test_agent_status(self):
        # Ready waits for the upstream "far" to connect (like /readyz), which takes a moment after
        # start, longer under the sanitizers: ask until it is ready, for up to 30 s.
        deadline = time.monotonic() + 30
        status = self.agent_stub.GetStatus(agent_pb2.GetStatusRequest())
        while not status.ready and time.monotonic() < deadline:
            time.sleep(0.2)
            status = self.agent_stub.GetStatus(agent_pb2.GetStatusRequest())
        self.assertTrue(status.ready)
        self.assertRegex(status.version, r"^\d+\.\d+\.\d+")
        self.assertRegex(status.libssh_version, r"^\d+\.\d+\.\d+")  # "0.10.6/openssl/zlib"
        listeners = {(l.kind, l.address) for l in status.listeners}
        self.assertIn(("ssh", "tcp://127.0.0.1:%d" % self.port), listeners)
        self.assertIn(("admin", "unix:" + self.socket), listeners)
        self.assertGreaterEqual(status.keys, 1)
        self.assertTrue(status.state_file.endswith("state.pb"))
        self.assertGreater(status.start_time.seconds, 0)

    # ---- Forwards (the client role's upstream is the "far" agent) ----

    def forward_info(self, forward_id):
        for info in self.forwards_stub.ListForwards(forwards_pb2.ListForwardsRequest()).forwards:
            if info.forward.id == forward_id:
                return info
        return None

    def test_forwards(self):
        import socket
        F = forwards_pb2
        add = self.forwards_stub.AddForward
        target = "127.0.0.1:%d" % self.echo.port
        config_forward = self.forward_info("far/L0")
        self.assertIsNotNone(config_forward)
        self.assertEqual(config_forward.source, "config")
        # LOCAL: added, carries bytes at once, counted.
        added = add(F.AddForwardRequest(forward=F.Forward(
            id="py-local", kind=F.FORWARD_KIND_LOCAL, upstream="far", listen="127.0.0.1:0", target=target)))
        self.assertEqual(added.forward.forward.id, "py-local")
        self.assertEqual(added.forward.source, "api")
        port = int(added.forward.bound.rsplit(":", 1)[1])
        payload = os.urandom(256 * 1024)
        with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
            conn.sendall(payload)
            conn.shutdown(socket.SHUT_WR)
            echoed = b""
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                echoed += chunk
        self.assertEqual(echoed, payload)
        deadline = time.time() + 10
        info = self.forward_info("py-local")
        while info.bytes_in < len(payload) and time.time() < deadline:
            time.sleep(0.05)
            info = self.forward_info("py-local")
        self.assertEqual((info.state, info.connections, info.bytes_in, info.bytes_out),
                         ("active", 1, len(payload), len(payload)))
        # REMOTE and DYNAMIC: the agent picks the id; REMOTE turns active once the far agent listens.
        remote = add(F.AddForwardRequest(forward=F.Forward(
            kind=F.FORWARD_KIND_REMOTE, upstream="far", listen="127.0.0.1:0", target=target)))
        remote_id = remote.forward.forward.id
        self.assertRegex(remote_id, r"^fwd-[0-9a-f]{8}$")
        deadline = time.time() + 10
        while self.forward_info(remote_id).state != "active" and time.time() < deadline:
            time.sleep(0.05)
        remote_info = self.forward_info(remote_id)
        self.assertEqual(remote_info.state, "active")
        far_port = int(remote_info.bound.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", far_port), timeout=20) as conn:
            conn.sendall(b"ping")
            self.assertEqual(conn.recv(4), b"ping")
        dynamic = add(F.AddForwardRequest(forward=F.Forward(
            kind=F.FORWARD_KIND_DYNAMIC, upstream="far", listen="127.0.0.1:0")))
        self.assertEqual(dynamic.forward.forward.kind, F.FORWARD_KIND_DYNAMIC)
        # Bad requests: the right code, a message naming the field, nothing changed.
        before = self.forwards_stub.ListForwards(F.ListForwardsRequest())
        cases = (
            (F.Forward(kind=F.FORWARD_KIND_LOCAL, upstream="far", listen="127.0.0.1:0"),
             grpc.StatusCode.INVALID_ARGUMENT, "forward.target: is required"),
            (F.Forward(upstream="far", listen="127.0.0.1:0", target=target),
             grpc.StatusCode.INVALID_ARGUMENT, "forward.kind: must be DYNAMIC, LOCAL or REMOTE"),
            (F.Forward(kind=F.FORWARD_KIND_LOCAL, upstream="nope", listen="127.0.0.1:0", target=target),
             grpc.StatusCode.INVALID_ARGUMENT, "forward.upstream: no upstream named 'nope'"),
            (F.Forward(kind=F.FORWARD_KIND_LOCAL, upstream="far", listen="127.0.0.1:0", target="x:0"),
             grpc.StatusCode.INVALID_ARGUMENT, "forward.target: 'x:0'"),
            (F.Forward(id="py-local", kind=F.FORWARD_KIND_LOCAL, upstream="far", listen="127.0.0.1:0",
                       target=target),
             grpc.StatusCode.ALREADY_EXISTS, "forward.id: a forward with id 'py-local' exists"),
            (F.Forward(kind=F.FORWARD_KIND_LOCAL, upstream="far", listen=target, target=target),
             grpc.StatusCode.ALREADY_EXISTS, "Address already in use"),
        )
        for forward, code, needle in cases:
            self.assertRpcError(lambda: add(F.AddForwardRequest(forward=forward)), code, needle)
        self.assertRpcError(lambda: self.forwards_stub.RemoveForward(F.RemoveForwardRequest(id="nothing")),
                            grpc.StatusCode.NOT_FOUND, "id: no forward 'nothing'")
        self.assertRpcError(lambda: self.forwards_stub.RemoveForward(F.RemoveForwardRequest(id="far/L0")),
                            grpc.StatusCode.FAILED_PRECONDITION, "comes from the configuration file")
        after = self.forwards_stub.ListForwards(F.ListForwardsRequest())
        self.assertEqual([f.forward for f in after.forwards], [f.forward for f in before.forwards])
        # Remove: gone from the list, the listener closed.
        for forward_id in ("py-local", remote_id, dynamic.forward.forward.id):
            self.forwards_stub.RemoveForward(F.RemoveForwardRequest(id=forward_id))
            self.assertIsNone(self.forward_info(forward_id))
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()

    # ---- grpc.health.v1 ----

    def test_health(self):
        check = self.channel.unary_unary("/grpc.health.v1.Health/Check",
                                         request_serializer=identity, response_deserializer=identity)
        # "" follows readiness (/readyz), polled by the agent once a second: wait for it.
        deadline = time.time() + 30
        while (1, 0, 1) not in parse(check(b"")) and time.time() < deadline:
            time.sleep(0.2)
        for service in ("", "alknet.admin.v1.Keys", "alknet.admin.v1.Policy"):
            response = parse(check(field_bytes(1, service.encode()) if service else b""))
            self.assertIn((1, 0, 1), response, "%r is not SERVING" % service)  # status = SERVING
        with self.assertRaises(grpc.RpcError) as caught:
            check(field_bytes(1, b"no.such.Service"))
        self.assertEqual(caught.exception.code(), grpc.StatusCode.NOT_FOUND)

    # ---- server reflection ----

    def test_reflection(self):
        from google.protobuf import descriptor_pb2
        info = self.channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                          request_serializer=identity, response_deserializer=identity)
        requests = [field_bytes(7, b""),  # list_services
                    field_bytes(4, b"alknet.admin.v1.Keys")]  # file_containing_symbol
        responses = list(info(iter(requests)))
        self.assertEqual(len(responses), 2)
        listed = [v for (n, w, v) in parse(responses[0]) if n == 6][0]
        names = set()
        for (n, w, service) in parse(listed):
            names.update(v.decode() for (m, _, v) in parse(service) if m == 1)
        for expected in ("alknet.admin.v1.Keys", "alknet.admin.v1.Policy", "alknet.admin.v1.Sessions",
                         "alknet.admin.v1.Agent", "alknet.admin.v1.Forwards", "grpc.health.v1.Health"):
            self.assertIn(expected, names)
        files = [v for (n, w, v) in parse(responses[1]) if n == 4][0]
        methods = set()
        for (n, w, blob) in parse(files):
            descriptor = descriptor_pb2.FileDescriptorProto.FromString(blob)
            for service in descriptor.service:
                if service.name == "Keys":
                    methods.update(m.name for m in service.method)
        self.assertEqual(methods, {"AddKey", "ListKeys", "RemoveKey", "ImportKeys", "ExportKeys"})


def main():
    global ARGS, grpc
    parser = argparse.ArgumentParser()
    parser.add_argument("--agent", required=True)
    parser.add_argument("--proto-dir", required=True)
    parser.add_argument("--protoc", default="protoc")
    parser.add_argument("--grpc-python-plugin", default=shutil.which("grpc_python_plugin") or "grpc_python_plugin")
    ARGS, rest = parser.parse_known_args()
    try:
        import grpc as grpc_module
    except ImportError:
        print("SKIP: python3 has no grpc module (Debian: apt-get install python3-grpcio)")
        sys.exit(77)
    grpc = grpc_module
    result = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (max(0, result.testsRun - failed), failed))
    sys.exit(0 if failed == 0 and result.testsRun > 0 else 1)


if __name__ == "__main__":
    main()
