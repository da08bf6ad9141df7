#!/usr/bin/python3
"""Adds and lists authorized keys over the alknet admin API (gRPC on the agent's Unix socket).

    ./alknet_keys.py --socket /var/lib/alknet/admin.sock add ~/.ssh/id_ed25519.pub --comment laptop
    ./alknet_keys.py --socket /var/lib/alknet/admin.sock list

Needs Debian's python3-grpcio and python3-protobuf. The stubs are generated at start from the
repository's proto/ files (--proto-dir, default ../../proto next to this file) into a temporary
directory: with grpc_tools (Debian's python3-grpc-tools) when it is installed, otherwise with
protoc and grpc_python_plugin (Debian's protobuf-compiler and protobuf-compiler-grpc).
"""
import argparse
import importlib
import os
import shutil
import subprocess
import sys
import tempfile

import grpc

KEYS_PROTO = "alknet/admin/v1/keys.proto"


def generate_stubs(proto_dir, out_dir, plugin=None):
    """Writes keys_pb2.py and keys_pb2_grpc.py under out_dir; returns the tool used."""
    args = ["-I", proto_dir, "--python_out", out_dir, "--grpc_python_out", out_dir, KEYS_PROTO]
    try:
        from grpc_tools import protoc
    except ImportError:
        protoc = None
    if protoc is not None and plugin is None:
        # grpc_tools also needs the well-known types (google/protobuf/timestamp.proto).
        well_known = os.path.join(os.path.dirname(protoc.__file__), "_proto")
        include = ["-I", well_known] if os.path.isdir(well_known) else []
        if protoc.main(["grpc_tools.protoc"] + include + args) != 0:
            raise RuntimeError("grpc_tools.protoc failed on " + KEYS_PROTO)
        return "grpc_tools"
    plugin = plugin or shutil.which("grpc_python_plugin")
    compiler = shutil.which("protoc")
    if not plugin or not compiler:
        raise RuntimeError("need python3-grpc-tools, or protoc and grpc_python_plugin "
                           "(apt-get install protobuf-compiler protobuf-compiler-grpc)")
    subprocess.run([compiler, "--plugin=protoc-gen-grpc_python=" + plugin] + args, check=True)
    return "protoc"


def load_stubs(proto_dir, plugin=None):
    out_dir = tempfile.mkdtemp(prefix="alknet-stubs-")
    try:
        generate_stubs(proto_dir, out_dir, plugin)
        sys.path.insert(0, out_dir)
        pb2 = importlib.import_module("alknet.admin.v1.keys_pb2")
        pb2_grpc = importlib.import_module("alknet.admin.v1.keys_pb2_grpc")
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)  # modules are loaded: the files can go
    return pb2, pb2_grpc


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, help="the agent's admin socket")
    parser.add_argument("--proto-dir", default=os.path.join(here, "..", "..", "proto"))
    parser.add_argument("--grpc-python-plugin", help="use protoc with this plugin, not grpc_tools")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="add the key of an authorized_keys line (e.g. id_ed25519.pub)")
    add.add_argument("public_key_file")
    add.add_argument("--comment", default="")
    commands.add_parser("list", help="list every key")
    args = parser.parse_args(argv)

    pb2, pb2_grpc = load_stubs(args.proto_dir, args.grpc_python_plugin)
    with grpc.insecure_channel("unix:" + os.path.abspath(args.socket)) as channel:
        keys = pb2_grpc.KeysStub(channel)
        try:
            if args.command == "add":
                with open(args.public_key_file) as f:
                    line = f.read().strip()
                reply = keys.AddKey(pb2.AddKeyRequest(public_key=line, comment=args.comment), timeout=10)
                print("added %s %s" % (reply.key.fingerprint, reply.key.comment))
            else:
                for key in keys.ListKeys(pb2.ListKeysRequest(), timeout=10).keys:
                    print("%s %s %s %s" % (key.fingerprint, key.key_type, key.source, key.comment))
        except grpc.RpcError as error:
            print("alknet_keys: %s: %s" % (error.code().name, error.details()), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
