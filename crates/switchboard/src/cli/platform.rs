//! `switchboard trunk ...`: carrier trunks over the `/v1/sip-trunks` API
//! (seed 001's shape), each one an inbound trunk, an outbound trunk and a
//! dispatch rule made, changed and removed together.

use serde_json::{Map, Value};

use super::client::{Client, TwirpError};
use super::input::{flag_list, read_source};
use super::table;
use super::CliError;

/// `trunk ...`.
#[derive(Debug, clap::Subcommand)]
pub enum TrunkCommand {
    /// Create a carrier trunk (and its inbound trunk, outbound trunk and rule).
    Create(TrunkFields),
    /// List carrier trunks, oldest first.
    List {
        /// Most trunks to show (1-100).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// The `next_cursor` of a previous page.
        #[arg(long)]
        cursor: Option<String>,
        /// Print the server's JSON answer instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one carrier trunk.
    Get {
        /// `trunk_…`.
        id: String,
    },
    /// Change fields of a carrier trunk; what is not given is kept.
    Update {
        /// `trunk_…`.
        id: String,
        #[command(flatten)]
        fields: TrunkFields,
    },
    /// Delete a carrier trunk and everything it provisioned.
    Delete {
        /// `trunk_…`.
        id: String,
    },
}

/// The fields of a trunk: a JSON body, and flags that override its keys.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TrunkFields {
    /// The request body: a file, `-` for standard input, or the JSON itself
    /// (every field of /v1/sip-trunks, docs/platform-api.md).
    #[arg(long = "request", short = 'r')]
    request: Option<String>,
    /// Human-readable name.
    #[arg(long)]
    name: Option<String>,
    /// Where the trunk came from: byoc (livekit and twilio are refused).
    #[arg(long)]
    kind: Option<String>,
    /// inbound, outbound or both.
    #[arg(long)]
    direction: Option<String>,
    /// The carrier's SIP host (`host[:port]`).
    #[arg(long = "address")]
    sip_address: Option<String>,
    /// Digest user name, both ways.
    #[arg(long = "username")]
    auth_username: Option<String>,
    /// Digest password (better given in --request from a file: command
    /// lines are visible to other users of the machine).
    #[arg(long = "password")]
    auth_password: Option<String>,
    /// IPs and CIDRs inbound calls may come from (comma-separated, repeatable).
    #[arg(long = "allowed-addresses")]
    allowed_addresses: Vec<String>,
    /// ISO 3166-1 alpha-2 country of the dial plan.
    #[arg(long = "country")]
    destination_country: Option<String>,
    /// auto, udp, tcp or tls.
    #[arg(long)]
    transport: Option<String>,
    /// disable, allow or require.
    #[arg(long = "media-encryption")]
    media_encryption: Option<String>,
    /// The trunk's E.164 numbers (comma-separated, repeatable).
    #[arg(long)]
    numbers: Vec<String>,
    /// How outbound calls write numbers: +e164, e164 or national.
    #[arg(long = "number-format")]
    number_format: Option<String>,
}

impl TrunkFields {
    /// The request body: `--request` with the flags written over it.
    fn body(&self) -> Result<String, CliError> {
        let mut object = match &self.request {
            Some(source) => match serde_json::from_str::<Value>(&read_source(source)?) {
                Ok(Value::Object(map)) => map,
                Ok(_) => return Err(CliError::Usage("--request must be a JSON object".into())),
                Err(e) => return Err(CliError::Usage(format!("--request is not JSON: {e}"))),
            },
            None => Map::new(),
        };
        let strings = [
            ("name", &self.name),
            ("kind", &self.kind),
            ("direction", &self.direction),
            ("sip_address", &self.sip_address),
            ("auth_username", &self.auth_username),
            ("auth_password", &self.auth_password),
            ("destination_country", &self.destination_country),
            ("transport", &self.transport),
            ("media_encryption", &self.media_encryption),
            ("number_format", &self.number_format),
        ];
        for (key, value) in strings {
            if let Some(value) = value {
                object.insert(key.to_owned(), Value::String(value.clone()));
            }
        }
        let lists = [
            ("allowed_addresses", &self.allowed_addresses),
            ("numbers", &self.numbers),
        ];
        for (key, values) in lists {
            if !values.is_empty() {
                let items = flag_list(values).into_iter().map(Value::String).collect();
                object.insert(key.to_owned(), Value::Array(items));
            }
        }
        Ok(Value::Object(object).to_string())
    }
}

