#!/usr/bin/env python3
"""Checks the Helm chart helm/alknet without a cluster.

Usage: check_chart.py REPO_ROOT AGENT_BINARY [ADMIN_BINARY]

1. Renders the chart (helm template, or ../shared/tools/chart-render where helm is missing) with
   the default values, tests/deploy/chart-values-all.yaml (every option) and the StatefulSet
   switches.
2. values.schema.json (ajv-cli) accepts the default and all-options values and rejects each
   mistake of tests/deploy/chart-values-bad.yaml on its own; every value has a schema entry.
3. Parses the rendered objects: pod and container securityContext, probes on the metrics port /
   the health command, container ports == the ports of the rendered agent config, one host-key
   Secret referenced by every workload, PDB, terminationGracePeriodSeconds from shutdown_grace,
   Services, and the rendered agent.yaml passes `alknet-agent --config F --print-config`.
4. The PrometheusRule and the dashboard ConfigMap carry deploy/prometheus/alerts.yaml and
   deploy/grafana/alknet.json byte for byte (files/ holds symlinks to them).
5. Runs the rendered pod without an image: its volumes laid out as the kubelet does (Secret
   files root:<fsGroup> 0440, emptyDir 2777), the rendered args and agent.yaml with the mount
   paths under a temporary root and the listeners on free loopback ports, as UID/GID 65532 when
   run as root. Two such pods sharing the rendered Secret: /readyz 200, the same SSH host key
   (the Secret's) and TLS certificate, the NOTES first-key command works, SIGTERM exits 0.
6. deploy/k8s/alknet.yaml is what scripts/render-k8s.sh renders now.

Exit 77 (CTest skip) when no renderer, PyYAML or ajv-cli is available (after running every check
that does not need the missing tool); 1 on any failure.
"""
import base64
import copy
import json
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

try:
    import yaml
except ImportError:
    print("SKIP: python3 yaml module missing (apt-get install python3-yaml)")
    sys.exit(77)

repo = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../.."))
agent = sys.argv[2] if len(sys.argv) > 2 else os.path.join(repo, "build/agent/alknet-agent")
admin = sys.argv[3] if len(sys.argv) > 3 else os.path.join(repo, "build/admin-cli/alknet-admin")
chart = os.path.join(repo, "helm/alknet")
here = os.path.join(repo, "tests/deploy")
UID = 65532

failures = []
skipped = []


def fail(msg):
    print("FAIL: " + msg)
    failures.append(msg)


def check(cond, msg):
    if not cond:
        fail(msg)
    return cond


def step(msg):
    print("\n== " + msg, flush=True)


# --- rendering ------------------------------------------------------------------------------
def renderer():
    if shutil.which("helm"):
        return ["helm", "template", "alknet", chart]
    tool = os.path.join(repo, "..", "shared", "tools", "chart-render", "chart-render")
    if os.access(tool, os.X_OK):
        return [tool, "--name", "alknet", chart]
    return None


RENDER = renderer()
if RENDER is None:
    print("SKIP: neither helm nor ../shared/tools/chart-render is available to render the chart")
    sys.exit(77)


def render_text(args, notes=False):
    cmd = RENDER[:-1] + list(args) + (["--notes"] if notes and "chart-render" in RENDER[0] else []) + [RENDER[-1]]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("render %s failed: %s" % (args, p.stderr.strip()))
    return p.stdout, p.stderr


def split_docs(text):
    docs = []
    for chunk in re.split(r"(?m)^---\n", text):
        if not chunk.strip():
            continue
        obj = yaml.safe_load(chunk)
        if obj:
            docs.append((obj, chunk))
    return docs


def render(args):
    return split_docs(render_text(args)[0])


def find(docs, kind, name=None):
    return [o for o, _ in docs if o.get("kind") == kind and (name is None or o["metadata"]["name"] == name)]


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f) or {}


def deep_merge(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            deep_merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)
    return dst


DEFAULTS = load_yaml(os.path.join(chart, "values.yaml"))
ALL = load_yaml(os.path.join(here, "chart-values-all.yaml"))


def duration_seconds(text):
    text = str(text)
    if re.fullmatch(r"[0-9]+", text):
        return int(text)
    scale = {"h": 3600000, "m": 60000, "s": 1000, "ms": 1, "us": 0.001, "ns": 0.000001}
    ms = 0
    for n, unit in re.findall(r"([0-9]+)(ms|us|ns|h|m|s)", text):
        ms += int(n) * scale[unit]
    return math.ceil(ms / 1000)


def port_of(address):
    return int(re.search(r":([0-9]+)$", address).group(1))


