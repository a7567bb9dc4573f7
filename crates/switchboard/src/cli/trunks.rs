//! `sip inbound ...` and `sip outbound ...`: trunks from LiveKit's JSON files
//! (`{"trunk": {...}}`) and `lk`'s flags.

#![allow(deprecated)] // media_encryption is deprecated in the proto but still on the wire

use std::collections::HashMap;

use livekit_protocol::{
    update_sip_inbound_trunk_request, update_sip_outbound_trunk_request,
    CreateSipInboundTrunkRequest, CreateSipOutboundTrunkRequest, DeleteSipTrunkRequest,
    ListSipInboundTrunkRequest, ListSipInboundTrunkResponse, ListSipOutboundTrunkRequest,
    ListSipOutboundTrunkResponse, ListUpdate, SipInboundTrunkInfo, SipInboundTrunkUpdate,
    SipMediaConfig, SipMediaEncryption, SipOutboundTrunkInfo, SipOutboundTrunkUpdate, SipTransport,
    SipTrunkInfo, UpdateSipInboundTrunkRequest, UpdateSipOutboundTrunkRequest,
};

use super::client::Client;
use super::input::{flag_list, parse_strict, read_source, top_level_keys};
use super::table;
use super::CliError;

/// `sip inbound ...`.
#[derive(Debug, clap::Subcommand)]
pub enum InboundCommand {
    /// List inbound trunks.
    List(TrunkListArgs),
    /// Create an inbound trunk from a JSON file ({"trunk": {...}}) and/or flags.
    Create(Box<InboundCreateArgs>),
    /// Change an inbound trunk: the fields a JSON file or the flags name
    /// (lists by ListUpdate: set, add, remove), or --replace it whole.
    Update(Box<InboundUpdateArgs>),
    /// Delete inbound trunks.
    Delete(DeleteArgs),
}

/// `sip outbound ...`.
#[derive(Debug, clap::Subcommand)]
pub enum OutboundCommand {
    /// List outbound trunks.
    List(TrunkListArgs),
    /// Create an outbound trunk from a JSON file ({"trunk": {...}}) and/or flags.
    Create(Box<OutboundCreateArgs>),
    /// Change an outbound trunk: the fields a JSON file or the flags name
    /// (numbers by ListUpdate: set, add, remove), or --replace it whole.
    Update(Box<OutboundUpdateArgs>),
    /// Delete outbound trunks.
    Delete(DeleteArgs),
}

/// `list` arguments.
#[derive(Debug, clap::Args)]
pub struct TrunkListArgs {
    /// Only these trunk IDs (comma-separated or repeated).
    #[arg(long = "id")]
    ids: Vec<String>,
    /// Only trunks for one of these numbers (wildcard trunks included).
    #[arg(long)]
    numbers: Vec<String>,
    /// Print the server's JSON answer instead of a table.
    #[arg(long)]
    json: bool,
}

/// `delete` arguments.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// IDs to delete.
    #[arg(required_unless_present = "id_flag")]
    ids: Vec<String>,
    /// ID to delete (as `lk`'s older commands take it).
    #[arg(long = "id")]
    id_flag: Vec<String>,
    /// Print the server's JSON answers.
    #[arg(long)]
    pub json: bool,
}

impl DeleteArgs {
    /// The IDs given as arguments and with --id.
    pub fn all_ids(&self) -> Vec<String> {
        flag_list(&self.ids)
            .into_iter()
            .chain(flag_list(&self.id_flag))
            .collect()
    }
}

/// Flags `create` shares for inbound trunks.
#[derive(Debug, Default, clap::Args)]
pub struct InboundCreateArgs {
    /// CreateSIPInboundTrunkRequest as JSON ({"trunk": {...}}, or the trunk
    /// alone): a file, `-` for standard input, or the JSON itself.
    file: Option<String>,
    /// Trunk name.
    #[arg(long)]
    name: Option<String>,
    /// Called numbers the trunk accepts (comma-separated; "" for any).
    #[arg(long)]
    numbers: Option<Vec<String>>,
    /// Source IPs, CIDR ranges or host names allowed to use the trunk.
    #[arg(long)]
    allowed_addresses: Option<Vec<String>>,
    /// Caller numbers allowed to use the trunk.
    #[arg(long)]
    allowed_numbers: Option<Vec<String>>,
    /// Digest auth user name callers must present.
    #[arg(long)]
    auth_user: Option<String>,
    /// Digest auth password callers must present.
    #[arg(long)]
    auth_pass: Option<String>,
    /// Media encryption: disable, allow or require.
    #[arg(long, value_parser = parse_media_encryption)]
    media_enc: Option<i32>,
    /// Print the server's JSON answer.
    #[arg(long)]
    json: bool,
}

