//! The IDs LiveKit clients expect.

/// The SID of a participant's audio track, derived from its own SID so
/// that every view of the room (RoomService, each client) agrees on it
/// without storing it: `PA_x` → `TR_AMx` (`A` audio, `M` microphone, as
/// LiveKit's server spells its track SIDs).
pub fn track_sid_of(participant_sid: &str) -> String {
    format!(
        "TR_AM{}",
        participant_sid
            .strip_prefix("PA_")
            .unwrap_or(participant_sid)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn track_sids_follow_the_participant_sid() {
        assert_eq!(track_sid_of("PA_abc123"), "TR_AMabc123");
        assert_eq!(track_sid_of("odd"), "TR_AModd");
    }
}
