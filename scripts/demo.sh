#!/usr/bin/env bash
# The demo: the whole release story on a local fleet of 4 nodes serving the demo app under load,
# behind HAProxy, watched by Prometheus. node1 is Next; node2..node4 are production, which
# requires a build proven on Next (a 20 s soak), a release captain, and a deploy window; every
# wave is judged by the APM gate. The demo app's source is a small git repository (made here,
# under the sandbox's state dir) whose build command makes the artifact.
#   bob cuts release/1.1.0 from main and builds it; it goes to Next, soaks, is gated; carol makes
#   alice production's captain and alice rolls 1.1.0 out to production in waves. Then a
#   customer-impacting defect appears: a commit on main that 1.1.0 contains. bob reverts it
#   (`hotfix revert`: on main, the revert cherry-picked into release/1.1.0) and builds 1.1.0+1; it
#   goes to Next; it is business hours, production's overnight window is closed, so alice rolls it
#   out as a hot-fix with a reason. Meanwhile a change on main answering 5% errors is built and
#   deployed to Next, where the APM gate catches it and it rolls back by itself. `history` shows
#   every step with who, when and why, and the hot-fix's report is written to a file.
set -euo pipefail
cd "$(dirname "$0")/.."
lrelease=.venv/bin/lrelease
python=$PWD/.venv/bin/python
state=${LRELEASE_SANDBOX_DIR:-/var/lib/lrelease-sandbox}
story=$state/story   # this demo's own lrelease.yml, state, fleet file and git repository
export LRELEASE_CONFIG="$story/lrelease.yml" LRELEASE_ACTOR=${LRELEASE_ACTOR:-demo}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
git_app() { git -C "$story/app" "$@"; }
commit() {  # commit FILE TEXT MESSAGE: prints the new commit
  printf '%s\n' "$2" >"$story/app/$1"
  git_app add -A && git_app commit -q -m "$3" && git_app rev-parse HEAD
}
rollout_id() { $lrelease history --env "$1" --limit 1 --json | $python -c 'import json, sys; print(json.load(sys.stdin)["rollouts"][0]["id"])'; }

step "1. the sandbox fleet (network namespaces, sshd, HAProxy, Prometheus, steady load)"
# --gate prometheus: the lrelease.yml it writes judges each wave with the APM gate, asking the
# sandbox's Prometheus (Next's one node has no peers: it is judged against its own past, which
# Prometheus keeps); 300 requests/s (75 per node, 0.5% of them errors) give it numbers to judge.
$lrelease sandbox up --nodes 4 --gate prometheus --load-rate 300 --load-duration 1800
$lrelease sandbox load stop >/dev/null   # a sandbox that was already up: its load at this rate too
$lrelease sandbox load start --rate 300 --duration 1800 >/dev/null
$lrelease sandbox reset >/dev/null   # every node on the baseline build 1.0.0
reset_at=$(date +%s)

step "2. the demo app's git repository: main, with its build command (the artifact for a version)"
rm -rf "$story" && mkdir -p "$story/app"
# A demo run before this one on the same sandbox left its builds beside the baseline: build ids
# are never reused, so they go with the story they belonged to.
find "$state/artifacts" -maxdepth 1 -name 'demoapp-*' ! -name 'demoapp-1.0.0.tar.gz*' -delete
git_app init -q -b main
git_app config user.name "Dev Team" && git_app config user.email dev@example.com && git_app config commit.gpgsign false
cat >"$story/app/build.py" <<'PY'
"""The demo app's build: python build.py VERSION makes dist/demoapp-VERSION.tar.gz (+ .sha256)."""
import json, pathlib, sys
from lrelease.sandbox.demoapp.build import Behaviour, build_artifact
build_artifact(sys.argv[1], pathlib.Path("dist"), Behaviour(**json.loads(pathlib.Path("behaviour.json").read_text())))
PY
echo '{"error_rate": 0.005}' >"$story/app/behaviour.json"   # as good as 1.0.0: 0.5% of requests fail
commit search.txt "search by name" "the demo app, its build and search" >/dev/null
commit help.txt "a help page" "help: a page" >/dev/null
defect=$(commit checkout.txt "prices rounded down to whole euros" "checkout: round prices to whole euros")
commit profile.txt "a profile page" "profile: a page" >/dev/null
git_app log --oneline

step "3. the demo's lrelease.yml: next (node1), production (node2..4) requires next, a captain, a window"
# Made from the one `sandbox up` wrote (the APM gate, HAProxy, deploy root); the window is a daily
# UTC window open now (real clock). git: the repository above and its build command.
STORY=$story PYTHON=$python $python - <<'PY'
import copy, os
from datetime import datetime, timedelta, timezone
from pathlib import Path
import yaml
story, state = Path(os.environ["STORY"]), Path(os.environ["STORY"]).parent
fleet = yaml.safe_load((state / "fleet.yml").read_text())
for name, node in fleet["nodes"].items():
    node["environment"] = "next" if name == "node1" else "production"
