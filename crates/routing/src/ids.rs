//! LiveKit-style IDs: a prefix plus 12 base57 characters.
//!
//! Randomness comes in from the caller, so this stays pure and tests can be
//! deterministic; production passes a CSPRNG (the store's `OsRandom`).

/// The 57 characters of LiveKit's IDs: digits and letters without the
/// look-alikes 0, 1, I, O and l.
pub const BASE57_ALPHABET: &[u8; 57] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// How many random characters follow the prefix.
pub const ID_RANDOM_LEN: usize = 12;

/// A source of random bytes. Any `FnMut(&mut [u8])` is one.
pub trait RandomSource {
    /// Fills `dest` with random bytes.
    fn fill_bytes(&mut self, dest: &mut [u8]);
}

impl<F: FnMut(&mut [u8])> RandomSource for F {
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self(dest)
    }
}

/// The kinds of IDs, each with its LiveKit prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdPrefix {
    /// `ST_`: inbound and outbound trunks.
    Trunk,
    /// `SDR_`: dispatch rules.
    DispatchRule,
    /// `SCL_`: calls.
    Call,
    /// `STR_`: transfers.
    Transfer,
}

impl IdPrefix {
    /// The prefix text, underscore included.
    pub fn as_str(self) -> &'static str {
        match self {
            IdPrefix::Trunk => "ST_",
            IdPrefix::DispatchRule => "SDR_",
            IdPrefix::Call => "SCL_",
            IdPrefix::Transfer => "STR_",
        }
    }
}

/// 12 uniformly distributed base57 characters (the room-name suffix).
pub fn random_base57(rng: &mut dyn RandomSource) -> String {
    // 228 = 4 * 57: bytes at or above it are rejected so every character is
    // equally likely.
    const LIMIT: u8 = 228;
    let mut out = String::with_capacity(ID_RANDOM_LEN);
    let mut buf = [0u8; 32];
    while out.len() < ID_RANDOM_LEN {
        rng.fill_bytes(&mut buf);
        for &b in &buf {
            if b < LIMIT {
                out.push(char::from(BASE57_ALPHABET[usize::from(b % 57)]));
                if out.len() == ID_RANDOM_LEN {
                    break;
                }
            }
        }
    }
    out
}

/// A fresh ID such as `ST_Ab3xYz9KLm2Q`.
pub fn new_id(prefix: IdPrefix, rng: &mut dyn RandomSource) -> String {
    let mut id = String::with_capacity(prefix.as_str().len() + ID_RANDOM_LEN);
    id.push_str(prefix.as_str());
    id.push_str(&random_base57(rng));
    id
}

/// Whether `id` has the shape of an ID of this kind.
pub fn is_valid_id(prefix: IdPrefix, id: &str) -> bool {
    id.strip_prefix(prefix.as_str()).is_some_and(|rest| {
        rest.len() == ID_RANDOM_LEN && rest.bytes().all(|b| BASE57_ALPHABET.contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter() -> impl FnMut(&mut [u8]) {
        let mut next = 0u8;
        move |dest: &mut [u8]| {
            for b in dest {
                *b = next;
                next = next.wrapping_add(1);
            }
        }
    }

    #[test]
    fn ids_have_prefix_and_twelve_base57_characters() {
        let mut rng = counter();
        for prefix in [
            IdPrefix::Trunk,
            IdPrefix::DispatchRule,
            IdPrefix::Call,
            IdPrefix::Transfer,
        ] {
            let id = new_id(prefix, &mut rng);
            assert!(id.starts_with(prefix.as_str()), "{id}");
            assert!(is_valid_id(prefix, &id), "{id}");
        }
        assert_eq!(new_id(IdPrefix::Trunk, &mut counter()), "ST_23456789ABCD");
    }

    #[test]
    fn bytes_above_the_limit_are_rejected_not_folded() {
        // Only bytes >= 228 first: they must all be skipped.
        let mut calls = 0;
        let mut rng = |dest: &mut [u8]| {
            calls += 1;
            let fill = if calls == 1 { 250 } else { 56 };
            dest.fill(fill);
        };
        assert_eq!(random_base57(&mut rng), "zzzzzzzzzzzz");
    }

    #[test]
    fn malformed_ids_are_refused() {
        assert!(!is_valid_id(IdPrefix::Trunk, "ST_short"));
        assert!(!is_valid_id(IdPrefix::Trunk, "SDR_23456789ABCD"));
        assert!(!is_valid_id(IdPrefix::Trunk, "ST_23456789ABC0"));
    }
}
