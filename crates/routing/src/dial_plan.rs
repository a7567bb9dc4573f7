//! Outbound number formats and national forms of numbers: how a trunk's
//! carrier wants numbers written, and what a carrier may send us.
//!
//! Numbers are read and written with the `phonenumber` crate (libphonenumber's
//! rules and metadata for every country). Only strings that read as valid
//! phone numbers are rewritten: SIP user names (`alice`), feature codes
//! (`*123`) and extensions come back as they were, because a trunk to a PBX
//! dials those too.
//!
//! `phonenumber` has panicked on odd input before (RFC 3966 `phone-context`
//! slicing, GHSA-whhr-7f2w-qqj2 and GHSA-mjw4-jj88-v687; an `unwrap` in its
//! natural-language parser, rust-phonenumber#43; validation of a mis-split
//! prefix, #83), and its `Display` of a number with an unknown country code
//! returns `fmt::Error`, which `to_string` turns into a panic. So it is only
//! ever handed a canonical string (an optional `+`, then at most
//! [`MAX_NUMBER_LEN`] ASCII digits), and only valid numbers are formatted,
//! with `write!` into a `String`, whose error is returned, not unwrapped.

use std::fmt::{self, Write as _};
use std::str::FromStr;

use phonenumber::metadata::{Descriptor, Metadata, DATABASE};
use phonenumber::{country, Mode, PhoneNumber};

/// Longer input is not treated as a phone number (it comes back unchanged):
/// E.164 numbers have at most 15 digits, and a bound keeps odd input away
/// from the parser.
pub const MAX_NUMBER_LEN: usize = 32;

/// Without a leading `+`, fewer digits than this that are not a valid number
/// are a short code or an extension (`112`, `1001`, `116000`), dialled as
/// they are. (Some countries' valid numbers are shorter: Niue's `7012`.)
const MIN_NUMBER_DIGITS: usize = 7;

/// How a trunk's carrier wants numbers written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NumberFormat {
    /// `+12025550123`: E.164 with its plus.
    PlusE164,
    /// `12025550123`: E.164 digits without the plus.
    E164,
    /// The digits of the national format: `02079460000` (GB),
    /// `2025550123` (US). A number of another country is written as
    /// dialled from the dial plan's country: its international prefix,
    /// then the E.164 digits (`0012025550123` from GB).
    National,
}

impl NumberFormat {
    /// Every format, in the order of its spellings in error messages.
    pub const ALL: [NumberFormat; 3] = [
        NumberFormat::PlusE164,
        NumberFormat::E164,
        NumberFormat::National,
    ];

    /// The format's spelling: `+e164`, `e164` or `national`.
    pub fn as_str(self) -> &'static str {
        match self {
            NumberFormat::PlusE164 => "+e164",
            NumberFormat::E164 => "e164",
            NumberFormat::National => "national",
        }
    }

    /// Reads a format from its exact spelling (see [`NumberFormat::as_str`]).
    pub fn parse(text: &str) -> Result<NumberFormat, UnknownNumberFormat> {
        NumberFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == text)
            .ok_or_else(|| UnknownNumberFormat(text.to_owned()))
    }
}

impl FromStr for NumberFormat {
    type Err = UnknownNumberFormat;

    fn from_str(text: &str) -> Result<NumberFormat, UnknownNumberFormat> {
        NumberFormat::parse(text)
    }
}

impl fmt::Display for NumberFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A number format that is none of the allowed spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown number format {0:?}: expected \"+e164\", \"e164\" or \"national\"")]
pub struct UnknownNumberFormat(pub String);

/// A trunk's dial plan: how its carrier wants numbers written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialPlan {
    /// The format of the numbers sent to the carrier.
    pub number_format: NumberFormat,
    /// ISO 3166-1 alpha-2 country (`US`, `GB`) whose rules read numbers
    /// written without a leading `+`, and from which national numbers are
    /// dialled. `None`: numbers without `+` are E.164 digits.
    pub country: Option<String>,
}

impl DialPlan {
    /// `number` written in this plan's format (see [`format_number`]).
    pub fn format(&self, number: &str) -> Result<String, NumberFormatError> {
        format_number(number, self.country.as_deref(), self.number_format)
    }
}

