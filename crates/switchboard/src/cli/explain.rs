//! `sip explain`: asks the server (`switchboard.SIP/ExplainCall`) which
//! trunk and dispatch rule would take a call, and prints why every other
//! one would not.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::client::{Client, SWITCHBOARD_SIP};
use super::token::Grants;
use super::CliError;

/// `sip explain` arguments.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The caller: the From user.
    #[arg(long)]
    from: String,
    /// The called number: the To user (what trunks match on).
    #[arg(long)]
    to: String,
    /// Where the INVITE comes from (checked against allowed_addresses).
    #[arg(long)]
    source_ip: IpAddr,
    /// The From host (checked against host names in allowed_addresses).
    #[arg(long)]
    from_host: Option<String>,
    /// The Request-URI user, when the carrier puts the number there.
    #[arg(long)]
    request_uri_user: Option<String>,
    /// The PIN the caller enters.
    #[arg(long, conflicts_with = "no_pin")]
    pin: Option<String>,
    /// The caller enters no PIN (only # at the prompt).
    #[arg(long)]
    no_pin: bool,
    /// Print the server's JSON answer instead.
    #[arg(long)]
    json: bool,
}

/// The ExplainCall request.
#[derive(Debug, Serialize, PartialEq)]
pub struct ExplainRequest {
    from: String,
    to: String,
    source_ip: String,
    from_host: String,
    request_uri_user: String,
    pin: Option<String>,
    no_pin: bool,
}

impl From<&ExplainArgs> for ExplainRequest {
    fn from(args: &ExplainArgs) -> Self {
        ExplainRequest {
            from: args.from.clone(),
            to: args.to.clone(),
            source_ip: args.source_ip.to_string(),
            from_host: args.from_host.clone().unwrap_or_default(),
            request_uri_user: args.request_uri_user.clone().unwrap_or_default(),
            pin: args.pin.clone(),
            no_pin: args.no_pin,
        }
    }
}

/// The ExplainCall answer. Everything is optional so that a server that
/// leaves out or nulls a field still gets its verdict printed.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ExplainResponse {
    /// One line for humans.
    pub verdict: String,
    /// Whether the call would be taken.
    pub accepted: bool,
    /// The trunk step.
    pub trunk: Option<TrunkStep>,
    /// The dispatch step; null when the trunk step refused the call.
    pub dispatch: Option<DispatchStep>,
}

/// The trunk step of the answer.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct TrunkStep {
    /// The chosen trunk.
    pub id: Option<String>,
    /// `specific`, `default`, `unmatched` or `none`.
    #[serde(rename = "match")]
    pub match_kind: Option<String>,
    /// The trunk asks for digest credentials.
    pub digest_auth: bool,
    /// Why the call is refused at this step.
    pub error: Option<String>,
    /// Trunks not taken.
    pub passed_over: Vec<PassedOver>,
}

/// The dispatch step of the answer.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct DispatchStep {
    /// The chosen rule.
    pub rule_id: Option<String>,
    /// The rule asks for a PIN first.
    pub request_pin: bool,
    /// The room the call would join.
    pub room_name: Option<String>,
    /// The caller's participant identity.
    pub participant_identity: Option<String>,
    /// The caller's participant name.
    pub participant_name: Option<String>,
    /// Why the call is refused at this step.
    pub error: Option<String>,
    /// Rules not taken.
    pub passed_over: Vec<PassedOver>,
}

/// A trunk or rule that was not taken, and why.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct PassedOver {
    /// `trunk` or `dispatch_rule`.
    pub kind: String,
    /// Its ID.
    pub id: String,
    /// Its name.
    pub name: Option<String>,
    /// Why it was passed over.
    pub reason: String,
}

