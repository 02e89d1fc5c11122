#!/usr/bin/env bash
# Stops the LocalStack started by start.sh, by the PID recorded in $LS_HOME/localstack.pid only,
# together with its descendants (DynamoDB Local runs as a java child of the LocalStack process).
# Safe to run when nothing is running.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LS_HOME=${LS_HOME:-$ROOT/.localstack}
PIDFILE=$LS_HOME/localstack.pid

pid=$(cat "$PIDFILE" 2>/dev/null || true)
if [ -z "$pid" ]; then echo "stop.sh: not running (no $PIDFILE)"; exit 0; fi
# A PID may be recycled after a reboot or crash: only act on LocalStack's runtime.
if ! kill -0 "$pid" 2>/dev/null || ! tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q 'localstack.runtime.main'; then
  echo "stop.sh: recorded pid $pid is not a running LocalStack; removing stale pid file"
  rm -f "$PIDFILE"; exit 0
fi

# Collect the descendants first: once the parent is gone they are re-parented and unfindable.
descendants() { local c; for c in $(pgrep -P "$1" 2>/dev/null); do echo "$c"; descendants "$c"; done; }
kids=$(descendants "$pid")

kill -TERM "$pid" 2>/dev/null
for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done   # up to 15 s
if kill -0 "$pid" 2>/dev/null; then
  echo "stop.sh: pid $pid ignored SIGTERM; sending SIGKILL"; kill -KILL "$pid" 2>/dev/null
fi
# LocalStack normally stops DynamoDB Local itself; whatever child is left gets TERM, then KILL.
left=""
for k in $kids; do kill -0 "$k" 2>/dev/null && { kill -TERM "$k" 2>/dev/null; left="$left $k"; }; done
for _ in $(seq 1 20); do
  alive=""; for k in $left; do kill -0 "$k" 2>/dev/null && alive="$alive $k"; done
  [ -z "$alive" ] && break; sleep 0.25
done
for k in $left; do kill -0 "$k" 2>/dev/null && kill -KILL "$k" 2>/dev/null; done
rm -f "$PIDFILE"
echo "stop.sh: LocalStack (pid $pid${kids:+, children $(echo $kids)}) stopped"
