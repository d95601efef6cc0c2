#!/usr/bin/env bash
# The demo: a local fleet of 4 nodes serving the demo app under load, behind HAProxy, watched
# by Prometheus; then a release story: plan, a good roll-out in waves, a bad build caught on
# the canary and rolled back by itself, the fleet's status and the history.
set -euo pipefail
cd "$(dirname "$0")/.."
lrelease=.venv/bin/lrelease
state=${LRELEASE_SANDBOX_DIR:-/var/lib/lrelease-sandbox}
export LRELEASE_CONFIG="$state/lrelease.yml" LRELEASE_ACTOR=${LRELEASE_ACTOR:-demo}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. the sandbox fleet (network namespaces, sshd, HAProxy, Prometheus, steady load)"
$lrelease sandbox up --nodes 4 --load-rate 20 --load-duration 1800
$lrelease sandbox reset >/dev/null   # every node on the baseline build 1.0.0

step "2. every node over real SSH (host-key checking on): its own hostname and deploy root"
for n in 1 2 3 4; do
  ssh -F "$state/ssh/config" -o BatchMode=yes "node$n" \
    'printf "%s: deploy root %s, current -> %s, serving %s\n" "$(hostname)" /srv/demoapp "$(readlink /srv/demoapp/current)" "$(curl -s --max-time 2 localhost:8080/version)"'
done

step "3. Prometheus: request rate per node over the last 10 s"
sleep 3
.venv/bin/python - <<'PY'
import requests
resp = requests.get("http://127.0.0.1:19090/api/v1/query", timeout=5,
                    params={"query": "sum by (node) (rate(demoapp_http_requests_total[10s]))"})
for r in sorted(resp.json()["data"]["result"], key=lambda r: r["metric"]["node"]):
    print(f"  {r['metric']['node']}: {float(r['value'][1]):.1f} req/s")
PY

step "4. two builds: 1.1.0 (good) and 1.2.0 (its /health fails once it runs)"
$lrelease sandbox build 1.1.0
$lrelease sandbox build 1.2.0 --health-fail

step "5. the plan: canary first, then growing waves, a gate after each"
$lrelease plan --env production --build 1.1.0

step "6. roll out 1.1.0"
$lrelease deploy --env production --build 1.1.0 --yes --reason "demo: good build"

step "7. roll out 1.2.0: the gate fails on the canary, which is rolled back by itself (exit 1)"
rc=0
$lrelease deploy --env production --build 1.2.0 --yes --reason "demo: bad build" || rc=$?
[[ $rc -eq 1 ]] || { echo "expected exit 1 (rolled back), got $rc" >&2; exit 1; }

step "8. where the fleet is, and what happened"
$lrelease status --env production
$lrelease history --env production --limit 5

echo
echo "The fleet stays up to explore: ssh -F $state/ssh/config node1; LRELEASE_CONFIG=$LRELEASE_CONFIG lrelease ..."
echo "Tear it down with: make down"
