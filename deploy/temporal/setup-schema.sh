#!/bin/sh
# One-shot `temporal-schema` job of docker-compose.yml (temporalio/admin-tools): brings Temporal's two
# PostgreSQL schemas to the versions the image ships under /etc/temporal/schema, so it must use the
# same version as temporalio/server. Safe to run again: setup-schema skips a database that already has
# a version, update-schema applies only the versions it lacks (run it with the NEW admin-tools before
# starting a newer server). The password comes from $SQL_PASSWORD, which temporal-sql-tool reads.
set -eu
: "${SQL_HOST:?}" "${SQL_PORT:?}" "${SQL_USER:?}" "${SQL_PASSWORD:?}"
schemas=/etc/temporal/schema/postgresql/v12

sql() { temporal-sql-tool --plugin postgres12 --ep "$SQL_HOST" -p "$SQL_PORT" -u "$SQL_USER" "$@"; }

for pair in temporal:temporal temporal_visibility:visibility; do
  db=${pair%%:*}
  dir="$schemas/${pair#*:}/versioned"
  # deploy/postgres/init-databases.sh normally created it (the temporal role may not create databases)
  sql --db "$db" create-database ||
    echo "database $db: not created here (it exists, or this role may not create it); continuing"
  sql --db "$db" setup-schema -v 0.0
  # -d must name versioned/ itself: given its parent, update-schema finds nothing to do and exits 0
  sql --db "$db" update-schema -d "$dir"
  echo "database $db: schema current ($dir)"
done
