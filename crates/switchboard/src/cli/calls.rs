//! `sip calls`: calls in progress and the call history
//! (`switchboard.SIP/ListCalls`, `GetCall`, `HangUpCall`), and a call's SIP
//! trace as text or pcap (`GET /calls/<id>/trace`).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use super::client::{Client, SWITCHBOARD_SIP};
use super::table;
use super::token::{parse_duration, Grants};
use super::CliError;

/// `sip calls ...`.
#[derive(Debug, clap::Subcommand)]
pub enum CallsCommand {
    /// Calls in progress (--live) or finished, newest first.
    List {
        /// The calls in progress instead of the history.
        #[arg(long)]
        live: bool,
        /// inbound or outbound.
        #[arg(long)]
        direction: Option<String>,
        /// answered, failed, refused or cancelled.
        #[arg(long)]
        result: Option<String>,
        /// Only calls of this room.
        #[arg(long)]
        room: Option<String>,
        /// Only calls of this trunk (ST_…).
        #[arg(long)]
        trunk: Option<String>,
        /// Only calls whose From or To user contains this.
        #[arg(long)]
        number: Option<String>,
        /// Only calls that ended within this long (30m, 2h, 7d).
        #[arg(long, value_parser = parse_duration)]
        since: Option<Duration>,
        /// Most calls to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Continue a listing (the token a previous page printed).
        #[arg(long)]
        page_token: Option<String>,
        /// Print the server's JSON answer instead.
        #[arg(long)]
        json: bool,
    },
    /// One call: IDs, numbers, times, outcome, RTP quality, transfer.
    Get {
        /// The call ID (SCL_…).
        call_id: String,
        /// Print the server's JSON answer instead.
        #[arg(long)]
        json: bool,
    },
    /// Hang up a call in progress.
    #[command(visible_alias = "hang-up")]
    Hangup {
        /// The call ID (SCL_…).
        call_id: String,
    },
    /// A call's SIP messages: as text on standard output, or as a pcap file.
    Trace {
        /// The call ID (SCL_…).
        call_id: String,
        /// Write a pcap file here (for Wireshark, tshark, sngrep).
        #[arg(long)]
        pcap: Option<PathBuf>,
    },
}

#[derive(Debug, Serialize, Default)]
struct ListCallsRequest {
    live: bool,
    direction: String,
    result: String,
    room: String,
    trunk_id: String,
    number: String,
    ended_after_ns: i64,
    page_size: usize,
    page_token: String,
}

#[derive(Debug, Serialize)]
struct CallIdRequest<'a> {
    call_id: &'a str,
}

