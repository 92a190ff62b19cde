#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a short budget each. A crash
# makes `go test -fuzz` write the failing input under the package's
# testdata/fuzz/<Target>/ folder; commit it so it stays a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${1:-10s}

for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
		echo "fuzz $pkg $target ($budget)"
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$budget" "$pkg"
	done
done
