#!/bin/sh
# Usage: install-go-tool.sh BINARY MODULE PACKAGE VERSION
# Installs PACKAGE@VERSION with `go install` into $(go env GOBIN), or
# $(go env GOPATH)/bin, unless BINARY there was already built from MODULE
# at VERSION (idempotent). The tests look for the servers there first:
#   versitygw   github.com/versity/versitygw      v1.8.0   (S3, internal/s3test)
#   nats-server github.com/nats-io/nats-server/v2 v2.12.15 (JetStream clusters,
#               internal/natstest: replicated compare-and-set needs 2.9.21+,
#               and Debian's package is 2.9.10)
set -eu
name="$1" module="$2" pkg="$3" version="$4"

gobin="$(go env GOBIN)"
if [ -z "$gobin" ]; then
	gopath="$(go env GOPATH)"
	gobin="${gopath%%:*}/bin"
fi
bin="$gobin/$name"
mod_re="$(printf '%s' "$module" | sed 's/[.]/\\./g')"

if [ -x "$bin" ] && go version -m "$bin" 2>/dev/null |
	grep -Eq "^[[:space:]]+mod[[:space:]]+${mod_re}[[:space:]]+${version}([[:space:]]|\$)"; then
	echo "$name $version already installed: $bin"
	exit 0
fi

echo "installing $name $version into $gobin"
go install "$pkg@$version"
"$bin" --version
