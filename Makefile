# The README's two commands, and a few helpers.
.PHONY: serve test test-main test-bench test-fuzz fuzz bench bench-quick chaos build image

serve:          ## run arr on 127.0.0.1:8080 with state in ./arr-data
	go run ./cmd/arr serve

test: test-main test-bench test-fuzz  ## the whole test suite (what CI runs)

# -timeout: on a fresh machine (a cold build cache, 2 cores) a package that
# builds arr binaries for its real-process tests (cmd/arr, mkimage) can get
# near go test's default of 10 minutes per package; each test bounds itself.
test-main:      ## arr's own module
	go test -race -timeout 25m ./...

test-bench:     ## the bench module: the peers' adapters (Redis, PostgreSQL) and a short chaos audit
	cd bench && go test -race -timeout 25m ./...

# The fuzz targets of the parsers a client reaches (issue 12): package:Target.
FUZZ_TARGETS = ./api:FuzzPath ./api:FuzzHost ./api:FuzzPrefer ./api:FuzzIdempotencyKey \
	./api:FuzzListCursor ./urlsign:FuzzVerify ./auth:FuzzParseKeys ./auth:FuzzParseAuthorization \
	./webhook:FuzzParseAllowList ./webhook:FuzzVerify ./server:FuzzFraming
FUZZ_TIME ?= 10s
FUZZ_FLAGS ?=

fuzz:           ## fuzz each parser for FUZZ_TIME (default 10s; e.g. make fuzz FUZZ_TIME=10m)
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "== $${t##*:} ($(FUZZ_TIME))"; \
		go test -run '^$$' -fuzz "^$${t##*:}$$" -fuzztime $(FUZZ_TIME) $(FUZZ_FLAGS) $${t%%:*}; \
	done

test-fuzz:      ## each fuzz target for 4s (their seed corpora also run in test-main), one fuzz worker: on 2 loaded cores the engine can give up on a worker slow to answer at the end
	$(MAKE) fuzz FUZZ_TIME=4s FUZZ_FLAGS=-parallel=1

build:          ## a static binary in ./arr
	CGO_ENABLED=0 go build -trimpath -o arr ./cmd/arr

# The container image, without a Docker daemon (internal/cmd/mkimage): an OCI
# layout in dist/arr-image (crane push dist/arr-image REF) and a docker-archive
# of linux/amd64 in dist/arr-image.tar (docker load / podman load). Every
# timestamp is SOURCE_DATE_EPOCH (default: the last commit's time), so a
# rebuild of the same commit gives the same digests.
IMAGE_PLATFORMS ?= linux/amd64,linux/arm64
IMAGE_VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
image:          ## the container image: dist/arr-image (OCI layout, IMAGE_PLATFORMS) and dist/arr-image.tar (linux/amd64)
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) go run ./internal/cmd/mkimage -platforms $(IMAGE_PLATFORMS) \
		-out dist/arr-image -tar dist/arr-image.tar -version $(IMAGE_VERSION) \
		-revision $(shell git rev-parse HEAD 2>/dev/null)

bench:          ## the full side-by-side run of docs/benchmarks.md (about 15 minutes)
	cd bench && go run ./cmd/arrbench -out ../docs/benchmarks-run.md

bench-quick:    ## a 2-minute version of it
	cd bench && go run ./cmd/arrbench -reps 1 -n 5000 -w3 300 -w4 20000 -w5 100000

chaos:          ## the long chaos audit: kill -9 arr serve at random under load for 5 minutes
	cd bench && go run ./cmd/arrchaos -duration 5m
