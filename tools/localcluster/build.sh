#!/usr/bin/env bash
# Builds the multicall control-plane binary once per input hash and prints its path.
# The binary lives in a cache outside the repo (never committed); a failed build
# exits non-zero and shows the tail of its log.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
k8s_version="v1.37.2"
cache_dir="${LOCALCLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/selfhelp-scheduled-jobs}"
ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=${k8s_version} \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=37 \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.gitCommit=localcluster \
 -X k8s.io/component-base/version.buildDate=2026-01-01T00:00:00Z"
hash="$( (cat "$here/go.mod" "$here/go.sum" "$here/main.go"; echo "$ldflags") | sha256sum | cut -c1-16)"
binary="$cache_dir/localcluster-$hash"
if [[ -x "$binary" ]]; then
  echo "$binary"
  exit 0
fi
mkdir -p "$cache_dir"
# One build at a time (tests, make and CI may all ask at once); the loser finds the binary built.
exec 9>"$cache_dir/build.lock"
flock 9
if [[ -x "$binary" ]]; then
  echo "$binary"
  exit 0
fi
log="$cache_dir/build-$hash.log"
echo "building the local control plane (kube-apiserver, kube-controller-manager, etcd ${k8s_version});" \
     "the first build takes 10-25 minutes on 2 cores; log: $log" >&2
timer=(); [[ -x /usr/bin/time ]] && timer=(/usr/bin/time -v)  # peak memory into the log
start=$(date +%s)
if ! (cd "$here" && CGO_ENABLED=0 GOWORK=off GOTOOLCHAIN=local GOFLAGS=-mod=readonly \
      "${timer[@]}" go build -trimpath -buildvcs=false -ldflags "$ldflags" \
      -o "$binary.tmp" . ) >"$log" 2>&1; then
  echo "localcluster build FAILED; last lines of $log:" >&2
  tail -n 40 "$log" >&2
  exit 1
fi
mv "$binary.tmp" "$binary"
echo "localcluster built in $(( $(date +%s) - start ))s: $binary" >&2
echo "$binary"
