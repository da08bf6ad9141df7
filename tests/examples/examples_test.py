#!/usr/bin/env python3
"""Runs examples/node, examples/python and the docs/recipes.md routing recipes against live agents.

  --mode node        npm ci (node_modules cached in --work-dir) and npm test: a page fetched
                     through the client role's SOCKS5 byte-exact, a key added and listed over gRPC;
                     then a stock ssh logs in with that key (and could not before).
  --mode python      examples/python/alknet_keys.py adds and lists a key; a stock ssh logs in with it.
  --mode proxychains proxychains4 curl, in a fresh network namespace, fetches a loopback web page of
  --mode redsocks    the host through the tunnel; redsocks + iptables route the whole namespace.

The recipe configs are taken from docs/recipes.md itself (the fenced block after each
`<!-- recipe: NAME -->` marker), so the documentation is what is tested. Exit 0 on success,
77 (skip) with one line saying why when a needed program is missing or namespaces are refused.
"""
import argparse
import hashlib
import http.server
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ARGS = None
SKIP = 77


def skip(reason):
    print("SKIP: " + reason)
    sys.exit(SKIP)


def fail(message):
    print("FAIL: " + message, file=sys.stderr)
    sys.exit(1)


def run(argv, **kwargs):
    result = subprocess.run(argv, capture_output=True, **kwargs)
    if result.returncode != 0:
        fail("%s exited %d:\n%s%s" % (" ".join(argv), result.returncode,
                                      result.stdout.decode(errors="replace"),
                                      result.stderr.decode(errors="replace")))
    return result


class WebServer:
    """A loopback HTTP server serving DIR on a free port, in a thread of this process."""

    def __init__(self, directory):
        handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=directory, **kw)  # noqa
        http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Agent:
    """alknet-agent ARGV logging to TMP/NAME.log; stopped with SIGTERM at exit."""

    def __init__(self, tmp, name, argv):
        self.log_path = os.path.join(tmp, name + ".log")
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen([ARGS.agent] + argv, stdout=log, stderr=subprocess.STDOUT)

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def wait_for(self, pattern, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = re.search(pattern, self.log())
            if m:
                return m
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        fail("agent log never matched %r:\n%s" % (pattern, self.log()))

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def keygen(tmp, name):
    path = os.path.join(tmp, name)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path])
    return path


class Setup:
    """A serving agent (admin socket in its state dir) and a loopback web server with a page."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.agents = []
        www = os.path.join(tmp, "www")
        os.makedirs(www)
        self.page = os.path.join(www, "page.bin")
        with open(self.page, "wb") as f:
            f.write(os.urandom(300 * 1024) + b"\r\n\0end of page\n")
        self.web = WebServer(www)
        self.client_key = keygen(tmp, "client_key")
        keys_file = os.path.join(tmp, "authorized_keys")
        shutil.copy(self.client_key + ".pub", keys_file)
        self.state = os.path.join(tmp, "state")
        self.socket = os.path.join(self.state, "admin.sock")
        server = self.start("server", ["--state-dir", self.state, "--listen", "tcp://127.0.0.1:0",
                                       "--workers", "1", "--metrics-listen", "off",
                                       "--authorized-keys", keys_file,
                                       # the web page is on loopback (ADR 0014)
                                       "--forwarding-allow-loopback", "true"])
        self.port = int(server.wait_for(r"engine: listening address=tcp://127\.0\.0\.1:(\d+)").group(1))
        self.fingerprint = server.wait_for(r"fingerprint=(SHA256:\S+)").group(1)
        self.server = server

    def start(self, name, argv):
        agent = Agent(self.tmp, name, argv)
        self.agents.append(agent)
        return agent

    def start_client(self):
        """The client role with its SOCKS5 on a free port; returns "127.0.0.1:PORT"."""
        client = self.start("client", ["connect", "--state-dir", os.path.join(self.tmp, "client_state"),
                                       "--metrics-listen", "127.0.0.1:0",
                                       "--server", "tcp://127.0.0.1:%d" % self.port,
                                       "--identity", self.client_key,
                                       "--host-key-fingerprint", self.fingerprint,
                                       "--socks5", "127.0.0.1:0"])
        client.wait_for("upstream connected")
        self.client_metrics = client.wait_for(r"metrics: listening address=(\S+)").group(1).rstrip("/")
        return client.wait_for(r"socks5 listening .*address=(127\.0\.0\.1:\d+)").group(1)

    def socks_channels(self):
        """The client role's alknet_channels_opened_total{kind="socks",result="opened"}."""
        import urllib.request
        with urllib.request.urlopen(self.client_metrics + "/metrics", timeout=10) as response:
            text = response.read().decode()
        for line in text.splitlines():
            if (line.startswith("alknet_channels_opened_total{") and 'kind="socks"' in line
                    and 'result="opened"' in line):
                return float(line.rsplit(" ", 1)[1])
        fail("no socks channel counter in the client's metrics:\n" + text)

    def ssh_fetch(self, key):
        """A stock ssh logging in with KEY and fetching the page over -W: (exit code, body)."""
        request = b"GET /page.bin HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
        result = subprocess.run(
            ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "LogLevel=ERROR", "-i", key, "-p", str(self.port),
             "-W", "127.0.0.1:%d" % self.web.port, "tester@127.0.0.1"],
            input=request, capture_output=True, timeout=60)
        body = result.stdout.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in result.stdout else b""
        return result.returncode, body, result.stderr.decode(errors="replace")

    def check_ssh_login(self, key, expect_in):
        code, body, err = self.ssh_fetch(key)
        with open(self.page, "rb") as f:
            page = f.read()
        if expect_in and (code != 0 or body != page):
            fail("ssh with the key added over gRPC did not fetch the page (exit %d, %d bytes): %s\n%s"
                 % (code, len(body), err, self.server.log()))
        if not expect_in and code == 0:
            fail("ssh logged in with a key that was never added")
        print("ssh with %s: %s" % (os.path.basename(key), "in, page byte-exact" if expect_in else "refused"))

    def stop(self):
        for agent in reversed(self.agents):
            agent.stop()