/// Why a number cannot be written in the requested format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberFormatError {
    /// The dial plan's country is not an ISO 3166-1 alpha-2 code known to
    /// the numbering metadata.
    #[error("unknown country {0:?}: expected an ISO 3166-1 alpha-2 code such as \"US\" or \"GB\"")]
    UnknownCountry(String),
    /// The string is written like a phone number but is not a valid one.
    #[error("{number:?} is not a valid phone number{}: {problem}", read_as(.country))]
    InvalidNumber {
        /// The number as given.
        number: String,
        /// The country it was read in (numbers without a leading `+`).
        country: Option<String>,
        /// What is wrong with it.
        problem: String,
    },
    /// National format of a foreign number, and the dial plan's country has
    /// no single international prefix to dial it with.
    #[error("{number:?} cannot be dialled in {country} national format: {country} has no single international prefix")]
    NoInternationalPrefix {
        /// The number as given.
        number: String,
        /// The dial plan's country.
        country: String,
    },
}

fn read_as(country: &Option<String>) -> String {
    match country {
        Some(c) => format!(" (read as dialled in {c})"),
        None => String::new(),
    }
}

/// `number` written in `format`: digits only, with a leading `+` for
/// [`NumberFormat::PlusE164`].
///
/// A leading `+` makes the number international; without it the number is
/// read as dialled in `country` (trunk prefix, international prefix and all),
/// or, with no country, as E.164 digits without their `+`. Spaces, `-`, `.`
/// and parentheses are ignored.
///
/// Strings that are not phone numbers come back unchanged (`Ok`): anything
/// with other characters (`alice`, `*123`, `123#`), anything longer than
/// [`MAX_NUMBER_LEN`], and, without a leading `+`, anything shorter than a
/// full number of the country (extensions, short codes). A string that is
/// written like a phone number but is not a valid one is an error, as is
/// an unknown `country`.
pub fn format_number(
    number: &str,
    country: Option<&str>,
    format: NumberFormat,
) -> Result<String, NumberFormatError> {
    let Some(dialled) = Dialled::of(number) else {
        return Ok(number.to_owned());
    };
    let region = country.map(region_of).transpose()?;
    let parsed = dialled.parse(region.map(|(id, _)| id));
    let parsed = match parsed {
        Ok(parsed) if parsed.is_valid() => parsed,
        // Without a `+`, a string shorter than any full number of the
        // country is an extension or a short code, dialled as it is.
        _ if !dialled.plus && dialled.is_short(region.map(|(_, meta)| meta)) => {
            return Ok(number.to_owned())
        }
        parsed => {
            return Err(NumberFormatError::InvalidNumber {
                number: number.to_owned(),
                country: country.filter(|_| !dialled.plus).map(str::to_owned),
                problem: match parsed {
                    Ok(parsed) => {
                        misreading(&dialled, &parsed).unwrap_or_else(|| invalidity(&parsed))
                    }
                    Err(e) => e.to_string(),
                },
            })
        }
    };
    let unformattable = || NumberFormatError::InvalidNumber {
        number: number.to_owned(),
        country: country.filter(|_| !dialled.plus).map(str::to_owned),
        problem: "the numbering metadata cannot format it".to_owned(),
    };
    let e164 = write_mode(&parsed, Mode::E164).ok_or_else(unformattable)?;
    if let Some(problem) = misreading(&dialled, &parsed) {
        // Dialling the number as read would call someone else.
        return Err(NumberFormatError::InvalidNumber {
            number: number.to_owned(),
            country: None,
            problem,
        });
    }
    match format {
        NumberFormat::PlusE164 => Ok(e164),
        NumberFormat::E164 => Ok(e164.trim_start_matches('+').to_owned()),
        NumberFormat::National => match region {
            Some((_, meta)) if meta.country_code() != parsed.code().value() => {
                let idd = international_prefix(meta).ok_or_else(|| {
                    NumberFormatError::NoInternationalPrefix {
                        number: number.to_owned(),
                        country: meta.id().to_owned(),
                    }
                })?;
                Ok(format!("{idd}{}", e164.trim_start_matches('+')))
            }
            _ => national_digits(&parsed).ok_or_else(unformattable),
        },
    }
}

/// The ISO 3166-1 region of an E.164 number (`+442079460000` → `GB`), for
/// telling a trunk's country from its number. The `+` may be left out (as
/// [`crate::normalize_number`] allows). `None` for anything that is not a
/// valid number, and for non-geographic numbers (`+800…`).
pub fn country_of_number(number: &str) -> Option<String> {
    region_of_number(&Dialled::of(number)?.parse_e164()?)
}