/// `sip inbound update` arguments.
#[derive(Debug, Default, clap::Args)]
pub struct InboundUpdateArgs {
    /// The trunk as JSON (fields to change, or with --replace the whole
    /// trunk), or an UpdateSIPInboundTrunkRequest ({"update": {...}} or
    /// {"replace": {...}}): a file, `-` for standard input, or the JSON itself.
    file: Option<String>,
    /// ID of the trunk (else sip_trunk_id from the file).
    #[arg(long)]
    id: Option<String>,
    /// Replace the whole trunk with the file's (fields it leaves out are cleared).
    #[arg(long, requires = "file")]
    replace: bool,
    /// New name.
    #[arg(long)]
    name: Option<String>,
    /// New metadata.
    #[arg(long)]
    metadata: Option<String>,
    /// Set the called numbers ("" clears the list: any number).
    #[arg(long)]
    numbers: Option<Vec<String>>,
    /// Add called numbers.
    #[arg(long)]
    add_numbers: Vec<String>,
    /// Remove called numbers.
    #[arg(long)]
    remove_numbers: Vec<String>,
    /// Set the allowed source addresses ("" clears the list).
    #[arg(long)]
    allowed_addresses: Option<Vec<String>>,
    /// Add allowed source addresses.
    #[arg(long)]
    add_allowed_addresses: Vec<String>,
    /// Remove allowed source addresses.
    #[arg(long)]
    remove_allowed_addresses: Vec<String>,
    /// Set the allowed caller numbers ("" clears the list).
    #[arg(long)]
    allowed_numbers: Option<Vec<String>>,
    /// Add allowed caller numbers.
    #[arg(long)]
    add_allowed_numbers: Vec<String>,
    /// Remove allowed caller numbers.
    #[arg(long)]
    remove_allowed_numbers: Vec<String>,
    /// New digest auth user name ("" removes it).
    #[arg(long)]
    auth_user: Option<String>,
    /// New digest auth password ("" removes it).
    #[arg(long)]
    auth_pass: Option<String>,
    /// New digest realm.
    #[arg(long)]
    auth_realm: Option<String>,
    /// Media encryption: disable, allow or require.
    #[arg(long, value_parser = parse_media_encryption)]
    media_enc: Option<i32>,
    /// Print the server's JSON answer.
    #[arg(long)]
    json: bool,
}

/// `sip outbound create` arguments.
#[derive(Debug, Default, clap::Args)]
pub struct OutboundCreateArgs {
    /// CreateSIPOutboundTrunkRequest as JSON ({"trunk": {...}}, or the trunk
    /// alone): a file, `-` for standard input, or the JSON itself.
    file: Option<String>,
    /// Trunk name.
    #[arg(long)]
    name: Option<String>,
    /// Host or IP (with optional :port) INVITEs go to; no sip: prefix.
    #[arg(long)]
    address: Option<String>,
    /// Transport: auto, udp, tcp or tls.
    #[arg(long, value_parser = parse_transport)]
    transport: Option<i32>,
    /// ISO 3166-1 alpha-2 country the calls terminate in.
    #[arg(long)]
    destination_country: Option<String>,
    /// Numbers calls may come from (comma-separated).
    #[arg(long)]
    numbers: Option<Vec<String>>,
    /// Digest auth user name for the carrier.
    #[arg(long)]
    auth_user: Option<String>,
    /// Digest auth password for the carrier.
    #[arg(long)]
    auth_pass: Option<String>,
    /// Media encryption: disable, allow or require.
    #[arg(long, value_parser = parse_media_encryption)]
    media_enc: Option<i32>,
    /// Print the server's JSON answer.
    #[arg(long)]
    json: bool,
}

