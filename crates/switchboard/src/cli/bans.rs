//! `sip bans`: the SIP sources the server has banned (floods, failed
//! authentications, number scanning, scanner User-Agents), and lifting a
//! ban (`switchboard.SIP/ListBans`, `switchboard.SIP/LiftBan`).

use serde::{Deserialize, Serialize};

use super::client::{Client, SWITCHBOARD_SIP};
use super::table;
use super::token::Grants;
use super::CliError;

/// `sip bans ...`.
#[derive(Debug, clap::Subcommand)]
pub enum BansCommand {
    /// The sources banned now, with the time left and why.
    List {
        /// Print the server's JSON answer instead.
        #[arg(long)]
        json: bool,
    },
    /// Lifts the ban of a source (its counts start again from zero).
    Lift {
        /// The banned address.
        ip: std::net::IpAddr,
    },
}

#[derive(Debug, Deserialize)]
struct ListBansResponse {
    bans: Vec<Ban>,
}

#[derive(Debug, Deserialize)]
struct Ban {
    ip: String,
    remaining_secs: u64,
    reason: String,
}

#[derive(Debug, Serialize)]
struct LiftBanRequest {
    ip: String,
}

#[derive(Debug, Deserialize)]
struct LiftBanResponse {
    lifted: bool,
}

/// Runs a `sip bans` command.
pub fn run(client: &Client, command: BansCommand) -> Result<(), CliError> {
    match command {
        BansCommand::List { json } => {
            let (response, raw): (ListBansResponse, _) = client.call(
                SWITCHBOARD_SIP,
                "ListBans",
                &Grants::sip_admin(),
                &serde_json::json!({}),
            )?;
            if json {
                println!("{}", raw.trim_end());
                return Ok(());
            }
            let rows: Vec<Vec<String>> = response
                .bans
                .iter()
                .map(|b| {
                    vec![
                        b.ip.clone(),
                        format!("{}s", b.remaining_secs),
                        b.reason.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(&["Source", "Time left", "Reason"], &rows)
            );
            Ok(())
        }
        BansCommand::Lift { ip } => {
            let request = LiftBanRequest { ip: ip.to_string() };
            let (response, _): (LiftBanResponse, _) =
                client.call(SWITCHBOARD_SIP, "LiftBan", &Grants::sip_admin(), &request)?;
            if response.lifted {
                println!("ban on {ip} lifted");
            } else {
                println!("{ip} was not banned");
            }
            Ok(())
        }
    }
}
