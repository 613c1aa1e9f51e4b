# One entry point for routine tasks; CI calls `make test` too.
.PHONY: dev test lint fmt build bench

# Run the whole platform in one process (builds first).
dev:
	cargo run --release -p ringpush -- dev

# The whole test suite, as CI runs it: installs redis-server if missing, then format,
# lints and every test, then a short run of each fuzz target (deploy/fuzz-smoke.sh).
test:
	./deploy/install-test-deps.sh
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo test --workspace
	./deploy/api-fuzz.sh target/debug/ringpush
	./deploy/fuzz-smoke.sh

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

build:
	cargo build --release -p ringpush

# Benchmarks of a real deployment (release builds; figures and ratios, non-zero exit when a
# target is missed). Today: throttled campaigns against their set rate.
bench:
	cargo build --release -p ringpush -p ringpush-bench
	target/release/ringpush-bench throttle
