#!/usr/bin/env bash
# Start Azurite (Azure Storage's emulator: blob, queue and table) for the
# Azure drivers' tests, unless it answers already: HTTPS with a certificate
# made here, OAuth in its "basic" mode (it checks a bearer token's audience,
# issuer and times, not its signature), on 127.0.0.1:10000-10002. The
# certificate is $ARR_AZURITE_DIR/cert.pem (default /tmp/arr-azurite), where
# the tests (internal/azuritetest) find it.
set -eu
version=3.37.0
dir="${ARR_AZURITE_DIR:-/tmp/arr-azurite}"
up() { (exec 3<>/dev/tcp/127.0.0.1/10000) 2>/dev/null; }
if up && [ -f "$dir/cert.pem" ]; then
  echo "azurite: 127.0.0.1:10000 up"; exit 0
fi
command -v azurite >/dev/null || npm install -g --no-fund --no-audit "azurite@$version" >/dev/null
command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl; }
mkdir -p "$dir/data"
if [ ! -f "$dir/cert.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=azurite" -keyout "$dir/key.pem" -out "$dir/cert.pem" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:*.blob.localhost,DNS:*.queue.localhost,DNS:*.table.localhost" \
    -addext "basicConstraints=critical,CA:TRUE" 2>/dev/null
fi
nohup azurite --silent --disableTelemetry --skipApiVersionCheck --loose \
  --location "$dir/data" --oauth basic --cert "$dir/cert.pem" --key "$dir/key.pem" \
  --blobHost 127.0.0.1 --queueHost 127.0.0.1 --tableHost 127.0.0.1 \
  ${ARR_AZURITE_DEBUG:+--debug "$dir/debug.log"} >"$dir/azurite.log" 2>&1 &
for i in $(seq 1 60); do
  if (exec 3<>/dev/tcp/127.0.0.1/10000 4<>/dev/tcp/127.0.0.1/10001 5<>/dev/tcp/127.0.0.1/10002) 2>/dev/null; then
    echo "azurite: 127.0.0.1:10000-10002 up (certificate $dir/cert.pem)"; exit 0
  fi
  sleep 1
done
echo "azurite did not start; its log:"; cat "$dir/azurite.log"; exit 1
