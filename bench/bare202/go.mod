module github.com/arrhq/arr/bench/bare202

go 1.26