/// Reads a /v1 error answer: `{"error": {"code", "message", "fields"}}`.
fn v1_error(status: u16, body: &str) -> CliError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().map(|v| &v["error"]);
    let code = error
        .and_then(|e| e["code"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("http_{status}"));
    let mut msg = error
        .and_then(|e| e["message"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| body.trim().to_owned());
    let others: Vec<String> = error
        .and_then(|e| e["fields"].as_array())
        .map(|fields| {
            fields
                .iter()
                .skip(1)
                .filter_map(|f| {
                    Some(format!(
                        "{} {}",
                        f["field"].as_str()?,
                        f["message"].as_str()?
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    if !others.is_empty() {
        msg = format!("{msg}; {}", others.join("; "));
    }
    CliError::Server(TwirpError {
        status,
        code,
        msg,
        meta: Vec::new(),
    })
}

fn call(client: &Client, method: &str, path: &str, body: Option<&str>) -> Result<Value, CliError> {
    let (status, text) = client.v1(method, path, body)?;
    if !(200..300).contains(&status) {
        return Err(v1_error(status, &text));
    }
    serde_json::from_str(&text)
        .map_err(|e| CliError::BadResponse(format!("unexpected answer from the server: {e}")))
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// Runs a `trunk` command.
pub fn run(client: &Client, command: TrunkCommand) -> Result<(), CliError> {
    match command {
        TrunkCommand::Create(fields) => {
            let body = fields.body()?;
            print_json(&call(client, "POST", "/v1/sip-trunks", Some(&body))?);
        }
        TrunkCommand::Get { id } => {
            print_json(&call(
                client,
                "GET",
                &format!("/v1/sip-trunks/{}", path_segment(&id)?),
                None,
            )?);
        }
        TrunkCommand::Update { id, fields } => {
            let body = fields.body()?;
            let path = format!("/v1/sip-trunks/{}", path_segment(&id)?);
            print_json(&call(client, "PATCH", &path, Some(&body))?);
        }
        TrunkCommand::Delete { id } => {
            let path = format!("/v1/sip-trunks/{}", path_segment(&id)?);
            let deleted = call(client, "DELETE", &path, None)?;
            println!("deleted {}", deleted["id"].as_str().unwrap_or(&id));
        }
        TrunkCommand::List {
            limit,
            cursor,
            json,
        } => {
            let mut path = format!("/v1/sip-trunks?limit={limit}");
            if let Some(cursor) = cursor {
                path.push_str(&format!("&cursor={}", path_segment(&cursor)?));
            }
            let page = call(client, "GET", &path, None)?;
            if json {
                print_json(&page);
                return Ok(());
            }
            let text = |t: &Value, key: &str| t[key].as_str().unwrap_or("").to_owned();
            let rows: Vec<Vec<String>> = page["data"]
                .as_array()
                .map(|trunks| {
                    trunks
                        .iter()
                        .map(|t| {
                            vec![
                                text(t, "id"),
                                text(t, "name"),
                                text(t, "direction"),
                                text(t, "sip_address"),
                                text(t, "livekit_inbound_trunk_id"),
                                text(t, "livekit_outbound_trunk_id"),
                                text(t, "livekit_dispatch_rule_id"),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            print!(
                "{}",
                table::render(
                    &[
                        "ID",
                        "Name",
                        "Direction",
                        "Address",
                        "Inbound",
                        "Outbound",
                        "Rule"
                    ],
                    &rows
                )
            );
            if let Some(next) = page["next_cursor"].as_str() {
                println!("more: --cursor {next}");
            }
        }
    }
    Ok(())
}

/// An ID as one path segment: only the characters IDs are made of, so
/// nothing typed can change the path or the query.
fn path_segment(id: &str) -> Result<&str, CliError> {
    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(id)
    } else {
        Err(CliError::Usage(format!(
            "{id:?} is not a trunk ID (trunk_…)"
        )))
    }
}
