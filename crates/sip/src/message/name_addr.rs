//! `( name-addr / addr-spec ) *( SEMI generic-param )`: the value form of
//! From, To, Contact, Route, Record-Route, Refer-To and friends.

use super::grammar::{is_token_byte, is_ws, parse_params, take_quoted_string};
use super::uri::{Uri, UriError};
use thiserror::Error;

/// Why a name-addr value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameAddrError {
    /// The value is empty.
    #[error("empty value")]
    Empty,
    /// A quoted display name is not closed.
    #[error("unbalanced quotes")]
    UnbalancedQuote,
    /// An unquoted display name holds characters outside `token`.
    #[error("display name must be quoted")]
    UnquotedDisplayName,
    /// `<` without `>`, or text between `>` and the parameters.
    #[error("malformed angle brackets")]
    BadBrackets,
    /// Whitespace just inside `<` or `>`.
    #[error("whitespace inside angle brackets")]
    SpaceInsideBrackets,
    /// An addr-spec without brackets that contains `,` or `?`.
    #[error("URI with , or ? must be in angle brackets")]
    MustBeBracketed,
    /// The URI itself is malformed.
    #[error("malformed URI: {0}")]
    Uri(#[from] UriError),
    /// A header parameter is malformed.
    #[error("malformed parameter")]
    BadParameter,
}

/// A parsed name-addr or addr-spec with its header parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted, if any.
    pub display_name: Option<String>,
    /// The URI text as written (escapes kept).
    pub uri_text: String,
    /// The URI, parsed.
    pub uri: Uri,
    /// Header parameters (e.g. `tag`), names lowercased.
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    /// Parses one element (not a comma-separated list).
    pub fn parse(value: &str) -> Result<NameAddr, NameAddrError> {
        let value = value.trim_matches([' ', '\t']);
        if value.is_empty() {
            return Err(NameAddrError::Empty);
        }
        let (display_name, bracketed) = if value.starts_with('"') {
            let (name, rest) = take_quoted_string(value).ok_or(NameAddrError::UnbalancedQuote)?;
            let rest = rest.trim_start_matches([' ', '\t']);
            if !rest.starts_with('<') {
                return Err(NameAddrError::BadBrackets);
            }
            (Some(name), Some(rest))
        } else if let Some(lt) = value.find('<') {
            let display = value[..lt].trim_end_matches([' ', '\t']);
            if value[..lt].contains('"') {
                return Err(NameAddrError::UnbalancedQuote);
            }
            // display-name = *(token LWS): words of token characters.
            let tokens_ok = display
                .split([' ', '\t'])
                .all(|w| w.is_empty() || w.bytes().all(is_token_byte));
            if !tokens_ok {
                return Err(NameAddrError::UnquotedDisplayName);
            }
            let display = if display.is_empty() {
                None
            } else {
                Some(display.to_string())
            };
            (display, Some(&value[lt..]))
        } else {
            (None, None)
        };

        match bracketed {
            Some(rest) => {
                let gt = rest.find('>').ok_or(NameAddrError::BadBrackets)?;
                let inner = &rest[1..gt];
                if inner.bytes().next().is_some_and(is_ws)
                    || inner.bytes().last().is_some_and(is_ws)
                {
                    return Err(NameAddrError::SpaceInsideBrackets);
                }
                let uri = Uri::parse(inner)?;
                let params = parse_params(&rest[gt + 1..]).ok_or(NameAddrError::BadParameter)?;
                Ok(NameAddr {
                    display_name,
                    uri_text: inner.to_string(),
                    uri,
                    params,
                })
            }
            None => {
                // addr-spec: the URI runs to the first ';', which starts the
                // header parameters (RFC 3261 §20.10).
                let end = value.find(';').unwrap_or(value.len());
                let uri_text = value[..end].trim_end_matches([' ', '\t']);
                if uri_text.contains([',', '?']) {
                    return Err(NameAddrError::MustBeBracketed);
                }
                let uri = Uri::parse(uri_text)?;
                let params = parse_params(&value[end..]).ok_or(NameAddrError::BadParameter)?;
                Ok(NameAddr {
                    display_name: None,
                    uri_text: uri_text.to_string(),
                    uri,
                    params,
                })
            }
        }
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }

    /// A header parameter's value (`Some(None)` for a flag parameter).
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_quoted_and_unquoted() {
        let na = NameAddr::parse(r#""Bell, Alexander" <sip:a.g.bell@example.com>;tag=43"#).unwrap();
        assert_eq!(na.display_name.as_deref(), Some("Bell, Alexander"));
        assert_eq!(na.tag(), Some("43"));
        let na = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(na.display_name.as_deref(), Some("caller"));
        let na =
            NameAddr::parse("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>").unwrap();
        assert!(na.display_name.is_some());
    }

    #[test]
    fn rfc4475_invalid_forms_are_rejected() {
        assert_eq!(
            NameAddr::parse("Bell, Alexander <sip:a.g.bell@example.com>;tag=43"),
            Err(NameAddrError::UnquotedDisplayName)
        );
        assert_eq!(
            NameAddr::parse(r#""Watson, Thomas" < sip:t.watson@example.org >"#),
            Err(NameAddrError::SpaceInsideBrackets)
        );
        assert_eq!(
            NameAddr::parse(r#""Mr. J. User <sip:j.user@example.com>"#),
            Err(NameAddrError::UnbalancedQuote)
        );
        assert_eq!(
            NameAddr::parse("sip:user@example.com?Route=%3Csip:sip.example.com%3E"),
            Err(NameAddrError::MustBeBracketed)
        );
        assert!(NameAddr::parse(r#""Joe" <sip:joe@example.org>;;;;"#).is_err());
    }

    #[test]
    fn addr_spec_params_belong_to_the_header() {
        let na = NameAddr::parse("sip:+19725552222@gw1.example.net;unknownparam").unwrap();
        assert_eq!(na.uri_text, "sip:+19725552222@gw1.example.net");
        assert_eq!(na.param("unknownparam"), Some(None));
        let na = NameAddr::parse("<sip:+19725552222@gw1.example.net;unknownparam>").unwrap();
        assert!(na.params.is_empty());
    }

    #[test]
    fn whitespace_around_tag_and_foreign_schemes() {
        let na =
            NameAddr::parse("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n").unwrap();
        assert_eq!(na.tag(), Some("1918181833n"));
        assert!(NameAddr::parse("isbn:2983792873").is_ok());
        assert!(NameAddr::parse("<http://www.example.com>;tag=3234233").is_ok());
        let na = NameAddr::parse(
            r#""J Rosenberg \\\""       <sip:jdrosen@example.com> ; tag = 98asjd8"#,
        )
        .unwrap();
        assert_eq!(na.tag(), Some("98asjd8"));
    }
}
