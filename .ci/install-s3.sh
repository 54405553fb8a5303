#!/bin/sh
# Installs versitygw, the S3 server the S3 result store tests run against
# (internal/s3test finds it on PATH, in $GOBIN or in $(go env GOPATH)/bin).
# Pinned; idempotent: does nothing when that version is already installed.
set -eu

VERSITYGW_VERSION="${VERSITYGW_VERSION:-v1.8.0}"

gobin="$(go env GOBIN)"
if [ -z "$gobin" ]; then
	gopath="$(go env GOPATH)"
	gobin="${gopath%%:*}/bin"
fi
bin="$gobin/versitygw"

if [ -x "$bin" ] && go version -m "$bin" 2>/dev/null |
	grep -Eq "^[[:space:]]+mod[[:space:]]+github\.com/versity/versitygw[[:space:]]+${VERSITYGW_VERSION}([[:space:]]|\$)"; then
	echo "versitygw ${VERSITYGW_VERSION} already installed: $bin"
	exit 0
fi

echo "installing versitygw ${VERSITYGW_VERSION} into $gobin"
go install "github.com/versity/versitygw/cmd/versitygw@${VERSITYGW_VERSION}"
"$bin" --version
