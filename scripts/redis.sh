#!/usr/bin/env bash
# Starts (or stops) the local redis-server used by `make demo` and `make serve`, with the shipped conf/redis.conf
# (AOF on), its data in data/redis/. Does nothing when a Redis already answers on the port.
#   scripts/redis.sh start|stop [PORT]
set -euo pipefail
cd "$(dirname "$0")/.."
port=${2:-6379}
case "${1:-start}" in
  start)
    if redis-cli -p "$port" ping >/dev/null 2>&1; then
      echo "[redis] already running on 127.0.0.1:$port"; exit 0
    fi
    mkdir -p data/redis
    redis-server conf/redis.conf --port "$port" --daemonize yes --pidfile "$PWD/data/redis/redis.pid" \
      --logfile "$PWD/data/redis/redis.log" --dir "$PWD/data/redis"
    for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    redis-cli -p "$port" ping >/dev/null || { echo "[redis] did not start: see data/redis/redis.log" >&2; exit 1; }
    echo "[redis] started on 127.0.0.1:$port (AOF in data/redis/)"
    ;;
  stop)
    redis-cli -p "$port" shutdown >/dev/null 2>&1 && echo "[redis] stopped" || echo "[redis] not running"
    ;;
  *) echo "usage: scripts/redis.sh start|stop [PORT]" >&2; exit 2 ;;
esac