# --- checks on one rendering --------------------------------------------------------------
def check_rendering(label, docs, values, tmp):
    print("-- %s: %d objects: %s" % (label, len(docs), ", ".join(sorted({o["kind"] for o, _ in docs}))))
    workloads = [o for o, _ in docs if o["kind"] in ("Deployment", "StatefulSet")]
    if not check(len(workloads) == 1, "%s: want one workload, got %d" % (label, len(workloads))):
        return None
    wl = workloads[0]
    want_kind = "StatefulSet" if values["persistence"]["enabled"] or values["workload"] == "statefulset" else "Deployment"
    check(wl["kind"] == want_kind, "%s: workload is %s, want %s" % (label, wl["kind"], want_kind))
    pod = wl["spec"]["template"]["spec"]
    psc = pod.get("securityContext", {})
    for key, want in (("runAsNonRoot", True), ("runAsUser", UID), ("runAsGroup", UID), ("fsGroup", UID)):
        check(psc.get(key) == want, "%s: pod securityContext.%s = %r, want %r" % (label, key, psc.get(key), want))
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "%s: seccompProfile is not RuntimeDefault" % label)
    check(psc.get("fsGroupChangePolicy") == "OnRootMismatch", "%s: fsGroupChangePolicy is not OnRootMismatch" % label)
    check(pod.get("automountServiceAccountToken") is False, "%s: service account token is mounted" % label)
    containers = pod["containers"]
    check(len(containers) == 1, "%s: want one container" % label)
    c = containers[0]
    sc = c.get("securityContext", {})
    check(sc.get("readOnlyRootFilesystem") is True, "%s: readOnlyRootFilesystem not true" % label)
    check(sc.get("allowPrivilegeEscalation") is False, "%s: allowPrivilegeEscalation not false" % label)
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], "%s: capabilities.drop is not [ALL]" % label)
    res = c.get("resources", {})
    check(res.get("requests") and res.get("limits") and "memory" in res["limits"], "%s: requests/limits missing" % label)

    # The agent config the pod reads.
    args = c.get("args", [])
    config_path = args[args.index("--config") + 1] if "--config" in args else None
    check(config_path is not None, "%s: container args do not pass --config" % label)
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    config_mount = mounts.get(os.path.dirname(config_path or ""))
    check(config_mount is not None, "%s: no volume mounted at %s" % (label, os.path.dirname(config_path or "?")))
    cm_name = volumes[config_mount["name"]]["configMap"]["name"]
    cms = find(docs, "ConfigMap", cm_name)
    check(len(cms) == 1, "%s: ConfigMap %s not rendered" % (label, cm_name))
    agent_yaml = cms[0]["data"]["agent.yaml"]
    cfg = yaml.safe_load(agent_yaml)

    # The rendered agent.yaml passes the agent's own config check.
    path = os.path.join(tmp, label.replace(" ", "_") + "-agent.yaml")
    with open(path, "w") as f:
        f.write(agent_yaml)
    p = subprocess.run([agent, "--config", path, "--print-config"], capture_output=True, text=True)
    check(p.returncode == 0, "%s: agent rejects the rendered agent.yaml: %s" % (label, p.stderr.strip()))
    effective = yaml.safe_load(p.stdout) if p.returncode == 0 else cfg

    # Container ports == the listeners of the rendered config.
    ports = {pp["name"]: pp["containerPort"] for pp in c.get("ports", [])}
    want = {}
    for address in effective["listen"]:
        want["ssh" if address.startswith("tcp://") else "tls"] = port_of(address)
    want["metrics"] = port_of(effective["metrics"]["listen"])
    if effective.get("admin", {}).get("listen", "off") not in ("off", False):  # YAML 1.1: off = false
        want["admin"] = port_of(effective["admin"]["listen"])
    check(ports == want, "%s: container ports %s != agent config ports %s" % (label, ports, want))
    check(ports.get("ssh") == values["ports"]["ssh"], "%s: ssh port is not ports.ssh" % label)

    # Probes: readiness GET /readyz on the metrics port, liveness the health command or /healthz.
    def probe_port(probe):
        port = probe["httpGet"]["port"]
        return ports.get(port) if isinstance(port, str) else port
    rp = c.get("readinessProbe", {})
    check(rp.get("httpGet", {}).get("path") == "/readyz" and probe_port(rp) == want["metrics"],
          "%s: readiness probe is not GET /readyz on the metrics port: %s" % (label, rp))
    lp = c.get("livenessProbe", {})
    if values["probes"]["liveness"]["type"] == "exec":
        cmd = lp.get("exec", {}).get("command", [])
        check(cmd[:2] == ["/usr/local/bin/alknet-agent", "health"], "%s: liveness is not alknet-agent health: %s" % (label, cmd))
        check("127.0.0.1:%d" % want["metrics"] in cmd, "%s: liveness --metrics-listen is not this pod's metrics port" % label)
    else:
        check(lp.get("httpGet", {}).get("path") == "/healthz" and probe_port(lp) == want["metrics"],
              "%s: liveness probe is not GET /healthz on the metrics port" % label)
    check(lp.get("timeoutSeconds", 1) <= 5, "%s: liveness timeout above 5s" % label)

    # preStop and terminationGracePeriodSeconds = preStop sleep + shutdown_grace + margin.
    grace = duration_seconds(effective["limits"]["shutdown_grace"])
    sleep = values["lifecycle"]["preStopSleepSeconds"]
    pre = c.get("lifecycle", {}).get("preStop", {})
    got_sleep = pre.get("sleep", {}).get("seconds")
    if got_sleep is None and "exec" in pre:
        got_sleep = int(pre["exec"]["command"][-1])
    check(got_sleep == sleep, "%s: preStop sleeps %r, want %r" % (label, got_sleep, sleep))
    tgp = pod.get("terminationGracePeriodSeconds")
    check(tgp == sleep + grace + values["lifecycle"]["terminationGraceMarginSeconds"],
          "%s: terminationGracePeriodSeconds %r != %d (preStop) + %d (shutdown_grace) + margin" % (label, tgp, sleep, grace))
    check(tgp and tgp > sleep + grace, "%s: grace period does not cover preStop + drain" % label)

    # One host-key Secret, the one the agent config names.
    key_path = effective["host_keys"]
    check(len(key_path) == 1, "%s: want one host key, got %s" % (label, key_path))
    key_mount = mounts.get(os.path.dirname(key_path[0]))
    secret = volumes.get(key_mount["name"], {}).get("secret") if key_mount else None
    check(secret is not None, "%s: host key %s is not from a Secret volume" % (label, key_path[0]))
    host_secret = None
    if secret:
        name = secret["secretName"]
        items = {i["path"]: i["key"] for i in secret.get("items", [])}
        check(os.path.basename(key_path[0]) in items, "%s: host key file not projected from the Secret" % label)
        if values["hostKey"]["existingSecret"]:
            check(name == values["hostKey"]["existingSecret"], "%s: existingSecret not used" % label)
            check(not find(docs, "Secret", name), "%s: chart renders the user's host key Secret" % label)
        else:
            secrets = find(docs, "Secret", name)
            if check(len(secrets) == 1, "%s: host key Secret %s rendered %d times" % (label, name, len(secrets))):
                host_secret = secrets[0]
                check(host_secret["metadata"].get("annotations", {}).get("helm.sh/resource-policy") == "keep",
                      "%s: host key Secret lacks helm.sh/resource-policy: keep" % label)
        refs = [v["secret"]["secretName"] for w in workloads for v in w["spec"]["template"]["spec"]["volumes"]
                if "secret" in v and any(i["key"] == items.get(os.path.basename(key_path[0])) for i in v["secret"].get("items", []))]
        check(refs == [name] * len(workloads), "%s: host key Secret references %s" % (label, refs))
    check(key_mount is None or key_mount.get("readOnly") is True, "%s: host key mount is writable" % label)
    state_mount = mounts.get("/var/lib/alknet")
    check(state_mount is not None and effective["state_dir"].startswith("/var/lib/alknet/"),
          "%s: state_dir %s is not a directory inside the state volume" % (label, effective["state_dir"]))
    if want_kind == "StatefulSet" and values["persistence"]["enabled"]:
        claims = [t["metadata"]["name"] for t in wl["spec"].get("volumeClaimTemplates", [])]
        check(claims == ["state"], "%s: StatefulSet volumeClaimTemplates %s" % (label, claims))
    else:
        check("emptyDir" in volumes.get("state", {}), "%s: state is not an emptyDir" % label)

    # PDB selecting the pods.
    pod_labels = wl["spec"]["template"]["metadata"]["labels"]
    pdbs = find(docs, "PodDisruptionBudget")
    if values["pdb"]["enabled"]:
        ok = check(len(pdbs) == 1, "%s: want one PodDisruptionBudget" % label)
        if ok:
            sel = pdbs[0]["spec"]["selector"]["matchLabels"]
            check(all(pod_labels.get(k) == v for k, v in sel.items()), "%s: PDB selector misses the pods" % label)
            check(("minAvailable" in pdbs[0]["spec"]) != ("maxUnavailable" in pdbs[0]["spec"]), "%s: PDB sets both/neither" % label)

    # Services target named container ports and select the pods.
    for svc in find(docs, "Service"):
        sel = svc["spec"].get("selector", {})
        check(all(pod_labels.get(k) == v for k, v in sel.items()), "%s: Service %s misses the pods" % (label, svc["metadata"]["name"]))
        for sp in svc["spec"]["ports"]:
            tp = sp.get("targetPort")
            check(tp in ports or tp in ports.values(), "%s: Service %s targets unknown port %s" % (label, svc["metadata"]["name"], tp))
    main = find(docs, "Service", wl["metadata"]["name"])
    if check(len(main) == 1, "%s: no SSH Service" % label):
        svc = main[0]["spec"]
        names = [p["name"] for p in svc["ports"]]
        check("metrics" not in names, "%s: metrics exposed on the SSH Service" % label)
        check(("tls" in names) == bool(values["tls"]["enabled"]), "%s: TLS port on the Service: %s" % (label, names))
        if values["service"]["type"] != "ClusterIP":
            check(svc.get("externalTrafficPolicy") == values["service"]["externalTrafficPolicy"],
                  "%s: externalTrafficPolicy not rendered" % label)
    if want_kind == "StatefulSet":
        check(find(docs, "Service", wl["spec"]["serviceName"]), "%s: StatefulSet's serviceName has no Service" % label)

    # HPA / NetworkPolicy / ServiceMonitor / Certificate when enabled.
    hpa = find(docs, "HorizontalPodAutoscaler")
    check(bool(hpa) == values["autoscaling"]["enabled"], "%s: HPA presence" % label)
    if hpa:
        check(hpa[0]["spec"]["scaleTargetRef"]["kind"] == want_kind, "%s: HPA targets the wrong kind" % label)
        check("replicas" not in wl["spec"], "%s: replicas set although the HPA owns them" % label)
    check(bool(find(docs, "NetworkPolicy")) == values["networkPolicy"]["enabled"], "%s: NetworkPolicy presence" % label)
    check(bool(find(docs, "ServiceMonitor")) == values["metrics"]["serviceMonitor"]["enabled"], "%s: ServiceMonitor presence" % label)
    cert = find(docs, "Certificate")
    check(bool(cert) == (values["tls"]["enabled"] and values["tls"]["source"] == "certManager"), "%s: Certificate presence" % label)
    if values["tls"]["enabled"] and values["tls"]["source"] != "agent":
        check(effective["tls"]["cert"].startswith("/etc/alknet/tls/") and "/etc/alknet/tls" in mounts,
              "%s: TLS certificate not from the mounted Secret" % label)
    # Shared state (issue 16): etcd endpoints become state.store; the TLS Secret is mounted.
    etcd = values["state"]["etcd"]
    if etcd["endpoints"]:
        scheme = "etcds" if etcd["tls"]["enabled"] else "etcd"
        want_store = "%s://%s%s" % (scheme, ",".join(etcd["endpoints"]), etcd["prefix"])
        check(effective.get("state", {}).get("store") == want_store,
              "%s: state.store is %r, not %r" % (label, effective.get("state", {}).get("store"), want_store))
        if etcd["tls"]["enabled"] and etcd["tls"]["existingSecret"]:
            check("/etc/alknet/etcd" in mounts and effective["state"]["etcd_ca"] == "/etc/alknet/etcd/ca.crt",
                  "%s: etcd CA not from the mounted Secret" % label)
            check((effective["state"]["etcd_cert"] == "/etc/alknet/etcd/tls.crt") == etcd["tls"]["clientCertificate"],
                  "%s: etcd client certificate rendered wrongly" % label)
    else:
        check(effective.get("state", {}).get("store", "file") == "file", "%s: state.store is not file" % label)
        check("/etc/alknet/etcd" not in mounts, "%s: etcd Secret mounted without etcd" % label)
    return {"docs": docs, "workload": wl, "container": c, "config": effective, "agent_yaml": agent_yaml,
            "host_secret": host_secret, "ports": ports}


