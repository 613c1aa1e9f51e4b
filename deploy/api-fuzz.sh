#!/usr/bin/env bash
# Fuzzes the REST API from its own /openapi.json with Schemathesis (from PyPI, pinned): starts
# `ringpush dev` on free loopback ports with a fresh store, creates an app, then runs every
# operation with generated requests as the admin and as the app's server key. Fails if any
# answer is a 5xx. `make test` runs it after the test suite (a few hundred requests per
# credential; raise EXAMPLES for a longer run; KEEP=1 keeps the work directory, whose path
# is written to /tmp/apifuzz.dir, with the logs).
#
# Usage: deploy/api-fuzz.sh [path to the ringpush binary, default target/debug/ringpush]
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
EXAMPLES=${EXAMPLES:-25}
bin=${1:-target/debug/ringpush}
[ -x "$bin" ] || { echo "error: $bin is missing: build it with cargo build -p ringpush" >&2; exit 1; }

if ! st --version 2>/dev/null | grep -q "version $SCHEMATHESIS_VERSION"; then
  echo "installing schemathesis $SCHEMATHESIS_VERSION (PyPI)" >&2
  python3 -m pip install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" >&2
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
token="api-fuzz-admin-$(date +%s%N)"
controller=$(free_port)
"$bin" dev --data-dir "$work/store" --admin-token "$token" --log warn \
  --controller-listen "127.0.0.1:$controller" --dispatcher-listen "127.0.0.1:$(free_port)" \
  --device-listen "127.0.0.1:$(free_port)" --grpc-listen "127.0.0.1:$(free_port)" \
  > "$work/dev.log" 2>&1 &
dev=$!
cleanup() { kill "$dev" 2>/dev/null || true; wait "$dev" 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"; echo "$work" > /tmp/apifuzz.dir; }
trap cleanup EXIT

url="http://127.0.0.1:$controller"
for _ in $(seq 100); do
  curl -sf "$url/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
app=$(curl -sf -X POST "$url/v1/apps" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' -d '{"name": "api-fuzz"}')
app_id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["app_id"])' <<<"$app")
server_key=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["server_key"])' <<<"$app")
# The credentials work, so the fuzzing reaches more than the authentication.
check=$(curl -s -o /dev/null -w '%{http_code}' "$url/v1/apps/$app_id/campaigns" -H "Authorization: Bearer $server_key")
[ "$check" = 200 ] || { echo "error: the server key was refused ($check)" >&2; exit 1; }
# Path parameters named app_id take the real app, so the fuzzing gets past the lookup.
printf '[parameters]\napp_id = "%s"\n' "$app_id" > "$work/schemathesis.toml"

status=0
# The server key first: the admin's run revokes keys it finds.
for credential in "$server_key" "$token"; do
  # From the work directory: Schemathesis keeps its cache of examples in the current one.
  (cd "$work" && st --config-file "$work/schemathesis.toml" --no-color run "$url/openapi.json" \
    -H "Authorization: Bearer $credential" --checks not_a_server_error \
    --generation-with-security-parameters false \
    --max-examples "$EXAMPLES" --phases examples,fuzzing) > "$work/st.log" 2>&1 || status=$?
  grep -E "generated|passed|failed|Seed" "$work/st.log" | tail -3
  if [ "$status" -ne 0 ]; then
    cat "$work/st.log"
    echo "--- ringpush dev log ---"; tail -50 "$work/dev.log"
    exit "$status"
  fi
done
echo "api fuzz: no 5xx answer"
