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

# Benchmarks (release builds; figures and ratios, non-zero exit when a target is missed):
# ring spread and moves, idle connections on one connector (19,000) and on a ring of seven
# (100,000) with a reconnect storm, throttled campaigns. docs/benchmarks.md has the figures.
# Every scenario runs even when an earlier one misses a target; the exit code says if any did.
bench:
	cargo build --release -p ringpush -p ringpush-bench
	status=0; \
	target/release/ringpush-bench ring || status=1; \
	target/release/ringpush-bench connections --devices 19000 --connectors 1 || status=1; \
	target/release/ringpush-bench connections --devices 100000 --connectors 7 || status=1; \
	target/release/ringpush-bench throttle || status=1; \
	exit $$status
