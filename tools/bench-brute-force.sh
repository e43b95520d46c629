#!/usr/bin/env bash
# Measures what credential guessing costs valid callers: GetLead with valid,
# cached tokens alone, then while a second load generator sends guessed
# tokens to the same CRM server. Prints a markdown table (also written to
# BUILD/bench/brute-force.md). docs/benchmarks.md explains the rows.
#
#   tools/bench-brute-force.sh [--skip_build] [--build_dir=DIR] [--seconds=S]
#                              [--concurrency=N] [--guess_concurrency=N]
#
# Two kinds of guesses:
#   random_tokens   random characters after "crmpat_", so the checksum fails
#                   and the CRM server rejects them without a remote check
#   unknown_tokens  never-issued tokens with a correct checksum, which reach
#                   the failed-lookup limiter and, until it rejects them, the
#                   auth server
# and two shapes: a burst of 10,000 guesses that starts 2 s into the valid
# callers' measurement window, and a flood that lasts the whole window.
# Each run has its own baseline window right before it.
#
#   --skip_build          use the binaries already in the build folder
#   --build_dir=DIR       build folder (default: build/, or $RUN_BUILD_DIR)
#   --seconds=S           measurement window per run (default 10)
#   --concurrency=N       valid calls in flight (default 16)
#   --guess_concurrency=N guessed calls in flight (default 16)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${RUN_BUILD_DIR:-$root/build}
skip_build=0
seconds=10
concurrency=16
guess_concurrency=16
for argument in "$@"; do
  case $argument in
    --skip_build) skip_build=1 ;;
    --build_dir=*) build=${argument#*=} ;;
    --seconds=*) seconds=${argument#*=} ;;
    --concurrency=*) concurrency=${argument#*=} ;;
    --guess_concurrency=*) guess_concurrency=${argument#*=} ;;
    *)
      sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
      exit 2
      ;;
  esac
done

if ((skip_build == 0)); then
  "$root/tools/install-deps.sh"
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" -j"$(nproc)" --target auth_server crm_server crmctl loadgen
fi
loadgen=$build/tools/bench/loadgen
crmctl=$build/tools/crmctl
state=$build/bench/brute-force
results=$build/bench/brute-force.md

log() { echo "bench-brute-force: $*" >&2; }

"$root/tools/mariadb.sh" stop "$state/mariadb" >/dev/null
rm -rf "$state"
mkdir -p "$state/reports"
pids=()
stop_all() {
  trap - INT TERM EXIT
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
  "$root/tools/mariadb.sh" stop "$state/mariadb" >/dev/null || true
}
trap stop_all INT TERM EXIT

"$root/tools/mariadb.sh" start "$state/mariadb" >/dev/null
socket=$state/mariadb/mysqld.sock
sql() { mariadb --no-defaults --socket="$socket" -uroot "$@"; }
sql -e "CREATE DATABASE crm_auth CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
        CREATE DATABASE crm_data CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;"
"$crmctl" generate-key-file "$state/keys.txt" 2>/dev/null
export CRM_DB_SOCKET=$socket CRM_DB_USER=root CRM_KEY_FILE=$state/keys.txt

