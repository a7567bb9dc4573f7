//! Unguessable tokens for tags, branches and Call-IDs.

/// A random token of `len` alphanumeric characters from the operating
/// system's CSPRNG. Tags and Call-IDs must not be guessable: a guessed
/// dialog identifier lets a third party send a BYE.
pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut bytes = vec![0u8; len];
    fill_random(&mut bytes);
    bytes
        .iter()
        // 62 does not divide 256; the bias (4 of 256 values) does not matter
        // for identifiers that only need to be unpredictable.
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect()
}

/// Fills `buf` from the OS CSPRNG. The OS generator failing is not something
/// a SIP stack can recover from; it falls back to a time-seeded mix so that
/// the process keeps answering rather than aborting.
pub fn fill_random(buf: &mut [u8]) {
    if getrandom::fill(buf).is_err() {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut state = seed as u64 ^ 0x9e37_79b9_7f4a_7c15;
        for b in buf.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_length_and_alphabet_asked_for_and_differ() {
        let a = random_token(16);
        let b = random_token(16);
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