/// `sip outbound update` arguments.
#[derive(Debug, Default, clap::Args)]
pub struct OutboundUpdateArgs {
    /// The trunk as JSON (fields to change, or with --replace the whole
    /// trunk), or an UpdateSIPOutboundTrunkRequest ({"update": {...}} or
    /// {"replace": {...}}): a file, `-` for standard input, or the JSON itself.
    file: Option<String>,
    /// ID of the trunk (else sip_trunk_id from the file).
    #[arg(long)]
    id: Option<String>,
    /// Replace the whole trunk with the file's (fields it leaves out are cleared).
    #[arg(long, requires = "file")]
    replace: bool,
    /// New name.
    #[arg(long)]
    name: Option<String>,
    /// New metadata.
    #[arg(long)]
    metadata: Option<String>,
    /// New address.
    #[arg(long)]
    address: Option<String>,
    /// New transport: auto, udp, tcp or tls.
    #[arg(long, value_parser = parse_transport)]
    transport: Option<i32>,
    /// New destination country.
    #[arg(long)]
    destination_country: Option<String>,
    /// Set the numbers ("" clears the list).
    #[arg(long)]
    numbers: Option<Vec<String>>,
    /// Add numbers.
    #[arg(long)]
    add_numbers: Vec<String>,
    /// Remove numbers.
    #[arg(long)]
    remove_numbers: Vec<String>,
    /// New digest auth user name.
    #[arg(long)]
    auth_user: Option<String>,
    /// New digest auth password.
    #[arg(long)]
    auth_pass: Option<String>,
    /// New From host.
    #[arg(long)]
    from_host: Option<String>,
    /// Media encryption: disable, allow or require.
    #[arg(long, value_parser = parse_media_encryption)]
    media_enc: Option<i32>,
    /// Print the server's JSON answer.
    #[arg(long)]
    json: bool,
}

/// Runs `sip inbound ...`.
pub fn run_inbound(client: &Client, command: InboundCommand) -> Result<(), CliError> {
    match command {
        InboundCommand::List(args) => {
            let request = ListSipInboundTrunkRequest {
                trunk_ids: flag_list(&args.ids),
                numbers: flag_list(&args.numbers),
                ..Default::default()
            };
            let (response, raw): (ListSipInboundTrunkResponse, _) =
                client.sip_admin("ListSIPInboundTrunk", &request)?;
            print_result(args.json, &raw, || inbound_table(&response.items));
        }
        InboundCommand::Create(args) => {
            let request = inbound_create_request(&args)?;
            let (trunk, raw): (SipInboundTrunkInfo, _) =
                client.sip_admin("CreateSIPInboundTrunk", &request)?;
            print_result(args.json, &raw, || trunk_id_line(&trunk.sip_trunk_id));
        }
        InboundCommand::Update(args) => {
            let request = inbound_update_request(&args)?;
            let (trunk, raw): (SipInboundTrunkInfo, _) =
                client.sip_admin("UpdateSIPInboundTrunk", &request)?;
            print_result(args.json, &raw, || trunk_id_line(&trunk.sip_trunk_id));
        }
        InboundCommand::Delete(args) => delete_trunks(client, &args)?,
    }
    Ok(())
}

/// Runs `sip outbound ...`.
pub fn run_outbound(client: &Client, command: OutboundCommand) -> Result<(), CliError> {
    match command {
        OutboundCommand::List(args) => {
            let request = ListSipOutboundTrunkRequest {
                trunk_ids: flag_list(&args.ids),
                numbers: flag_list(&args.numbers),
                ..Default::default()
            };
            let (response, raw): (ListSipOutboundTrunkResponse, _) =
                client.sip_admin("ListSIPOutboundTrunk", &request)?;
            print_result(args.json, &raw, || outbound_table(&response.items));
        }
        OutboundCommand::Create(args) => {
            let request = outbound_create_request(&args)?;
            let (trunk, raw): (SipOutboundTrunkInfo, _) =
                client.sip_admin("CreateSIPOutboundTrunk", &request)?;
            print_result(args.json, &raw, || trunk_id_line(&trunk.sip_trunk_id));
        }
        OutboundCommand::Update(args) => {
            let request = outbound_update_request(&args)?;
            let (trunk, raw): (SipOutboundTrunkInfo, _) =
                client.sip_admin("UpdateSIPOutboundTrunk", &request)?;
            print_result(args.json, &raw, || trunk_id_line(&trunk.sip_trunk_id));
        }
        OutboundCommand::Delete(args) => delete_trunks(client, &args)?,
    }
    Ok(())
}