def check_monitoring_files(label, docs):
    """Acceptance 4: one source for the rules and the dashboard."""
    alerts_path = os.path.join(repo, "deploy/prometheus/alerts.yaml")
    dash_path = os.path.join(repo, "deploy/grafana/alknet.json")
    for link, target in (("files/alerts.yaml", alerts_path), ("files/alknet.json", dash_path)):
        p = os.path.join(chart, link)
        check(os.path.islink(p) and os.path.samefile(p, target), "helm/alknet/%s is not a symlink to %s" % (link, target))
    alerts = open(alerts_path).read()
    rules = [(o, raw) for o, raw in docs if o["kind"] == "PrometheusRule"]
    if check(len(rules) == 1, "%s: want one PrometheusRule" % label):
        obj, raw = rules[0]
        body = raw.split("\nspec:\n", 1)[1]
        text = "\n".join(line[2:] if line.startswith("  ") else line for line in body.rstrip("\n").split("\n"))
        check(text == alerts.rstrip("\n"), "%s: PrometheusRule spec is not alerts.yaml byte for byte" % label)
        check(obj["spec"] == yaml.safe_load(alerts), "%s: PrometheusRule spec parses differently from alerts.yaml" % label)
    dash = open(dash_path).read()
    cms = [o for o, _ in docs if o["kind"] == "ConfigMap" and "alknet.json" in o.get("data", {})]
    if check(len(cms) == 1, "%s: want one dashboard ConfigMap" % label):
        check(cms[0]["data"]["alknet.json"] == dash, "%s: dashboard ConfigMap is not alknet.json byte for byte" % label)
        check(cms[0]["metadata"]["labels"].get("grafana_dashboard") == "1", "%s: dashboard lacks grafana_dashboard: \"1\"" % label)
        json.loads(cms[0]["data"]["alknet.json"])


