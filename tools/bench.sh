#!/usr/bin/env bash
# Benchmarks the CRM and auth servers against same-run baselines and prints
# one markdown table (also written to BUILD/bench/results.md, or
# results-smoke.md with --smoke). docs/benchmarks.md explains every row.
#
#   tools/bench.sh [--smoke] [--call_log] [--skip_build] [--build_dir=DIR]
#                  [--concurrency=N] [--seconds=S] [--warmup_seconds=S]
#                  [--server_log_level=LEVEL]
#
# Unless --skip_build is given, it installs missing packages and builds.
# It starts a private MariaDB under BUILD/bench/full (or BUILD/bench/smoke)
# and auth_server, crm_server (twice: with the rate limiter, and with
# --rate_limits=false), crm_server_noauth and echo_server on free
# loopback ports with a new key file. It seeds organizations and apps
# through crmctl and the API, and leads directly in SQL. Then it runs every
# scenario one after another with BUILD/tools/bench/loadgen, and sysbench's
# oltp_point_select and oltp_insert against the same MariaDB.
#
#   --smoke             1 s per scenario after 0.5 s of warm-up, on small
#                       seeds (1,000 leads in the large organization)
#   --call_log          run only GetLead against crm_server with the API
#                       call log on and against a second crm_server with
#                       --api_call_log=false, alternating (on, off, off,
#                       on), and print the call log's cost as a ratio
#   --skip_build        use the binaries already in the build folder
#   --build_dir=DIR     build folder (default: build/, or $RUN_BUILD_DIR)
#   --concurrency=N     calls in flight for every scenario, and sysbench
#                       threads (default 64)
#   --seconds=S         measurement window per scenario (default 30; smoke 1)
#   --warmup_seconds=S  unmeasured load before each window (default 5;
#                       smoke 0.5)
#   --server_log_level  the servers' --log_level (default info, their own
#                       default, which logs one line per call)
#
# Exit status: 0 when every scenario completed with only OK calls, 1
# otherwise. Missed targets are reported in the table, not in the status.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${RUN_BUILD_DIR:-$root/build}
mode=full
skip_build=0
concurrency=64
seconds=""
warmup=""
log_level=info
call_log_only=0

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

for argument in "$@"; do
  case $argument in
    --smoke) mode=smoke ;;
    --call_log) call_log_only=1 ;;
    --skip_build) skip_build=1 ;;
    --build_dir=*) build=${argument#*=} ;;
    --concurrency=*) concurrency=${argument#*=} ;;
    --seconds=*) seconds=${argument#*=} ;;
    --warmup_seconds=*) warmup=${argument#*=} ;;
    --server_log_level=*) log_level=${argument#*=} ;;
    -h | --help) usage ;;
    *)
      echo "bench: unknown argument $argument" >&2
      usage
      ;;
  esac
done
if ! [[ $concurrency =~ ^[0-9]+$ ]] || ((concurrency < 1)); then
  echo "bench: --concurrency must be a whole number of at least 1, not \"$concurrency\"" >&2
  exit 2
fi

# Seed sizes. Full runs use the sizes the targets name. Smoke runs keep
# every step but shrink the data, so the whole run stays well under 90 s.
if [[ $mode == full ]]; then
  seconds=${seconds:-30}
  warmup=${warmup:-5}
  big_org_leads=1000000
  small_org_leads=10000
  write_org_leads=10000
  cache_organizations=500 # x 20 apps = 10,000 tokens
  mixed_organizations=100
  mixed_apps_per_organization=10
  mixed_leads_per_organization=1000
  sysbench_rows=100000
else
  seconds=${seconds:-1}
  warmup=${warmup:-0.5}
  big_org_leads=1000
  small_org_leads=100
  write_org_leads=100
  cache_organizations=10
  mixed_organizations=10
  mixed_apps_per_organization=5
  mixed_leads_per_organization=100
  sysbench_rows=10000
