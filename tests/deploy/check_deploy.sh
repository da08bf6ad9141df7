#!/usr/bin/env bash
# Checks the monitoring files under deploy/: the Prometheus alert rules and their unit tests, the
# example scrape config, and the Grafana dashboard (valid JSON, every query on ${datasource}, every
# PromQL expression parses).
#
# Usage: check_deploy.sh [REPO_ROOT]   (default: two levels above this script)
# Needs promtool (Debian package "prometheus"); installs it when missing and allowed to. Prints
# "SKIP: ..." and exits 77 (skipped in CTest) only when promtool cannot be had.
set -euo pipefail

repo="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
repo="$(cd "$repo" && pwd)"
prom_dir="$repo/deploy/prometheus"
dashboard="$repo/deploy/grafana/alknet.json"

failures=0
step() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*"; failures=$((failures + 1)); }

ensure_promtool() {
  command -v promtool >/dev/null 2>&1 && return 0
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null || return 1
    sudo=(sudo -n)
  fi
  command -v apt-get >/dev/null 2>&1 || return 1
  echo "promtool not found: installing Debian package 'prometheus'"
  # The package's service is not started where there is no init system; policy-rc.d keeps it so.
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends prometheus \
    >/dev/null 2>&1 ||
    { "${sudo[@]}" apt-get update -qq >/dev/null 2>&1 &&
      DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends prometheus \
        >/dev/null 2>&1; } || return 1
  command -v promtool >/dev/null 2>&1
}

if ! ensure_promtool; then
  echo "SKIP: promtool is not installed and could not be installed (apt-get install prometheus failed or not permitted)"
  exit 77  # CTest reports it as skipped (SKIP_RETURN_CODE), not passed
fi
promtool --version 2>&1 | head -n 1

tmp="$(mktemp -d "${TMPDIR:-/tmp}/alknet-deploy-check.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

step "promtool check rules deploy/prometheus/alerts.yaml"
promtool check rules "$prom_dir/alerts.yaml" || fail "alerts.yaml does not pass promtool check rules"

step "promtool test rules deploy/prometheus/alerts_test.yaml"
# rule_files in the test file are relative to it: run from its directory.
(cd "$prom_dir" && promtool test rules alerts_test.yaml) || fail "alerts_test.yaml: rule unit tests failed"

step "promtool check config (scrape.yaml with the rule file path pointed at this checkout)"
grep -q '/etc/prometheus/alknet/alerts.yaml' "$prom_dir/scrape.yaml" ||
  fail "scrape.yaml no longer names /etc/prometheus/alknet/alerts.yaml under rule_files"
sed "s#/etc/prometheus/alknet/alerts.yaml#$prom_dir/alerts.yaml#" "$prom_dir/scrape.yaml" >"$tmp/prometheus.yml"
# The commented Kubernetes example must stay valid too: check an uncommented copy of it.
python3 - "$prom_dir/scrape.yaml" "$tmp/prometheus-k8s.yml" "$prom_dir/alerts.yaml" <<'EOF' || fail "could not extract the kubernetes_sd example"
import re, sys
src, dst, rules = sys.argv[1:4]
lines = open(src).read().splitlines()
out, in_example = [], False
for line in lines:
    if re.match(r"^  # - job_name:", line):
        in_example = True
    if in_example:
        m = re.match(r"^  # ?(.*)$", line)
        if not m:
            in_example = False
        else:
            out.append("  " + m.group(1))
            continue
if not out:
    sys.exit("no commented '- job_name:' example found in scrape.yaml")
text = "rule_files:\n  - %s\nscrape_configs:\n%s\n" % (rules, "\n".join(out))
open(dst, "w").write(text)
EOF
promtool check config "$tmp/prometheus.yml" || fail "scrape.yaml does not pass promtool check config"
if [[ -f "$tmp/prometheus-k8s.yml" ]]; then
  if promtool check config "$tmp/prometheus-k8s.yml" >"$tmp/k8s.out" 2>&1; then
    cat "$tmp/k8s.out"
  elif grep -q 'field kubernetes_sd_configs not found' "$tmp/k8s.out"; then
    # Debian's build of Prometheus leaves out Kubernetes service discovery.
    echo "  note: this promtool is built without kubernetes_sd_configs; the commented example is not checked"
  else
    cat "$tmp/k8s.out"
    fail "the commented kubernetes_sd example in scrape.yaml is not valid"
  fi
