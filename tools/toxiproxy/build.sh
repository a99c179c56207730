#!/usr/bin/env bash
# Builds Toxiproxy's server (github.com/Shopify/toxiproxy/v2, pinned in go.mod/go.sum) once per input
# hash and prints its path; the fault-injection tests (tests/integration/faults/) put it between the
# operator and the API server, the aimed operator kills (tests/integration/reliability/) also between the
# operator and the archive's PostgreSQL. Cached outside the repo, like tools/localcluster/build.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_dir="${LOCALCLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/selfhelp-scheduled-jobs}"
hash="$(cat "$here/go.mod" "$here/go.sum" "$here/tools.go" | sha256sum | cut -c1-16)"
binary="$cache_dir/toxiproxy-$hash"
if [[ -x "$binary" ]]; then
  echo "$binary"
  exit 0
fi
mkdir -p "$cache_dir"
exec 9>"$cache_dir/toxiproxy-build.lock"
flock 9
if [[ -x "$binary" ]]; then
  echo "$binary"
  exit 0
fi
log="$cache_dir/toxiproxy-build-$hash.log"
if ! (cd "$here" && CGO_ENABLED=0 GOWORK=off GOTOOLCHAIN=local GOFLAGS=-mod=readonly \
      go build -trimpath -buildvcs=false -ldflags "-s -w" -o "$binary.tmp" github.com/Shopify/toxiproxy/v2/cmd/server \
     ) >"$log" 2>&1; then
  echo "toxiproxy build FAILED; last lines of $log:" >&2
  tail -n 40 "$log" >&2
  exit 1
fi
mv "$binary.tmp" "$binary"
echo "$binary"