fi
# sysbench takes whole seconds.
sysbench_seconds=$(awk -v s="$seconds" 'BEGIN { r = int(s + 0.5); print (r < 1 ? 1 : r) }')
sysbench_warmup=$(awk -v s="$warmup" 'BEGIN { r = int(s + 0.5); print (r < 1 ? 1 : r) }')
# One app per slot in create_delete_app and rotate_token, at most 8 per
# organization, well below the limit of 20.
app_organizations=$(((concurrency + 7) / 8))

if [[ $mode == full ]]; then
  state=$build/bench/full
  results=$build/bench/results.md
else
  state=$build/bench/smoke
  results=$build/bench/results-smoke.md
fi
if ((call_log_only)); then
  state=$state-call-log
  results=${results%.md}-call-log.md
fi

if ((skip_build == 0)); then
  "$root/tools/install-deps.sh"
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" -j"$(nproc)" --target auth_server crm_server crm_server_noauth crmctl loadgen echo_server
fi
auth_server=$build/services/auth/auth_server
crm_server=$build/services/crm/crm_server
crm_server_noauth=$build/services/crm/crm_server_noauth
crmctl=$build/tools/crmctl
loadgen=$build/tools/bench/loadgen
echo_server=$build/tools/bench/echo_server
for binary in "$auth_server" "$crm_server" "$crm_server_noauth" "$crmctl" "$loadgen" "$echo_server"; do
  if [[ ! -x $binary ]]; then
    echo "bench: $binary is missing; build it or run without --skip_build" >&2
    exit 1
  fi
done
for command in sysbench jq mariadb mariadbd; do
  if ! command -v "$command" >/dev/null; then
    echo "bench: $command is not installed; tools/install-deps.sh installs it" >&2
    exit 1
  fi
done

# Every run starts from an empty database, so runs are comparable.
"$root/tools/mariadb.sh" stop "$state/mariadb" >/dev/null
rm -rf "$state"
mkdir -p "$state/seed" "$state/reports"

pids=()
stop_all() {
  trap - INT TERM EXIT
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 150); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait "${pids[@]}" 2>/dev/null || true
  "$root/tools/mariadb.sh" stop "$state/mariadb" >/dev/null || true
}
trap stop_all INT TERM EXIT

log() { echo "bench: $*" >&2; }

