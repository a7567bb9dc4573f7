//! Reading request files the way `lk` does: a path, `-` for standard input,
//! or the JSON itself; protobuf JSON names in snake_case or lowerCamelCase.
//! Unlike the protobuf reader underneath, an unknown key is an error, so a
//! typo (`krispEnabld`) cannot silently drop a setting.

use std::io::Read;

use serde::de::DeserializeOwned;

use super::CliError;

/// The text of a request argument: `-` reads standard input, an argument
/// that starts with `{` is the JSON itself, anything else is a file path.
pub fn read_source(arg: &str) -> Result<String, CliError> {
    if arg == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::Usage(format!("cannot read standard input: {e}")))?;
        return Ok(text);
    }
    if arg.trim_start().starts_with('{') {
        return Ok(arg.to_owned());
    }
    std::fs::read_to_string(arg).map_err(|e| CliError::Usage(format!("cannot read {arg}: {e}")))
}

/// Parses `text` as `T` (a LiveKit protobuf message in JSON), refusing keys
/// the message does not have. `what` names the input in error messages.
pub fn parse_strict<T: DeserializeOwned>(text: &str, what: &str) -> Result<T, CliError> {
    let mut unknown = Vec::new();
    let mut de = serde_json::Deserializer::from_str(text);
    let value: T = serde_ignored::deserialize(&mut de, |path| unknown.push(dotted(&path)))
        .map_err(|e| CliError::Usage(format!("{what}: {e}")))?;
    de.end()
        .map_err(|e| CliError::Usage(format!("{what}: {e}")))?;
    if !unknown.is_empty() {
        return Err(CliError::Usage(format!(
            "{what}: unknown field{} {}",
            if unknown.len() == 1 { "" } else { "s" },
            unknown.join(", ")
        )));
    }
    Ok(value)
}

/// `trunk.headers.X` or `items[2].name`: the path as a user wrote it, without
/// serde's markers for optional and newtype values.
fn dotted(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", dotted(parent)),
        Path::Map { parent, key } => {
            let parent = dotted(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => dotted(parent),
    }
}

/// The keys of the top-level JSON object in `text`, in snake_case (the
/// protobuf field names).
pub fn top_level_keys(text: &str, what: &str) -> Result<Vec<String>, CliError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| CliError::Usage(format!("{what}: {e}")))?;
    match value {
        serde_json::Value::Object(map) => Ok(map.keys().map(|k| snake_case(k)).collect()),
        _ => Err(CliError::Usage(format!("{what}: expected a JSON object"))),
    }
}

/// `allowedAddresses` -> `allowed_addresses`; snake_case stays as it is.
pub fn snake_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Splits comma-separated list flag values (`--numbers a,b --numbers c`)
/// and drops empty entries, so `--numbers ""` means an empty list.
pub fn flag_list(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use livekit_protocol::{CreateSipInboundTrunkRequest, SipInboundTrunkInfo};

    #[test]
    fn camel_and_snake_case_both_read() {
        let camel: SipInboundTrunkInfo =
            parse_strict(r#"{"allowedNumbers": ["+1"], "krispEnabled": true}"#, "t").unwrap();
        let snake: SipInboundTrunkInfo =
            parse_strict(r#"{"allowed_numbers": ["+1"], "krisp_enabled": true}"#, "t").unwrap();
        assert_eq!(camel, snake);
        assert_eq!(camel.allowed_numbers, vec!["+1".to_string()]);
        assert!(camel.krisp_enabled);
    }

    #[test]
    fn unknown_keys_are_named_with_their_path() {
        let err = parse_strict::<CreateSipInboundTrunkRequest>(
            r#"{"trunk": {"name": "x", "krispEnabld": true}}"#,
            "inbound-trunk.json",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("inbound-trunk.json"), "{text}");
        assert!(text.contains("trunk.krispEnabld"), "{text}");
    }

    #[test]
    fn malformed_json_and_trailing_garbage_are_refused() {
        assert!(parse_strict::<SipInboundTrunkInfo>(r#"{"name": "#, "f").is_err());
        assert!(parse_strict::<SipInboundTrunkInfo>(r#"{"name": "a"} x"#, "f").is_err());
        assert!(parse_strict::<SipInboundTrunkInfo>(r#"{"numbers": "+1"}"#, "f").is_err());
    }

    #[test]
    fn sources_are_literal_json_or_files() {
        assert_eq!(read_source(r#" {"a":1}"#).unwrap(), r#" {"a":1}"#);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        std::fs::write(&path, "{}").unwrap();
        assert_eq!(read_source(path.to_str().unwrap()).unwrap(), "{}");
        let missing = read_source("/nonexistent/trunk.json").unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/trunk.json"));
    }

    #[test]
    fn keys_come_back_in_snake_case() {
        let mut keys = top_level_keys(
            r#"{"sipTrunkId": "a", "name": "b", "auth_username": "c"}"#,
            "f",
        )
        .unwrap();
        keys.sort();
        assert_eq!(keys, vec!["auth_username", "name", "sip_trunk_id"]);
        assert!(top_level_keys("[1]", "f").is_err());
    }

    #[test]
    fn list_flags_split_on_commas() {
        let values = vec!["+1,+2".to_string(), " +3 ".to_string(), "".to_string()];
        assert_eq!(flag_list(&values), vec!["+1", "+2", "+3"]);
        assert!(flag_list(&["".to_string()]).is_empty());
    }
}
