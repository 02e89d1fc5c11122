#!/usr/bin/env bash
# Starts the LocalStack installed by setup.sh on 127.0.0.1:${LS_PORT:-4566}, in the background.
# Writes $LS_HOME/localstack.pid and $LS_HOME/localstack.log; returns once S3, DynamoDB and SES
# report healthy. If the recorded process is already up and healthy it only says so.
#
# Clients: AWS_ENDPOINT_URL=http://127.0.0.1:4566 AWS_ACCESS_KEY_ID=test
#          AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1, S3 with path-style addressing
#          (virtual-host style needs DNS, which is off here). SES: v1 API only (v2 is not in the
#          free edition); sent mail is listed at GET /_aws/ses (DELETE clears it).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LS_HOME=${LS_HOME:-$ROOT/.localstack}
PORT=${LS_PORT:-4566}
TIMEOUT=${LS_START_TIMEOUT:-120}                     # seconds
[ -x "$LS_HOME/venv/bin/python" ] || { echo "start.sh: run infra/localstack/setup.sh first ($LS_HOME)" >&2; exit 1; }
LS_HOME=$(cd "$LS_HOME" && pwd)
PIDFILE=$LS_HOME/localstack.pid
LOG=$LS_HOME/localstack.log
URL=http://127.0.0.1:$PORT

# True if S3, DynamoDB and SES are "running" (or "available") in /_localstack/health.
healthy() {
  curl -sf --max-time 2 "$URL/_localstack/health" 2>/dev/null | "$LS_HOME/venv/bin/python" -c '
import json, sys
services = json.load(sys.stdin).get("services", {})
ok = all(services.get(s) in ("running", "available") for s in ("s3", "dynamodb", "ses"))
sys.exit(0 if ok else 1)' 2>/dev/null
}
# True if $1 is alive and is LocalStack's runtime (guards against a recycled PID).
is_ours() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null && tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q 'localstack.runtime.main'; }

old=$(cat "$PIDFILE" 2>/dev/null || true)
if is_ours "$old"; then
  if healthy; then
    echo "start.sh: LocalStack already up on $URL (pid $old)"; exit 0
  fi
  echo "start.sh: LocalStack (pid $old) is running but not healthy yet; waiting for it ..."
  pid=$old
else
  rm -f "$PIDFILE"
  if curl -s --max-time 2 -o /dev/null "$URL/"; then
    echo "start.sh: something else already answers on $URL; set LS_PORT or stop it" >&2; exit 1
  fi
  # Environment, pitfall by pitfall:
  #  OVERRIDE_IN_DOCKER=0, FILESYSTEM_ROOT  - otherwise LocalStack assumes it is in its container
  #                                         and writes to /var/lib/localstack;
  #  GATEWAY_SERVER=hypercorn              - the default server (twisted) ignores the IPv4 host
  #                                         of GATEWAY_LISTEN and binds 0.0.0.0;
  #  DNS_ADDRESS=0                         - no DNS server of its own (it would bind port 53);
  #  EAGER_SERVICE_LOADING=1               - start DynamoDB Local now, so "healthy" means usable;
  #  S3_SKIP_SIGNATURE_VALIDATION=0        - presigned URLs are really checked (tampered -> 403);
  #                                         header-signed requests are never checked;
  #  DISABLE_EVENTS=1, SKIP_SSL_CERT_DOWNLOAD=1 - no analytics, no certificate download (offline);
  #  LOCALSTACK_HOST                       - host:port put in URLs LocalStack returns (default
  #                                         localhost.localstack.cloud needs DNS).
  # No Lambda service: executing Lambdas needs Docker; the functions are exercised through their
  # routers (or `cargo lambda watch`) against S3/DynamoDB/SES here.
  env OVERRIDE_IN_DOCKER=0 FILESYSTEM_ROOT="$LS_HOME/fs" \
      GATEWAY_LISTEN="127.0.0.1:$PORT" GATEWAY_SERVER=hypercorn DNS_ADDRESS=0 \
      SERVICES=s3,dynamodb,ses,sts,iam EAGER_SERVICE_LOADING=1 \
      S3_SKIP_SIGNATURE_VALIDATION=0 DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 \
      LOCALSTACK_HOST="127.0.0.1:$PORT" \
      nohup "$LS_HOME/venv/bin/python" -m localstack.runtime.main > "$LOG" 2>&1 < /dev/null &
  pid=$!
  echo "$pid" > "$PIDFILE"
fi

t0=$SECONDS
while [ $((SECONDS - t0)) -lt "$TIMEOUT" ]; do
  if healthy; then
    echo "start.sh: LocalStack up on $URL (pid $pid, $((SECONDS - t0)) s)"; exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "start.sh: LocalStack exited during start-up; last lines of $LOG:" >&2
    tail -n 30 "$LOG" >&2; rm -f "$PIDFILE"; exit 1
  fi
  sleep 0.25
done
echo "start.sh: LocalStack not healthy after ${TIMEOUT}s (pid $pid still running; stop it with stop.sh); last lines of $LOG:" >&2
tail -n 30 "$LOG" >&2
exit 1