# Prints a whole number with thousands separators, such as 1,000,000.
commas() { printf '%s' "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }

# ---------------------------------------------------------------- database
"$root/tools/mariadb.sh" start "$state/mariadb" >/dev/null
socket=$state/mariadb/mysqld.sock
db_pid=$(cat "$state/mariadb/mysqld.pid")
sql() { mariadb --no-defaults --socket="$socket" -uroot "$@"; }

password=$(openssl rand -hex 24)
sql <<SQL
CREATE DATABASE crm_auth CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE DATABASE crm_data CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE DATABASE sbtest;
CREATE USER 'crm'@'localhost' IDENTIFIED BY '$password';
GRANT ALL PRIVILEGES ON crm_auth.* TO 'crm'@'localhost';
GRANT ALL PRIVILEGES ON crm_data.* TO 'crm'@'localhost';
SQL
"$crmctl" generate-key-file "$state/keys.txt" 2>/dev/null
# The servers and crmctl read these through their CRM_* fallbacks.
export CRM_DB_SOCKET=$socket CRM_DB_USER=crm CRM_DB_PASSWORD=$password CRM_KEY_FILE=$state/keys.txt

# ----------------------------------------------------------------- servers
# Starts a server whose start-up line names its port ("listening on
# HOST:PORT" or "listening on HOST:PORT (...)"), and sets server_pid and
# server_port.
start_server() {
  local name=$1
  shift
  "$@" 2>"$state/$name.log" &
  server_pid=$!
  pids+=("$server_pid")
  for _ in $(seq 1 300); do
    # The shell may not have created the log yet, so a missing file is
    # the same as an empty one.
    server_port=$(sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' "$state/$name.log" 2>/dev/null | head -1 || true)
    [[ -n $server_port ]] && return 0
    if ! kill -0 "$server_pid" 2>/dev/null; then
      log "$name exited during start-up:"
      tail -5 "$state/$name.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  log "$name did not report a port within 30 s; see $state/$name.log"
  exit 1
}

# Default rate limits at their maximums, so that the limiter runs on every
# call but never rejects one.
start_server auth "$auth_server" --listen_host=127.0.0.1 --port=0 --internal_port=0 --log_level="$log_level" \
  --default_burst_limit_per_10s=1000000 --default_daily_limit=1000000000
auth_pid=$server_pid auth_port=$server_port
# TokenService listens on the auth server's internal port.
auth_internal_port=$(sed -n 's/.*, internal [^ ]*:\([0-9][0-9]*\) .*/\1/p' "$state/auth.log" | head -1)
crm_flags=(--listen_host=127.0.0.1 --port=0 --auth_target="127.0.0.1:$auth_internal_port" --log_level="$log_level")
start_server crm "$crm_server" "${crm_flags[@]}"
crm_pid=$server_pid crm_port=$server_port
start_server crm_nolimit "$crm_server" "${crm_flags[@]}" --rate_limits=false
nolimit_pid=$server_pid nolimit_port=$server_port
start_server crm_noauth "$crm_server_noauth" "${crm_flags[@]}"
noauth_pid=$server_pid noauth_port=$server_port
start_server crm_nolog "$crm_server" "${crm_flags[@]}" --api_call_log=false
nolog_pid=$server_pid nolog_port=$server_port
start_server echo "$echo_server" --listen_host=127.0.0.1 --port=0
echo_pid=$server_pid echo_port=$server_port
log "auth :$auth_port (internal :$auth_internal_port), crm :$crm_port, crm_nolimit :$nolimit_port," \
  "crm_noauth :$noauth_port, crm_nolog :$nolog_port, echo :$echo_port, MariaDB $socket"

# -------------------------------------------------------------------- seed
seed=$state/seed

# Creates $2 organizations through crmctl, four at a time, and writes
# "ORGANIZATION_ID ADMIN_KEY" lines to $1.
create_organizations() {
  local out=$1 count=$2 dir
  dir=$(mktemp -d "$seed/organizations.XXXXXX")
  seq 1 "$count" | xargs -P 4 -I{} sh -c '"$1" create-organization --display_name="Benchmark $2" >"$3/$2.txt" 2>"$3/$2.err" || { cat "$3/$2.err" >&2; exit 255; }' \
    sh "$crmctl" {} "$dir"
  for i in $(seq 1 "$count"); do
    awk '/^organization_id:/ { id = $2 } /^admin_key:/ { key = $2 } END { print id, key }' "$dir/$i.txt"
  done >"$out"
  rm -rf "$dir"
}

# Creates apps in the organizations of admin keys file $1 and writes their
# tokens to $2.
seed_apps() {
  "$loadgen" --scenario=seed_apps --target="127.0.0.1:$auth_port" --admin_keys_file="$1" --tokens_out="$2" \
    --apps_per_organization="$3" --concurrency=16 --seconds=600 --label="seed" >/dev/null
}

# Inserts $2 leads into organization $1 in batches of up to 100,000 rows
# (MariaDB's Sequence engine generates the rows) and appends
# "ORGANIZATION_ID FIRST_LEAD_ID COUNT" to the leads file.
insert_leads() {
  local organization=$1 count=$2 first batch done_rows=0
  first=$(sql -N -B crm_data -e "SELECT COALESCE(MAX(id), 0) + 1 FROM leads")
  while ((done_rows < count)); do
    batch=$((count - done_rows < 100000 ? count - done_rows : 100000))
    sql crm_data -e "INSERT INTO leads (organization_id, id, first_name, last_name, email, phone, company, title,
        status, source, create_time, update_time)
      SELECT $organization, $first + $done_rows + seq - 1, 'Ada', CONCAT('Lead ', $first + $done_rows + seq - 1),
        CONCAT('lead', $first + $done_rows + seq - 1, '@example.com'), '+1 555 0100', 'Example Corp', 'Buyer',
        1, 'web form', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6)
      FROM seq_1_to_$batch"
    done_rows=$((done_rows + batch))
  done
  echo "$organization $first $count" >>"$seed/leads.txt"
}

