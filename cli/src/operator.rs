//! `ringpush operator`: portal operators, through the REST API with the admin token.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::json;

use crate::client::{DEFAULT_CONTROLLER, post_json};

#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Add a portal operator; prints its JSON (name, role). The password comes from
    /// --password-stdin or RINGPUSH_OPERATOR_PASSWORD (at least 12 characters).
    Create {
        /// Login name: 1 to 64 characters of a-z 0-9 . _ -
        name: String,
        /// admin (apps, keys, operators), marketer (sends, campaigns) or viewer (reads).
        #[arg(long, default_value = "viewer")]
        role: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// The password (prefer --password-stdin: a variable can leak into logs).
        #[arg(
            long = "password",
            env = "RINGPUSH_OPERATOR_PASSWORD",
            hide_env_values = true
        )]
        password: Option<String>,
        /// Controller URL.
        #[arg(long, env = "RINGPUSH_CONTROLLER", default_value = DEFAULT_CONTROLLER)]
        controller: String,
        /// Admin token (printed by `ringpush dev`).
        #[arg(long, env = "RINGPUSH_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: String,
        /// Trust this CA (PEM) for an https controller URL.
        #[arg(long, env = "RINGPUSH_CA_CERT")]
        ca_cert: Option<std::path::PathBuf>,
    },
}

pub async fn operator(command: OperatorCommand) -> anyhow::Result<()> {
    match command {
        OperatorCommand::Create {
            name,
            role,
            password_stdin,
            password,
            controller,
            admin_token,
            ca_cert,
        } => {
            let http = crate::client::http_client(ca_cert.as_deref())?;
            let password = match (password_stdin, password) {
                (true, _) => read_password_line()?,
                (false, Some(password)) => password,
                (false, None) => {
                    bail!("give the password with --password-stdin or RINGPUSH_OPERATOR_PASSWORD")
                }
            };
            let url = format!("{}/v1/operators", controller.trim_end_matches('/'));
            let body = json!({ "name": name, "role": role, "password": password });
            let answer = post_json(&http, &url, &admin_token, None, &body).await?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
            Ok(())
        }
    }
}

fn read_password_line() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password for the operator (shown as you type): ");
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("standard input held no password");
    }
    Ok(password)
}