def mode_node(setup):
    npm = shutil.which("npm")
    source = os.path.join(ARGS.source_dir, "examples", "node")
    work = ARGS.work_dir
    os.makedirs(work, exist_ok=True)
    with open(os.path.join(source, "package-lock.json"), "rb") as f:
        stamp = hashlib.sha256(f.read()).hexdigest()
    stamp_path = os.path.join(work, "lock.sha256")
    cached = os.path.exists(stamp_path) and open(stamp_path).read() == stamp
    if not cached or not os.path.isdir(os.path.join(work, "node_modules")):
        for name in ("package.json", "package-lock.json"):
            shutil.copy(os.path.join(source, name), work)
        run([npm, "ci", "--no-audit", "--no-fund", "--cache", os.path.join(work, "npm-cache")], cwd=work)
        with open(stamp_path, "w") as f:
            f.write(stamp)
    socks = setup.start_client()
    user_key = keygen(setup.tmp, "node_user")
    setup.check_ssh_login(user_key, expect_in=False)
    env = dict(os.environ, NODE_PATH=os.path.join(work, "node_modules"), ALKNET_SOCKS=socks,
               ALKNET_TEST_URL="http://127.0.0.1:%d/page.bin" % setup.web.port,
               ALKNET_TEST_EXPECTED=setup.page, ALKNET_ADMIN_SOCKET=setup.socket,
               ALKNET_TEST_PUBKEY=user_key + ".pub")
    channels_before = setup.socks_channels()
    result = subprocess.run([npm, "test"], cwd=source, env=env)
    if result.returncode != 0:
        fail("npm test failed (exit %d)\n%s" % (result.returncode, setup.server.log()))
    # The web server is reachable directly too: the client role's counter shows fetch.js used
    # the SOCKS5 listener.
    if setup.socks_channels() <= channels_before:
        fail("npm test passed but opened no SOCKS5 channel through the agent")
    print("SOCKS5 channels opened by npm test: %d" % (setup.socks_channels() - channels_before))
    setup.check_ssh_login(user_key, expect_in=True)


def mode_python(setup):
    user_key = keygen(setup.tmp, "python_user")
    setup.check_ssh_login(user_key, expect_in=False)
    script = [sys.executable, os.path.join(ARGS.source_dir, "examples", "python", "alknet_keys.py"),
              "--socket", setup.socket]
    if ARGS.grpc_python_plugin:
        script += ["--grpc-python-plugin", ARGS.grpc_python_plugin]
    added = run(script + ["add", user_key + ".pub", "--comment", "from-python"]).stdout.decode()
    m = re.match(r"added (SHA256:\S+) from-python\n", added)
    if not m:
        fail("unexpected add output: %r" % added)
    listed = run(script + ["list"]).stdout.decode()
    if "%s ssh-ed25519 api from-python\n" % m.group(1) not in listed:
        fail("%s not listed as an API key:\n%s" % (m.group(1), listed))
    print(added + listed, end="")
    setup.check_ssh_login(user_key, expect_in=True)