/// Prints the raw JSON answer with --json, else the human form.
pub fn print_result(json: bool, raw: &str, human: impl FnOnce() -> String) {
    if json {
        println!("{}", raw.trim_end());
    } else {
        print!("{}", human());
    }
}

/// What `lk` prints after a create or update.
pub fn trunk_id_line(id: &str) -> String {
    format!("SIPTrunkID: {id}\n")
}

fn delete_trunks(client: &Client, args: &DeleteArgs) -> Result<(), CliError> {
    for id in args.all_ids() {
        let request = DeleteSipTrunkRequest {
            sip_trunk_id: id.clone(),
        };
        let (deleted, raw): (SipTrunkInfo, _) = client.sip_admin("DeleteSIPTrunk", &request)?;
        // LiveKit answers with only the ID filled in, or nothing at all.
        let shown = if deleted.sip_trunk_id.is_empty() {
            id
        } else {
            deleted.sip_trunk_id
        };
        print_result(args.json, &raw, || format!("SIP Trunk [{shown}] deleted\n"));
    }
    Ok(())
}

/// Reads a create file: the request (`{"trunk": {...}}`) or the trunk alone.
fn read_create_file<Req, Info>(
    arg: Option<&str>,
    wrap: impl FnOnce(Info) -> Req,
) -> Result<Option<Req>, CliError>
where
    Req: serde::de::DeserializeOwned,
    Info: serde::de::DeserializeOwned,
{
    let Some(arg) = arg else { return Ok(None) };
    let text = read_source(arg)?;
    let keys = top_level_keys(&text, arg)?;
    if keys.iter().any(|k| k == "trunk") {
        Ok(Some(parse_strict(&text, arg)?))
    } else {
        Ok(Some(wrap(parse_strict(&text, arg)?)))
    }
}

/// The CreateSIPInboundTrunk request: the file, then the flags on top.
pub fn inbound_create_request(
    args: &InboundCreateArgs,
) -> Result<CreateSipInboundTrunkRequest, CliError> {
    let mut request = read_create_file(args.file.as_deref(), |trunk| {
        CreateSipInboundTrunkRequest { trunk: Some(trunk) }
    })?
    .unwrap_or_default();
    let trunk = request.trunk.get_or_insert_with(Default::default);
    if let Some(name) = &args.name {
        trunk.name = name.clone();
    }
    if let Some(numbers) = &args.numbers {
        trunk.numbers = flag_list(numbers);
    }
    if let Some(list) = &args.allowed_addresses {
        trunk.allowed_addresses = flag_list(list);
    }
    if let Some(list) = &args.allowed_numbers {
        trunk.allowed_numbers = flag_list(list);
    }
    if let Some(user) = &args.auth_user {
        trunk.auth_username = user.clone();
    }
    if let Some(pass) = &args.auth_pass {
        trunk.auth_password = pass.clone();
    }
    if let Some(enc) = args.media_enc {
        trunk.media_encryption = enc;
    }
    Ok(request)
}

/// The CreateSIPOutboundTrunk request: the file, then the flags on top.
pub fn outbound_create_request(
    args: &OutboundCreateArgs,
) -> Result<CreateSipOutboundTrunkRequest, CliError> {
    let mut request = read_create_file(args.file.as_deref(), |trunk| {
        CreateSipOutboundTrunkRequest { trunk: Some(trunk) }
    })?
    .unwrap_or_default();
    let trunk = request.trunk.get_or_insert_with(Default::default);
    if let Some(name) = &args.name {
        trunk.name = name.clone();
    }
    if let Some(address) = &args.address {
        trunk.address = address.clone();
    }
    if let Some(transport) = args.transport {
        trunk.transport = transport;
    }
    if let Some(country) = &args.destination_country {
        trunk.destination_country = country.clone();
    }
    if let Some(numbers) = &args.numbers {
        trunk.numbers = flag_list(numbers);
    }
    if let Some(user) = &args.auth_user {
        trunk.auth_username = user.clone();
    }
    if let Some(pass) = &args.auth_pass {
        trunk.auth_password = pass.clone();
    }
    if let Some(enc) = args.media_enc {
        trunk.media_encryption = enc;
    }
    Ok(request)
}

