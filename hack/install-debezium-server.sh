#!/usr/bin/env bash
# Install Debezium Server 3.6.1 (the same Debezium version as hack/install-debezium.sh) from Maven Central: the peer
# bench/pg_to_webhook runs beside Sluice's webhook sink (its PostgreSQL source and HTTP sink ship in the dist).
#
# `mvn dependency:copy` fetches io.debezium:debezium-server-dist:<version>:tar.gz (about 780 MB; Maven keeps it in
# its local repository, so a reinstall does not download it again) and it is unpacked here. Debezium Server 3.x is
# compiled for Java 21 (class file 65): the first JDK of 21 or later found ($DEBEZIUM_SERVER_JAVA, $JAVA_HOME, `java`
# on PATH, then /usr/lib/jvm/*) is recorded in `java`; without one the install fails and says so. Nothing runs from
# here: the bench starts it.
#
# Output: $SLUICE_CACHE/debezium-server/<version>/{server/,java} and a `.installed` marker.
# Usage: bash hack/install-debezium-server.sh [--print-dir]
set -euo pipefail

DEBEZIUM_VERSION="${DEBEZIUM_VERSION:-3.6.1.Final}"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
OUT="$CACHE/debezium-server/$DEBEZIUM_VERSION"
MARKER="$DEBEZIUM_VERSION server-dist v1"

case "${1:-}" in
  --print-dir) echo "$OUT"; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--print-dir]" >&2; exit 2 ;;
esac

if [[ -f "$OUT/.installed" && "$(cat "$OUT/.installed")" == "$MARKER" ]]; then
  echo "debezium server $DEBEZIUM_VERSION already installed in $OUT"
  exit 0
fi
command -v mvn >/dev/null || { echo "error: mvn is not on PATH; install Maven first" >&2; exit 1; }

java_major() {  # the feature version of a java binary (17, 21, 25...), or 0
  local v
  v=$("$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p' | head -1)
  echo "${v:-0}" | cut -d. -f1
}

java_bin=""
candidates=()
[[ -n "${DEBEZIUM_SERVER_JAVA:-}" ]] && candidates+=("$DEBEZIUM_SERVER_JAVA")
[[ -n "${JAVA_HOME:-}" ]] && candidates+=("$JAVA_HOME/bin/java")
command -v java >/dev/null && candidates+=("$(command -v java)")
for j in /usr/lib/jvm/*/bin/java; do [[ -x "$j" ]] && candidates+=("$j"); done
for j in "${candidates[@]}"; do
  if [[ -x "$j" ]] && (( $(java_major "$j") >= 21 )); then java_bin="$j"; break; fi
done
if [[ -z "$java_bin" ]]; then
  echo "error: Debezium Server $DEBEZIUM_VERSION needs Java 21 or later; none found (tried: ${candidates[*]:-nothing})" >&2
  exit 1
fi

start=$(date +%s)
echo "resolving io.debezium:debezium-server-dist:$DEBEZIUM_VERSION:tar.gz"
rm -rf "$OUT/download" "$OUT/server.tmp"
mkdir -p "$OUT/download" "$OUT/server.tmp"
mvn -q -B dependency:copy "-Dartifact=io.debezium:debezium-server-dist:$DEBEZIUM_VERSION:tar.gz" \
  "-DoutputDirectory=$OUT/download"
tar -xzf "$OUT"/download/debezium-server-dist-*.tar.gz -C "$OUT/server.tmp"
rm -rf "$OUT/download" "$OUT/server"
mv "$OUT/server.tmp/debezium-server" "$OUT/server"
rmdir "$OUT/server.tmp"
ls "$OUT"/server/debezium-server-*-runner.jar >/dev/null
ls "$OUT"/server/lib/debezium-connector-postgres-*.jar "$OUT"/server/lib/debezium-server-http-*.jar >/dev/null
echo "$java_bin" > "$OUT/java"
echo "$MARKER" > "$OUT/.installed"
echo "debezium server $DEBEZIUM_VERSION installed in $OUT (java: $java_bin, $(( $(date +%s) - start ))s)"