# --- schema -------------------------------------------------------------------------------
def schema_checks(tmp):
    schema_path = os.path.join(chart, "values.schema.json")
    schema = json.load(open(schema_path))
    check(schema.get("$schema") == "http://json-schema.org/draft-07/schema#", "values.schema.json is not draft-07")

    # Every value (default and all-options) has a schema entry.
    def covered(node, sch, path):
        if not isinstance(node, dict) or sch.get("type") not in ("object", ["object"]) or "properties" not in sch:
            return
        for k, v in node.items():
            sub = sch["properties"].get(k)
            if sub is None:
                if sch.get("additionalProperties") is False:
                    fail("values.schema.json has no entry for %s%s" % (path, k))
                continue
            covered(v, sub, path + k + ".")
    covered(DEFAULTS, schema, "")
    covered(ALL, schema, "")

    ajv = shutil.which("ajv")
    if not ajv:
        skipped.append("ajv-cli is not installed (npm install -g ajv-cli ajv-formats): values.schema.json not validated")
        return

    def validate(values, name):
        path = os.path.join(tmp, name + ".json")
        with open(path, "w") as f:
            json.dump(values, f)
        p = subprocess.run([ajv, "validate", "--spec=draft7", "--strict=false", "-s", schema_path, "-d", path],
                           capture_output=True, text=True)
        return p.returncode, (p.stdout + p.stderr).strip()

    rc, out = validate(DEFAULTS, "defaults")
    check(rc == 0, "schema rejects the default values: " + out)
    rc, out = validate(deep_merge(copy.deepcopy(DEFAULTS), ALL), "all")
    check(rc == 0, "schema rejects chart-values-all.yaml: " + out)
    bad = load_yaml(os.path.join(here, "chart-values-bad.yaml"))
    rc, out = validate(deep_merge(copy.deepcopy(DEFAULTS), bad), "bad")
    check(rc != 0, "schema accepts chart-values-bad.yaml")

    # Each mistake alone is rejected too.
    def leaves(node, path=()):
        if isinstance(node, dict) and node:
            for k, v in node.items():
                yield from leaves(v, path + (k,))
        else:
            yield path, node
    n = 0
    for path, value in leaves(bad):
        one = {}
        cur = one
        for k in path[:-1]:
            cur = cur.setdefault(k, {})
        cur[path[-1]] = value
        rc, out = validate(deep_merge(copy.deepcopy(DEFAULTS), one), "bad%d" % n)
        check(rc != 0, "schema accepts the bad value %s=%r" % (".".join(path), value))
        n += 1
    print("  ajv: defaults and all-options accepted; chart-values-bad.yaml and each of its %d mistakes rejected" % n)


