//! The `ringpush` command. Everything it does lives in the `ringpush` library crate.

fn main() -> std::process::ExitCode {
    ringpush::main()
}
