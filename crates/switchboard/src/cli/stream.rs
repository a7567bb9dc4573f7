//! `sip stream`: stream an existing room to a voice bot
//! (`switchboard.SIP/StartStream`), and stop it (RoomService
//! `RemoveParticipant` of the bot's identity).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::client::{Client, SWITCHBOARD_SIP};
use super::token::Grants;
use super::CliError;

/// `sip stream ...`.
#[derive(Debug, clap::Subcommand)]
pub enum StreamCommand {
    /// Connect a voice bot to a room over a media-stream WebSocket.
    Start {
        /// The room (it must exist).
        #[arg(long)]
        room: String,
        /// The bot's ws:// or wss:// URL (--url is the server's).
        #[arg(long)]
        bot_url: String,
        /// twilio, telnyx, telnyx-pcma or raw-l16.
        #[arg(long, default_value = "twilio")]
        protocol: String,
        /// The bot's identity in the room (default: stream-<random>).
        #[arg(long)]
        identity: Option<String>,
        /// A custom parameter of `start`, as name=value (repeatable).
        #[arg(long = "param", value_parser = parse_param)]
        params: Vec<(String, String)>,
    },
    /// Stop a stream: the bot gets `stop`, then the socket closes.
    Stop {
        /// The room.
        #[arg(long)]
        room: String,
        /// The bot's identity (as `start` printed it).
        #[arg(long)]
        identity: String,
    },
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not name=value")),
    }
}

#[derive(Debug, Serialize)]
struct StartStreamRequest<'a> {
    room: &'a str,
    url: &'a str,
    protocol: &'a str,
    identity: &'a str,
    custom_parameters: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct StartStreamResponse {
    identity: String,
    stream_id: String,
}

#[derive(Debug, Serialize)]
struct RemoveParticipantRequest<'a> {
    room: &'a str,
    identity: &'a str,
}

fn room_admin(room: &str) -> Grants {
    Grants {
        room: Some(room.to_owned()),
        room_admin: true,
        ..Grants::default()
    }
}

/// Runs a `sip stream` command.
pub fn run(client: &Client, command: StreamCommand) -> Result<(), CliError> {
    match command {
        StreamCommand::Start {
            room,
            bot_url,
            protocol,
            identity,
            params,
        } => {
            let request = StartStreamRequest {
                room: &room,
                url: &bot_url,
                protocol: &protocol,
                identity: identity.as_deref().unwrap_or(""),
                custom_parameters: params.into_iter().collect(),
            };
            let (response, _): (StartStreamResponse, _) =
                client.call(SWITCHBOARD_SIP, "StartStream", &room_admin(&room), &request)?;
            println!("Identity: {}", response.identity);
            println!("StreamID: {}", response.stream_id);
        }
        StreamCommand::Stop { room, identity } => {
            let request = RemoveParticipantRequest {
                room: &room,
                identity: &identity,
            };
            let _: (serde_json::Value, _) = client.call(
                "livekit.RoomService",
                "RemoveParticipant",
                &room_admin(&room),
                &request,
            )?;
            println!("stopped {identity}");
        }
    }
    Ok(())
}