# start_server NAME BINARY FLAGS...: waits for "listening on HOST:PORT" and
# sets server_pid and server_port.
start_server() {
  local name=$1
  shift
  : >"$state/$name.log"
  "$@" 2>"$state/$name.log" &
  server_pid=$!
  pids+=("$server_pid")
  for _ in $(seq 1 300); do
    server_port=$(sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' "$state/$name.log" | head -1)
    [[ -n $server_port ]] && return 0
    kill -0 "$server_pid" 2>/dev/null || { log "$name exited:"; tail -5 "$state/$name.log" >&2; exit 1; }
    sleep 0.1
  done
  log "$name did not start; see $state/$name.log"
  exit 1
}
# The highest limits, so that the rate limiter never rejects the load.
start_server auth "$build/services/auth/auth_server" --port=0 --internal_port=0 \
  --default_burst_limit_per_10s=1000000 --default_daily_limit=1000000000
auth_port=$server_port
auth_internal_port=$(sed -n 's/.*, internal [^ ]*:\([0-9][0-9]*\) .*/\1/p' "$state/auth.log" | head -1)
start_server crm "$build/services/crm/crm_server" --port=0 --auth_target="127.0.0.1:$auth_internal_port"
crm_port=$server_port
crm_pid=$server_pid

# One organization with 20 apps and 1,000 leads.
"$crmctl" create-organization --display_name="Brute force" 2>/dev/null |
  awk '/^organization_id:/ { id = $2 } /^admin_key:/ { key = $2 } END { print id, key }' >"$state/admins.txt"
read -r organization _ <"$state/admins.txt"
"$loadgen" --scenario=seed_apps --target="127.0.0.1:$auth_port" --admin_keys_file="$state/admins.txt" \
  --tokens_out="$state/tokens.txt" --apps_per_organization=20 --concurrency=4 --seconds=60 >/dev/null 2>&1
sql crm_data -e "INSERT INTO leads (organization_id, id, first_name, last_name, email, phone, company, title,
    status, source, create_time, update_time)
  SELECT $organization, seq, 'Ada', CONCAT('Lead ', seq), CONCAT('lead', seq, '@example.com'), '+1 555 0100',
    'Example Corp', 'Buyer', 1, 'web form', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) FROM seq_1_to_1000"
echo "$organization 1 1000" >"$state/leads.txt"

# Fills the CRM server's token cache.
"$loadgen" --scenario=warm_tokens --target="127.0.0.1:$crm_port" --tokens_file="$state/tokens.txt" \
  --concurrency=4 --seconds=60 >/dev/null 2>&1

valid() {
  "$loadgen" --scenario=get_lead --target="127.0.0.1:$crm_port" --tokens_file="$state/tokens.txt" \
    --leads_file="$state/leads.txt" --concurrency="$concurrency" --warmup_seconds=2 --seconds="$seconds" \
    --watch="crm=$crm_pid" --label="$1" >"$state/reports/$1.json" 2>>"$state/loadgen.log"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
rows=()
for guesses in random_tokens unknown_tokens; do
  for shape in burst flood; do
    run=${guesses}_$shape
    log "$run: baseline"
    valid "baseline_$run"
    checks_before=$(grep -c "TokenService/CheckToken" "$state/auth.log" || true)
    log "$run: valid calls with guesses"
    if [[ $shape == burst ]]; then
      guess_flags=(--calls=10000 --seconds=60)
      guess_delay=4 # the valid run's 2 s warm-up plus 2 s of its window
    else
      guess_flags=(--seconds="$(awk -v s="$seconds" 'BEGIN { print s + 3 }')")
      guess_delay=0.5
    fi
    (sleep "$guess_delay" && exec "$loadgen" --scenario="$guesses" --target="127.0.0.1:$crm_port" \
      --concurrency="$guess_concurrency" --warmup_seconds=0 "${guess_flags[@]}" --label="$run" \
      >"$state/reports/$run.json" 2>>"$state/loadgen.log") &
    guess_pid=$!
    valid "under_$run"
    wait "$guess_pid" || log "$run reported unexpected codes; see $state/reports/$run.json"
    checks=$(($(grep -c "TokenService/CheckToken" "$state/auth.log" || true) - checks_before))

    base=$state/reports/baseline_$run.json under=$state/reports/under_$run.json
    rows+=("$(jq -rn --slurpfile b "$base" --slurpfile u "$under" --slurpfile g "$state/reports/$run.json" \
      --arg name "$guesses" --arg shape "$shape" --arg checks "$checks" '
      ($b[0].calls_per_second) as $bc | ($u[0].calls_per_second) as $uc |
      "| \($name) | \($shape) | \($g[0].calls) in \($g[0].window_seconds) s (\($g[0].codes | tostring)) | \($checks) | " +
      "\($bc) | \($uc) | \((($uc / $bc) * 1000 | round) / 10)% | \($b[0].latency_ms.p99) | \($u[0].latency_ms.p99) |"')")
  done
done

{
  echo "| guesses | shape | guessed calls (codes; OK means UNAUTHENTICATED) | CheckToken calls on auth | valid GetLead/s alone | valid GetLead/s with guesses | ratio | p99 ms alone | p99 ms with guesses |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "$(nproc) cores, load average before: $load_before; valid concurrency $concurrency, guess concurrency $guess_concurrency, ${seconds} s windows"
} | tee "$results"