def recipe_blocks():
    """{name: text} of the fenced blocks after <!-- recipe: NAME --> in docs/recipes.md."""
    with open(os.path.join(ARGS.source_dir, "docs", "recipes.md")) as f:
        text = f.read()
    return dict(re.findall(r"<!-- recipe: (\S+) -->\n```[a-z]*\n(.*?)```", text, re.S))


def preflight(mode):
    """Exits 77 with the reason when this host cannot run MODE; runs before any agent starts."""
    needed = {"node": ["node", "npm"], "python": [],
              "proxychains": ["unshare", "ip", "socat", "curl", "proxychains4"],
              "redsocks": ["unshare", "ip", "socat", "curl", "redsocks", "iptables"]}[mode]
    missing = [name for name in needed if not shutil.which(name)]
    if missing:
        skip("not installed: %s (scripts/install-deps.sh --test)" % " ".join(missing))
    if mode == "python":
        try:
            import grpc  # noqa: F401
        except ImportError:
            skip("%s has no grpc module (apt-get install python3-grpcio)" % sys.executable)
    if mode in ("proxychains", "redsocks"):
        probe = subprocess.run(unshare_argv() + ["ip", "link", "set", "lo", "up"], capture_output=True)
        if probe.returncode != 0:
            skip("cannot create a network namespace here (%s): %s"
                 % (" ".join(unshare_argv()), probe.stderr.decode(errors="replace").strip()))


def unshare_argv():
    """A new network namespace; unprivileged users get a user namespace too (root in it)."""
    return ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]


def mode_netns(setup, mode):
    unshare = unshare_argv()
    blocks = recipe_blocks()
    for name in ([mode] if mode == "proxychains" else ["redsocks", "redsocks-iptables"]):
        if name not in blocks:
            fail("docs/recipes.md has no <!-- recipe: %s --> block" % name)
        with open(os.path.join(setup.tmp, name + ".recipe"), "w") as f:
            f.write(blocks[name])
    # The namespace's only way out: a TCP port inside bridged over a Unix socket to the server agent.
    bridge = os.path.join(setup.tmp, "bridge.sock")
    host_side = subprocess.Popen(["socat", "UNIX-LISTEN:%s,fork" % bridge,
                                  "TCP:127.0.0.1:%d" % setup.port])
    try:
        deadline = time.time() + 10
        while not os.path.exists(bridge) and time.time() < deadline:
            time.sleep(0.02)
        env = dict(os.environ, AGENT=ARGS.agent, WORK=setup.tmp, BRIDGE=bridge,
                   HOST_FP=setup.fingerprint, KEY=setup.client_key, PAGE=setup.page,
                   WEB_PORT=str(setup.web.port))
        result = subprocess.run(unshare + ["bash", os.path.join(os.path.dirname(__file__),
                                                                "netns_recipe.sh"), mode], env=env)
    finally:
        host_side.kill()
        host_side.wait()
    if result.returncode == SKIP:
        sys.exit(SKIP)
    if result.returncode != 0:
        fail("%s recipe failed in the namespace (exit %d)\n%s"
             % (mode, result.returncode, setup.server.log()))


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", required=True, choices=["node", "python", "proxychains", "redsocks"])
    parser.add_argument("--agent", required=True)
    parser.add_argument("--source-dir", required=True)
    parser.add_argument("--work-dir", help="node: where node_modules is cached")
    parser.add_argument("--grpc-python-plugin", help="python: use protoc with this plugin")
    ARGS = parser.parse_args()
    preflight(ARGS.mode)
    tmp = tempfile.mkdtemp(prefix="alknet-examples-")
    setup = Setup(tmp)
    try:
        if ARGS.mode == "node":
            mode_node(setup)
        elif ARGS.mode == "python":
            mode_python(setup)
        else:
            mode_netns(setup, ARGS.mode)
    finally:
        setup.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    print("PASS: %s" % ARGS.mode)


if __name__ == "__main__":
    main()
