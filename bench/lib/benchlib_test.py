#!/usr/bin/env python3
"""Checks of the benchmark bookkeeping that can be tested without servers: handshakes counts
successful connections only, negotiated algorithms are read from every client's output (or the
run stops with a clear error), and memory per session is a delta over a baseline."""

import contextlib
import io
import os
import sys
import unittest
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402
import handshakes  # noqa: E402
import scale  # noqa: E402

SSH_V = """debug1: Connecting to 127.0.0.1 [127.0.0.1] port 40001.
debug1: kex: algorithm: curve25519-sha256
debug1: kex: host key algorithm: ssh-ed25519
debug1: kex: server->client cipher: aes128-gcm@openssh.com MAC: <implicit> compression: none
debug1: kex: client->server cipher: aes128-gcm@openssh.com MAC: <implicit> compression: none
"""
SOCAT = """2026/12/04 21:56:42 socat[5999] N SSL proto version used: TLSv1.3
2026/12/04 21:56:42 socat[5999] N SSL connection using TLS_AES_256_GCM_SHA384
"""
OPENSSL_BRIEF = "CONNECTION ESTABLISHED\nProtocol version: TLSv1.2\nCiphersuite: ECDHE-ECDSA-AES128-GCM-SHA256\n"
CLIENT_LOG = ("2026-12-04T22:00:00.000Z INFO client: ssh negotiated upstream=default "
              "kex=curve25519-sha256 cipher=chacha20-poly1305@openssh.com\n")


class HandshakeCounting(unittest.TestCase):
    def fake(self, fail_every):
        calls = [0]

        def one():
            calls[0] += 1
            return "rc=255: Permission denied (publickey)." if calls[0] % fail_every == 0 else None
        return one

    def test_failed_connections_are_not_counted_as_successes(self):
        for parallel in (1, 4):
            ok, failed, wall = handshakes.run_connections(self.fake(3), 30, parallel)
            self.assertEqual(ok, 20, parallel)
            self.assertEqual(len(failed), 10, parallel)
            self.assertGreater(wall, 0)

    def test_all_failing_gives_zero_successes(self):
        ok, failed, _ = handshakes.run_connections(lambda: "rc=255: Connection refused", 5, 1)
        self.assertEqual((ok, len(failed)), (0, 5))
        self.assertEqual(handshakes.per_success(1.0, ok, 1000), "n/a")

    def test_failures_are_summarized_by_reason(self):
        reason = handshakes.failure_reason(
            255, "ssh: connect to host 127.0.0.1 port 40123: Connection refused\n")
        self.assertEqual(reason, "rc=255: ssh: connect to host 127.0.0.1 port N: Connection refused")
        text = handshakes.summarize_failures([reason, reason, "rc=1: other"])
        self.assertTrue(text.startswith("failed 3: 2x rc=255: ssh: connect"), text)
        self.assertIn("1x rc=1: other", text)
        self.assertEqual(handshakes.summarize_failures([]), "failed 0")


