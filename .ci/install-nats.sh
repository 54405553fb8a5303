#!/bin/sh
# Installs a pinned recent nats-server into $(go env GOPATH)/bin, where the
# tests' clusters (internal/natstest) look first: replicated compare-and-set
# writes need nats-server 2.9.21 or later, and Debian's package is 2.9.10.
# Idempotent: does nothing when that version is already installed.
set -eu

NATS_SERVER_VERSION="${NATS_SERVER_VERSION:-v2.12.15}"

gobin="$(go env GOBIN)"
if [ -z "$gobin" ]; then
	gopath="$(go env GOPATH)"
	gobin="${gopath%%:*}/bin"
fi
bin="$gobin/nats-server"

if [ -x "$bin" ] && go version -m "$bin" 2>/dev/null |
	grep -Eq "^[[:space:]]+mod[[:space:]]+github\.com/nats-io/nats-server/v2[[:space:]]+${NATS_SERVER_VERSION}([[:space:]]|\$)"; then
	echo "nats-server ${NATS_SERVER_VERSION} already installed: $bin"
	exit 0
fi

echo "installing nats-server ${NATS_SERVER_VERSION} into $gobin"
go install "github.com/nats-io/nats-server/v2@${NATS_SERVER_VERSION}"
"$bin" --version
