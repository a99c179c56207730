#!/usr/bin/env bash
# Build Helm 3 from the Go module proxy into a version-keyed cache outside the repo, then link it into the
# project-local, git-ignored bin/helm. Idempotent: a cached binary built with the same flags is reused.
#
# Usage: tools/helm/build.sh          prints the absolute path of bin/helm on stdout (progress goes to stderr)
# Env:   HELM_VERSION        default v3.22.0
#        SELFHELP_CACHE_DIR  default ${XDG_CACHE_HOME:-~/.cache}/selfhelp-scheduled-jobs
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE_ROOT="${SELFHELP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/selfhelp-scheduled-jobs}"
CACHE_DIR="${CACHE_ROOT}/helm-${HELM_VERSION}"
CACHED_BIN="${CACHE_DIR}/helm"
STAMP="${CACHE_DIR}/build.stamp"
LOG="${CACHE_DIR}/build.log"
TARGET="${REPO_ROOT}/bin/helm"

export CGO_ENABLED=0 GOTOOLCHAIN=local GOWORK=off

cached_ok() {
    [[ -x "${CACHED_BIN}" && -f "${STAMP}" ]] &&
        "${CACHED_BIN}" version --template '{{.Version}}' 2>/dev/null | grep -qx "${HELM_VERSION}"
}

build() {
    command -v go >/dev/null 2>&1 || { echo "build.sh: 'go' not found on PATH" >&2; return 1; }
    # Like Helm's Makefile: the default Kubernetes version (used by `helm template`/`lint` without a cluster)
    # is derived from the k8s.io/client-go version Helm is built against (v0.X.Y -> 1.X); without it Helm
    # would claim v1.20 and refuse charts with a newer kubeVersion.
    local gomod client_go k8s_major k8s_minor ldflags
    gomod="$(cd "${CACHE_DIR}" && go mod download -json "helm.sh/helm/v3@${HELM_VERSION}" |
        sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
    client_go="$(awk '$1 == "k8s.io/client-go" {print $2; exit}' "${gomod}")"
    [[ "${client_go}" =~ ^v0\.([0-9]+)\. ]] || { echo "cannot read k8s.io/client-go version from ${gomod}"; return 1; }
    k8s_major=1
    k8s_minor="${BASH_REMATCH[1]}"
    ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
    ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=${k8s_major}"
    ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${k8s_minor}"
    ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=${k8s_major}"
    ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${k8s_minor}"
    echo "go install -trimpath -ldflags '${ldflags}' helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
    (cd "${CACHE_DIR}" && GOBIN="${CACHE_DIR}" go install -trimpath -ldflags "${ldflags}" \
        "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}")
    printf '%s\n' "${ldflags}" >"${STAMP}"
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
