#!/usr/bin/env bash
# The demo: a local fleet of 4 nodes serving the demo app under load, behind HAProxy, watched
# by Prometheus; then a release story: plan, a good roll-out in waves judged by the APM gate
# (each wave against the hosts not yet switched), two bad builds caught on the canary and
# rolled back by themselves (one fails its health check, one answers 5% errors), the gate's
# evidence, the fleet's status and the history.
set -euo pipefail
cd "$(dirname "$0")/.."
lrelease=.venv/bin/lrelease
state=${LRELEASE_SANDBOX_DIR:-/var/lib/lrelease-sandbox}
export LRELEASE_CONFIG="$state/lrelease.yml" LRELEASE_ACTOR=${LRELEASE_ACTOR:-demo}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. the sandbox fleet (network namespaces, sshd, HAProxy, Prometheus, steady load)"
# --gate scrape: the lrelease.yml it writes judges each wave with the APM gate, reading every
# node's /metrics; 300 requests/s (75 per node, 0.5% of them errors) give it numbers to judge.
$lrelease sandbox up --nodes 4 --gate scrape --load-rate 300 --load-duration 1800
$lrelease sandbox load stop >/dev/null   # a sandbox that was already up: its load at this rate too
$lrelease sandbox load start --rate 300 --duration 1800 >/dev/null
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

step "4. three builds: 1.1.0 (good), 1.2.0 (its /health fails), 1.3.0 (5% of requests fail)"
$lrelease sandbox build 1.1.0 --error-rate 0.005   # as good as 1.0.0: the same 0.5% of errors
$lrelease sandbox build 1.2.0 --health-fail
$lrelease sandbox build 1.3.0 --error-rate 0.05

step "5. the plan: canary first, then growing waves, a gate after each"
$lrelease plan --env production --build 1.1.0

step "6. roll out 1.1.0: each wave judged against the nodes still on 1.0.0, the last against its own past"
$lrelease deploy --env production --build 1.1.0 --yes --reason "demo: good build"

expect_rollback() {  # deploy a bad build; the gate must fail the canary and roll it back (exit 1)
  local rc=0
  $lrelease deploy --env production --build "$1" --yes --reason "$2" || rc=$?
  [[ $rc -eq 1 ]] || { echo "expected exit 1 (rolled back), got $rc" >&2; exit 1; }
}

step "7. roll out 1.2.0: its /health fails on the canary, which is rolled back by itself (exit 1)"
expect_rollback 1.2.0 "demo: health check fails"

step "8. roll out 1.3.0: 5% errors against the peers' 0.5%, caught on the canary by the statistics (exit 1)"
expect_rollback 1.3.0 "demo: more errors than its peers"

step "9. the evidence behind that verdict, as stored with the roll-out"
last=$($lrelease history --env production --limit 1 --json | .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["rollouts"][0]["id"])')
$lrelease show "$last"

step "10. where the fleet is, and what happened"
$lrelease status --env production
$lrelease history --env production --limit 5

echo
echo "The fleet stays up to explore: ssh -F $state/ssh/config node1; LRELEASE_CONFIG=$LRELEASE_CONFIG lrelease ..."
echo "Tear it down with: make down"
