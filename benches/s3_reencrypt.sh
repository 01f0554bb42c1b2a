#!/usr/bin/env bash
# Re-encrypting existing S3 objects on the local stand-in, side by side (never a timed test):
#   (a) the AWS CLI's recursive copy onto itself:  aws s3 cp s3://A/ s3://A/ --recursive --sse AES256
#   (b) atrest:                                     atrest remediate s3-encrypt-existing-objects --resource-id B
# Both buckets hold N objects stored unencrypted before 2023 (seeded through the stand-in's
# /atrest-ext/s3-legacy-object endpoint). Prints objects/s and stand-in requests per object
# (counted from the stand-in's request log).
#
#   make bench-s3                  # N=2000
#   N=500 benches/s3_reencrypt.sh
#
# Run it under the stand-in: benches/s3_reencrypt.sh re-launches itself with tests/moto/with-moto.
# Needs `aws` (AWS CLI) on PATH or AWSCLI=/path/to/aws; `pip install awscli` into any venv.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
if [ -z "${AWS_ENDPOINT_URL:-}" ]; then
    exec tests/moto/with-moto "$0" "$@"
fi
N=${N:-2000}
AWSCLI=${AWSCLI:-aws}
ATREST=${ATREST:-}
if [ -z "$ATREST" ]; then
    cargo build --release -q -p atrest-cli
    ATREST="${CARGO_TARGET_DIR:-target}/release/atrest"
fi
port=${AWS_ENDPOINT_URL##*:}
log=".moto/moto-$port.log"
requests() { grep -c '" [0-9][0-9][0-9] ' "$log" || true; }

seed() {
    "${ATREST_VENV:-.venv}/bin/python" - "$1" "$N" <<'PY'
import os, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
import boto3
from botocore.config import Config
bucket, n = sys.argv[1], int(sys.argv[2])
endpoint = os.environ["AWS_ENDPOINT_URL"]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}, max_pool_connections=16))
s3.create_bucket(Bucket=bucket)
def put(i):
    s3.put_object(Bucket=bucket, Key=f"data/{i:06d}.json", Body=b'{"n": %d}' % i,
                  ContentType="application/json", Metadata={"seq": str(i)})
with ThreadPoolExecutor(16) as pool:
    list(pool.map(put, range(n)))
urllib.request.urlopen(urllib.request.Request(
    f"{endpoint}/atrest-ext/s3-legacy-object?Bucket={bucket}&Prefix=", method="POST")).read()
PY
}

measure() { # name, command...
    local name=$1; shift
    local before start end after
    before=$(requests)
    start=$(date +%s.%N)
    "$@" >/dev/null 2>/tmp/s3-bench-$name.err || { cat /tmp/s3-bench-$name.err >&2; exit 1; }
    end=$(date +%s.%N)
    after=$(requests)
    python3 -c "
n=$N; s=$end-$start; r=$after-$before
print(f'{\"$name\":<16} {n} objects in {s:6.2f} s = {n/s:7.1f} objects/s; {r} requests = {r/n:.2f} per object ({r/s:.0f} req/s)')"
}

enforce_owner() { # ACLs disabled (the default for buckets created since April 2023)
    "${ATREST_VENV:-.venv}/bin/python" -c "
import os, boto3
from botocore.config import Config
boto3.client('s3', endpoint_url=os.environ['AWS_ENDPOINT_URL'], region_name='us-east-1', config=Config(s3={'addressing_style': 'path'})).put_bucket_ownership_controls(
    Bucket='$1', OwnershipControls={'Rules': [{'ObjectOwnership': 'BucketOwnerEnforced'}]})"
}

cli() { "$AWSCLI" s3 cp "s3://$1/" "s3://$1/" --recursive --sse AES256 --endpoint-url "$AWS_ENDPOINT_URL" --only-show-errors; }
fix() { "$ATREST" remediate s3-encrypt-existing-objects --resource-id "$1" --pause-seconds 0; }

seed bench-cli
seed bench-acl
seed bench-owner
enforce_owner bench-owner
echo "N=$N objects per bucket, stand-in $AWS_ENDPOINT_URL"
echo "first pass (every object stored unencrypted before 2023):"
measure cli cli bench-cli
measure atrest-acls fix bench-acl
measure atrest-enforced fix bench-owner
echo "second pass (every object already encrypted):"
measure cli cli bench-cli
measure atrest-acls fix bench-acl
