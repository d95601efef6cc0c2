#!/usr/bin/env bash
# The demo: a local fleet of 4 nodes serving the demo app under load, behind HAProxy,
# watched by Prometheus. Later stages roll a release across it.
set -euo pipefail
cd "$(dirname "$0")/.."
lrelease=.venv/bin/lrelease

echo "== 1. bring up the sandbox fleet (network namespaces, sshd, HAProxy, Prometheus, load)"
$lrelease sandbox up --nodes 4 --load-rate 20 --load-duration 1800

echo "== 2. every node over real SSH (host-key checking on): its own hostname and deploy root"
state=${LRELEASE_SANDBOX_DIR:-/var/lib/lrelease-sandbox}
for n in 1 2 3 4; do
  ssh -F "$state/ssh/config" -o BatchMode=yes "node$n" \
    'printf "%s: deploy root %s, current -> %s, serving %s\n" "$(hostname)" /srv/demoapp "$(readlink /srv/demoapp/current)" "$(curl -s --max-time 2 localhost:8080/version)"'
done

echo "== 3. traffic through HAProxy"
for _ in 1 2 3 4; do curl -s --max-time 2 http://127.0.0.1:18080/; done

echo "== 4. Prometheus: request rate per node over the last 10 s"
sleep 5
.venv/bin/python - <<'PY'
import requests
resp = requests.get("http://127.0.0.1:19090/api/v1/query", timeout=5,
                    params={"query": "sum by (node) (rate(demoapp_http_requests_total[10s]))"})
for r in sorted(resp.json()["data"]["result"], key=lambda r: r["metric"]["node"]):
    print(f"  {r['metric']['node']}: {float(r['value'][1]):.1f} req/s")
PY

echo
$lrelease sandbox status
echo "The fleet stays up for you to explore (ssh -F $state/ssh/config node1). Tear down: make down"
