#!/bin/bash
# SeaweedFS for the Bulkhead compose stack: one `weed server` (master, volume server, filer and S3 gateway) with its
# data in /data. The S3 identity comes from S3_ACCESS_KEY / S3_SECRET_KEY (written to a configuration file outside
# the volume, allowed on the bucket S3_BUCKET only) and the bucket is created when it is missing. Only the S3 port
# (8333) listens beyond the container's loopback. Arguments are added to `weed server`'s (a later flag wins).
set -euo pipefail

bucket="${S3_BUCKET:-bulkhead-artifacts}"
data="${SEAWEEDFS_DIR:-/data}"
say() { echo "seaweedfs-entrypoint: $*" >&2; }

for v in S3_ACCESS_KEY S3_SECRET_KEY; do
    value="${!v:-}"
    [ -n "$value" ] || { say "set $v (the S3 credentials the Bulkhead server uses)"; exit 2; }
    # They go into a JSON string: no quotes, backslashes or control characters.
    [[ "$value" =~ ^[[:graph:]]+$ && "$value" != *[\"\\]* ]] \
        || { say "$v may hold printable characters other than \" and \\ only, no spaces"; exit 2; }
done
[[ "$bucket" =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] \
    || { say "S3_BUCKET=$bucket is not an S3 bucket name (3-63 of a-z, 0-9, '.', '-')"; exit 2; }

config="$(mktemp /tmp/s3-XXXXXXXX.json)"  # 0600, in the container's /tmp: the secret stays out of the volume
printf '{"identities": [{"name": "bulkhead", "credentials": [{"accessKey": "%s", "secretKey": "%s"}],
  "actions": ["Read:%s", "Write:%s", "List:%s", "Tagging:%s"]}]}\n' \
    "$S3_ACCESS_KEY" "$S3_SECRET_KEY" "$bucket" "$bucket" "$bucket" "$bucket" >"$config"

# -ip: the address the parts give each other (all in this container); only S3 binds beyond it. No telemetry, no
# Iceberg or Lance catalogs; a 1 GiB volume size limit and as many volumes as the disk holds.
weed server -dir="$data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3 -s3.ip.bind=0.0.0.0 -s3.port=8333 \
    -s3.config="$config" -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false \
    -volume.max=0 -master.volumeSizeLimitMB=1024 -volume.preStopSeconds=1 "$@" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' TERM INT

# The bucket, through the filer (weed shell waits for the master: each try is bounded).
created="" shell_at=(-master=127.0.0.1:9333 -filer=127.0.0.1:8888)
for _ in $(seq 1 90); do
    kill -0 "$pid" 2>/dev/null || break
    if out="$(echo "s3.bucket.create -name $bucket" | timeout 20 weed shell "${shell_at[@]}" 2>&1)"; then
        say "created bucket $bucket"; created=1; break
    elif [[ "$out" == *"already exists"* ]]; then
        say "bucket $bucket exists"; created=1; break
    fi
    sleep 2
done
if [ -z "$created" ] && kill -0 "$pid" 2>/dev/null; then
    say "could not create bucket $bucket (last answer: ${out:-none}); stopping"
    kill -TERM "$pid" 2>/dev/null || true
fi

# Until weed exits (a stop signal interrupts `wait`: then wait again for weed itself).
while :; do
    rc=0; wait "$pid" || rc=$?
    kill -0 "$pid" 2>/dev/null || break
done
[ -n "$created" ] || exit $((rc ? rc : 1))
exit "$rc"