# --- the pod without an image -------------------------------------------------------------
def pubkey_fp(line):
    p = subprocess.run(["ssh-keygen", "-lf", "-"], input=line, capture_output=True, text=True)
    return p.stdout.split()[1] if p.returncode == 0 else "?"


sys.path.insert(0, os.path.join(repo, "tests", "support"))
import test_ports  # noqa: E402  (ports outside the ephemeral range, reserved: ADR 0009)


def free_port():
    return test_ports.pick_free_port()


def materialize(volume, dest, docs, fs_group, as_root):
    """Files of a pod volume as the kubelet writes them under fsGroup (emptyDir: 2777)."""
    found = lambda kind, name: (find(docs, kind, name) or [None])[0]
    os.makedirs(dest)
    os.chmod(dest, 0o755 | 0o2000)
    if "emptyDir" in volume:
        os.chmod(dest, 0o2777)  # kubelet: 0777, fsGroup adds setgid
        if as_root:
            os.chown(dest, 0, fs_group)
        return
    if "configMap" in volume:
        src = volume["configMap"]
        obj = found("ConfigMap", src["name"])
        if obj is None:
            raise RuntimeError("ConfigMap %s not rendered" % src["name"])
        data = {k: v.encode() for k, v in obj["data"].items()}
    else:
        src = volume["secret"]
        obj = found("Secret", src["secretName"])
        if obj is None:
            raise RuntimeError("Secret %s not rendered" % src["secretName"])
        data = {k: base64.b64decode(v) for k, v in obj["data"].items()}
    mode = src.get("defaultMode", 0o644) | 0o440  # read-only volume under fsGroup: g+r
    for item in src.get("items") or [{"key": k, "path": k} for k in data]:
        p = os.path.join(dest, item["path"])
        with open(p, "wb") as f:
            f.write(data[item["key"]])
        os.chmod(p, mode)
        if as_root:
            os.chown(p, 0, fs_group)
    if as_root:
        os.chown(dest, 0, fs_group)


