"""Loopback ports for Python tests: the same scheme as tests/support/test_ports.cc.

A picked port lies outside the kernel's ephemeral range (no port-0 bind and no outgoing
connection can take it) and is reserved for this process by a lock file under
$TMPDIR/alknet-test-ports/ that the C++ tests take too, so concurrent tests never share one.
"""
import fcntl
import os
import random
import socket

_reservations = []  # open lock files: the reservations last as long as this process


def _pick_range():
    low, high = 32768, 60999
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        pass
    if low > 12000:
        return 10000, low - 1
    return high + 1, 65535


def _lock_dir():
    path = os.path.join(os.environ.get("TMPDIR") or "/tmp", "alknet-test-ports")
    try:
        os.mkdir(path, 0o1777)
        os.chmod(path, 0o1777)
    except FileExistsError:
        pass
    return path


def _can_bind(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def pick_free_port():
    low, high = _pick_range()
    directory = _lock_dir()
    for _ in range(1000):
        port = random.randint(low, high)
        f = open(os.path.join(directory, str(port)), "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        if _can_bind(port):
            _reservations.append(f)
            return port
        f.close()
    raise RuntimeError("no free loopback port in %d-%d" % (low, high))


def _listeners():
    """(local address hex, port, inode) of every listening TCP socket, from /proc/net/tcp{,6}."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A":  # LISTEN
                        address, hex_port = fields[1].rsplit(":", 1)
                        found.append((address, int(hex_port, 16), fields[9]))
        except OSError:
            pass
    return found


def listening_ports():
    """TCP ports something listens on (any address)."""
    return {port for _, port, _ in _listeners()}


def _listening_inodes(port):
    # 127.0.0.1, 0.0.0.0 or dual-stack ::, not ::1 alone (see test_ports.cc)
    return {inode for address, p, inode in _listeners()
            if p == port and (address == "0100007F" or address.strip("0") == "")}


def listens_on(pid, port):
    """True if process `pid` itself holds the listener that 127.0.0.1:port reaches."""
    inodes = _listening_inodes(port)
    if not inodes:
        return False
    fd_dir = "/proc/%d/fd" % pid
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return False
    for name in names:
        try:
            target = os.readlink(os.path.join(fd_dir, name))
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


if __name__ == "__main__":
    # For shell tests: `test_ports.py pick` prints a port (outside the ephemeral range; the
    # reservation ends with this process), `test_ports.py listens PID PORT` exits 0 if PID
    # holds the listener 127.0.0.1:PORT reaches.
    import sys
    if sys.argv[1:2] == ["pick"]:
        print(pick_free_port())
    elif sys.argv[1:2] == ["listens"] and len(sys.argv) == 4:
        sys.exit(0 if listens_on(int(sys.argv[2]), int(sys.argv[3])) else 1)
    else:
        sys.exit("usage: test_ports.py pick | listens PID PORT")
