#!/usr/bin/env bash
# Debian packages the test suite drives for real: Chromium (+ driver) for the dashboard, Prometheus and
# Alertmanager for the end-to-end alert test, bubblewrap for the sandbox that runs a repository's tests on a
# proposed fix (check_patch). Installs only what is missing; needs root (or sudo) and apt.
set -euo pipefail
wanted=(chromium chromium-driver prometheus prometheus-alertmanager bubblewrap)
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "install-system-deps: apt-get not found; install ${missing[*]} yourself" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
# the packages' own services must not start: the tests run their own instances on loopback
export DEBIAN_FRONTEND=noninteractive
echo exit 101 | $SUDO tee /usr/sbin/policy-rc.d >/dev/null && $SUDO chmod +x /usr/sbin/policy-rc.d
trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
