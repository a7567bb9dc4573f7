//! Access tokens: `switchboard token create`, and the short-lived token the
//! CLI signs for each of its own requests. The JWT itself (HS256, LiveKit's
//! camelCase grant claims) comes from the `livekit-api` crate.

use std::time::Duration;

use livekit_api::access_token::{AccessToken, SIPGrants, VideoGrants};

use super::{CliError, KeyArgs};

/// How long the token of one CLI request lives: long enough for a slow
/// server, short enough that a leaked one is soon useless.
pub const REQUEST_TOKEN_TTL: Duration = Duration::from_secs(5 * 60);

/// What a token allows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// `sip.admin`: manage trunks and dispatch rules.
    pub sip_admin: bool,
    /// `sip.call`: dial out and transfer.
    pub sip_call: bool,
    /// `video.room`: the room the video grants apply to.
    pub room: Option<String>,
    /// `video.roomAdmin`.
    pub room_admin: bool,
    /// `video.roomJoin`.
    pub room_join: bool,
}

impl Grants {
    /// Only `sip.admin`: what every trunk and dispatch-rule method needs.
    pub fn sip_admin() -> Grants {
        Grants {
            sip_admin: true,
            ..Grants::default()
        }
    }

    fn is_empty(&self) -> bool {
        !self.sip_admin && !self.sip_call && !self.room_admin && !self.room_join
    }
}

/// Signs a token for `api_key` with `grants`, valid from now for `valid_for`.
pub fn mint(
    api_key: &str,
    api_secret: &str,
    grants: &Grants,
    identity: Option<&str>,
    valid_for: Duration,
) -> Result<String, CliError> {
    if api_key.is_empty() || api_secret.is_empty() {
        return Err(CliError::Usage(
            "an API key and secret are needed: --api-key/--api-secret or LIVEKIT_API_KEY/LIVEKIT_API_SECRET".into(),
        ));
    }
    let mut token = AccessToken::with_api_key(api_key, api_secret)
        .with_ttl(valid_for)
        .with_sip_grants(SIPGrants {
            admin: grants.sip_admin,
            call: grants.sip_call,
        });
    if grants.room.is_some() || grants.room_admin || grants.room_join {
        token = token.with_grants(VideoGrants {
            room: grants.room.clone().unwrap_or_default(),
            room_admin: grants.room_admin,
            room_join: grants.room_join,
            ..VideoGrants::default()
        });
    }
    if let Some(identity) = identity {
        token = token.with_identity(identity);
    }
    token
        .to_jwt()
        .map_err(|e| CliError::Usage(format!("cannot create the token: {e}")))
}

/// `token create` arguments.
#[derive(Debug, clap::Args)]
pub struct TokenCreateArgs {
    #[command(flatten)]
    keys: KeyArgs,
    /// Grant sip.admin: manage trunks and dispatch rules.
    #[arg(long)]
    sip_admin: bool,
    /// Grant sip.call: CreateSIPParticipant (and, with --room-admin, transfers).
    #[arg(long)]
    sip_call: bool,
    /// The room the video grants apply to (video.room).
    #[arg(long)]
    room: Option<String>,
    /// Grant video.roomAdmin on --room.
    #[arg(long, requires = "room")]
    room_admin: bool,
    /// Grant video.roomJoin on --room (needs --identity).
    #[arg(long, requires_all = ["room", "identity"])]
    room_join: bool,
    /// The participant identity (the token's sub claim).
    #[arg(long)]
    identity: Option<String>,
    /// How long the token is valid: 90s, 10m, 1h, 1h30m, 2d.
    #[arg(long, default_value = "6h", value_parser = parse_duration)]
    valid_for: Duration,
}

/// `switchboard token ...`.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Print a signed access token with the chosen grants.
    Create(TokenCreateArgs),
}

/// Runs `token create`: prints the JWT alone on standard output.
pub fn run(command: TokenCommand) -> Result<(), CliError> {
    let TokenCommand::Create(args) = command;
    let grants = Grants {
        sip_admin: args.sip_admin,
        sip_call: args.sip_call,
        room: args.room,
        room_admin: args.room_admin,
        room_join: args.room_join,
    };
    if grants.is_empty() {
        return Err(CliError::Usage(
            "the token would grant nothing: pass --sip-admin, --sip-call, --room-admin or --room-join".into(),
        ));
    }
    let (key, secret) = args.keys.require()?;
    let jwt = mint(
        &key,
        &secret,
        &grants,
        args.identity.as_deref(),
        args.valid_for,
    )?;
    println!("{jwt}");
    Ok(())
}