seed_start=$SECONDS
if ((call_log_only)); then
  # GetLead needs only the small organization, so the rest stay empty.
  mixed_organizations=0
  cache_organizations=0
  app_organizations=0
  big_org_leads=1
  write_org_leads=1
fi
create_organizations "$seed/core-admins.txt" 3
create_organizations "$seed/cache-admins.txt" "$cache_organizations"
create_organizations "$seed/app-admins.txt" "$app_organizations"
seed_apps "$seed/core-admins.txt" "$seed/core-tokens.txt" 1
if ((cache_organizations > 0)); then
  seed_apps "$seed/cache-admins.txt" "$seed/cache-tokens.txt" 20
else
  : >"$seed/cache-tokens.txt"
fi

read -r small_org _ < <(sed -n 1p "$seed/core-admins.txt")
read -r big_org _ < <(sed -n 2p "$seed/core-admins.txt")
read -r write_org _ < <(sed -n 3p "$seed/core-admins.txt")
: >"$seed/leads.txt"
insert_leads "$small_org" "$small_org_leads"
insert_leads "$big_org" "$big_org_leads"
insert_leads "$write_org" "$write_org_leads"
awk -v n="$mixed_organizations" 'NR <= n { print $1 }' "$seed/cache-admins.txt" >"$seed/mixed-organizations.txt"
while read -r organization; do insert_leads "$organization" "$mixed_leads_per_organization"; done \
  <"$seed/mixed-organizations.txt"
sql crm_data -e "ANALYZE TABLE leads" >/dev/null

grep "^$small_org " "$seed/core-tokens.txt" >"$seed/small-tokens.txt"
grep "^$big_org " "$seed/core-tokens.txt" >"$seed/big-tokens.txt"
grep "^$write_org " "$seed/core-tokens.txt" >"$seed/write-tokens.txt"
# The first apps of each mixed organization: 100 x 10 = 1,000 tokens.
awk -v per="$mixed_apps_per_organization" 'NR == FNR { mixed[$1] = 1; next }
  ($1 in mixed) && seen[$1]++ < per' "$seed/mixed-organizations.txt" "$seed/cache-tokens.txt" >"$seed/mixed-tokens.txt"
log "seeded $(wc -l <"$seed/cache-tokens.txt") cache tokens, $(wc -l <"$seed/mixed-tokens.txt") mixed tokens" \
  "and $(awk '{ n += $3 } END { print n }' "$seed/leads.txt") leads in $((SECONDS - seed_start)) s"

# --------------------------------------------------------------- scenarios
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
failures=()
rows=()

# Runs loadgen for one table row: run_scenario ID TITLE TARGET_NAME PORT
# [loadgen flags...]. The report goes to reports/ID.json.
run_scenario() {
  local id=$1 title=$2 target_name=$3 port=$4
  shift 4
  local watch
  case $target_name in
    crm) watch="crm=$crm_pid,auth=$auth_pid,db=$db_pid" ;;
    crm_noauth) watch="crm_noauth=$noauth_pid,auth=$auth_pid,db=$db_pid" ;;
    crm_nolog) watch="crm_nolog=$nolog_pid,auth=$auth_pid,db=$db_pid" ;;
    crm_nolimit) watch="crm_nolimit=$nolimit_pid,auth=$auth_pid,db=$db_pid" ;;
    auth) watch="auth=$auth_pid,db=$db_pid" ;;
    echo) watch="echo=$echo_pid" ;;
  esac
  log "running $id"
  local status=0
  "$loadgen" --target="127.0.0.1:$port" --concurrency="$concurrency" --seconds="$seconds" \
    --warmup_seconds="$warmup" --watch="$watch" --label="$id" "$@" >"$state/reports/$id.json" || status=$?
  if ((status != 0)) || [[ ! -s $state/reports/$id.json ]]; then
    failures+=("$id (loadgen exit status $status)")
  fi
  rows+=("$id|$title|$target_name")
}

