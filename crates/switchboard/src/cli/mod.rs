//! The command-line client, shaped like LiveKit's `lk sip`: manage trunks and
//! dispatch rules on a running server over the Twirp JSON API, ask it why a
//! call would (not) be taken, and mint access tokens.
//!
//! Exit status: 0 done (for `explain`: the call would be accepted), 1 the
//! server refused the request (for `explain`: the call would be refused),
//! 2 bad usage or input, or the server could not be reached.

mod bans;
mod calls;
mod client;
mod dispatch;
mod explain;
mod input;
mod platform;
mod stream;
mod table;
mod token;
mod trunks;

use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

use client::{Client, TwirpError};

/// Why a command failed; decides the exit status.
#[derive(Debug)]
pub enum CliError {
    /// Bad arguments or input file.
    Usage(String),
    /// The server could not be reached, or the connection broke.
    Connection(String),
    /// The server answered with an error.
    Server(TwirpError),
    /// The server answered 200 with something that is not the expected message.
    BadResponse(String),
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Connection(_) => 2,
            CliError::Server(_) | CliError::BadResponse(_) => 1,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(msg) => write!(f, "{msg}"),
            CliError::Connection(msg) => write!(f, "cannot reach the server: {msg}"),
            CliError::Server(e) => write!(f, "{e}"),
            CliError::BadResponse(msg) => write!(f, "{msg}"),
        }
    }
}

/// The API key pair every token is signed with.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyArgs {
    /// API key (the token issuer).
    #[arg(
        long,
        env = "LIVEKIT_API_KEY",
        global = true,
        help_heading = "Connection"
    )]
    api_key: Option<String>,
    /// API secret the token is signed with.
    #[arg(
        long,
        env = "LIVEKIT_API_SECRET",
        hide_env_values = true,
        global = true,
        help_heading = "Connection"
    )]
    api_secret: Option<String>,
}

impl KeyArgs {
    /// The key and secret, or a usage error naming both ways to give them.
    fn require(&self) -> Result<(String, String), CliError> {
        let key = self
            .api_key
            .as_deref()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                CliError::Usage("no API key: pass --api-key or set LIVEKIT_API_KEY".into())
            })?;
        let secret = self
            .api_secret
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                CliError::Usage("no API secret: pass --api-secret or set LIVEKIT_API_SECRET".into())
            })?;
        Ok((key.to_owned(), secret.to_owned()))
    }
}

/// Where the server is and how to sign requests to it.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// Server URL (http, https, ws or wss).
    #[arg(
        long,
        env = "LIVEKIT_URL",
        default_value = "http://localhost:7880",
        global = true,
        help_heading = "Connection"
    )]
    url: String,
    #[command(flatten)]
    keys: KeyArgs,
    /// Give up on a request after this long.
    #[arg(
        long,
        default_value = "30s",
        value_parser = token::parse_duration,
        global = true,
        help_heading = "Connection"
    )]
    timeout: Duration,
}

/// `switchboard sip ...`.
#[derive(Debug, clap::Args)]
pub struct SipArgs {
    #[command(flatten)]
    conn: ConnectionArgs,
    #[command(subcommand)]
    command: SipCommand,
}

#[derive(Debug, clap::Subcommand)]
enum SipCommand {
    /// Inbound trunks: which calls are accepted, from where.
    #[command(subcommand, visible_alias = "in")]
    Inbound(trunks::InboundCommand),
    /// Outbound trunks: where calls are dialled out.
    #[command(subcommand, visible_alias = "out")]
    Outbound(trunks::OutboundCommand),
    /// Dispatch rules: which room an accepted call goes to.
    #[command(subcommand, visible_alias = "dispatch-rule")]
    Dispatch(dispatch::DispatchCommand),
    /// Ask the server which trunk and rule would take a call, and why the
    /// others would not.
    Explain(explain::ExplainArgs),
    /// SIP sources banned by the server's edge defences.
    #[command(subcommand)]
    Bans(bans::BansCommand),
    /// Stream a room to a voice bot (Twilio or Telnyx media streams).
    #[command(subcommand)]
    Stream(stream::StreamCommand),
    /// Calls in progress and finished: records, SIP traces, hang-up.
    #[command(subcommand)]
    Calls(calls::CallsCommand),
}

/// `switchboard trunk ...`: carrier trunks over the `/v1/` API.
#[derive(Debug, clap::Args)]
pub struct TrunkArgs {
    #[command(flatten)]
    conn: ConnectionArgs,
    #[command(subcommand)]
    command: platform::TrunkCommand,
}

/// Runs a `trunk` command.
pub fn run_trunk(args: TrunkArgs) -> ExitCode {
    let result = Client::new(&args.conn).and_then(|client| platform::run(&client, args.command));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// `switchboard token ...`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: token::TokenCommand,
}

