# Starts the whole stack for one end-to-end test through tools/run.sh: a
# private MariaDB under STATE_DIR and both servers on free loopback ports.
# Source this file from a bash test script, then call
#
#   start_stack REPO_ROOT BUILD_DIR STATE_DIR
#
# It uses the binaries already built in BUILD_DIR. The servers also read any
# CRM_* variables the caller exports, such as CRM_TLS_CERT_FILE. On success it sets
# STACK_AUTH_PORT, STACK_AUTH_INTERNAL_PORT and STACK_CRM_PORT, exports
# RUN_STATE_DIR and RUN_BUILD_DIR (so tools/crmctl.sh reaches this stack's
# database), and sets an EXIT trap that calls stop_stack. A caller that needs its own EXIT trap must call
# stop_stack from it. On failure it prints tools/run.sh's output and
# returns 1. The output of tools/run.sh is in STATE_DIR/run.out, the server
# logs in STATE_DIR/auth.log and STATE_DIR/crm.log.

# Prints a TCP port on 127.0.0.1 that was free a moment ago. Another process
# can take it before the server binds it. The server then fails to start, and
# start_stack reports that.
free_port() {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_stack() {
  local root=$1 build=$2 state=$3
  STACK_STATE_DIR=$state
  STACK_ROOT=$root
  STACK_AUTH_PORT=$(free_port)
  STACK_AUTH_INTERNAL_PORT=$(free_port)
  STACK_CRM_PORT=$(free_port)
  export RUN_STATE_DIR=$state RUN_BUILD_DIR=$build
  mkdir -p "$state"

  # setsid keeps tools/run.sh out of the test runner's process group, so the
  # runner's signals do not stop it before stop_stack runs.
  RUN_SKIP_BUILD=1 RUN_AUTH_PORT=$STACK_AUTH_PORT RUN_AUTH_INTERNAL_PORT=$STACK_AUTH_INTERNAL_PORT \
    RUN_CRM_PORT=$STACK_CRM_PORT \
    setsid "$root/tools/run.sh" >"$state/run.out" 2>&1 &
  STACK_RUN_PID=$!
  trap stop_stack EXIT

  # MariaDB can take up to 30 s to start and each server up to 10 s.
  local attempt
  for attempt in $(seq 1 600); do
    if grep -q "^run: auth server on" "$state/run.out"; then
      return 0
    fi
    if ! kill -0 "$STACK_RUN_PID" 2>/dev/null; then
      echo "FAIL: tools/run.sh exited during start-up:"
      cat "$state/run.out"
      return 1
    fi
    sleep 0.1
  done
  echo "FAIL: tools/run.sh did not report both servers listening within 60 s:"
  cat "$state/run.out"
  return 1
}

# Stops tools/run.sh, which stops both servers and MariaDB on SIGTERM. Then
# it stops MariaDB directly, in case run.sh was stopped before it had set up
# its own cleanup. That step does nothing when MariaDB is already down.
stop_stack() {
  trap - EXIT
  if [[ -n ${STACK_RUN_PID:-} ]]; then
    kill -TERM "$STACK_RUN_PID" 2>/dev/null
    wait "$STACK_RUN_PID" 2>/dev/null
    STACK_RUN_PID=
  fi
  if [[ -n ${STACK_STATE_DIR:-} ]]; then
    "$STACK_ROOT/tools/mariadb.sh" stop "$STACK_STATE_DIR/mariadb" >/dev/null 2>&1
  fi
}
