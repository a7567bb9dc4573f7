//! LiveKit-style IDs: a prefix and 12 characters of the base-57 alphabet
//! (`RM_…` for rooms, `PA_…` for participants).

const ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// A new ID: `prefix` and 12 random base-57 characters.
pub fn new_sid(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 12);
    out.push_str(prefix);
    let mut bytes = [0u8; 12];
    // Without the OS generator, a clock-derived fallback still gives unique
    // enough IDs: they name rooms, they guard nothing.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (nanos >> (i * 8)) as u8;
        }
    }
    for b in bytes {
        // 57 * 4 = 228: reject-free mapping with a slight bias is fine for IDs.
        out.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_prefix_twelve_base57_characters_and_differ() {
        let a = new_sid("RM_");
        let b = new_sid("RM_");
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("RM_"));
        assert!(a[3..].bytes().all(|c| ALPHABET.contains(&c)));
        assert_ne!(a, b);
    }
}

/// What separates a room's name from its owner's in a private room's name.
const PRIVATE_MARK: &str = "~private~";

/// The name of a room of its own for `owner` (a call ID) standing for the
/// room `room` elsewhere: with rooms on a LiveKit server each call has a
/// private local room, which the uplink bridges to `room` there.
pub fn private_room_name(room: &str, owner: &str) -> String {
    format!("{room}{PRIVATE_MARK}{owner}")
}

/// The room a private room stands for (`None` for an ordinary room).
pub fn shared_room_of(private: &str) -> Option<&str> {
    private.rsplit_once(PRIVATE_MARK).map(|(room, _)| room)
}

#[cfg(test)]
mod private_room_tests {
    use super::*;

    #[test]
    fn a_private_room_names_the_room_it_stands_for() {
        let private = private_room_name("sales~private~x", "SCL_abc");
        assert_eq!(shared_room_of(&private), Some("sales~private~x"));
        assert_eq!(shared_room_of("sales"), None);
    }
}
