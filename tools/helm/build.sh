#!/usr/bin/env bash
# Build Helm 4 from the Go module proxy into a version-keyed cache outside the repo, then link it into the
# project-local, git-ignored bin/helm. Idempotent: a cached binary built with the same flags is reused.
#
# Helm 4 applies server-side by default (`helm install`; `helm upgrade --server-side=true` for a release first
# installed client-side, e.g. by Helm 3), which is how the chart's CRDs are upgraded with the chart.
#
# Usage: tools/helm/build.sh          prints the absolute path of bin/helm on stdout (progress goes to stderr)
# Env:   HELM_VERSION        default v4.3.2 (a Helm 4 release: the module path is helm.sh/helm/v4)
#        SELFHELP_CACHE_DIR  default ${XDG_CACHE_HOME:-~/.cache}/selfhelp-scheduled-jobs
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v4.3.2}"
[[ "${HELM_VERSION}" =~ ^v4\. ]] || { echo "build.sh: HELM_VERSION must be a Helm 4 release (v4.x.y), got ${HELM_VERSION}" >&2; exit 1; }
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE_ROOT="${SELFHELP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/selfhelp-scheduled-jobs}"
CACHE_DIR="${CACHE_ROOT}/helm-${HELM_VERSION}"
CACHED_BIN="${CACHE_DIR}/helm"
STAMP="${CACHE_DIR}/build.stamp"
LOG="${CACHE_DIR}/build.log"
TARGET="${REPO_ROOT}/bin/helm"
MODULE="helm.sh/helm/v4"
# What Helm's Makefile sets. Helm 4 needs no k8sVersion ldflags (Helm 3 did): the default Kubernetes version of
# `helm template`/`lint` without a cluster is derived at run time from the k8s.io/client-go version in the
# binary's module build info (client-go v0.37.2 -> Kubernetes v1.37.0; `go install` keeps that info).
LDFLAGS="-s -w -X ${MODULE}/internal/version.version=${HELM_VERSION}"

export CGO_ENABLED=0 GOTOOLCHAIN=local GOWORK=off

cached_ok() {
    [[ -x "${CACHED_BIN}" && -f "${STAMP}" ]] &&
        [[ "$(cat "${STAMP}")" == "${LDFLAGS}" ]] &&
        "${CACHED_BIN}" version --template '{{.Version}}' 2>/dev/null | grep -qx "${HELM_VERSION}"
}

build() {
    command -v go >/dev/null 2>&1 || { echo "build.sh: 'go' not found on PATH" >&2; return 1; }
    echo "go install -trimpath -ldflags '${LDFLAGS}' ${MODULE}/cmd/helm@${HELM_VERSION}"
    (cd "${CACHE_DIR}" && GOBIN="${CACHE_DIR}" go install -trimpath -ldflags "${LDFLAGS}" \
        "${MODULE}/cmd/helm@${HELM_VERSION}")
    # The default Kubernetes version must come out of the build info: without it Helm 4 fails at start.
    local kube
    kube="$("${CACHED_BIN}" version --template '{{.KubeClientVersion}}')"
    [[ "${kube}" =~ ^v1\.[0-9]+$ ]] || { echo "helm reports no Kubernetes client version (got '${kube}')"; return 1; }
    echo "helm ${HELM_VERSION}: default Kubernetes version ${kube}"
    printf '%s\n' "${LDFLAGS}" >"${STAMP}"
}

if ! cached_ok; then
    mkdir -p "${CACHE_DIR}"
    exec 9>"${CACHE_DIR}/.lock"
    if command -v flock >/dev/null 2>&1; then flock 9; fi
    if ! cached_ok; then # another build may have finished while we waited for the lock
        echo "build.sh: building helm ${HELM_VERSION} from the Go module proxy (cache: ${CACHE_DIR}) ..." >&2
        rm -f "${STAMP}"
        start=$(date +%s)
        if ! build >"${LOG}" 2>&1; then
            echo "build.sh: helm build failed; last lines of ${LOG}:" >&2
            tail -n 40 "${LOG}" >&2
            exit 1
        fi
        echo "build.sh: built helm ${HELM_VERSION} in $(($(date +%s) - start))s" >&2
    fi
fi

mkdir -p "$(dirname "${TARGET}")"
if [[ "$(readlink "${TARGET}" 2>/dev/null || true)" != "${CACHED_BIN}" ]]; then
    ln -sfn "${CACHED_BIN}" "${TARGET}"
fi
echo "${TARGET}"
