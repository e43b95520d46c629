#!/usr/bin/env bash
# Lints the contracts in proto/ with buf and checks them for breaking changes
# against the previous commit (HEAD~1).
#
#   tools/check-proto.sh
#
# The rules are in proto/buf.yaml. The working tree's proto/ is compared with
# proto/ at HEAD~1, so on a clean checkout of main this checks the last
# commit, and with uncommitted changes it checks those too. Without a previous
# commit (the first commit, a shallow clone, or no git checkout) it runs only
# the lint, prints "check-proto: skipped buf breaking" with the reason, and
# exits 0. Exit status: 0 when every check that ran passed, 1 otherwise.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
buf=tools/node_modules/.bin/buf
if [[ ! -x $buf ]]; then
  echo "check-proto: $buf is missing; run tools/install-deps.sh" >&2
  exit 1
fi

echo "check-proto: buf lint proto"
if ! "$buf" lint proto; then
  echo "check-proto: buf lint found the problems above" >&2
  exit 1
fi

skip_breaking() {
  echo "check-proto: skipped buf breaking: $*"
  exit 0
}

if [[ $(git rev-parse --show-toplevel 2>/dev/null) != "$root" ]]; then
  skip_breaking "$root is not the top of a git checkout, so there is no previous commit to compare with"
fi
if ! git rev-parse --verify --quiet 'HEAD~1^{commit}' >/dev/null; then
  if [[ $(git rev-parse --is-shallow-repository) == true ]]; then
    skip_breaking "HEAD~1 is not in this shallow clone; fetch it with 'git fetch --deepen=1' (or clone with --depth=2 or more) and run again"
  fi
  skip_breaking "HEAD has no parent commit"
fi

# buf reads the commit from the repository's .git folder, so the same
# command works in any checkout that has HEAD~1.
echo "check-proto: buf breaking proto --against .git#ref=HEAD~1,subdir=proto ($(git rev-parse --short HEAD~1))"
if ! "$buf" breaking proto --against '.git#ref=HEAD~1,subdir=proto'; then
  echo "check-proto: proto/ has breaking changes against HEAD~1 (listed above)." >&2
  echo "check-proto: put a breaking change in a new package version (v2) instead." >&2
  exit 1
fi
echo "check-proto: lint and breaking-change check passed"