class Negotiation(unittest.TestCase):
    def test_reads_ssh_v(self):
        found = bl.parse_negotiated(SSH_V, bl.SSH_KEYS, "probe")
        self.assertEqual(bl.format_negotiated(found),
                         "kex=curve25519-sha256 cipher=aes128-gcm@openssh.com")

    def test_reads_tls_from_socat_and_openssl(self):
        found = bl.parse_negotiated(SSH_V + SOCAT, bl.SSH_KEYS + bl.TLS_KEYS, "probe")
        self.assertEqual(found["tls"], "TLSv1.3")
        self.assertEqual(found["suite"], "TLS_AES_256_GCM_SHA384")
        found = bl.parse_negotiated(OPENSSL_BRIEF + SSH_V, bl.SSH_KEYS + bl.TLS_KEYS, "probe")
        self.assertEqual((found["tls"], found["suite"]),
                         ("TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256"))

    def test_reads_alknet_client_log_and_scale_client(self):
        found = bl.parse_negotiated(CLIENT_LOG, bl.SSH_KEYS, "log")
        self.assertEqual(found, {"kex": "curve25519-sha256",
                                 "cipher": "chacha20-poly1305@openssh.com"})
        found = bl.parse_negotiated("NEGOTIATED kex=curve25519-sha256 cipher=aes128-gcm@openssh.com\n",
                                    bl.SSH_KEYS, "scale")
        self.assertEqual(found["cipher"], "aes128-gcm@openssh.com")

    def test_missing_line_is_an_error_naming_it(self):
        with self.assertRaises(bl.NegotiationError) as e:
            bl.parse_negotiated("debug1: kex: algorithm: curve25519-sha256\n", bl.SSH_KEYS, "probe")
        self.assertIn("no negotiated cipher", str(e.exception))
        with self.assertRaises(bl.NegotiationError) as e:
            bl.parse_negotiated(SSH_V, bl.SSH_KEYS + bl.TLS_KEYS, "tls probe")
        self.assertIn("no negotiated tls / suite", str(e.exception))
        with self.assertRaises(bl.NegotiationError):  # the scale client could not name them
            bl.parse_negotiated("NEGOTIATED kex=? cipher=?\n", bl.SSH_KEYS, "scale")

    def test_run_turns_the_error_into_exit_2_and_a_message(self):
        def main():
            bl.parse_negotiated("", bl.SSH_KEYS, "alknet: ssh -v probe to port 1")
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            rc = bl.run(main)
        self.assertEqual(rc, 2)
        self.assertIn("ERROR: alknet: ssh -v probe to port 1: no negotiated kex / cipher",
                      out.getvalue())

    def test_probe_proxy_prints_tls_details(self):
        self.assertEqual(bl.tls_probe_proxy("socat - OPENSSL:127.0.0.1:%p,verify=0"),
                         "socat -d -d - OPENSSL:127.0.0.1:%p,verify=0")
        self.assertIn("openssl s_client -brief -quiet",
                      bl.tls_probe_proxy("openssl s_client -quiet -connect 127.0.0.1:%p"))


class MemoryDelta(unittest.TestCase):
    def test_per_session_is_delta_over_baseline(self):
        # 100 sessions took a tree from 5000 KiB (the master alone) to 405000 KiB: 4000 each,
        # not 405000 / 100 and not one process's whole PSS.
        self.assertEqual(scale.per_session_delta(5000, 405000, 100), 4000.0)
        self.assertIsNone(scale.per_session_delta(5000, 5000, 0))

    def test_tree_pss_sums_the_process_and_its_children(self):
        self.assertGreater(bl.pss_kib(os.getpid()), 0)
        # Fixed readings: two live PSS readings of a changing process cannot be compared
        # (shared pages move between processes), so the summing is checked on its own.
        pss = {10: 300, 11: 20, 12: 5}

        def fake_pss(pid):
            if pid == 13:
                raise FileNotFoundError(pid)  # a child that exited meanwhile
            return pss[pid]

        with mock.patch.object(bl, "pss_kib", fake_pss), \
                mock.patch.object(bl, "descendants_of", lambda pid: [11, 12, 13]):
            self.assertEqual(scale.tree_pss_kib(10), 325)


class ScriptsParse(unittest.TestCase):
    """Every bench script at least parses: most run only by hand, so a syntax error would
    otherwise surface only when someone next measures (ab_throughput.py once did)."""

    BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def test_python_modules_compile(self):
        lib = os.path.join(self.BENCH, "lib")
        for name in sorted(os.listdir(lib)):
            if name.endswith(".py"):
                with self.subTest(module=name), open(os.path.join(lib, name)) as f:
                    compile(f.read(), name, "exec")

    def test_shell_scripts_parse(self):
        import subprocess
        scripts = [os.path.join(self.BENCH, "lib", "common.sh")]
        for name in sorted(os.listdir(self.BENCH)):
            path = os.path.join(self.BENCH, name)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                scripts.append(path)
        for path in scripts:
            with self.subTest(script=os.path.basename(path)):
                result = subprocess.run(["bash", "-n", path], capture_output=True, text=True)
                self.assertEqual(result.returncode, 0, result.stderr)


if __name__ == "__main__":
    unittest.main()
