#!/usr/bin/env bash
# Start Debian's PostgreSQL cluster (if needed) and create the test role and database.
set -euo pipefail
command -v pg_lsclusters >/dev/null || { echo "postgresql is not installed"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "starting PostgreSQL needs root"; exit 1; }
read -r ver name _ < <(pg_lsclusters -h | head -1) || { echo "no PostgreSQL cluster"; exit 1; }
pg_ctlcluster "$ver" "$name" status >/dev/null 2>&1 || pg_ctlcluster "$ver" "$name" start
for _ in $(seq 30); do runuser -u postgres -- pg_isready -q && break; sleep 0.5; done
runuser -u postgres -- psql -qtAc "SELECT 1 FROM pg_roles WHERE rolname='bulkhead'" | grep -q 1 \
  || runuser -u postgres -- psql -qc "CREATE ROLE bulkhead LOGIN CREATEDB PASSWORD 'bulkhead'"
runuser -u postgres -- psql -qtAc "SELECT 1 FROM pg_database WHERE datname='bulkhead_test'" | grep -q 1 \
  || runuser -u postgres -- psql -qc "CREATE DATABASE bulkhead_test OWNER bulkhead"
echo "PostgreSQL $ver/$name is running"
