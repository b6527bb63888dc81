#!/usr/bin/env bash
# Fuzzes the running service from openapi.yaml with Schemathesis (all checks,
# both credentials), against a throw-away service on SQLite and the Moodle
# simulator. Settings: fuzz/schemathesis.toml. Used by .ci/run; rerun by hand:
#   bash fuzz/schemathesis.sh                # as CI does
#   bash fuzz/schemathesis.sh --max-examples 500 --seed 7   # deeper, other seed
# Extra arguments go to `schemathesis run`. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
VENV="${FUZZ_VENV:-$HOME/.cache/apit-moodle-sync/schemathesis-$SCHEMATHESIS_VERSION}"
BIN="${FUZZ_BIN:-target/debug/apit-moodle-sync}"

if [ ! -x "$VENV/bin/schemathesis" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
# Built (or found up to date) so the fuzzed binary is the checked-out code.
[ -n "${FUZZ_BIN:-}" ] || cargo build --locked --bin apit-moodle-sync

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
fail_start() { echo "the service did not start:"; cat "$WORK/service.log" "$WORK/moodle.log"; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

export FUZZ_WEBHOOK_SECRET="fuzz-webhook-secret-$RANDOM$RANDOM"
export FUZZ_ADMIN_TOKEN="fuzz-admin-token-$RANDOM$RANDOM"
MOODLE_PORT="$(free_port)"
PORT="$(free_port)"
TOKEN=0123456789abcdef0123456789abcdef

"$BIN" simulate-moodle --listen "127.0.0.1:$MOODLE_PORT" --token "$TOKEN" >"$WORK/moodle.log" 2>&1 &
PIDS+=($!)

cat >"$WORK/config.toml" <<TOML
listen = "127.0.0.1:$PORT"
database_url = "sqlite://$WORK/fuzz.db"
admin_token = "$FUZZ_ADMIN_TOKEN"

[worker]
poll_interval = "100ms"

[tenants.acme]
webhook_secret = "$FUZZ_WEBHOOK_SECRET"
moodle_url = "http://127.0.0.1:$MOODLE_PORT"
moodle_token = "$TOKEN"
category_id = 1
moodle_timeout = "2s"
TOML

RUST_LOG=warn "$BIN" serve --config "$WORK/config.toml" >"$WORK/service.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null || fail_start

status=0
"$VENV/bin/schemathesis" --config-file fuzz/schemathesis.toml run openapi.yaml \
  --url "http://127.0.0.1:$PORT" \
  --checks all \
  --seed "${FUZZ_SEED:-20261201}" \
  --generation-database none \
  --no-color \
  "$@" || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- service log (last 50 lines) ---"
  tail -n 50 "$WORK/service.log"
fi
exit "$status"
