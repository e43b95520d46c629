#!/usr/bin/env bash
# Checks that tools/check-proto.sh fails on breaking changes and lint errors
# and skips only the breaking-change check when there is no previous commit.
# It runs the script in scratch git repositories that contain this checkout's
# proto/buf.yaml and a small contract: a first commit, a compatible change, a
# renumbered field (uncommitted, then committed), a field name that breaks a
# lint rule, and a shallow clone.
#
#   tests/polyglot/check_proto_test.sh REPO_ROOT BUILD_DIR
set -uo pipefail

root=$1
build=$2
scratch=$build/polyglot/check-proto
rm -rf "$scratch"
mkdir -p "$scratch"
failures=0
passes=0

if [[ ! -x $root/tools/node_modules/.bin/buf ]]; then
  echo "FAIL: $root/tools/node_modules/.bin/buf is missing; run tools/install-deps.sh"
  exit 1
fi

# Creates a repository at $1 with tools/check-proto.sh, proto/buf.yaml and
# the installed buf from this checkout.
make_repo() {
  local repo=$1
  mkdir -p "$repo/tools" "$repo/proto/demo/v1"
  cp "$root/tools/check-proto.sh" "$repo/tools/"
  cp "$root/proto/buf.yaml" "$repo/proto/"
  ln -s "$root/tools/node_modules" "$repo/tools/node_modules"
  echo /tools/node_modules >"$repo/.gitignore"
  git -C "$repo" init -q
}

# Writes proto/demo/v1/demo.proto with the given message body.
write_contract() {
  local repo=$1 body=$2
  cat >"$repo/proto/demo/v1/demo.proto" <<EOF
syntax = "proto3";

package demo.v1;

// A record used to exercise tools/check-proto.sh.
message Record {
$body
}
EOF
}

commit() {
  local repo=$1 message=$2
  git -C "$repo" add -A
  git -C "$repo" -c user.name=check-proto-test -c user.email=check-proto-test@example.invalid \
    commit -q -m "$message"
}

# Runs tools/check-proto.sh in $1 and checks its exit status against $2 and
# its output against the fixed string $3.
expect_check() {
  local repo=$1 expected_status=$2 expected_output=$3 description=$4 output status
  output=$(cd "$repo" && tools/check-proto.sh 2>&1)
  status=$?
  if [[ $status -ne $expected_status ]]; then
    echo "FAIL: $description: expected exit status $expected_status, got $status; output:"
    echo "$output"
    failures=$((failures + 1))
  elif ! grep -qF -- "$expected_output" <<<"$output"; then
    echo "FAIL: $description: expected output containing '$expected_output'; output:"
    echo "$output"
    failures=$((failures + 1))
  else
    echo "ok: $description"
    passes=$((passes + 1))
  fi
}

repo=$scratch/history
make_repo "$repo"
write_contract "$repo" '  string name = 1;'
commit "$repo" "First contract"
expect_check "$repo" 0 "skipped buf breaking: HEAD has no parent commit" "first commit: lint only"

write_contract "$repo" '  string name = 1;
  string email = 2;'
commit "$repo" "Add a field"
expect_check "$repo" 0 "lint and breaking-change check passed" "added field is compatible"

write_contract "$repo" '  string name = 3;
  string email = 2;'
expect_check "$repo" 1 'Previously present field "1" with name "name" on message "Record" was deleted' \
  "uncommitted renumbered field is breaking"
commit "$repo" "Renumber a field"
expect_check "$repo" 1 'Previously present field "1" with name "name" on message "Record" was deleted' \
  "committed renumbered field is breaking"

git -C "$repo" reset -q --hard HEAD~1
write_contract "$repo" '  string name = 1;
  string email = 2;
  string phoneNumber = 3;'
expect_check "$repo" 1 'Field name "phoneNumber" should be lower_snake_case' "lint failure fails the check"

git -C "$repo" checkout -q -- proto
shallow=$scratch/shallow
git clone -q --depth 1 "file://$repo" "$shallow"
ln -s "$root/tools/node_modules" "$shallow/tools/node_modules"
expect_check "$shallow" 0 "HEAD~1 is not in this shallow clone" "shallow clone: lint only, with the fix"

echo "$passes passed, $failures failed"
((failures == 0))
