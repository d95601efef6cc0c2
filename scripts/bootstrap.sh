#!/usr/bin/env bash
# Installs what the demo and the tests need, on a fresh Debian 12, idempotently:
# Debian packages (as root), a virtualenv in .venv and the package with its test extras.
# A second run does nothing but check.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  openssh-server openssh-client   # every sandbox node runs its own sshd; Ansible connects over ssh
  haproxy                         # load balancer in front of the nodes (runtime API for drains)
  prometheus                      # scrapes every node at 1 s; provides promtool too
  iproute2 util-linux procps      # ip netns / veth / bridge, unshare / nsenter / mount, ps
  zstd                            # tar.zst artifacts: the hosts (sandbox nodes share these binaries) unpack them
  postgresql                      # the state suite's PostgreSQL backend: the tests run a throwaway cluster of their
                                  # own; the package's default cluster (15/main) is left stopped (policy-rc.d below)
  git curl make python3 python3-venv
  chromium chromium-driver        # the `lrelease report` test opens the HTML report in headless Chromium (selenium)
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  [[ $pkg == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "bootstrap: these Debian packages are missing and need root to install: ${missing[*]}" >&2
    exit 2
  fi
  echo "bootstrap: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps the packages' own services from starting: the sandbox runs its own instances.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
stamp=.venv/.lrelease-installed
want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  echo "bootstrap: installing lrelease and its dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  echo "$want" > "$stamp"
fi