/// A ListUpdate from `--X`, `--add-X` and `--remove-X`: `--X` replaces the
/// list (`--X ""` clears it) and cannot be mixed with the other two.
pub fn list_update(
    flag: &str,
    set: Option<&[String]>,
    add: &[String],
    remove: &[String],
) -> Result<Option<ListUpdate>, CliError> {
    let add = flag_list(add);
    let remove = flag_list(remove);
    match set {
        Some(_) if !add.is_empty() || !remove.is_empty() => Err(CliError::Usage(format!(
            "--{flag} replaces the list; it cannot be combined with --add-{flag} or --remove-{flag}"
        ))),
        Some(values) => Ok(Some(set_list(&flag_list(values)))),
        None if add.is_empty() && remove.is_empty() => Ok(None),
        None => Ok(Some(ListUpdate {
            add,
            remove,
            ..Default::default()
        })),
    }
}

/// The ListUpdate that makes a list equal to `values`: `set`, or `clear`
/// for an empty list (an empty `set` means "no change" on the wire).
pub fn set_list(values: &[String]) -> ListUpdate {
    if values.is_empty() {
        ListUpdate {
            clear: true,
            ..Default::default()
        }
    } else {
        ListUpdate {
            set: values.to_vec(),
            ..Default::default()
        }
    }
}

/// How an `update` file reads.
pub enum UpdateFile<Request, Info> {
    /// A full Update*Request ({"update": {...}} or {"replace": {...}}).
    Request(Request),
    /// A trunk or rule, and the snake_case names of the keys it set.
    Info(Info, Vec<String>),
}

/// Reads an update file: a request when it has an `update` or `replace`
/// key, else the object itself.
pub fn read_update_file<Request, Info>(arg: &str) -> Result<UpdateFile<Request, Info>, CliError>
where
    Request: serde::de::DeserializeOwned,
    Info: serde::de::DeserializeOwned,
{
    let text = read_source(arg)?;
    let keys = top_level_keys(&text, arg)?;
    if keys.iter().any(|k| k == "update" || k == "replace") {
        Ok(UpdateFile::Request(parse_strict(&text, arg)?))
    } else {
        Ok(UpdateFile::Info(parse_strict(&text, arg)?, keys))
    }
}

/// The ID to update: `--id`, else the one in the file.
pub fn update_id(flag: Option<&str>, from_file: &str) -> Result<String, CliError> {
    match flag.filter(|id| !id.is_empty()) {
        Some(id) => Ok(id.to_owned()),
        None if !from_file.is_empty() => Ok(from_file.to_owned()),
        None => Err(CliError::Usage(
            "no ID: pass --id or set it in the JSON".into(),
        )),
    }
}

/// Refuses fields a field update cannot change; names --replace instead.
pub fn refuse_fields(what: &str, fields: &[String]) -> Result<(), CliError> {
    if fields.is_empty() {
        return Ok(());
    }
    Err(CliError::Usage(format!(
        "{} cannot be changed by a field update of {what}; use --replace to replace it whole",
        fields.join(", ")
    )))
}

