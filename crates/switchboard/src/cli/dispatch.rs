//! `sip dispatch ...`: dispatch rules from LiveKit's JSON files
//! (`{"dispatch_rule": {...}}` or the legacy request fields) and `lk`'s flags.

#![allow(deprecated)] // the legacy request fields and media_encryption are still on the wire

use livekit_protocol::{
    sip_dispatch_rule::Rule, update_sip_dispatch_rule_request, CreateSipDispatchRuleRequest,
    DeleteSipDispatchRuleRequest, ListSipDispatchRuleRequest, ListSipDispatchRuleResponse,
    SipDispatchRule, SipDispatchRuleCallee, SipDispatchRuleDirect, SipDispatchRuleIndividual,
    SipDispatchRuleInfo, SipDispatchRuleUpdate, UpdateSipDispatchRuleRequest,
};

use super::client::Client;
use super::input::{flag_list, parse_strict, read_source, top_level_keys};
use super::table;
use super::trunks::{
    header_maps, list_update, print_result, read_update_file, refuse_fields, set_list, update_id,
    DeleteArgs, UpdateFile,
};
use super::CliError;

/// `sip dispatch ...`.
#[derive(Debug, clap::Subcommand)]
pub enum DispatchCommand {
    /// List dispatch rules.
    List(RuleListArgs),
    /// Create a dispatch rule from a JSON file ({"dispatch_rule": {...}}) and/or flags.
    Create(Box<RuleCreateArgs>),
    /// Change a dispatch rule: the fields a JSON file or the flags name
    /// (trunk IDs by ListUpdate: set, add, remove), or --replace it whole.
    Update(Box<RuleUpdateArgs>),
    /// Delete dispatch rules.
    Delete(DeleteArgs),
}

/// `sip dispatch list` arguments.
#[derive(Debug, clap::Args)]
pub struct RuleListArgs {
    /// Only these rule IDs (comma-separated or repeated).
    #[arg(long = "id")]
    ids: Vec<String>,
    /// Only rules for one of these trunks (rules for any trunk included).
    #[arg(long)]
    trunks: Vec<String>,
    /// Print the server's JSON answer instead of a table.
    #[arg(long)]
    json: bool,
}

/// The rule kind flags `create` and `update` share, as `lk` has them.
#[derive(Debug, Default, Clone, clap::Args)]
#[group(id = "rule_kind", multiple = false)]
pub struct RuleKindArgs {
    /// Put every call in this room.
    #[arg(long)]
    direct: Option<String>,
    /// A room per caller, named with this prefix.
    #[arg(long, visible_alias = "individual")]
    caller: Option<String>,
    /// A room per called number, named with this prefix.
    #[arg(long)]
    callee: Option<String>,
}

/// `sip dispatch create` arguments.
#[derive(Debug, Default, clap::Args)]
pub struct RuleCreateArgs {
    /// CreateSIPDispatchRuleRequest as JSON ({"dispatch_rule": {...}}, the
    /// legacy top-level fields, or the rule alone): a file, `-` for standard
    /// input, or the JSON itself.
    file: Option<String>,
    /// Rule name.
    #[arg(long)]
    name: Option<String>,
    /// Trunk IDs the rule is for (comma-separated; none: every trunk).
    #[arg(long)]
    trunks: Option<Vec<String>>,
    #[command(flatten)]
    kind: RuleKindArgs,
    /// Add a random suffix to --callee room names.
    #[arg(long, requires = "callee")]
    randomize: bool,
    /// PIN callers must enter.
    #[arg(long)]
    pin: Option<String>,
    /// Print the server's JSON answer.
    #[arg(long)]
    json: bool,
}