/// Runs `sip explain`; `Ok(true)` when the call would be accepted.
pub fn run(client: &Client, args: ExplainArgs) -> Result<bool, CliError> {
    let request = ExplainRequest::from(&args);
    let (response, raw): (ExplainResponse, _) = client.call(
        SWITCHBOARD_SIP,
        "ExplainCall",
        &Grants::sip_admin(),
        &request,
    )?;
    if args.json {
        println!("{}", raw.trim_end());
    } else {
        print!("{}", render(&response));
    }
    Ok(response.accepted)
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// The printed answer: the verdict, the chosen trunk and rule, then one
/// line per trunk or rule passed over with its reason.
pub fn render(response: &ExplainResponse) -> String {
    let mut out = String::new();
    let verdict = if response.accepted {
        "ACCEPTED"
    } else {
        "REFUSED"
    };
    out.push_str(&format!("{verdict}: {}\n", response.verdict.trim()));
    if let Some(trunk) = &response.trunk {
        let how = match trunk.match_kind.as_deref() {
            Some("specific") => "lists the called number".to_owned(),
            Some("default") => "wildcard: no numbers".to_owned(),
            Some("unmatched") => {
                "no trunk matched; let through by allow_unmatched_calls".to_owned()
            }
            Some("none") | None => String::new(),
            Some(other) => other.to_owned(),
        };
        match non_empty(&trunk.id) {
            Some(id) => {
                out.push_str(&format!("trunk: {id}"));
                let mut notes = Vec::new();
                if !how.is_empty() {
                    notes.push(how);
                }
                if trunk.digest_auth {
                    notes.push("digest auth required".to_owned());
                }
                if !notes.is_empty() {
                    out.push_str(&format!(" ({})", notes.join("; ")));
                }
                out.push('\n');
            }
            None if !how.is_empty() => out.push_str(&format!("trunk: none ({how})\n")),
            None => out.push_str("trunk: none\n"),
        }
        if let Some(error) = non_empty(&trunk.error) {
            out.push_str(&format!("  refused: {error}\n"));
        }
        push_passed_over(&mut out, &trunk.passed_over);
    }
    if let Some(dispatch) = &response.dispatch {
        match non_empty(&dispatch.rule_id) {
            Some(rule) if dispatch.request_pin => {
                out.push_str(&format!("rule: {rule} (asks the caller for a PIN first)\n"))
            }
            Some(rule) => {
                out.push_str(&format!("rule: {rule}"));
                let mut parts = Vec::new();
                if let Some(room) = non_empty(&dispatch.room_name) {
                    parts.push(format!("room {room:?}"));
                }
                if let Some(identity) = non_empty(&dispatch.participant_identity) {
                    parts.push(format!("identity {identity:?}"));
                }
                if let Some(name) = non_empty(&dispatch.participant_name) {
                    parts.push(format!("name {name:?}"));
                }
                if !parts.is_empty() {
                    out.push_str(&format!(" -> {}", parts.join(", ")));
                }
                out.push('\n');
            }
            None => out.push_str("rule: none\n"),
        }
        if let Some(error) = non_empty(&dispatch.error) {
            out.push_str(&format!("  refused: {error}\n"));
        }
        push_passed_over(&mut out, &dispatch.passed_over);
    }
    out
}

fn push_passed_over(out: &mut String, items: &[PassedOver]) {
    for item in items {
        let kind = match item.kind.as_str() {
            "dispatch_rule" => "rule",
            other => other,
        };
        out.push_str(&format!("  passed over {kind} {}", item.id));
        if let Some(name) = non_empty(&item.name) {
            out.push_str(&format!(" ({name})"));
        }
        out.push_str(&format!(": {}\n", item.reason));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Harness {
        #[command(flatten)]
        args: ExplainArgs,
    }

    fn parse(argv: &[&str]) -> Result<ExplainArgs, clap::Error> {
        Harness::try_parse_from(std::iter::once("explain").chain(argv.iter().copied()))
            .map(|h| h.args)
    }

    #[test]
    fn request_carries_every_contract_field() {
        let args = parse(&[
            "--from",
            "+15550100",
            "--to",
            "+15550200",
            "--source-ip",
            "192.0.2.7",
            "--from-host",
            "carrier.example",
            "--request-uri-user",
            "+15550200",
            "--pin",
            "1234",
        ])
        .unwrap();
        let json = serde_json::to_value(ExplainRequest::from(&args)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "from": "+15550100", "to": "+15550200", "source_ip": "192.0.2.7",
                "from_host": "carrier.example", "request_uri_user": "+15550200",
                "pin": "1234", "no_pin": false
            })
        );
        let args = parse(&["--from", "a", "--to", "b", "--source-ip", "::1", "--no-pin"]).unwrap();
        let json = serde_json::to_value(ExplainRequest::from(&args)).unwrap();
        assert_eq!(json["pin"], serde_json::Value::Null);
        assert_eq!(json["no_pin"], true);
        assert_eq!(json["source_ip"], "::1");
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(parse(&["--from", "a", "--to", "b", "--source-ip", "not-an-ip"]).is_err());
        assert!(
            parse(&["--from", "a", "--to", "b"]).is_err(),
            "source IP is required"
        );
        let both = parse(&[
            "--from",
            "a",
            "--to",
            "b",
            "--source-ip",
            "1.2.3.4",
            "--pin",
            "1",
            "--no-pin",
        ]);
        assert!(both.is_err(), "--pin and --no-pin exclude each other");
    }

    #[test]
    fn accepted_call_prints_trunk_rule_and_reasons() {
        let response: ExplainResponse = serde_json::from_str(
            r#"{
              "verdict": "accepted: trunk ST_a, rule SDR_b, room call-+1555",
              "accepted": true,
              "trunk": {"id": "ST_a", "match": "specific", "digest_auth": true, "error": null,
                "passed_over": [{"kind": "trunk", "id": "ST_w", "name": "Wildcard",
                  "reason": "wildcard trunk, but trunk ST_a lists the called number"}]},
              "dispatch": {"rule_id": "SDR_b", "request_pin": false, "room_name": "call-+1555",
                "participant_identity": "sip_+1555", "participant_name": "Phone +1555", "error": null,
                "passed_over": [{"kind": "dispatch_rule", "id": "SDR_c", "name": "",
                  "reason": "trunk ST_a not in the rule's trunk_ids"}]}
            }"#,
        )
        .unwrap();
        assert_eq!(
            render(&response),
            "ACCEPTED: accepted: trunk ST_a, rule SDR_b, room call-+1555\n\
             trunk: ST_a (lists the called number; digest auth required)\n\
             \x20 passed over trunk ST_w (Wildcard): wildcard trunk, but trunk ST_a lists the called number\n\
             rule: SDR_b -> room \"call-+1555\", identity \"sip_+1555\", name \"Phone +1555\"\n\
             \x20 passed over rule SDR_c: trunk ST_a not in the rule's trunk_ids\n"
        );
    }

    #[test]
    fn refused_call_prints_the_error_and_no_rule() {
        let response: ExplainResponse = serde_json::from_str(
            r#"{"verdict": "refused: no trunk", "accepted": false,
              "trunk": {"id": null, "match": "none", "digest_auth": false,
                "error": "no trunk for +1999",
                "passed_over": [{"kind": "trunk", "id": "ST_a", "name": "Carrier",
                  "reason": "source 203.0.113.9 (From host \"\") not in allowed_addresses"}]},
              "dispatch": null}"#,
        )
        .unwrap();
        assert_eq!(
            render(&response),
            "REFUSED: refused: no trunk\n\
             trunk: none\n\
             \x20 refused: no trunk for +1999\n\
             \x20 passed over trunk ST_a (Carrier): source 203.0.113.9 (From host \"\") not in allowed_addresses\n"
        );
    }

    #[test]
    fn pin_prompt_is_named() {
        let response: ExplainResponse = serde_json::from_str(
            r#"{"verdict": "PIN", "accepted": true,
              "trunk": {"id": "ST_a", "match": "default", "digest_auth": false, "passed_over": []},
              "dispatch": {"rule_id": "SDR_p", "request_pin": true, "passed_over": []}}"#,
        )
        .unwrap();
        let text = render(&response);
        assert!(
            text.contains("trunk: ST_a (wildcard: no numbers)\n"),
            "{text}"
        );
        assert!(
            text.contains("rule: SDR_p (asks the caller for a PIN first)\n"),
            "{text}"
        );
    }
}
