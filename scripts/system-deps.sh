#!/usr/bin/env bash
# Debian packages bascule's tests and demo use: age (the reference age CLI, an independent
# reader of what bascule writes), chromium (renders the HTML report in a test) and, where
# Debian's python3.11 is installed, its venv support.
# Installs only what is missing, and only when it can (root with apt-get).
set -euo pipefail
missing=()
command -v age >/dev/null 2>&1 || missing+=(age)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs npm)
can_install=false
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  can_install=true
fi
# Debian's python3.11 makes the venv when it can (see PYTHON in the Makefile); its venv
# support is a package of its own. Optional: without it the venv is made with python3.
if $can_install && [ -x /usr/bin/python3.11 ] \
  && ! /usr/bin/python3.11 -c 'import ensurepip' >/dev/null 2>&1; then
  missing+=(python3.11-venv)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! $can_install; then
  echo "error: missing system packages: ${missing[*]}; install them (Debian: apt-get install ${missing[*]})" >&2
  exit 2
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