/// `sip dispatch update` arguments.
#[derive(Debug, Default, clap::Args)]
pub struct RuleUpdateArgs {
    /// The rule as JSON (fields to change, or with --replace the whole
    /// rule), or an UpdateSIPDispatchRuleRequest ({"update": {...}} or
    /// {"replace": {...}}): a file, `-` for standard input, or the JSON itself.
    file: Option<String>,
    /// ID of the rule (else sip_dispatch_rule_id from the file).
    #[arg(long)]
    id: Option<String>,
    /// Replace the whole rule with the file's (fields it leaves out are cleared).
    #[arg(long, requires = "file")]
    replace: bool,
    /// New name.
    #[arg(long)]
    name: Option<String>,
    /// New metadata.
    #[arg(long)]
    metadata: Option<String>,
    /// Set the trunk IDs ("" clears the list: every trunk).
    #[arg(long)]
    trunks: Option<Vec<String>>,
    /// Add trunk IDs.
    #[arg(long)]
    add_trunks: Vec<String>,
    /// Remove trunk IDs.
    #[arg(long)]
    remove_trunks: Vec<String>,
    #[command(flatten)]
    kind: RuleKindArgs,
    /// Add a random suffix to --callee room names.
    #[arg(long, requires = "callee")]
    randomize: bool,
    /// PIN of the new rule (with --direct, --caller or --callee).
    #[arg(long)]
    pin: Option<String>,
    /// Print the server's JSON answer.
    #[arg(long)]
    json: bool,
}

/// Runs `sip dispatch ...`.
pub fn run(client: &Client, command: DispatchCommand) -> Result<(), CliError> {
    match command {
        DispatchCommand::List(args) => {
            let request = ListSipDispatchRuleRequest {
                dispatch_rule_ids: flag_list(&args.ids),
                trunk_ids: flag_list(&args.trunks),
                ..Default::default()
            };
            let (response, raw): (ListSipDispatchRuleResponse, _) =
                client.sip_admin("ListSIPDispatchRule", &request)?;
            print_result(args.json, &raw, || rule_table(&response.items));
        }
        DispatchCommand::Create(args) => {
            let request = create_request(&args)?;
            let (rule, raw): (SipDispatchRuleInfo, _) =
                client.sip_admin("CreateSIPDispatchRule", &request)?;
            print_result(args.json, &raw, || rule_id_line(&rule.sip_dispatch_rule_id));
        }
        DispatchCommand::Update(args) => {
            let request = update_request(&args)?;
            let (rule, raw): (SipDispatchRuleInfo, _) =
                client.sip_admin("UpdateSIPDispatchRule", &request)?;
            print_result(args.json, &raw, || rule_id_line(&rule.sip_dispatch_rule_id));
        }
        DispatchCommand::Delete(args) => {
            for id in args.all_ids() {
                let request = DeleteSipDispatchRuleRequest {
                    sip_dispatch_rule_id: id.clone(),
                };
                let (deleted, raw): (SipDispatchRuleInfo, _) =
                    client.sip_admin("DeleteSIPDispatchRule", &request)?;
                let shown = if deleted.sip_dispatch_rule_id.is_empty() {
                    id
                } else {
                    deleted.sip_dispatch_rule_id
                };
                print_result(args.json, &raw, || {
                    format!("SIP Dispatch Rule [{shown}] deleted\n")
                });
            }
        }
    }
    Ok(())
}

/// What `lk` prints after a create or update.
pub fn rule_id_line(id: &str) -> String {
    format!("SIPDispatchRuleID: {id}\n")
}

/// The rule the kind flags describe, with `pin`; `None` without a kind flag.
fn rule_from_flags(
    kind: &RuleKindArgs,
    randomize: bool,
    pin: Option<&str>,
) -> Option<SipDispatchRule> {
    let pin = pin.unwrap_or_default().to_owned();
    let rule = if let Some(room) = &kind.direct {
        Rule::DispatchRuleDirect(SipDispatchRuleDirect {
            room_name: room.clone(),
            pin,
        })
    } else if let Some(prefix) = &kind.caller {
        Rule::DispatchRuleIndividual(SipDispatchRuleIndividual {
            room_prefix: prefix.clone(),
            pin,
            ..Default::default()
        })
    } else if let Some(prefix) = &kind.callee {
        Rule::DispatchRuleCallee(SipDispatchRuleCallee {
            room_prefix: prefix.clone(),
            pin,
            randomize,
        })
    } else {
        return None;
    };
    Some(SipDispatchRule { rule: Some(rule) })
}

