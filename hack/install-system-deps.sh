#!/usr/bin/env bash
# Install the system packages the tests and the benchmark need, from Debian: the PostgreSQL server and client
# tools (initdb, pg_ctl, psql, pgbench) and pgcopydb (a benchmark peer). `runuser` (util-linux) lets a root test
# session start PostgreSQL as the `postgres` OS user, which the server package creates. gcc and the Python headers
# compile the worker's optional C speedups (sluice._speedups, _pgrows, _eventjson) when pip installs the package.
# bubblewrap (`bwrap`) lets the process node give a container with readOnlyRootFilesystem a read-only root, as a
# kubelet does. mariadb-server is the MariaDB source of the MySQL-source tests (MySQL 8 itself comes from
# hack/install-mysql.sh); pgloader is the MySQL -> PostgreSQL benchmark peer.
#
# Idempotent: installs only what is missing, runs `apt-get update` at most once and only when something must be
# installed. Works as root, or through sudo when not root. Prints what it does.
set -euo pipefail

# command to check -> Debian package that provides it
declare -A WANT=(
  [initdb]=postgresql
  [pgbench]=postgresql
  [psql]=postgresql-client
  [pgcopydb]=pgcopydb
  [runuser]=util-linux
  [gcc]=gcc
  [Python.h]=python3-dev
  [bwrap]=bubblewrap
  [mariadbd]=mariadb-server
  [pgloader]=pgloader
)

have_initdb() {
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

have() {
  case "$1" in
    initdb) have_initdb ;;
    pgbench) compgen -G "/usr/lib/postgresql/*/bin/pgbench" >/dev/null || command -v pgbench >/dev/null ;;
    # the headers of the interpreter that builds the venv (a pyenv or other own build ships them itself)
    Python.h) "${PYTHON:-python3}" -c 'import os, sysconfig, sys
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' ;;
    mariadbd) command -v mariadbd >/dev/null || [[ -x /usr/sbin/mariadbd ]] ;;
    *) command -v "$1" >/dev/null ;;
  esac
}

missing=()
for cmd in "${!WANT[@]}"; do
  if have "$cmd"; then
    echo "ok: $cmd present"
  else
    pkg="${WANT[$cmd]}"
    echo "missing: $cmd (package $pkg)"
    [[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "system dependencies already installed"
  exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "error: not root and no sudo; install as root: ${missing[*]}" >&2; exit 1; }
  SUDO=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
# The package lists are stale or absent on a fresh machine: refresh once, only when the candidate is unknown.
for pkg in "${missing[@]}"; do
  if ! apt-cache policy "$pkg" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    echo "running: apt-get update"
    "${SUDO[@]}" apt-get update -qq
    break
  fi
done

echo "running: apt-get install -y --no-install-recommends ${missing[*]}"
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"

# The Debian server package may also create a default cluster on port 5432; the tests and the benchmark start their
# own servers on free ports and never touch it.
for cmd in "${!WANT[@]}"; do
  have "$cmd" || { echo "error: $cmd still missing after installing ${missing[*]}" >&2; exit 1; }
done
echo "system dependencies installed: ${missing[*]}"