leads=(--leads_file="$seed/leads.txt")
get_lead_flags=(--scenario=get_lead --tokens_file="$seed/small-tokens.txt" "${leads[@]}" --server_status)
if ((call_log_only)); then
  # Alternates the two servers so that a drift of the machine during the
  # run (heat, other load) weighs on both alike.
  run_scenario get_lead "GetLead, cached token, API call log on (1)" crm "$crm_port" "${get_lead_flags[@]}"
  run_scenario get_lead_no_call_log "GetLead, cached token, --api_call_log=false (1)" crm_nolog "$nolog_port" \
    "${get_lead_flags[@]}"
  run_scenario get_lead_no_call_log_2 "GetLead, cached token, --api_call_log=false (2)" crm_nolog "$nolog_port" \
    "${get_lead_flags[@]}"
  run_scenario get_lead_2 "GetLead, cached token, API call log on (2)" crm "$crm_port" "${get_lead_flags[@]}"
else # Every other scenario, unindented to keep their lines as they were.
run_scenario echo_get_lead "GetLead, echo server (baseline)" echo "$echo_port" --scenario=get_lead \
  --tokens_file="$seed/small-tokens.txt" "${leads[@]}"
run_scenario get_lead "GetLead, cached token" crm "$crm_port" "${get_lead_flags[@]}"
run_scenario get_lead_no_call_log "GetLead, cached token, --api_call_log=false" crm_nolog "$nolog_port" \
  "${get_lead_flags[@]}"
run_scenario nolimit_get_lead "GetLead, cached token, --rate_limits=false" crm_nolimit "$nolimit_port" \
  "${get_lead_flags[@]}"
run_scenario noauth_get_lead "GetLead, crm_server_noauth (no token check)" crm_noauth "$noauth_port" \
  --scenario=get_lead --tokens_file="$seed/small-tokens.txt" "${leads[@]}"
run_scenario list_small "ListLeads page 50, organization of $(commas "$small_org_leads") leads" crm \
  "$crm_port" --scenario=list_leads --tokens_file="$seed/small-tokens.txt"
run_scenario list_big "ListLeads page 50, organization of $(commas "$big_org_leads") leads" crm \
  "$crm_port" --scenario=list_leads --tokens_file="$seed/big-tokens.txt"
run_scenario create_lead "CreateLead" crm "$crm_port" --scenario=create_lead --tokens_file="$seed/write-tokens.txt"
run_scenario update_lead "UpdateLead, mask title and status" crm "$crm_port" --scenario=update_lead \
  --tokens_file="$seed/write-tokens.txt" "${leads[@]}"
run_scenario check_token "CheckToken on auth_server (cold path, $(commas "$(wc -l <"$seed/mixed-tokens.txt")") tokens)" \
  auth \
  "$auth_internal_port" --scenario=check_token --tokens_file="$seed/mixed-tokens.txt"
run_scenario create_delete_app "CreatePrivateApp + DeletePrivateApp pairs" auth "$auth_port" \
  --scenario=create_delete_app --admin_keys_file="$seed/app-admins.txt"
run_scenario rotate_token "RotateAccessToken" auth "$auth_port" --scenario=rotate_token \
  --admin_keys_file="$seed/app-admins.txt"