fn set_pin(rule: &mut SipDispatchRule, pin: &str) {
    match &mut rule.rule {
        Some(Rule::DispatchRuleDirect(r)) => r.pin = pin.to_owned(),
        Some(Rule::DispatchRuleIndividual(r)) => r.pin = pin.to_owned(),
        Some(Rule::DispatchRuleCallee(r)) => r.pin = pin.to_owned(),
        None => {}
    }
}

/// The CreateSIPDispatchRule request: the file, then the flags on top.
pub fn create_request(args: &RuleCreateArgs) -> Result<CreateSipDispatchRuleRequest, CliError> {
    let mut request = match args.file.as_deref() {
        None => CreateSipDispatchRuleRequest::default(),
        Some(arg) => {
            let text = read_source(arg)?;
            let keys = top_level_keys(&text, arg)?;
            if keys.iter().any(|k| k == "dispatch_rule") {
                let request: CreateSipDispatchRuleRequest = parse_strict(&text, arg)?;
                // The server reads only dispatch_rule when it is there.
                let legacy: Vec<String> =
                    keys.into_iter().filter(|k| k != "dispatch_rule").collect();
                if !legacy.is_empty() {
                    return Err(CliError::Usage(format!(
                        "{arg}: {} next to dispatch_rule would be ignored; move them into dispatch_rule",
                        legacy.join(", ")
                    )));
                }
                request
            } else {
                // The legacy request fields are all fields of the rule too,
                // so one reader takes both shapes.
                let rule: SipDispatchRuleInfo = parse_strict(&text, arg)?;
                CreateSipDispatchRuleRequest {
                    dispatch_rule: Some(rule),
                    ..Default::default()
                }
            }
        }
    };
    let rule = request.dispatch_rule.get_or_insert_with(Default::default);
    if let Some(name) = &args.name {
        rule.name = name.clone();
    }
    if let Some(trunks) = &args.trunks {
        rule.trunk_ids = flag_list(trunks);
    }
    if let Some(from_flags) = rule_from_flags(&args.kind, args.randomize, args.pin.as_deref()) {
        if rule.rule.as_ref().is_some_and(|r| r.rule.is_some()) {
            return Err(CliError::Usage(
                "the file already has a rule: only one dispatch rule type is allowed".into(),
            ));
        }
        rule.rule = Some(from_flags);
    } else if let Some(pin) = &args.pin {
        match rule.rule.as_mut().filter(|r| r.rule.is_some()) {
            Some(existing) => set_pin(existing, pin),
            None => {
                return Err(CliError::Usage(
                    "--pin needs a rule: --direct, --caller or --callee, or one in the file".into(),
                ))
            }
        }
    }
    Ok(request)
}

/// The UpdateSIPDispatchRule request from a file or the flags.
pub fn update_request(args: &RuleUpdateArgs) -> Result<UpdateSipDispatchRuleRequest, CliError> {
    use update_sip_dispatch_rule_request::Action;
    let rule_flags = rule_from_flags(&args.kind, args.randomize, args.pin.as_deref());
    if args.pin.is_some() && rule_flags.is_none() {
        return Err(CliError::Usage(
            "--pin goes with the new rule: add --direct, --caller or --callee".into(),
        ));
    }
    if let Some(file) = &args.file {
        let flags_given = args.name.is_some()
            || args.metadata.is_some()
            || args.trunks.is_some()
            || !args.add_trunks.is_empty()
            || !args.remove_trunks.is_empty()
            || rule_flags.is_some();
        if flags_given {
            return Err(CliError::Usage(
                "give the changes in the file or as flags, not both".into(),
            ));
        }
        return match read_update_file::<UpdateSipDispatchRuleRequest, SipDispatchRuleInfo>(file)? {
            UpdateFile::Request(mut request) => {
                if args.replace {
                    return Err(CliError::Usage(
                        "--replace is for a rule file; this file is an update request".into(),
                    ));
                }
                request.sip_dispatch_rule_id =
                    update_id(args.id.as_deref(), &request.sip_dispatch_rule_id)?;
                Ok(request)
            }
            UpdateFile::Info(mut rule, keys) => {
                let id = update_id(args.id.as_deref(), &rule.sip_dispatch_rule_id)?;
                rule.sip_dispatch_rule_id.clear();
                let action = if args.replace {
                    Action::Replace(rule)
                } else {
                    Action::Update(fields_update(&rule, &keys)?)
                };
                Ok(UpdateSipDispatchRuleRequest {
                    sip_dispatch_rule_id: id,
                    action: Some(action),
                })
            }
        };
    }
    let id = update_id(args.id.as_deref(), "")?;
    let update = SipDispatchRuleUpdate {
        trunk_ids: list_update(
            "trunks",
            args.trunks.as_deref(),
            &args.add_trunks,
            &args.remove_trunks,
        )?,
        rule: rule_flags,
        name: args.name.clone(),
        metadata: args.metadata.clone(),
        ..Default::default()
    };
    if update == SipDispatchRuleUpdate::default() {
        return Err(CliError::Usage(
            "nothing to update: give a JSON file or flags such as --name or --add-trunks".into(),
        ));
    }
    Ok(UpdateSipDispatchRuleRequest {
        sip_dispatch_rule_id: id,
        action: Some(Action::Update(update)),
    })
}

