# The README's two commands, and a few helpers.
.PHONY: serve test bench build

serve:          ## run arr on 127.0.0.1:8080 with state in ./arr-data
	go run ./cmd/arr serve

test:           ## the whole test suite (what CI runs)
	go test -race ./...

build:          ## a static binary in ./arr
	CGO_ENABLED=0 go build -trimpath -o arr ./cmd/arr

bench:          ## the go test benchmarks of the submit path and the embedded store
	go test -run '^$$' -bench . -benchtime 20000x ./embedded/ ./api/