def run_pods(r, tmp):
    """Kubelet-like volumes, rendered args and config, two replicas sharing the Secret."""
    docs, c, wl = r["docs"], r["container"], r["workload"]
    pod = wl["spec"]["template"]["spec"]
    fs_group = pod["securityContext"]["fsGroup"]
    as_root = os.geteuid() == 0
    root_dir = os.path.join(tmp, "pods")
    os.makedirs(root_dir)
    os.chmod(tmp, 0o755)
    os.chmod(root_dir, 0o755)

    mount_re = re.compile(r"(?<![\w/.-])(%s)/" % "|".join(
        re.escape(m["mountPath"]) for m in sorted(c["volumeMounts"], key=lambda m: -len(m["mountPath"]))))

    def rewrite(text, prefix):
        return mount_re.sub(lambda m: prefix + m.group(1) + "/", text)

    volumes = {v["name"]: v for v in pod["volumes"]}
    pods = []
    shared = os.path.join(root_dir, "shared")  # Secrets and ConfigMaps are the same for every replica
    for m in c["volumeMounts"]:
        if "emptyDir" not in volumes[m["name"]]:
            materialize(volumes[m["name"]], shared + m["mountPath"], docs, fs_group, as_root)
    for i in range(2):
        prefix = os.path.join(root_dir, "pod%d" % i)
        for m in c["volumeMounts"]:
            if "emptyDir" in volumes[m["name"]]:
                materialize(volumes[m["name"]], prefix + m["mountPath"], docs, fs_group, as_root)
            else:
                os.makedirs(os.path.dirname(prefix + m["mountPath"]), exist_ok=True)
                os.symlink(shared + m["mountPath"], prefix + m["mountPath"])
        args = [rewrite(a, prefix) for a in c["args"]]
        cfg_path = args[args.index("--config") + 1]
        # The config is the rendered one with its paths under the pod's root and free loopback
        # ports (this machine is shared): write it next to the mounted one.
        cfg = yaml.safe_load(rewrite(r["agent_yaml"], prefix))
        ports = {}
        for j, address in enumerate(cfg["listen"]):
            scheme = address.split("://")[0]
            ports[scheme] = free_port()
            cfg["listen"][j] = "%s://127.0.0.1:%d" % (scheme, ports[scheme])
        ports["metrics"] = free_port()
        cfg["metrics"]["listen"] = "127.0.0.1:%d" % ports["metrics"]
        local_cfg = os.path.join(prefix, "agent.yaml")
        with open(local_cfg, "w") as f:
            yaml.safe_dump(cfg, f)
        os.chmod(local_cfg, 0o644)
        args[args.index("--config") + 1] = local_cfg
        check(os.path.exists(cfg_path), "pod: --config %s is not a mounted file" % c["args"])
        shutil.copy(agent, os.path.join(prefix, "alknet-agent"))
        os.chmod(os.path.join(prefix, "alknet-agent"), 0o755)
        cmd = [os.path.join(prefix, "alknet-agent")] + args
        if as_root:
            cmd = ["setpriv", "--reuid=%d" % UID, "--regid=%d" % UID, "--clear-groups"] + cmd
        log = open(os.path.join(prefix, "agent.log"), "w+")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd="/")
        pods.append({"proc": proc, "log": log, "ports": ports, "cfg": cfg, "prefix": prefix})

    try:
        for i, p in enumerate(pods):
            url = "http://127.0.0.1:%d/readyz" % p["ports"]["metrics"]
            status = None
            for _ in range(100):
                if p["proc"].poll() is not None:
                    break
                try:
                    status = urllib.request.urlopen(url, timeout=1).status
                    if status == 200:
                        break
                except Exception:
                    pass
                time.sleep(0.1)
            p["log"].seek(0)
            text = p["log"].read()
            if not check(status == 200, "pod%d: /readyz never answered 200 (agent log:\n%s)" % (i, text)):
                return
            fp = re.search(r'loaded host key.*?fingerprint[=":]+(SHA256:[A-Za-z0-9+/=]+)', text)
            check(fp, "pod%d: no 'loaded host key' line in the log" % i)
            p["fingerprint"] = fp.group(1) if fp else None
            if os.geteuid() == 0:
                st = os.stat(p["cfg"]["state_dir"])
                check(st.st_uid == UID and st.st_mode & 0o077 == 0, "pod%d: state_dir not private to UID %d" % (i, UID))
        print("  two pods ready (/readyz 200)%s" % (" as UID/GID %d" % UID if as_root else ""))

        # The same host key on both, and it is the Secret's.
        keyscan = []
        for p in pods:
            out = subprocess.run(["ssh-keyscan", "-p", str(p["ports"]["tcp"]), "127.0.0.1"], capture_output=True, text=True).stdout
            keyscan.append(sorted(line.split(None, 1)[1] for line in out.splitlines() if line and not line.startswith("#")))
        check(keyscan[0] and keyscan[0] == keyscan[1], "the two pods present different host keys: %s" % keyscan)
        check(pods[0]["fingerprint"] == pods[1]["fingerprint"], "host key fingerprints differ in the logs")
        # ssh-keygen refuses a group-readable key of its own user: derive the public key from a copy.
        key_file = os.path.join(tmp, "host_key_copy")
        shutil.copy(rewrite(r["config"]["host_keys"][0], pods[0]["prefix"]), key_file)
        os.chmod(key_file, 0o600)
        pubkey = subprocess.run(["ssh-keygen", "-y", "-f", key_file], capture_output=True, text=True).stdout
        pub = pubkey.split()
        check(pub and any(pub[:2] == k.split()[:2] for k in keyscan[0]), "the pods' host key is not the Secret's")
        print("  same host key on both pods, from the Secret: %s" % pods[0]["fingerprint"])

        # The same TLS certificate on both (the rendered Secret).
        if "tls" in pods[0]["ports"]:
            fps = []
            for p in pods:
                s = subprocess.run("openssl s_client -connect 127.0.0.1:%d </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
                                   % p["ports"]["tls"], shell=True, capture_output=True, text=True).stdout.strip()
                fps.append(s)
            check(fps[0] and fps[0] == fps[1], "the two pods serve different TLS certificates: %s" % fps)
            print("  same TLS certificate on both pods: %s" % fps[0])

        # The liveness command, pointed at the first pod's metrics port.
        probe = c["livenessProbe"].get("exec", {}).get("command")
        if probe:
            cmd = [agent if probe[0].endswith("alknet-agent") else probe[0]] + [
                a.replace("127.0.0.1:%d" % r["ports"]["metrics"], "127.0.0.1:%d" % pods[0]["ports"]["metrics"])
                for a in probe[1:]]
            h = subprocess.run(cmd, capture_output=True, text=True)
            check(h.returncode == 0, "liveness command %s failed: %s" % (cmd, h.stderr.strip()))

        # The NOTES first-key command: alknet-admin keys add - on the pod's socket, from stdin.
        if os.access(admin, os.X_OK):
            sock = pods[0]["cfg"]["admin"]["socket"]
            cmd = [admin, "--socket", sock, "keys", "add", "-"]
            if as_root:
                cmd = ["setpriv", "--reuid=%d" % UID, "--regid=%d" % UID, "--clear-groups"] + cmd
            a = subprocess.run(cmd, input=pubkey, capture_output=True, text=True)
            check(a.returncode == 0, "first-key command failed: %s" % a.stderr.strip())
            cmd[-2:] = ["list"]
            listed = subprocess.run(cmd, capture_output=True, text=True).stdout
            check(pubkey_fp(pubkey) in listed,
                  "the key added with the first-key command is not listed: %s" % listed)
            notes = render_text([], notes=True)[1]
            check("kubectl exec -i" in notes and "--socket %s keys add -" % r["config"]["admin"]["socket"] in notes,
                  "NOTES.txt lacks the first-key command on %s" % r["config"]["admin"]["socket"])
            print("  first-key command (alknet-admin --socket <state_dir>/admin.sock keys add - < key.pub) works")

        # SIGTERM: drain and exit 0 within the grace period.
        tgp = wl["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        for i, p in enumerate(pods):
            p["proc"].send_signal(signal.SIGTERM)
        for i, p in enumerate(pods):
            try:
                rc = p["proc"].wait(timeout=tgp)
            except subprocess.TimeoutExpired:
                rc = "timeout"
            check(rc == 0, "pod%d: exit %s after SIGTERM (want 0 within %ss)" % (i, rc, tgp))
        print("  SIGTERM: both exit 0 within terminationGracePeriodSeconds=%s" % tgp)
    finally:
        for p in pods:
            if p["proc"].poll() is None:
                p["proc"].kill()
                p["proc"].wait()


# --- main ---------------------------------------------------------------------------------
def run_pods_in_podman(r, tmp, image, podman):
    """The default pod as a container runtime runs it: the image, the rendered command, args, env
    and mounts (volumes laid out as the kubelet does), the pod's user, fsGroup, read-only root and
    dropped capabilities, the rendered config unchanged (its own ports), each replica in a network
    namespace of its own. Two replicas sharing the rendered Secret: /readyz 200, one host key."""
    docs, c, wl = r["docs"], r["container"], r["workload"]
    pod = wl["spec"]["template"]["spec"]
    sc = dict(pod.get("securityContext") or {}, **(c.get("securityContext") or {}))
    fs_group = pod["securityContext"]["fsGroup"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    metrics_port = port_of(r["config"]["metrics"]["listen"])
    ssh_port = next(port_of(a.split("://")[1]) for a in r["config"]["listen"] if a.startswith("tcp://"))
    root_dir = os.path.join(tmp, "podman-pods")
    os.makedirs(root_dir)
    shared = os.path.join(root_dir, "shared")
    for m in c["volumeMounts"]:
        if "emptyDir" not in volumes[m["name"]]:
            materialize(volumes[m["name"]], shared + m["mountPath"], docs, fs_group, True)
    names, netns = [], []
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    ulimits = ["--ulimit", "nofile=%d:%d" % (nofile, nofile), "--ulimit", "nproc=4096:4096"]
    try:
        keys = []
        for i in range(2):
            ns = "alknet-pod%d-%d" % (i, os.getpid())
            subprocess.run(["ip", "netns", "add", ns], check=True)
            netns.append(ns)
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
            cmd = podman + ["run", "-d", "--name", ns, "--network", "ns:/run/netns/" + ns] + ulimits
            cmd += ["--user", "%d:%d" % (sc["runAsUser"], sc["runAsGroup"]), "--group-add", str(fs_group)]
            if sc.get("readOnlyRootFilesystem"):
                cmd.append("--read-only")
            for cap in (sc.get("capabilities") or {}).get("drop") or []:
                cmd += ["--cap-drop", cap]
            if sc.get("allowPrivilegeEscalation") is False:
                cmd += ["--security-opt", "no-new-privileges"]
            for e in c.get("env") or []:
                if "value" in e:
                    cmd += ["-e", "%s=%s" % (e["name"], e["value"])]
            for m in c["volumeMounts"]:
                if "emptyDir" in volumes[m["name"]]:
                    host = os.path.join(root_dir, "pod%d" % i, m["name"])
                    materialize(volumes[m["name"]], host, docs, fs_group, True)
                else:
                    host = shared + m["mountPath"]
                cmd += ["-v", "%s:%s%s" % (host, m["mountPath"], ":ro" if m.get("readOnly") else "")]
            if c.get("command"):
                cmd += ["--entrypoint", json.dumps(c["command"])]
            cmd += [image] + list(c.get("args") or [])
            p = subprocess.run(cmd, capture_output=True, text=True)
            if not check(p.returncode == 0, "podman run of the rendered pod failed: %s" % p.stderr.strip()):
                return
            names.append(ns)
        for ns in names:
            status = ""
            for _ in range(150):
                status = subprocess.run(["ip", "netns", "exec", ns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                         "--max-time", "2", "http://127.0.0.1:%d/readyz" % metrics_port],
                                        capture_output=True, text=True).stdout
                if status == "200":
                    break
                time.sleep(0.2)
            logs = subprocess.run(podman + ["logs", ns], capture_output=True, text=True)
            if not check(status == "200", "%s: /readyz answered %r, not 200 (log:\n%s)" % (ns, status, logs.stdout + logs.stderr)):
                return
            out = subprocess.run(["ip", "netns", "exec", ns, "ssh-keyscan", "-p", str(ssh_port), "127.0.0.1"],
                                 capture_output=True, text=True).stdout
            keys.append(sorted(line.split(None, 1)[1] for line in out.splitlines() if line and not line.startswith("#")))
        check(keys[0] and keys[0] == keys[1], "the two podman pods present different host keys: %s" % keys)
        print("  two pods from the image with the rendered command, args, env and mounts: /readyz 200, "
              "one host key (%s)" % (keys[0][0].split()[0] if keys[0] else "?"))
    finally:
        for ns in names:
            subprocess.run(podman + ["rm", "-f", "-t", "5", ns], capture_output=True)
        for ns in netns:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


def main():
    tmp = tempfile.mkdtemp(prefix="alknet-chart-")
    # The container stage (tests/container/check_image.sh) asks for the default pod run from the
    # built image with podman instead of the rest of the checks.
    pod_image = os.environ.get("CHECK_CHART_POD_IMAGE")
    if pod_image:
        try:
            step("the default pod run by podman from %s (two replicas, one Secret)" % pod_image)
            default = check_rendering("default", render([]), DEFAULTS, tmp)
            if default:
                run_pods_in_podman(default, tmp, pod_image, os.environ["CHECK_CHART_PODMAN"].split())
        except (RuntimeError, subprocess.CalledProcessError) as e:
            fail(str(e))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print("chart pods in podman: %s" % ("%d failed" % len(failures) if failures else "all passed"))
        return 1 if failures else 0
    try:
        step("render: default values")
        default = check_rendering("default", render([]), DEFAULTS, tmp)
        check(default and default["workload"]["kind"] == "Deployment", "default workload is not a Deployment")

        step("render: chart-values-all.yaml (every option)")
        all_docs = render(["-f", os.path.join(here, "chart-values-all.yaml")])
        all_values = deep_merge(copy.deepcopy(DEFAULTS), ALL)
        check_rendering("all-options", all_docs, all_values, tmp)
        check_monitoring_files("all-options", all_docs)

        for label, sets in (("statefulset", {"workload": "statefulset"}),
                            ("persistence", {"persistence": {"enabled": True}}),
                            ("replicas=3 httpGet tls=agent", {"replicaCount": 3, "probes": {"liveness": {"type": "httpGet"}},
                                                               "tls": {"source": "agent"}})):
            step("render: " + label)
            flat = []

            def walk(node, path=""):
                for k, v in node.items():
                    if isinstance(v, dict):
                        walk(v, path + k + ".")
                    else:
                        flat.append("--set")
                        flat.append("%s%s=%s" % (path, k, str(v).lower() if isinstance(v, bool) else v))
            walk(sets)
            check_rendering(label, render(flat), deep_merge(copy.deepcopy(DEFAULTS), sets), tmp)

        step("values.schema.json")
        schema_checks(tmp)

        step("the default pod, run without an image (two replicas, one Secret)")
        if default:
            run_pods(default, tmp)

        step("deploy/k8s/alknet.yaml is up to date (scripts/render-k8s.sh --check)")
        p = subprocess.run(["bash", os.path.join(repo, "scripts/render-k8s.sh"), "--check"], capture_output=True, text=True)
        check(p.returncode == 0, "deploy/k8s/alknet.yaml is stale or does not render: %s" % (p.stdout + p.stderr).strip())
        static = split_docs(open(os.path.join(repo, "deploy/k8s/alknet.yaml")).read())
        check(not [o for o, _ in static if o["kind"] == "Secret"], "deploy/k8s/alknet.yaml contains a Secret (a private key)")
    except RuntimeError as e:
        fail(str(e))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    if failures:
        print("chart checks: %d failed" % len(failures))
        return 1
    if skipped:
        for s in skipped:
            print("SKIP: " + s)
        return 77
    print("chart checks: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