/// Parses `90s`, `10m`, `1h30m`, `2d`, `500ms` or a bare number of seconds.
/// Zero is refused: no limit or validity here means "nothing".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return nonzero(Duration::from_secs(secs), text);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("{text:?}: a number needs a unit (ms, s, m, h, d)"))?;
        if digits == 0 {
            return Err(format!("{text:?}: expected a number before the unit"));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{text:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            other => return Err(format!("{text:?}: unknown unit {other:?} (ms, s, m, h, d)")),
        };
        let part = u32::try_from(value)
            .ok()
            .and_then(|v| unit.checked_mul(v))
            .ok_or_else(|| format!("{text:?}: too long"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("{text:?}: too long"))?;
        rest = &rest[unit_len..];
    }
    nonzero(total, text)
}

fn nonzero(d: Duration, text: &str) -> Result<Duration, String> {
    if d.is_zero() {
        Err(format!("{text:?}: must be more than zero"))
    } else {
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use hmac::{KeyInit, Mac};
    use serde_json::Value;
    use std::time::{SystemTime, UNIX_EPOCH};

    const KEY: &str = "APIkey123";
    const SECRET: &str = "a-secret-of-reasonable-length-0123456789";

    /// Decodes a JWT without trusting it: header, claims, and whether the
    /// HS256 signature is right for `secret`.
    fn decode(jwt: &str, secret: &str) -> (Value, Value, bool) {
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "a JWT has three parts: {jwt}");
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        let expected = mac.finalize().into_bytes();
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        (header, claims, signature == expected.as_slice())
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn sip_admin_token_claims_and_signature() {
        let before = now();
        let jwt = mint(KEY, SECRET, &Grants::sip_admin(), None, REQUEST_TOKEN_TTL).unwrap();
        let (header, claims, signed) = decode(&jwt, SECRET);
        assert!(signed, "signature must verify with the secret");
        assert!(!decode(&jwt, "another-secret").2, "and not with another");
        assert_eq!(header["alg"], "HS256");
        assert_eq!(claims["iss"], KEY);
        assert_eq!(claims["sip"]["admin"], true);
        assert!(claims["sip"].get("call").is_none() || claims["sip"]["call"] == false);
        assert!(
            claims.get("video").is_none(),
            "no video grant asked: {claims}"
        );
        let nbf = claims["nbf"].as_u64().unwrap();
        let exp = claims["exp"].as_u64().unwrap();
        assert!(nbf >= before.saturating_sub(1) && nbf <= now());
        assert!(
            exp >= before + 300 - 1 && exp <= now() + 300,
            "exp {exp} must be 5 minutes after {before}"
        );
    }

    #[test]
    fn full_grant_token_uses_livekit_camel_case() {
        let grants = Grants {
            sip_admin: true,
            sip_call: true,
            room: Some("lobby".into()),
            room_admin: true,
            room_join: true,
        };
        let before = now();
        let jwt = mint(
            KEY,
            SECRET,
            &grants,
            Some("agent-1"),
            Duration::from_secs(3600),
        )
        .unwrap();
        let (_, claims, signed) = decode(&jwt, SECRET);
        assert!(signed);
        assert_eq!(claims["sub"], "agent-1");
        assert_eq!(claims["sip"]["admin"], true);
        assert_eq!(claims["sip"]["call"], true);
        assert_eq!(claims["video"]["room"], "lobby");
        assert_eq!(claims["video"]["roomAdmin"], true);
        assert_eq!(claims["video"]["roomJoin"], true);
        let exp = claims["exp"].as_u64().unwrap();
        assert!(exp >= before + 3599 && exp <= now() + 3600);
    }

    #[test]
    fn room_join_without_identity_is_refused() {
        let grants = Grants {
            room: Some("lobby".into()),
            room_join: true,
            ..Grants::default()
        };
        assert!(matches!(
            mint(KEY, SECRET, &grants, None, REQUEST_TOKEN_TTL),
            Err(CliError::Usage(_))
        ));
    }

    #[test]
    fn missing_keys_are_a_usage_error() {
        let err = mint("", SECRET, &Grants::sip_admin(), None, REQUEST_TOKEN_TTL).unwrap_err();
        assert!(err.to_string().contains("LIVEKIT_API_KEY"), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        for bad in [
            "",
            "0",
            "0s",
            "h",
            "10x",
            "1.5h",
            "-1h",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