/// The national digits a carrier may send as the called number for an
/// E.164 trunk number: `+442079460000` → `02079460000`, `+12025550123` →
/// `2025550123`. The `+` may be left out (as [`crate::normalize_number`]
/// allows). `None` for anything that is not a valid number, or whose
/// national form is its E.164 digits.
pub fn national_alias(number: &str) -> Option<String> {
    let dialled = Dialled::of(number)?;
    let parsed = dialled.parse_e164()?;
    // A non-geographic number (+800 freephone) has no country to be
    // dialled in nationally.
    region_of_number(&parsed)?;
    national_digits(&parsed).filter(|national| *national != dialled.digits)
}

/// A string written like a phone number, reduced to what is dialled.
struct Dialled {
    /// It began with `+`.
    plus: bool,
    /// Its ASCII digits, at least one.
    digits: String,
}

impl Dialled {
    /// `None` unless `number` is an optional `+` then ASCII digits and
    /// visual separators, with at least one digit, at most
    /// [`MAX_NUMBER_LEN`] bytes long.
    fn of(number: &str) -> Option<Dialled> {
        if number.len() > MAX_NUMBER_LEN {
            return None;
        }
        let (plus, body) = match number.strip_prefix('+') {
            Some(body) => (true, body),
            None => (false, number),
        };
        let separators_only = body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b' ' | b'-' | b'.' | b'(' | b')'));
        let digits: String = body.chars().filter(char::is_ascii_digit).collect();
        (separators_only && !digits.is_empty()).then_some(Dialled { plus, digits })
    }

    /// Shorter than any full number: fewer than [`MIN_NUMBER_DIGITS`], or
    /// than the shortest national number of the region.
    fn is_short(&self, region: Option<&Metadata>) -> bool {
        let shortest = region
            .and_then(|meta| possible_lengths(meta).first().copied())
            .map_or(0, usize::from);
        self.digits.len() < MIN_NUMBER_DIGITS.max(shortest)
    }

    /// Reads the number: international with a `+`, else in `region`, else
    /// as E.164 digits. Only the canonical digits reach the parser.
    fn parse(&self, region: Option<country::Id>) -> Result<PhoneNumber, phonenumber::ParseError> {
        match region {
            Some(id) if !self.plus => phonenumber::parse(Some(id), &self.digits),
            _ => phonenumber::parse(None, format!("+{}", self.digits)),
        }
    }

    /// Reads the number as E.164 (its `+` optional); valid numbers read
    /// exactly as written only (see [`holds_as_written`] for what else
    /// phonenumber may read).
    fn parse_e164(&self) -> Option<PhoneNumber> {
        let parsed = self.parse(None).ok().filter(PhoneNumber::is_valid)?;
        let e164 = write_mode(&parsed, Mode::E164)?;
        (e164.trim_start_matches('+') == self.digits).then_some(parsed)
    }
}

/// The ISO 3166-1 region of a valid number; `None` for non-geographic ones.
fn region_of_number(number: &PhoneNumber) -> Option<String> {
    if let Some(id) = number.country().id() {
        return Some(id.as_ref().to_owned());
    }
    // phonenumber looks a region up by the national number without its
    // leading zeros, which no range of a code shared by several regions
    // matches when the zero is part of the number (Italy's +39 06…, shared
    // with the Vatican): look again with the zeros, as libphonenumber does.
    let national = number.national().to_string();
    let regions = DATABASE.region(&number.code().value())?;
    let region = regions.into_iter().find(|region| {
        DATABASE
            .by_id(*region)
            .is_some_and(|meta| region_holds(meta, &national))
    })?;
    // "001" (non-geographic) and any region the crate cannot name are not countries.
    region.parse::<country::Id>().ok()?;
    Some(region.to_owned())
}

/// Whether `national` belongs to the region of `meta`, by the region's
/// leading digits if it has them, else by its number ranges.
fn region_holds(meta: &Metadata, national: &str) -> bool {
    if let Some(leading) = meta.leading_digits() {
        return leading.find(national).is_some_and(|m| m.start() == 0);
    }
    let d = meta.descriptors();
    d.general().is_match(national) && number_types(meta).any(|desc| desc.is_match(national))
}