fi

step "dashboard deploy/grafana/alknet.json"
if python3 -m json.tool "$dashboard" >/dev/null; then
  echo "  valid JSON"
  python3 - "$dashboard" "$tmp/dashboard_rules.yaml" <<'EOF' || fail "dashboard checks failed"
import json, re, sys
path, rules_out = sys.argv[1:3]
d = json.load(open(path))
problems = []
want_ds = "${datasource}"

variables = d.get("templating", {}).get("list", [])
ds_vars = [v for v in variables if v.get("name") == "datasource"]
if not ds_vars or ds_vars[0].get("type") != "datasource" or ds_vars[0].get("query") != "prometheus":
    problems.append("no template variable 'datasource' of type datasource (prometheus)")
for v in variables:
    if v.get("type") == "query":
        uid = (v.get("datasource") or {}).get("uid")
        if uid != want_ds:
            problems.append("variable %r uses datasource %r, not %s" % (v.get("name"), uid, want_ds))

def panels(items):
    for p in items:
        yield p
        yield from panels(p.get("panels", []))

# Template variables -> a value that lets the expression parse (and match everything).
subst = {"__rate_interval": "1m", "__interval": "1m", "__range": "1m"}
for v in variables:
    if v.get("type") in ("query", "custom"):
        subst[v["name"]] = v.get("allValue") or ".+"

def substitute(expr):
    def repl(m):
        name = m.group(1) or m.group(2)
        if name not in subst:
            problems.append("unknown template variable $%s in %r" % (name, expr))
            return "1m"
        return subst[name]
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", repl, expr)

exprs = []
n_targets = 0
for p in panels(d.get("panels", [])):
    if p.get("type") == "row":
        continue
    title = p.get("title", "?")
    pds = (p.get("datasource") or {}).get("uid")
    if pds != want_ds:
        problems.append("panel %r: datasource uid %r, not %s" % (title, pds, want_ds))
    targets = p.get("targets", [])
    if not targets:
        problems.append("panel %r has no targets" % title)
    for t in targets:
        n_targets += 1
        uid = (t.get("datasource") or {}).get("uid")
        if uid != want_ds:
            problems.append("panel %r target %s: datasource uid %r, not %s" % (title, t.get("refId"), uid, want_ds))
        expr = t.get("expr", "")
        if not expr.strip():
            problems.append("panel %r target %s: empty expr" % (title, t.get("refId")))
            continue
        if "datasource" in expr:
            problems.append("panel %r: ${datasource} inside an expression" % title)
        exprs.append((title, t.get("refId"), substitute(expr)))

if d.get("schemaVersion", 0) < 36:
    problems.append("schemaVersion %r is older than 36" % d.get("schemaVersion"))
ids = [p.get("id") for p in panels(d.get("panels", []))]
if len(ids) != len(set(ids)):
    problems.append("duplicate panel ids")

# Every expression parses: promtool check rules parses each one as a recording rule.
with open(rules_out, "w") as f:
    f.write("groups:\n  - name: dashboard_expressions\n    rules:\n")
    for i, (title, ref, expr) in enumerate(exprs):
        f.write("      - record: alknet_dashboard_expr_%d\n        expr: %s\n" % (i, json.dumps(expr)))
print("  %d panels with targets, %d targets, all on %s" % (
    sum(1 for p in panels(d.get("panels", [])) if p.get("type") != "row"), n_targets, want_ds))
for p in problems:
    print("  problem: " + p)
sys.exit(1 if problems else 0)
EOF
  if [[ -f "$tmp/dashboard_rules.yaml" ]]; then
    echo "  every dashboard expression parses (promtool check rules on them as recording rules):"
    promtool check rules "$tmp/dashboard_rules.yaml" || fail "a dashboard PromQL expression does not parse"
  fi
else
  fail "deploy/grafana/alknet.json is not valid JSON"
fi

echo
if ((failures > 0)); then
  echo "deploy checks: $failures failed"
  exit 1
fi
echo "deploy checks: all passed"