/// The UpdateSIPInboundTrunk request from a file or the flags.
pub fn inbound_update_request(
    args: &InboundUpdateArgs,
) -> Result<UpdateSipInboundTrunkRequest, CliError> {
    use update_sip_inbound_trunk_request::Action;
    if let Some(file) = &args.file {
        if inbound_update_flags_given(args) {
            return Err(CliError::Usage(
                "give the changes in the file or as flags, not both".into(),
            ));
        }
        return match read_update_file::<UpdateSipInboundTrunkRequest, SipInboundTrunkInfo>(file)? {
            UpdateFile::Request(mut request) => {
                if args.replace {
                    return Err(CliError::Usage(
                        "--replace is for a trunk file; this file is an update request".into(),
                    ));
                }
                request.sip_trunk_id = update_id(args.id.as_deref(), &request.sip_trunk_id)?;
                Ok(request)
            }
            UpdateFile::Info(mut trunk, keys) => {
                let id = update_id(args.id.as_deref(), &trunk.sip_trunk_id)?;
                trunk.sip_trunk_id.clear();
                let action = if args.replace {
                    Action::Replace(trunk)
                } else {
                    Action::Update(inbound_fields_update(&trunk, &keys)?)
                };
                Ok(UpdateSipInboundTrunkRequest {
                    sip_trunk_id: id,
                    action: Some(action),
                })
            }
        };
    }
    let id = update_id(args.id.as_deref(), "")?;
    let update = SipInboundTrunkUpdate {
        numbers: list_update(
            "numbers",
            args.numbers.as_deref(),
            &args.add_numbers,
            &args.remove_numbers,
        )?,
        allowed_addresses: list_update(
            "allowed-addresses",
            args.allowed_addresses.as_deref(),
            &args.add_allowed_addresses,
            &args.remove_allowed_addresses,
        )?,
        allowed_numbers: list_update(
            "allowed-numbers",
            args.allowed_numbers.as_deref(),
            &args.add_allowed_numbers,
            &args.remove_allowed_numbers,
        )?,
        auth_username: args.auth_user.clone(),
        auth_password: args.auth_pass.clone(),
        auth_realm: args.auth_realm.clone(),
        name: args.name.clone(),
        metadata: args.metadata.clone(),
        media_encryption: args.media_enc,
        media: None,
    };
    if update == SipInboundTrunkUpdate::default() {
        return Err(CliError::Usage(
            "nothing to update: give a JSON file or flags such as --name or --add-numbers".into(),
        ));
    }
    Ok(UpdateSipInboundTrunkRequest {
        sip_trunk_id: id,
        action: Some(Action::Update(update)),
    })
}

fn inbound_update_flags_given(args: &InboundUpdateArgs) -> bool {
    args.name.is_some()
        || args.metadata.is_some()
        || args.numbers.is_some()
        || !args.add_numbers.is_empty()
        || !args.remove_numbers.is_empty()
        || args.allowed_addresses.is_some()
        || !args.add_allowed_addresses.is_empty()
        || !args.remove_allowed_addresses.is_empty()
        || args.allowed_numbers.is_some()
        || !args.add_allowed_numbers.is_empty()
        || !args.remove_allowed_numbers.is_empty()
        || args.auth_user.is_some()
        || args.auth_pass.is_some()
        || args.auth_realm.is_some()
        || args.media_enc.is_some()
}

/// A field update carrying exactly the fields the file set (`keys`); lists
/// become ListUpdate `set` (or `clear` when empty).
pub fn inbound_fields_update(
    trunk: &SipInboundTrunkInfo,
    keys: &[String],
) -> Result<SipInboundTrunkUpdate, CliError> {
    let mut update = SipInboundTrunkUpdate::default();
    let mut refused = Vec::new();
    for key in keys {
        match key.as_str() {
            "sip_trunk_id" => {}
            "numbers" => update.numbers = Some(set_list(&trunk.numbers)),
            "allowed_addresses" => {
                update.allowed_addresses = Some(set_list(&trunk.allowed_addresses))
            }
            "allowed_numbers" => update.allowed_numbers = Some(set_list(&trunk.allowed_numbers)),
            "auth_username" => update.auth_username = Some(trunk.auth_username.clone()),
            "auth_password" => update.auth_password = Some(trunk.auth_password.clone()),
            "auth_realm" => update.auth_realm = Some(trunk.auth_realm.clone()),
            "name" => update.name = Some(trunk.name.clone()),
            "metadata" => update.metadata = Some(trunk.metadata.clone()),
            "media_encryption" => update.media_encryption = Some(trunk.media_encryption),
            "media" => update.media = trunk.media.clone(),
            other => refused.push(other.to_owned()),
        }
    }
    refuse_fields("an inbound trunk", &refused)?;
    Ok(update)
}