/// How phonenumber misread an international number, if it did.
///
/// It drops a national prefix written after the country code: right for
/// "+44 (0)20 …", wrong where the number itself begins with those digits
/// (Russia's +7 800 …, rust-phonenumber#76). A number that the metadata
/// holds as written, read as something else, was misread.
fn misreading(dialled: &Dialled, parsed: &PhoneNumber) -> Option<String> {
    if !dialled.plus {
        return None;
    }
    let read = write_mode(parsed, Mode::E164)?;
    let read = read.trim_start_matches('+');
    (read != dialled.digits && holds_as_written(parsed.code().value(), &dialled.digits))
        .then(|| format!("the phone number library misreads it as +{read} (rust-phonenumber#76)"))
}

/// Whether `digits` (country code first) are a number of a region of
/// `code` as written, by the metadata's number ranges.
fn holds_as_written(code: u16, digits: &str) -> bool {
    let Some(national) = digits.strip_prefix(&code.to_string()) else {
        return false;
    };
    DATABASE
        .region(&code)
        .unwrap_or_default()
        .into_iter()
        .any(|region| {
            DATABASE
                .by_id(region)
                .is_some_and(|meta| region_holds(meta, national))
        })
}

/// The descriptors of a region's number types (fixed line, mobile, …).
fn number_types(meta: &Metadata) -> impl Iterator<Item = &Descriptor> {
    let d = meta.descriptors();
    [
        d.fixed_line(),
        d.mobile(),
        d.toll_free(),
        d.premium_rate(),
        d.shared_cost(),
        d.personal_number(),
        d.voip(),
        d.pager(),
        d.uan(),
        d.voicemail(),
    ]
    .into_iter()
    .flatten()
}

/// Whether `code` is an ISO 3166-1 alpha-2 region, in capitals, that the
/// numbering metadata knows (`US`, `GB`): what a trunk's country may be.
pub fn is_region_code(code: &str) -> bool {
    code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()) && region_of(code).is_ok()
}

/// The numbering metadata of an ISO 3166-1 alpha-2 country (any case).
fn region_of(country: &str) -> Result<(country::Id, &'static Metadata), NumberFormatError> {
    let unknown = || NumberFormatError::UnknownCountry(country.to_owned());
    let id: country::Id = country
        .trim()
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| unknown())?;
    let meta = DATABASE.by_id(id.as_ref()).ok_or_else(unknown)?;
    Ok((id, meta))
}

/// `number` in `mode`, or `None` where the formatter fails (it does for an
/// unknown country code; only valid numbers get here).
fn write_mode(number: &PhoneNumber, mode: Mode) -> Option<String> {
    let mut out = String::new();
    write!(out, "{}", number.format().mode(mode)).ok()?;
    Some(out)
}

/// The digits of the national format: `020 7946 0000` → `02079460000`.
fn national_digits(number: &PhoneNumber) -> Option<String> {
    let national = write_mode(number, Mode::National)?;
    let digits: String = national.chars().filter(char::is_ascii_digit).collect();
    (!digits.is_empty()).then_some(digits)
}

/// The prefix dialled before a country code to call abroad from the
/// country of `meta`, when it is a single string of digits (`00`, `011`).
fn international_prefix(meta: &Metadata) -> Option<String> {
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    // Some countries' preferred prefix has a "wait for tone" `~` (`8~10`);
    // such a prefix cannot be sent as a called number.
    meta.preferred_international_prefix()
        .filter(|p| digits(p))
        .or_else(|| {
            meta.international_prefix()
                .map(|r| r.as_str())
                .filter(|p| digits(p))
        })
        .map(str::to_owned)
}

/// Why a parsed number is not valid, in words.
fn invalidity(number: &PhoneNumber) -> String {
    let code = number.code().value();
    let length = number.national().to_string().len();
    // The country code's main region holds the lengths every region of the
    // code uses (metadata for `+1` is the US's for all of NANP).
    let lengths = DATABASE
        .by_code(&code)
        .and_then(|metas| metas.into_iter().next())
        .map(possible_lengths)
        .unwrap_or_default();
    let (Some(&shortest), Some(&longest)) = (lengths.first(), lengths.last()) else {
        return format!("+{code} is not a country code in use");
    };
    let list = lengths
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let length16 = u16::try_from(length).unwrap_or(u16::MAX);
    if length16 < shortest {
        format!("too short: {length} digits after +{code}, where numbers have {list}")
    } else if length16 > longest {
        format!("too long: {length} digits after +{code}, where numbers have {list}")
    } else if !lengths.contains(&length16) {
        format!("{length} digits after +{code}, where numbers have {list}")
    } else {
        format!("no +{code} numbering range holds it")
    }
}

