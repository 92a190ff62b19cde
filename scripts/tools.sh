#!/usr/bin/env bash
# Builds a Go tool that the Makefile uses into a cache folder, unless the
# cached binary is current, and prints the binary's path on standard output.
#
# Usage: scripts/tools.sh golangci-lint
#
#   golangci-lint   runs `go install` for the pinned golangci-lint version
#                   unless the cached binary is that version and was built
#                   by the current Go toolchain
#
# The tools are built from source with `go install`, so only the Go module
# proxy must be reachable.
#
# Environment:
#   GO                     go command (default "go")
#   GOLANGCI_LINT_VERSION  github.com/golangci/golangci-lint/v2 version
#                          (default v2.15.0)
#   TOOLS_CACHE_DIR        GOBIN of the tools (default ~/.cache/syncguard/bin)
set -euo pipefail

go_command=${GO:-go}
golangci_lint_version=${GOLANGCI_LINT_VERSION:-v2.15.0}
tools_cache_dir=${TOOLS_CACHE_DIR:-$HOME/.cache/syncguard/bin}

# Messages go to standard error, because standard output carries the path.
log() { echo "tools.sh: $*" >&2; }
fail() { echo "tools.sh: error: $*" >&2; exit 1; }

# Returns 0 if the binary exists, was built from module $2 at version $3 and
# by the current Go toolchain. golangci-lint (checked in v2.15.0) exits with
# an error on a module whose go directive is newer than the Go that built it,
# so a toolchain upgrade triggers a rebuild.
installed_version_matches() {
    local binary=$1 module=$2 version=$3 info go_version
    [[ -x $binary ]] || return 1
    info=$("$go_command" version -m "$binary" 2>/dev/null) || return 1
    go_version=$("$go_command" env GOVERSION)
    [[ $(head -n 1 <<<"$info") == "$binary: $go_version" ]] || return 1
    grep -qF "$(printf '\tmod\t%s\t%s\t' "$module" "$version")" <<<"$info"
}

# Runs `go install module/path@version` into a temporary GOBIN inside the
# cache folder and then moves the binary into place, so an interrupted
# build never leaves a partial binary at the cached path.
go_install() {
    local name=$1 module=$2 package=$3 version=$4
    local binary=$tools_cache_dir/$name partial
    if installed_version_matches "$binary" "$module" "$version"; then
        echo "$binary"
        return 0
    fi
    mkdir -p "$tools_cache_dir"
    partial=$(mktemp -d "$tools_cache_dir/.$name.partial.XXXXXX")
    log "installing $package@$version into $tools_cache_dir"
    if ! GOBIN=$partial "$go_command" install "$package@$version"; then
        rm -rf "$partial"
        fail "go install $package@$version failed; see the output above"
    fi
    mv -f "$partial/$name" "$binary"
    rm -rf "$partial"
    echo "$binary"
}

case ${1:-} in
    golangci-lint)
        go_install golangci-lint github.com/golangci/golangci-lint/v2 \
            github.com/golangci/golangci-lint/v2/cmd/golangci-lint "$golangci_lint_version"
        ;;
    *)
        echo "usage: $0 golangci-lint" >&2
        exit 2
        ;;
esac