/// A field update carrying exactly the fields the file set.
pub fn fields_update(
    rule: &SipDispatchRuleInfo,
    keys: &[String],
) -> Result<SipDispatchRuleUpdate, CliError> {
    let mut update = SipDispatchRuleUpdate::default();
    let mut refused = Vec::new();
    for key in keys {
        match key.as_str() {
            "sip_dispatch_rule_id" => {}
            "trunk_ids" => update.trunk_ids = Some(set_list(&rule.trunk_ids)),
            "rule" => update.rule = rule.rule.clone(),
            "name" => update.name = Some(rule.name.clone()),
            "metadata" => update.metadata = Some(rule.metadata.clone()),
            // A diff: keys with an empty value are removed.
            "attributes" => update.attributes = rule.attributes.clone(),
            "media_encryption" => update.media_encryption = Some(rule.media_encryption),
            "media" => update.media = rule.media.clone(),
            other => refused.push(other.to_owned()),
        }
    }
    refuse_fields("a dispatch rule", &refused)?;
    Ok(update)
}

/// Type, room name pattern and PIN of a rule, for the table.
pub fn describe_rule(rule: Option<&SipDispatchRule>) -> (String, String, String) {
    let prefixed = |prefix: &str, part: &str| {
        if prefix.is_empty() {
            part.to_owned()
        } else {
            format!("{prefix}_{part}")
        }
    };
    match rule.and_then(|r| r.rule.as_ref()) {
        Some(Rule::DispatchRuleDirect(r)) => ("Direct".into(), r.room_name.clone(), r.pin.clone()),
        Some(Rule::DispatchRuleIndividual(r)) => {
            let mut room = prefixed(&r.room_prefix, "<caller>");
            if !r.no_randomness {
                room.push_str("_<random>");
            }
            ("Individual (Caller)".into(), room, r.pin.clone())
        }
        Some(Rule::DispatchRuleCallee(r)) => {
            let mut room = prefixed(&r.room_prefix, "<callee>");
            if r.randomize {
                room.push_str("_<random>");
            }
            ("Callee".into(), room, r.pin.clone())
        }
        None => (String::new(), String::new(), String::new()),
    }
}

/// The `sip dispatch list` table.
pub fn rule_table(items: &[SipDispatchRuleInfo]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|r| {
            let (kind, room, pin) = describe_rule(r.rule.as_ref());
            let trunks = if r.trunk_ids.is_empty() {
                "<any>".to_owned()
            } else {
                r.trunk_ids.join(",")
            };
            let agents: Vec<&str> = r
                .room_config
                .as_ref()
                .map(|c| c.agents.iter().map(|a| a.agent_name.as_str()).collect())
                .unwrap_or_default();
            vec![
                r.sip_dispatch_rule_id.clone(),
                r.name.clone(),
                trunks,
                kind,
                room,
                pin,
                r.inbound_numbers.join(","),
                r.numbers.join(","),
                header_maps(&[&r.attributes]),
                agents.join(","),
            ]
        })
        .collect();
    table::render(
        &[
            "SipDispatchRuleID",
            "Name",
            "SipTrunks",
            "Type",
            "RoomName",
            "Pin",
            "InboundNumbers",
            "Numbers",
            "Attributes",
            "Agents",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests;