/// The lengths of the national significant numbers of a region, shortest
/// first. The compiled metadata leaves the general descriptor's lengths
/// empty (libphonenumber computes them from the number types at build
/// time), so they are gathered from the types.
fn possible_lengths(meta: &Metadata) -> Vec<u16> {
    let mut lengths: Vec<u16> = number_types(meta)
        .flat_map(|desc| desc.possible_length().iter().copied())
        .collect();
    lengths.sort_unstable();
    lengths.dedup();
    lengths
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use NumberFormat::{National, PlusE164, E164};

    #[test]
    fn formats_are_spelled_exactly() {
        for format in NumberFormat::ALL {
            assert_eq!(NumberFormat::parse(format.as_str()), Ok(format));
            assert_eq!(format.as_str().parse::<NumberFormat>(), Ok(format));
            assert_eq!(format.to_string(), format.as_str());
        }
        for bad in [
            "",
            "E164",
            "+E164",
            "e.164",
            "plus_e164",
            "National",
            " e164",
            "intl",
        ] {
            let error = NumberFormat::parse(bad).unwrap_err();
            assert_eq!(error, UnknownNumberFormat(bad.to_owned()));
            let text = error.to_string();
            assert!(text.contains(r#""+e164", "e164" or "national""#), "{text}");
        }
    }

    /// Every input, read with its country, in all three formats.
    fn assert_formats(inputs: &[(&str, Option<&str>)], want: [&str; 3]) {
        for &(number, country) in inputs {
            for (format, want) in [PlusE164, E164, National].into_iter().zip(want) {
                assert_eq!(
                    format_number(number, country, format).as_deref(),
                    Ok(want),
                    "{number:?} in {country:?} as {format}"
                );
            }
        }
    }

    #[test]
    fn us_numbers_in_every_format() {
        assert_formats(
            &[
                ("+12025550123", None),
                ("+12025550123", Some("US")),
                ("+1 (202) 555-0123", None),
                ("12025550123", None),
                ("12025550123", Some("US")),
                ("1-202-555-0123", Some("us")),
                ("2025550123", Some("US")),
                ("(202) 555-0123", Some("US")),
                ("202.555.0123", Some("US")),
            ],
            ["+12025550123", "12025550123", "2025550123"],
        );
    }

    #[test]
    fn uk_numbers_in_every_format() {
        assert_formats(
            &[
                ("+442079460000", None),
                ("+44 20 7946 0000", Some("GB")),
                ("442079460000", None),
                ("442079460000", Some("GB")),
                ("02079460000", Some("GB")),
                ("020 7946 0000", Some("gb")),
                ("(020) 7946-0000", Some("GB")),
            ],
            ["+442079460000", "442079460000", "02079460000"],
        );
        // A mobile keeps its trunk 0 in national form too.
        assert_formats(
            &[("+447400123456", None), ("07400 123456", Some("GB"))],
            ["+447400123456", "447400123456", "07400123456"],
        );
    }

    #[test]
    fn national_format_dials_other_countries_with_the_international_prefix() {
        assert_eq!(
            format_number("+12025550123", Some("GB"), National).as_deref(),
            Ok("0012025550123")
        );
        assert_eq!(
            format_number("+442079460000", Some("US"), National).as_deref(),
            Ok("011442079460000")
        );
        // Read back: the international prefix makes it international.
        assert_eq!(
            format_number("011442079460000", Some("US"), PlusE164).as_deref(),
            Ok("+442079460000")
        );
        // Without a country the number's own national form is all there is.
        assert_eq!(
            format_number("+442079460000", None, National).as_deref(),
            Ok("02079460000")
        );
        // Brazil's international prefix names a carrier: there is no single one.
        let error = format_number("+442079460000", Some("BR"), National).unwrap_err();
        assert_eq!(
            error,
            NumberFormatError::NoInternationalPrefix {
                number: "+442079460000".into(),
                country: "BR".into()
            }
        );
    }

    #[test]
    fn what_is_not_a_phone_number_comes_back_unchanged() {
        let long = "1".repeat(MAX_NUMBER_LEN + 1);
        for (number, country) in [
            ("alice", None),
            ("alice", Some("US")),
            ("*123", Some("US")),
            ("123#", None),
            ("", Some("GB")),
            ("+", None),
            ("++442079460000", None),
            ("sip:+442079460000@example.com", None),
            ("+44 20 7946 0000;ext=1", None),
            ("tel:+442079460000", None),
            ("\u{661}\u{662}\u{663}\u{664}\u{665}\u{666}\u{667}", None),
            // Extensions and short codes: shorter than any full number.
            ("1001", Some("US")),
            ("1001", None),
            ("112", Some("GB")),
            ("116000", Some("GB")),
            ("5550100", Some("US")),
            // An unknown country does not matter to what is no number.
            ("alice", Some("XX")),
            (long.as_str(), None),
        ] {
            for format in NumberFormat::ALL {
                assert_eq!(
                    format_number(number, country, format).as_deref(),
                    Ok(number),
                    "{number:?} in {country:?} as {format}"
                );
            }
        }
    }

    #[test]
    fn invalid_numbers_are_refused_with_the_problem() {
        let cases = [
            (
                "+1202555012",
                None,
                "too short: 9 digits after +1, where numbers have 10",
            ),
            (
                "+120255501234",
                None,
                "too long: 11 digits after +1, where numbers have 10",
            ),
            (
                "+4420794600",
                None,
                "8 digits after +44, where numbers have 7, 9, 10",
            ),
            // 555-01xx is fictional: no US range holds it.
            ("+15550100000", None, "no +1 numbering range holds it"),
            ("+999123456789", None, "invalid country code"),
            ("1202555012", Some("US"), "too short: 9 digits after +1"),
            // 9 digits after the 0 is a GB length, but not for an 020 number.
            ("0207946000", Some("GB"), "no +44 numbering range holds it"),
        ];
        for (number, country, problem) in cases {
            for format in NumberFormat::ALL {
                let error = format_number(number, country, format).unwrap_err();
                let NumberFormatError::InvalidNumber {
                    number: n,
                    problem: p,
                    ..
                } = &error
                else {
                    panic!("{number:?}: {error:?}");
                };
                assert_eq!(n, number);
                assert!(p.contains(problem), "{number:?}: {p:?}");
                let text = error.to_string();
                assert!(
                    text.starts_with(&format!("{number:?} is not a valid phone number")),
                    "{text}"
                );
            }
        }
        let error = format_number("0207946000", Some("GB"), E164).unwrap_err();
        assert!(
            error.to_string().contains("(read as dialled in GB)"),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_country_is_an_error_for_numbers() {
        for country in ["XX", "USA", "", "001"] {
            assert_eq!(
                format_number("2025550123", Some(country), E164),
                Err(NumberFormatError::UnknownCountry(country.to_owned())),
            );
        }
        let text = NumberFormatError::UnknownCountry("XX".into()).to_string();
        assert!(text.contains("ISO 3166-1 alpha-2"), "{text}");
    }

    #[test]
    fn dial_plan_formats_with_its_country() {
        let plan = DialPlan {
            number_format: National,
            country: Some("GB".into()),
        };
        assert_eq!(plan.format("+442079460000").as_deref(), Ok("02079460000"));
        assert_eq!(plan.format("reception").as_deref(), Ok("reception"));
    }

    #[test]
    fn countries_of_numbers() {
        for (number, want) in [
            ("+442079460000", Some("GB")),
            ("442079460000", Some("GB")),
            ("+12025550123", Some("US")),
            ("+14165550123", Some("CA")),
            // Italy's leading 0 is part of the number (and +39 is shared with VA).
            ("+390612345678", Some("IT")),
            ("+33142685300", Some("FR")),
            ("+80012345678", None),
            ("+1202555012", None),
            ("02079460000", None),
            ("alice", None),
            ("", None),
        ] {
            assert_eq!(country_of_number(number).as_deref(), want, "{number:?}");
        }
    }

    #[test]
    fn national_aliases_of_trunk_numbers() {
        for (number, want) in [
            ("+442079460000", Some("02079460000")),
            ("+44 20 7946 0000", Some("02079460000")),
            ("+12025550123", Some("2025550123")),
            ("12025550123", Some("2025550123")),
            ("+390612345678", Some("0612345678")),
            ("+33142685300", Some("0142685300")),
            // A French mobile with the same national form as Rome's number.
            ("+33612345678", Some("0612345678")),
            ("+80012345678", None),
            ("+1202555012", None),
            ("reception", None),
        ] {
            assert_eq!(national_alias(number).as_deref(), want, "{number:?}");
        }
    }

    /// phonenumber misreads some numbers of these regions
    /// (rust-phonenumber#76): they are refused, never dialled wrong.
    const MISREAD: [&str; 4] = ["RU", "KZ", "BY", "LT"];

    #[test]
    fn every_regions_example_numbers() {
        for meta in DATABASE.iter() {
            let id = meta.id();
            let country = (id != "001").then_some(id);
            for example in number_types(meta).filter_map(Descriptor::example) {
                let plus = format!("+{}{example}", meta.country_code());
                match format_number(&plus, country, PlusE164) {
                    Ok(got) => assert_eq!(got, plus, "{id}"),
                    Err(NumberFormatError::InvalidNumber { problem, .. }) => {
                        assert!(MISREAD.contains(&id), "{id} {plus}: {problem}");
                        assert!(problem.contains("#76"), "{problem}");
                        continue;
                    }
                    Err(e) => panic!("{id} {plus}: {e}"),
                }
                let national = format_number(&plus, country, National).unwrap();
                let back = format_number(&national, country, PlusE164);
                // Rwanda's national "250…" reads as its country code 250.
                if id != "RW" && country.is_some() {
                    assert_eq!(back, Ok(plus.clone()), "{id}: {national}");
                }
                // Cut short anywhere: no panic, whatever the answer.
                for cut in 1..example.len() {
                    let _ = format_number(&example[..cut], country, National);
                    let _ = format_number(&plus[..cut + 1], country, National);
                }
            }
        }
    }

    #[test]
    fn numbers_the_library_misreads_are_refused() {
        // Russian freephone: phonenumber drops the 8 of 800 (+7 005 …).
        let error = format_number("+78001234567", None, E164).unwrap_err();
        assert!(error.to_string().contains("+78001234567"), "{error}");
        assert_eq!(national_alias("+78001234567"), None);
        assert_eq!(country_of_number("+78001234567"), None);
        // The national prefix written after the country code is dropped.
        assert_eq!(
            format_number("+44 (0)20 7946 0000", None, PlusE164).as_deref(),
            Ok("+442079460000")
        );
    }

    /// Every region the metadata knows, and a few that it does not.
    fn any_country() -> impl Strategy<Value = Option<String>> {
        let mut ids: Vec<String> = DATABASE.iter().map(|m| m.id().to_owned()).collect();
        ids.sort();
        ids.extend(["XX".to_owned(), "gb".to_owned(), String::new()]);
        proptest::option::of(proptest::sample::select(ids))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn never_panics_on_number_like_input(
            number in "[+]?[0-9 ().-]{0,40}",
            country in any_country(),
        ) {
            for format in NumberFormat::ALL {
                let _ = format_number(&number, country.as_deref(), format);
            }
            let _ = country_of_number(&number);
            let _ = national_alias(&number);
        }

        #[test]
        fn never_panics_on_any_input(number in "\\PC{0,40}", country in any_country()) {
            for format in NumberFormat::ALL {
                let _ = format_number(&number, country.as_deref(), format);
            }
            let _ = country_of_number(&number);
            let _ = national_alias(&number);
        }

        #[test]
        fn formatting_is_stable(number in "[+]?[0-9]{7,16}", country in any_country()) {
            // What comes out reads back to itself.
            let country = country.as_deref();
            if let Ok(plus) = format_number(&number, country, PlusE164) {
                if plus != number {
                    prop_assert_eq!(format_number(&plus, None, PlusE164), Ok(plus.clone()));
                    let e164 = format_number(&number, country, E164).unwrap();
                    prop_assert_eq!(format!("+{e164}"), plus.clone());
                    // National digits read back in their own country
                    // (checked where they are never as short as a short code).
                    let plain = ["US", "CA", "GB", "FR", "ES", "NL"];
                    let own = country.filter(|c| {
                        plain.contains(c) && country_of_number(&plus).as_deref() == Some(*c)
                    });
                    if let Some(country) = own {
                        let national = format_number(&number, Some(country), National).unwrap();
                        prop_assert_eq!(format_number(&national, Some(country), PlusE164), Ok(plus));
                    }
                }
            }
        }
    }
}
