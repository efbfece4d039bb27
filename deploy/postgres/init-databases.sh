#!/bin/sh
# PostgreSQL first start (docker-entrypoint-initdb.d, docker-compose.yml `postgres`): one role per owner
# and the three databases of the stack. Temporal owns `temporal` and `temporal_visibility` (its schema
# job, `temporal-schema`, creates the tables); agent-runtime owns `agent_runtime` (the audit
# aggregator's and the approvals service's schemas, created by those services at start). Neither role
# is a superuser or may create databases. Runs once, on an empty data volume; the passwords come from
# the container's environment (.env). The entrypoint may source this file, so it sets no shell options
# and ends with the one command whose status counts.
psql --no-psqlrc -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  --set temporal_password="${TEMPORAL_DB_PASSWORD:?TEMPORAL_DB_PASSWORD is not set}" \
  --set agent_runtime_password="${AGENT_RUNTIME_DB_PASSWORD:?AGENT_RUNTIME_DB_PASSWORD is not set}" <<'SQL'
CREATE ROLE temporal LOGIN PASSWORD :'temporal_password';
CREATE DATABASE temporal OWNER temporal;
CREATE DATABASE temporal_visibility OWNER temporal;
CREATE ROLE agent_runtime LOGIN PASSWORD :'agent_runtime_password';
CREATE DATABASE agent_runtime OWNER agent_runtime;
REVOKE ALL ON DATABASE temporal, temporal_visibility FROM PUBLIC;
REVOKE ALL ON DATABASE agent_runtime FROM PUBLIC;
GRANT CONNECT ON DATABASE temporal, temporal_visibility TO temporal;
GRANT CONNECT ON DATABASE agent_runtime TO agent_runtime;
-- Temporal's visibility schema needs btree_gin; created here so the temporal role needs no extra right
\connect temporal_visibility
CREATE EXTENSION IF NOT EXISTS btree_gin;
SQL