/// The UpdateSIPOutboundTrunk request from a file or the flags.
pub fn outbound_update_request(
    args: &OutboundUpdateArgs,
) -> Result<UpdateSipOutboundTrunkRequest, CliError> {
    use update_sip_outbound_trunk_request::Action;
    if let Some(file) = &args.file {
        if outbound_update_flags_given(args) {
            return Err(CliError::Usage(
                "give the changes in the file or as flags, not both".into(),
            ));
        }
        return match read_update_file::<UpdateSipOutboundTrunkRequest, SipOutboundTrunkInfo>(file)?
        {
            UpdateFile::Request(mut request) => {
                if args.replace {
                    return Err(CliError::Usage(
                        "--replace is for a trunk file; this file is an update request".into(),
                    ));
                }
                request.sip_trunk_id = update_id(args.id.as_deref(), &request.sip_trunk_id)?;
                Ok(request)
            }
            UpdateFile::Info(mut trunk, keys) => {
                let id = update_id(args.id.as_deref(), &trunk.sip_trunk_id)?;
                trunk.sip_trunk_id.clear();
                let action = if args.replace {
                    Action::Replace(trunk)
                } else {
                    Action::Update(outbound_fields_update(&trunk, &keys)?)
                };
                Ok(UpdateSipOutboundTrunkRequest {
                    sip_trunk_id: id,
                    action: Some(action),
                })
            }
        };
    }
    let id = update_id(args.id.as_deref(), "")?;
    let update = SipOutboundTrunkUpdate {
        address: args.address.clone(),
        transport: args.transport,
        destination_country: args.destination_country.clone(),
        numbers: list_update(
            "numbers",
            args.numbers.as_deref(),
            &args.add_numbers,
            &args.remove_numbers,
        )?,
        auth_username: args.auth_user.clone(),
        auth_password: args.auth_pass.clone(),
        name: args.name.clone(),
        metadata: args.metadata.clone(),
        media_encryption: args.media_enc,
        media: None,
        from_host: args.from_host.clone(),
    };
    if update == SipOutboundTrunkUpdate::default() {
        return Err(CliError::Usage(
            "nothing to update: give a JSON file or flags such as --name or --add-numbers".into(),
        ));
    }
    Ok(UpdateSipOutboundTrunkRequest {
        sip_trunk_id: id,
        action: Some(Action::Update(update)),
    })
}

fn outbound_update_flags_given(args: &OutboundUpdateArgs) -> bool {
    args.name.is_some()
        || args.metadata.is_some()
        || args.address.is_some()
        || args.transport.is_some()
        || args.destination_country.is_some()
        || args.numbers.is_some()
        || !args.add_numbers.is_empty()
        || !args.remove_numbers.is_empty()
        || args.auth_user.is_some()
        || args.auth_pass.is_some()
        || args.from_host.is_some()
        || args.media_enc.is_some()
}

/// A field update carrying exactly the fields the file set.
pub fn outbound_fields_update(
    trunk: &SipOutboundTrunkInfo,
    keys: &[String],
) -> Result<SipOutboundTrunkUpdate, CliError> {
    let mut update = SipOutboundTrunkUpdate::default();
    let mut refused = Vec::new();
    for key in keys {
        match key.as_str() {
            "sip_trunk_id" => {}
            "address" => update.address = Some(trunk.address.clone()),
            "transport" => update.transport = Some(trunk.transport),
            "destination_country" => {
                update.destination_country = Some(trunk.destination_country.clone())
            }
            "numbers" => update.numbers = Some(set_list(&trunk.numbers)),
            "auth_username" => update.auth_username = Some(trunk.auth_username.clone()),
            "auth_password" => update.auth_password = Some(trunk.auth_password.clone()),
            "name" => update.name = Some(trunk.name.clone()),
            "metadata" => update.metadata = Some(trunk.metadata.clone()),
            "media_encryption" => update.media_encryption = Some(trunk.media_encryption),
            "media" => update.media = trunk.media.clone(),
            "from_host" => update.from_host = Some(trunk.from_host.clone()),
            other => refused.push(other.to_owned()),
        }
    }
    refuse_fields("an outbound trunk", &refused)?;
    Ok(update)
}

