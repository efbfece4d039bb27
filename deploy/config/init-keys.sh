#!/bin/sh
# One-shot `keys` service of docker-compose.yml: creates each Ed25519 key pair once with
# `agent-runtime keys init` (secret key mode 0600 in a 0700 directory) and copies the public halves
# into $KEYS_DIR/public, the only key volume the workers and the observer see:
#   votes/       vote-signing key       secret: approvals        public: public/votes.pub (tools worker)
#   audit/       checkpoint key         secret: audit-aggregator public: public/audit-checkpoint.pub
#   governance/  governance-change key  secret: the operator     public: public/governance.pub (observer)
# Running it again keeps every existing key: rotation is deliberate (`keys init --force`, docs).
set -eu
root=${KEYS_DIR:-/keys}
cli=${AGENT_RUNTIME_CLI:-node /app/bin/agent-runtime.js}

mkdir -p "$root/public"
for pair in votes:votes audit:audit-checkpoint governance:governance; do
  dir="$root/${pair%%:*}"
  if [ -f "$dir/vote-signing.key" ]; then
    echo "keeping the key in $dir"
  else
    # $cli is a command line: split on purpose
    $cli keys init --dir "$dir"
  fi
  cp "$dir/vote-signing.pub" "$root/public/${pair#*:}.pub"
  chmod 0644 "$root/public/${pair#*:}.pub"
done