/// Runs a `sip` command; prints errors as one line on standard error.
pub fn run_sip(args: SipArgs) -> ExitCode {
    let client = match Client::new(&args.conn) {
        Ok(client) => client,
        Err(e) => return fail(e),
    };
    let result = match args.command {
        SipCommand::Inbound(c) => trunks::run_inbound(&client, c),
        SipCommand::Outbound(c) => trunks::run_outbound(&client, c),
        SipCommand::Dispatch(c) => dispatch::run(&client, c),
        SipCommand::Bans(c) => bans::run(&client, c),
        SipCommand::Stream(c) => stream::run(&client, c),
        SipCommand::Calls(c) => calls::run(&client, c),
        SipCommand::Explain(c) => {
            return match explain::run(&client, c) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                // 2 whatever went wrong, so that 1 only ever means "refused".
                Err(e) => {
                    eprintln!("switchboard: {e}");
                    ExitCode::from(2)
                }
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// Runs a `token` command.
pub fn run_token(args: TokenArgs) -> ExitCode {
    match token::run(args.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn fail(e: CliError) -> ExitCode {
    eprintln!("switchboard: {e}");
    ExitCode::from(e.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Harness {
        #[command(flatten)]
        sip: SipArgs,
    }

    /// Parses `switchboard sip <argv...>`.
    pub(super) fn parse_sip(argv: &[&str]) -> Result<SipArgs, clap::Error> {
        Harness::try_parse_from(std::iter::once("sip").chain(argv.iter().copied())).map(|h| h.sip)
    }

    /// A fixture file under tests/fixtures/cli.
    pub(super) fn fixture(name: &str) -> String {
        format!("{}/tests/fixtures/cli/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn connection_flags_go_before_or_after_the_subcommand() {
        let before = parse_sip(&[
            "--url",
            "ws://example:1",
            "--api-key",
            "k",
            "--api-secret",
            "s",
            "inbound",
            "list",
        ])
        .unwrap();
        let after = parse_sip(&[
            "inbound",
            "list",
            "--url",
            "ws://example:1",
            "--api-key",
            "k",
            "--api-secret",
            "s",
            "--timeout",
            "5s",
        ])
        .unwrap();
        assert_eq!(before.conn.url, "ws://example:1");
        assert_eq!(after.conn.url, "ws://example:1");
        assert_eq!(after.conn.keys.require().unwrap(), ("k".into(), "s".into()));
        assert_eq!(after.conn.timeout, Duration::from_secs(5));
        assert!(matches!(
            after.command,
            SipCommand::Inbound(trunks::InboundCommand::List(_))
        ));
    }

    #[test]
    fn aliases_match_lk() {
        for (alias, name) in [
            ("in", "inbound"),
            ("out", "outbound"),
            ("dispatch-rule", "dispatch"),
        ] {
            let args = parse_sip(&["--api-key", "k", "--api-secret", "s", alias, "list"]).unwrap();
            let parsed = match args.command {
                SipCommand::Inbound(_) => "inbound",
                SipCommand::Outbound(_) => "outbound",
                SipCommand::Dispatch(_) => "dispatch",
                SipCommand::Explain(_) => "explain",
                SipCommand::Bans(_) => "bans",
                SipCommand::Stream(_) => "stream",
                SipCommand::Calls(_) => "calls",
            };
            assert_eq!(parsed, name);
        }
    }

    #[test]
    fn the_bot_url_and_the_server_url_are_two_flags() {
        let args = parse_sip(&[
            "stream",
            "start",
            "--room",
            "r",
            "--bot-url",
            "ws://bot:1/ws",
            "--url",
            "http://server:2",
        ])
        .unwrap();
        assert_eq!(args.conn.url, "http://server:2");
        assert!(matches!(
            args.command,
            SipCommand::Stream(stream::StreamCommand::Start { ref bot_url, .. }) if bot_url == "ws://bot:1/ws"
        ));
    }

    #[test]
    fn missing_keys_name_the_flag_and_the_variable() {
        let keys = KeyArgs {
            api_key: Some("k".into()),
            api_secret: None,
        };
        let err = keys.require().unwrap_err().to_string();
        assert!(
            err.contains("--api-secret") && err.contains("LIVEKIT_API_SECRET"),
            "{err}"
        );
        let keys = KeyArgs {
            api_key: Some(String::new()),
            api_secret: Some("s".into()),
        };
        assert!(keys
            .require()
            .unwrap_err()
            .to_string()
            .contains("LIVEKIT_API_KEY"));
    }

    #[test]
    fn exit_codes_by_error_kind() {
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
        assert_eq!(CliError::Connection("x".into()).exit_code(), 2);
        assert_eq!(
            CliError::Server(TwirpError::from_response(
                404,
                r#"{"code":"not_found","msg":"x"}"#
            ))
            .exit_code(),
            1
        );
        assert_eq!(CliError::BadResponse("x".into()).exit_code(), 1);
    }
}