/// Runs a `sip calls` command.
pub fn run(client: &Client, command: CallsCommand) -> Result<(), CliError> {
    match command {
        CallsCommand::List {
            live,
            direction,
            result,
            room,
            trunk,
            number,
            since,
            limit,
            page_token,
            json,
        } => {
            let ended_after_ns = match since {
                Some(window) => SystemTime::now()
                    .checked_sub(window)
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
                None => 0,
            };
            let request = ListCallsRequest {
                live,
                direction: direction.unwrap_or_default(),
                result: result.unwrap_or_default(),
                room: room.unwrap_or_default(),
                trunk_id: trunk.unwrap_or_default(),
                number: number.unwrap_or_default(),
                ended_after_ns,
                page_size: limit.clamp(1, 1000),
                page_token: page_token.unwrap_or_default(),
            };
            let (response, raw): (Value, _) =
                client.call(SWITCHBOARD_SIP, "ListCalls", &Grants::sip_admin(), &request)?;
            if json {
                println!("{}", raw.trim_end());
                return Ok(());
            }
            let calls = response["calls"].as_array().cloned().unwrap_or_default();
            let rows: Vec<Vec<String>> = calls.iter().map(list_row).collect();
            print!(
                "{}",
                table::render(
                    &[
                        "Call ID",
                        "Direction",
                        "From",
                        "To",
                        "Room",
                        "Started",
                        "Duration",
                        "Result",
                        "SIP",
                        "Reason"
                    ],
                    &rows
                )
            );
            if let Some(next) = response["next_page_token"]
                .as_str()
                .filter(|t| !t.is_empty())
            {
                println!("more: --page-token {next}");
            }
            Ok(())
        }
        CallsCommand::Get { call_id, json } => {
            let (call, raw): (Value, _) = client.call(
                SWITCHBOARD_SIP,
                "GetCall",
                &Grants::sip_admin(),
                &CallIdRequest { call_id: &call_id },
            )?;
            if json {
                println!("{}", raw.trim_end());
            } else {
                print!("{}", details(&call));
            }
            Ok(())
        }
        CallsCommand::Hangup { call_id } => {
            let _: (Value, _) = client.call(
                SWITCHBOARD_SIP,
                "HangUpCall",
                &Grants::sip_admin(),
                &CallIdRequest { call_id: &call_id },
            )?;
            println!("{call_id} hung up");
            Ok(())
        }
        CallsCommand::Trace { call_id, pcap } => {
            if !switchboard_store::is_call_id(&call_id) {
                return Err(CliError::Usage(format!("{call_id:?} is not a call ID")));
            }
            let format = if pcap.is_some() { "pcap" } else { "text" };
            let path = format!("/calls/{call_id}/trace?format={format}");
            let (status, body) = client.get_bytes(&path)?;
            if status != 200 {
                let text = String::from_utf8_lossy(&body);
                return Err(CliError::Server(super::client::TwirpError::from_response(
                    status, &text,
                )));
            }
            match pcap {
                Some(file) => {
                    std::fs::write(&file, &body).map_err(|e| {
                        CliError::Usage(format!("cannot write {}: {e}", file.display()))
                    })?;
                    println!("{} bytes written to {}", body.len(), file.display());
                }
                None => print!("{}", String::from_utf8_lossy(&body)),
            }
            Ok(())
        }
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn ns(value: &Value) -> i64 {
    match value {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// `2026-12-05 03:40:00` (UTC) for ns since the epoch; "" for 0.
fn time(at_ns: i64) -> String {
    if at_ns <= 0 {
        return String::new();
    }
    let full = switchboard_api::trace_export::rfc3339_ns(at_ns);
    full.get(..19).unwrap_or(&full).replace('T', " ")
}

fn duration(from_ns: i64, to_ns: i64) -> String {
    if from_ns <= 0 || to_ns < from_ns {
        return String::new();
    }
    let secs = (to_ns - from_ns) / 1_000_000_000;
    format!("{}:{:02}", secs / 60, secs % 60)
}

fn direction(info: &Value) -> &'static str {
    match info["call_direction"].as_str() {
        Some("SCD_OUTBOUND") => "outbound",
        Some("SCD_INBOUND") => "inbound",
        _ => "",
    }
}

fn list_row(call: &Value) -> Vec<String> {
    let info = &call["info"];
    let ended = ns(&info["ended_at_ns"]);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    let result = if call["live"].as_bool() == Some(true) {
        "live".to_string()
    } else {
        text(&call["result"])
    };
    vec![
        text(&info["call_id"]),
        direction(info).to_string(),
        text(&info["from_uri"]["user"]),
        text(&info["to_uri"]["user"]),
        text(&info["room_name"]),
        time(ns(&info["created_at_ns"])),
        duration(
            ns(&info["started_at_ns"]),
            if ended > 0 { ended } else { now },
        ),
        result,
        match call["sip_status"].as_u64() {
            Some(0) | None => String::new(),
            Some(code) => code.to_string(),
        },
        text(&info["disconnect_reason"]),
    ]
}

fn details(call: &Value) -> String {
    let info = &call["info"];
    let mut rows: Vec<(&str, String)> = vec![
        ("Call ID", text(&info["call_id"])),
        ("SIP Call-ID", text(&info["sip_call_id"])),
        ("Direction", direction(info).to_string()),
        ("Live", text(&call["live"])),
        ("Result", text(&call["result"])),
        ("From", text(&info["from_uri"]["user"])),
        ("To", text(&info["to_uri"]["user"])),
        ("Trunk", text(&info["trunk_id"])),
        ("Dispatch rule", text(&info["dispatch_rule_id"])),
        ("Room", text(&info["room_name"])),
        ("Participant", text(&info["participant_identity"])),
        ("Transport", text(&call["transport"])),
        ("Peer", text(&call["remote_address"])),
        ("Codec", text(&info["audio_codec"])),
        ("SRTP", text(&call["srtp_suite"])),
        ("INVITE", time(ns(&info["created_at_ns"]))),
        ("Ringing", time(ns(&call["ringing_at_ns"]))),
        ("Answered", time(ns(&info["started_at_ns"]))),
        ("Ended", time(ns(&info["ended_at_ns"]))),
        ("Status", text(&info["call_status"])),
        (
            "SIP status",
            format!(
                "{} {}",
                call["sip_status"]
                    .as_u64()
                    .filter(|c| *c > 0)
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
                text(&info["call_status_code"]["status"])
            )
            .trim()
            .to_string(),
        ),
        ("Disconnect reason", text(&info["disconnect_reason"])),
        ("Error", text(&info["error"])),
    ];
    let quality = &call["quality"];
    if quality.is_object() {
        rows.push((
            "RTP",
            format!(
                "sent {}, received {}, lost {}, jitter {:.1} ms, concealed {} frames, RTT {:.1} ms",
                text(&quality["packets_sent"]),
                text(&quality["packets_received"]),
                text(&quality["packets_lost"]),
                quality["jitter_ms"].as_f64().unwrap_or(0.0),
                text(&quality["concealed_frames"]),
                quality["round_trip_ms"].as_f64().unwrap_or(0.0),
            ),
        ));
    }
    let transfer = &call["transfer"];
    if transfer.is_object() {
        rows.push((
            "Transfer",
            format!(
                "{} to {} {}",
                text(&transfer["transfer_status"]),
                text(&transfer["transfer_to"]),
                text(&transfer["error"])
            )
            .trim()
            .to_string(),
        ));
    }
    rows.push((
        "SIP trace",
        format!(
            "{} messages{}",
            text(&call["trace_messages"]),
            if call["trace_truncated"].as_bool() == Some(true) {
                " (truncated)"
            } else {
                ""
            }
        ),
    ));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k:width$}  {v}\n"))
        .collect()
}
