#!/usr/bin/env bash
# Starts or stops a private MariaDB server for development and tests.
#
#   tools/mariadb.sh start DIR   create DIR/data on first use, start the
#                                server on the unix socket DIR/mysqld.sock
#                                (no TCP port), and wait until it accepts queries
#   tools/mariadb.sh stop DIR    stop it and wait until it has exited
#
# root@localhost has no password: the socket file is the only way in.
set -euo pipefail

command=${1:-}
dir=${2:-}
if [[ -z $command || -z $dir ]]; then
  echo "usage: tools/mariadb.sh start|stop DIR" >&2
  exit 2
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
socket=$dir/mysqld.sock
pid_file=$dir/mysqld.pid

case $command in
  start)
    if [[ -f $pid_file ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
      echo "mariadb: already running in $dir"
      exit 0
    fi
    if [[ ! -d $dir/data/mysql ]]; then
      mariadb-install-db --no-defaults --datadir="$dir/data" --user="$(id -un)" \
        --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1 ||
        { cat "$dir/install.log" >&2; exit 1; }
    fi
    # setsid keeps the server out of the caller's process group, so a test
    # runner's signals do not stop it before the cleanup step.
    setsid mariadbd --no-defaults --datadir="$dir/data" --socket="$socket" --pid-file="$pid_file" \
      --skip-networking --user="$(id -un)" --log-error="$dir/error.log" \
      --innodb-buffer-pool-size=256M --innodb-flush-log-at-trx-commit=2 --max-connections=500 \
      --character-set-server=utf8mb4 --collation-server=utf8mb4_bin </dev/null >/dev/null 2>&1 &
    for _ in $(seq 1 300); do
      if mariadb-admin --no-defaults --socket="$socket" -uroot ping >/dev/null 2>&1; then
        echo "mariadb: running on $socket"
        exit 0
      fi
      sleep 0.1
    done
    echo "mariadb: did not start within 30s; see $dir/error.log" >&2
    tail -20 "$dir/error.log" >&2 || true
    exit 1
    ;;
  stop)
    if [[ ! -f $pid_file ]]; then
      echo "mariadb: not running in $dir"
      exit 0
    fi
    pid=$(cat "$pid_file")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do
      kill -0 "$pid" 2>/dev/null || { echo "mariadb: stopped"; exit 0; }
      sleep 0.1
    done
    echo "mariadb: still running after 30s; killing $pid" >&2
    kill -9 "$pid" 2>/dev/null || true
    ;;
  *)
    echo "usage: tools/mariadb.sh start|stop DIR" >&2
    exit 2
    ;;
esac
