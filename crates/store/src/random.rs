//! The operating system's CSPRNG as a [`RandomSource`] for IDs and room suffixes.

use switchboard_routing::ids::{new_id, IdPrefix, RandomSource};

use crate::error::StoreError;

/// Random bytes from the OS (getrandom). A failure is remembered rather than
/// panicking; check [`OsRandom::finish`] before trusting the output.
#[derive(Debug, Default)]
pub struct OsRandom {
    failure: Option<getrandom::Error>,
}

impl OsRandom {
    /// A fresh source.
    pub fn new() -> OsRandom {
        OsRandom::default()
    }

    /// `Err` if any fill failed since creation.
    pub fn finish(self) -> Result<(), StoreError> {
        match self.failure {
            Some(e) => Err(StoreError::Random(e)),
            None => Ok(()),
        }
    }
}

impl RandomSource for OsRandom {
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        if let Err(e) = getrandom::fill(dest) {
            self.failure = Some(e);
            // Zeroes are accepted by the base57 sampler, so generation ends;
            // the caller sees the failure through `finish`.
            dest.fill(0);
        }
    }
}

/// A fresh ID of this kind from the OS random source.
pub fn generate_id(prefix: IdPrefix) -> Result<String, StoreError> {
    let mut rng = OsRandom::new();
    let id = new_id(prefix, &mut rng);
    rng.finish()?;
    Ok(id)
}

/// Crockford's base32 alphabet (no I, L, O, U).
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A carrier trunk ID of the /v1 API: `trunk_` and 26 Crockford base32
/// characters encoding 48 bits of milliseconds then 80 random bits (the ULID
/// layout), so IDs sort in creation order and pages list oldest first.
pub fn generate_platform_trunk_id() -> Result<String, StoreError> {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
        & 0xFFFF_FFFF_FFFF;
    let mut random = [0u8; 10];
    getrandom::fill(&mut random).map_err(StoreError::Random)?;
    let mut value = millis << 80;
    for (i, byte) in random.iter().enumerate() {
        value |= u128::from(*byte) << (8 * (9 - i));
    }
    let mut id = String::with_capacity(32);
    id.push_str("trunk_");
    // 26 characters carry 130 bits; the top two are always zero.
    for place in (0..26).rev() {
        let digit = ((value >> (5 * place)) & 31) as usize;
        id.push(char::from(CROCKFORD[digit]));
    }
    Ok(id)
}

/// Whether `id` is a carrier trunk ID in its canonical form.
pub fn is_platform_trunk_id(id: &str) -> bool {
    id.strip_prefix("trunk_")
        .is_some_and(|body| body.len() == 26 && body.bytes().all(|b| CROCKFORD.contains(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_trunk_ids_are_canonical_unique_and_ordered() {
        let first = generate_platform_trunk_id().unwrap_or_default();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = generate_platform_trunk_id().unwrap_or_default();
        assert!(is_platform_trunk_id(&first), "{first}");
        assert!(is_platform_trunk_id(&second), "{second}");
        assert!(first < second, "{first} then {second}");
        assert!(!is_platform_trunk_id("trunk_0123456789abcdefghjkmnpqrs"));
        assert!(!is_platform_trunk_id("ST_abcdefghijkl"));
        assert!(!is_platform_trunk_id(
            "3f1c2b8e-0000-4000-8000-000000000000"
        ));
        assert!(!is_platform_trunk_id("trunk_0123456789ABCDEFGHJKMNPQRSU"));
    }
}