mixed_token_count=$(commas "$(wc -l <"$seed/mixed-tokens.txt")")
run_scenario mixed "Mixed 80% GetLead, 15% Create/UpdateLead, 5% ListLeads ($mixed_organizations organizations, \
$mixed_token_count tokens)" crm "$crm_port" --scenario=mixed --tokens_file="$seed/mixed-tokens.txt" "${leads[@]}"
run_scenario warm_tokens "ListLeads once with each of $(commas "$(wc -l <"$seed/cache-tokens.txt")") tokens \
(cache misses), then RSS" crm "$crm_port" --scenario=warm_tokens --tokens_file="$seed/cache-tokens.txt" \
  --page_size=1 --seconds=600 --server_status

# Runs one sysbench test against the same MariaDB over its unix socket and
# writes reports/ID.json in loadgen's format: events per second, latency
# percentiles from sysbench's histogram, and MariaDB's CPU time during the
# measured run.
run_sysbench() {
  local id=$1 title=$2 test=$3
  local common=(--db-driver=mysql --mysql-socket="$socket" --mysql-user=root --mysql-db=sbtest --tables=1
    --table-size="$sysbench_rows" --threads="$concurrency")
  log "running $id"
  local status=0 before after
  sysbench "$test" "${common[@]}" --time="$sysbench_warmup" run >/dev/null 2>"$state/reports/$id.err" || status=$?
  before=$(awk '{ print $14 + $15 }' "/proc/$db_pid/stat")
  sysbench "$test" "${common[@]}" --time="$sysbench_seconds" --histogram=on run \
    >"$state/reports/$id.txt" 2>>"$state/reports/$id.err" || status=$?
  after=$(awk '{ print $14 + $15 }' "/proc/$db_pid/stat")
  awk -v id="$id" -v seconds="$sysbench_seconds" -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" '
    /^ +[0-9.]+ \|[* ]* [0-9]+$/ { values[n] = $1; counts[n] = $NF; total += $NF; n++ }
    /transactions:/ { events = $2; rate = $3; gsub(/[(]/, "", rate) }
    /ignored errors:/ { errors = $3 }
    /max:/ { max = $2 }
    function percentile(fraction,   rank, seen, i) {
      rank = fraction * total; if (rank != int(rank)) rank = int(rank) + 1
      for (i = 0; i < n; i++) { seen += counts[i]; if (seen >= rank) return values[i] }
      return 0
    }
    END {
      printf "{\"scenario\": \"%s\", \"window_seconds\": %s, \"calls\": %d, \"ok_calls\": %d, ", id, seconds, events + errors, events
      printf "\"calls_per_second\": %s, \"latency_ms\": {\"p50\": %s, \"p90\": %s, \"p99\": %s, \"max\": %s}, ", rate, percentile(0.50), percentile(0.90), percentile(0.99), max
      printf "\"codes\": {\"OK\": %d, \"errors\": %d}, \"processes\": {\"db\": {\"cpu_seconds\": %.3f, \"vm_rss_kib\": 0, \"vm_hwm_kib\": 0}}}\n", events, errors, ticks / hz
    }' "$state/reports/$id.txt" >"$state/reports/$id.json"
  if ((status != 0)) || ! jq -e '.ok_calls > 0 and .codes.errors == 0' "$state/reports/$id.json" >/dev/null; then
    failures+=("$id (sysbench exit status $status; see $state/reports/$id.err)")
  fi
  rows+=("$id|$title|db")
}

sysbench oltp_point_select --db-driver=mysql --mysql-socket="$socket" --mysql-user=root --mysql-db=sbtest \
  --tables=1 --table-size="$sysbench_rows" prepare >"$state/reports/sysbench-prepare.txt"
run_sysbench sysbench_point_select "sysbench oltp_point_select ($(commas "$sysbench_rows") rows)" \
  oltp_point_select
run_sysbench sysbench_insert "sysbench oltp_insert" oltp_insert
fi # call_log_only

# ------------------------------------------------------------------- table
report() { jq -r "$2" "$state/reports/$1.json" 2>/dev/null || echo 0; }

# Prints $1 / $2 with two decimals, or 0 when $2 is 0.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b == 0 ? 0 : a / b) }'; }

# Returns "met" or "missed" for "VALUE OP LIMIT".
verdict() { awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN {
  ok = (op == ">=") ? v >= l : (op == "<=") ? v <= l : (op == "<") ? v < l : 0
  print (ok ? "met" : "missed") }'; }

get_lead=$(report get_lead .calls_per_second)
echo_get_lead=$(report echo_get_lead .calls_per_second)
noauth_get_lead=$(report noauth_get_lead .calls_per_second)
nolimit_get_lead=$(report nolimit_get_lead .calls_per_second)
create_lead=$(report create_lead .calls_per_second)
sysbench_insert=$(report sysbench_insert .calls_per_second)
list_small_p50=$(report list_small .latency_ms.p50)
list_big_p50=$(report list_big .latency_ms.p50)
list_small_p99=$(report list_small .latency_ms.p99)
list_big_p99=$(report list_big .latency_ms.p99)
crm_hwm_mib=$(awk -v k="$(report warm_tokens .processes.crm.vm_hwm_kib)" 'BEGIN { printf "%.1f", k / 1024 }')

echo_ratio=$(ratio "$get_lead" "$echo_get_lead")
auth_cost=$(awk -v a="$get_lead" -v b="$noauth_get_lead" 'BEGIN { printf "%.3f", (b == 0 ? 1 : 1 - a / b) }')
list_p50_ratio=$(ratio "$list_big_p50" "$list_small_p50")
list_p99_ratio=$(ratio "$list_big_p99" "$list_small_p99")
list_worst=$(awk -v a="$list_p50_ratio" -v b="$list_p99_ratio" 'BEGIN { print (a > b ? a : b) }')
insert_ratio=$(ratio "$create_lead" "$sysbench_insert")
# The API call log's cost: 1 - (GetLead with the log) / (GetLead without
# it), over every window of each (two in --call_log mode, one otherwise).
sum_reports() {
  local total=0 id
  for id in "$@"; do
    total=$(awk -v a="$total" -v b="$(report "$id" .calls_per_second)" 'BEGIN { print a + b }')
  done
  echo "$total"
}
if ((call_log_only)); then
  with_log=$(sum_reports get_lead get_lead_2)
  without_log=$(sum_reports get_lead_no_call_log get_lead_no_call_log_2)
else
  with_log=$get_lead
  without_log=$(report get_lead_no_call_log .calls_per_second)
fi
call_log_ratio=$(ratio "$with_log" "$without_log")
call_log_cost=$(awk -v a="$with_log" -v b="$without_log" 'BEGIN { printf "%.3f", (b == 0 ? 1 : 1 - a / b) }')
call_log_text="API call log on / off = $call_log_ratio ($with_log / $without_log calls/s): it costs $(awk -v c="$call_log_cost" 'BEGIN { printf "%.1f%%", c * 100 }') of GetLead throughput (target <= 10%: $(verdict "$call_log_cost" "<=" 0.10))"
limiter_ratio=$(ratio "$get_lead" "$nolimit_get_lead")
declare -A targets=(
  [get_lead]="GetLead / echo = $echo_ratio ($get_lead / $echo_get_lead calls/s; target >= 0.50: $(verdict "$echo_ratio" ">=" 0.50)). Auth layer costs $(awk -v c="$auth_cost" 'BEGIN { printf "%.1f%%", c * 100 }') of noauth's $noauth_get_lead calls/s (target <= 10%: $(verdict "$auth_cost" "<=" 0.10))"
  [nolimit_get_lead]="GetLead with the rate limiter / without = $limiter_ratio ($get_lead / $nolimit_get_lead calls/s)"
  [list_big]="p50 $list_p50_ratio x, p99 $list_p99_ratio x the small organization's (target <= 1.5 x: $(verdict "$list_worst" "<=" 1.5))"
  [create_lead]="CreateLead / sysbench oltp_insert = $insert_ratio ($create_lead / $sysbench_insert per s; target >= 0.50: $(verdict "$insert_ratio" ">=" 0.50))"
  [warm_tokens]="$(report warm_tokens .server_status.cached_tokens) cached tokens, cache_bytes $(report warm_tokens .server_status.cache_bytes); crm_server VmHWM $crm_hwm_mib MiB, VmRSS $(awk -v k="$(report warm_tokens .processes.crm.vm_rss_kib)" 'BEGIN { printf "%.1f", k / 1024 }') MiB (target < 200 MiB: $(verdict "$crm_hwm_mib" "<" 200))"
)

# The cached-token row measures the cache only while the cache was in use,
# so its target column shows the cache state and counters.
cache_state=$(report get_lead .server_status.watch_state)
# The call log's cost goes on the first row that uses both servers' figures.
if ((call_log_only)); then
  targets[get_lead]="$call_log_text"
else
  targets[get_lead_no_call_log]="$call_log_text"
fi
targets[get_lead]+=". Token cache after the run: $cache_state, $(report get_lead .server_status.cache_hits) hits and $(report get_lead .server_status.cache_misses) misses since start-up"
if [[ $cache_state != WATCH_STATE_CURRENT ]]; then
  log "warning: crm_server's token cache was not in use after get_lead (watch_state $cache_state)"
fi

git_revision=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
  git_revision="$git_revision with uncommitted changes"
fi
{
  echo "# Benchmark results ($mode run)"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), commit $git_revision, $(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) memory, load average before the scenarios $load_before, after $(cut -d' ' -f1-3 /proc/loadavg)."
  if ((call_log_only)); then
    sysbench_note=""
  else
    sysbench_note=" (sysbench: $sysbench_seconds s after a $sysbench_warmup s run)"
  fi
  echo "Concurrency $concurrency, $seconds s per scenario after $warmup s of warm-up$sysbench_note, server log level $log_level; loadgen, servers and MariaDB share this machine."
  echo
  echo "| scenario | calls/s | p50 ms | p90 ms | p99 ms | max ms | status codes | CPU s per 1,000 OK calls: servers; loadgen | peak RSS MiB | target |"
  echo "|---|---:|---:|---:|---:|---:|---|---|---:|---|"
  for row in "${rows[@]}"; do
    IFS='|' read -r id title target_name <<<"$row"
    file=$state/reports/$id.json
    if ! jq -e . "$file" >/dev/null 2>&1; then
      echo "| $title | failed | | | | | | | | ${targets[$id]:-} |"
      continue
    fi
    jq -r --arg title "$title" --arg target_name "$target_name" --arg check "${targets[$id]:-}" '
      def fixed(n): (. * pow(10; n) | round) / pow(10; n);
      .ok_calls as $ok |
      [ $title,
        (.calls_per_second | fixed(1) | tostring),
        (.latency_ms.p50 | tostring), (.latency_ms.p90 | tostring), (.latency_ms.p99 | tostring),
        (.latency_ms.max | tostring),
        ([.codes | to_entries[] | "\(.key) \(.value)"] + (if (.failed_outside_window // 0) > 0
           then ["\(.failed_outside_window) failed outside the window"] else [] end) | join(", ")),
        (([.processes | to_entries[] | "\(.key) \(if $ok > 0 then (.value.cpu_seconds / $ok * 1000 | fixed(3)) else "n/a" end)"]
           | join(", ")) + (if .client_cpu_seconds != null and $ok > 0
           then "; loadgen \(.client_cpu_seconds / $ok * 1000 | fixed(3))" else "" end)),
        (if $target_name == "db" then "" else (.processes[$target_name].vm_hwm_kib / 1024 | fixed(1) | tostring) end),
        $check ]
      | "| " + join(" | ") + " |"' "$file"
  done
} >"$results.tmp"
mv "$results.tmp" "$results"
cat "$results"
echo
log "results written to $results; reports in $state/reports"

if ((${#failures[@]} > 0)); then
  log "scenarios with calls that did not succeed:"
  printf '  %s\n' "${failures[@]}" >&2
  exit 1
fi
