#!/usr/bin/env bash
# Install everything the tests need (Debian packages as root, Python packages), then
# run the linters and the whole test suite. This is the README's test command and
# what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v prometheus >/dev/null || need_apt+=(prometheus)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v prometheus-pushgateway >/dev/null || need_apt+=(prometheus-pushgateway)
command -v prometheus-alertmanager >/dev/null || need_apt+=(prometheus-alertmanager)
command -v amtool >/dev/null || need_apt+=(prometheus-alertmanager)
command -v docker-compose >/dev/null || need_apt+=(docker-compose)
command -v openssl >/dev/null || need_apt+=(openssl)
# The run report's browser tests drive Debian's Chromium (never a downloaded browser).
command -v chromium >/dev/null || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing Debian packages: ${need_apt[*]} (run as root or install them)" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        $(printf '%s\n' "${need_apt[@]}" | sort -u) >/dev/null
    # The Debian packages start their services where an init system runs; the tests
    # start their own servers on free ports, so stop any that came up.
    for svc in prometheus prometheus-pushgateway prometheus-alertmanager; do
        (command -v systemctl >/dev/null && systemctl stop "$svc" 2>/dev/null) || true
    done
fi

python3 -m pip install -q --disable-pip-version-check -e ".[test]"

python3 -m ruff check amorsize tests benchmarks examples
python3 -m mypy
python3 -m pytest -q "$@"