(story / "fleet.yml").write_text(yaml.safe_dump(fleet, sort_keys=False))
config = yaml.safe_load((state / "lrelease.yml").read_text())
production = config["environments"]["production"]
start = datetime.now(timezone.utc) - timedelta(hours=1)
window = f"daily {start:%H:%M}-{start + timedelta(hours=3):%H:%M}"
config["environments"] = {
    "next": {**copy.deepcopy(production), "waves": ["100%"]},
    "production": {**production, "waves": [1, "100%"], "captain": "required",
                   "requires": {"env": "next", "soak": "20s"}, "window": {"timezone": "UTC", "weekly": [window]}},
}
config.update(fleet=str(story / "fleet.yml"), state_dir=str(story / "project"),
              git={"repository": str(story / "app"), "build_command": [os.environ["PYTHON"], "build.py", "{version}"]})
(story / "lrelease.yml").write_text(yaml.safe_dump(config, sort_keys=False))
print(yaml.safe_dump({"environments": {"production": {k: config["environments"]["production"][k]
      for k in ("waves", "captain", "requires", "window")}}, "git": config["git"]}, sort_keys=False), end="")
PY

step "4. bob cuts release/1.1.0 from main and builds it"
$lrelease branch cut 1.1.0
$lrelease build --actor bob

step "5. bob deploys 1.1.0 to next (node1): gated by the APM gate against its own past"
# Its past starts when node1 last changed build (the reset above): the gate reads no further back,
# so node1 serves 1.0.0 for half a minute first (ten slices of Prometheus' 1 s scrapes need ~20 s).
wait=$((reset_at + 30 - $(date +%s)))
if ((wait > 0)); then echo "node1 has served 1.0.0 since the reset; $wait s more traffic for its past"; sleep "$wait"; fi
$lrelease deploy --env next --build 1.1.0 --yes --actor bob --reason "release 1.1.0 on next"

step "6. carol makes alice production's release captain; production refuses 1.1.0 while it soaks on next"
$lrelease captain set alice --env production --actor carol --reason "release 1.1.0"
rc=0; $lrelease deploy --env production --build 1.1.0 --yes --actor alice || rc=$?
[[ $rc -eq 4 ]] || { echo "expected exit 4 (refused: soaking on next), got $rc" >&2; exit 1; }
sleep 20   # the soak

step "7. alice, production's captain, rolls 1.1.0 out in waves: each judged by the APM gate"
$lrelease deploy --env production --build 1.1.0 --yes --actor alice --reason "release 1.1.0"

step "8. a customer-impacting defect appears: commit ${defect:0:12} on main (\"checkout: round prices to whole euros\"), which 1.1.0 contains"
$lrelease hotfix revert "$defect"
git_app log --oneline -3 release/1.1.0

step "9. bob builds 1.1.0+1 (its provenance: the revert, cherry-picked) and deploys it to next"
$lrelease build --actor bob
$lrelease deploy --env next --build 1.1.0+1 --yes --actor bob --reason "INC-7 fix on next"
sleep 20   # the soak

step "10. it is now business hours: the overnight window is closed (the demo rewrites production's window in its lrelease.yml to one closed now; the clock is real)"
STORY=$story $python - <<'PY'
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
import yaml
path = Path(os.environ["STORY"]) / "lrelease.yml"
config = yaml.safe_load(path.read_text())
start = datetime.now(timezone.utc) + timedelta(hours=3)
window = {"timezone": "UTC", "weekly": [f"daily {start:%H:%M}-{start + timedelta(hours=8):%H:%M}"]}
config["environments"]["production"]["window"] = window
path.write_text(yaml.safe_dump(config, sort_keys=False))
print(f"production window: {window}")
PY
rc=0; $lrelease deploy --env production --build 1.1.0+1 --yes --actor alice || rc=$?
[[ $rc -eq 4 ]] || { echo "expected exit 4 (refused: window closed), got $rc" >&2; exit 1; }

step "11. alice rolls 1.1.0+1 out to production as a business-hours hot-fix, with a reason"
$lrelease deploy --env production --build 1.1.0+1 --yes --actor alice --hotfix \
  --reason "INC-7: checkout rounds prices down; the rounding change reverted"
hotfix=$(rollout_id production)

step "12. meanwhile work on main goes on: a change that makes 5% of requests fail, built and deployed to next"
echo '{"error_rate": 0.05}' >"$story/app/behaviour.json"
commit search.txt "search by name, new index" "search: a new index" >/dev/null
$lrelease build --ref main --version 1.2.0-dev1 --actor bob
rc=0; $lrelease deploy --env next --build 1.2.0-dev1 --yes --actor bob --reason "main on next" || rc=$?
[[ $rc -eq 1 ]] || { echo "expected exit 1 (caught by the gate, rolled back), got $rc" >&2; exit 1; }
echo "caught by the APM gate on next and rolled back by itself (exit 1); production never saw it"

step "13. the builds, where the fleet is, and every step with who, when and why"
$lrelease builds
$lrelease status --env production
$lrelease history

step "14. the hot-fix's report"
$lrelease report "$hotfix" --out "$story/report-$hotfix.html"   # prints the file's path

echo
echo "The fleet stays up to explore: ssh -F $state/ssh/config node1; LRELEASE_CONFIG=$LRELEASE_CONFIG lrelease ..."
echo "Tear it down with: make down"
