#!/bin/sh
# Creates the secret files deploy/docker-compose.yml mounts, once, with fresh
# random values (existing files are kept). Run from deploy/:
#   ./compose/make-secrets.sh
# Then put the real Moodle web-service token into compose/secrets/acme_moodle_token.
set -eu
dir="$(dirname "$0")/secrets"
mkdir -p "$dir"
random() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }
put() { [ -s "$dir/$1" ] || printf '%s\n' "$2" > "$dir/$1"; }
put postgres_password "$(random)"
put database_url "postgres://apit:$(tr -d '\n' < "$dir/postgres_password")@postgres:5432/apit"
put admin_token "$(random)"
put acme_webhook_secret "$(random)"
put acme_moodle_token "0123456789abcdef0123456789abcdef"
# The service runs as uid 65532 and Compose mounts these files as they are on
# the host: readable by that uid only (not by everyone).
if [ "$(id -u)" = 0 ]; then
  chown 65532 "$dir"/* && chmod 0400 "$dir"/*
  chown 999 "$dir/postgres_password"  # the postgres image's user
else
  chmod 0444 "$dir"/*
  echo "note: not root, so the secret files are world-readable; as root they would be owned by uid 65532, mode 0400" >&2
fi
echo "secrets in $dir: now put the Moodle token into $dir/acme_moodle_token"
