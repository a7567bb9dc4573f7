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