/// `--media-enc`: `disable`, `allow`, `require`, or the enum name.
pub fn parse_media_encryption(text: &str) -> Result<i32, String> {
    let upper = text.trim().to_ascii_uppercase();
    SipMediaEncryption::from_str_name(&upper)
        .or_else(|| SipMediaEncryption::from_str_name(&format!("SIP_MEDIA_ENCRYPT_{upper}")))
        .map(|e| e as i32)
        .ok_or_else(|| format!("{text:?}: expected disable, allow or require"))
}

/// `--transport`: `auto`, `udp`, `tcp`, `tls`, or the enum name.
pub fn parse_transport(text: &str) -> Result<i32, String> {
    let upper = text.trim().to_ascii_uppercase();
    SipTransport::from_str_name(&upper)
        .or_else(|| SipTransport::from_str_name(&format!("SIP_TRANSPORT_{upper}")))
        .map(|t| t as i32)
        .ok_or_else(|| format!("{text:?}: expected auto, udp, tcp or tls"))
}

/// `user / ****`, as `lk` shows credentials: never the password itself.
/// The server leaves passwords out of Get and List unless
/// `api.return_passwords` is set; then only the user is shown.
pub fn credentials(user: &str, password: &str) -> String {
    match (user.is_empty(), password.is_empty()) {
        (true, true) => String::new(),
        (_, true) => user.to_string(),
        (_, false) => format!("{user} / ****"),
    }
}

/// Encryption as the table shows it: the media config's if set, else the
/// deprecated field, without the enum prefix.
pub fn encryption(media: Option<&SipMediaConfig>, deprecated: i32) -> String {
    let value = media.and_then(|m| m.encryption).unwrap_or(deprecated);
    SipMediaEncryption::try_from(value)
        .map(|e| {
            e.as_str_name()
                .trim_start_matches("SIP_MEDIA_ENCRYPT_")
                .to_owned()
        })
        .unwrap_or_else(|_| value.to_string())
}

/// `k=v` lines of each map, sorted, maps separated by a blank line.
pub fn header_maps(maps: &[&HashMap<String, String>]) -> String {
    let blocks: Vec<String> = maps
        .iter()
        .filter(|m| !m.is_empty())
        .map(|m| {
            let mut pairs: Vec<_> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
            pairs.sort();
            pairs.join("\n")
        })
        .collect();
    blocks.join("\n\n")
}

/// The `sip inbound list` table.
pub fn inbound_table(items: &[SipInboundTrunkInfo]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|t| {
            vec![
                t.sip_trunk_id.clone(),
                t.name.clone(),
                t.numbers.join(","),
                t.allowed_addresses.join(","),
                t.allowed_numbers.join(","),
                credentials(&t.auth_username, &t.auth_password),
                encryption(t.media.as_ref(), t.media_encryption),
                header_maps(&[&t.headers, &t.headers_to_attributes]),
                t.metadata.clone(),
            ]
        })
        .collect();
    table::render(
        &[
            "SipTrunkID",
            "Name",
            "Numbers",
            "AllowedAddresses",
            "AllowedNumbers",
            "Authentication",
            "Encryption",
            "Headers",
            "Metadata",
        ],
        &rows,
    )
}

/// The `sip outbound list` table.
pub fn outbound_table(items: &[SipOutboundTrunkInfo]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|t| {
            let transport = SipTransport::try_from(t.transport)
                .map(|tr| {
                    tr.as_str_name()
                        .trim_start_matches("SIP_TRANSPORT_")
                        .to_owned()
                })
                .unwrap_or_else(|_| t.transport.to_string());
            vec![
                t.sip_trunk_id.clone(),
                t.name.clone(),
                t.address.clone(),
                transport,
                t.numbers.join(","),
                credentials(&t.auth_username, &t.auth_password),
                encryption(t.media.as_ref(), t.media_encryption),
                header_maps(&[&t.headers, &t.headers_to_attributes]),
                t.metadata.clone(),
            ]
        })
        .collect();
    table::render(
        &[
            "SipTrunkID",
            "Name",
            "Address",
            "Transport",
            "Numbers",
            "Authentication",
            "Encryption",
            "Headers",
            "Metadata",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests;
