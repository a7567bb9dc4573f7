//! Rooms' lifecycle as LiveKit's `WebhookEvent` JSON (`room_started`,
//! `participant_joined`, `track_published`, `participant_left`,
//! `room_finished`), written as LiveKit's server writes it, for the
//! webhook sender to sign and deliver.

use std::time::{SystemTime, UNIX_EPOCH};

use livekit_protocol::WebhookEvent;
use switchboard_rooms::Lifecycle;

use crate::room_service::{participant_message, room_message};
use crate::twirp::TwirpError;
use crate::wire::to_protojson;

/// The webhook events one lifecycle event makes, in the order LiveKit
/// sends them, each as its JSON body. `new_id` gives each its `EV_` ID.
pub fn webhook_bodies(
    lifecycle: &Lifecycle,
    mut new_id: impl FnMut() -> String,
) -> Result<Vec<Vec<u8>>, TwirpError> {
    let created_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let mut event = |name: &str| WebhookEvent {
        event: name.to_owned(),
        id: new_id(),
        created_at,
        ..WebhookEvent::default()
    };
    let events = match lifecycle {
        Lifecycle::RoomStarted(room) => {
            let mut e = event("room_started");
            e.room = Some(room_message(room, 0));
            vec![e]
        }
        Lifecycle::RoomFinished(room) => {
            let mut e = event("room_finished");
            e.room = Some(room_message(room, 0));
            vec![e]
        }
        Lifecycle::ParticipantJoined { room, participant } => {
            let message = participant_message(participant);
            let mut joined = event("participant_joined");
            joined.room = Some(room_message(room, 0));
            joined.participant = Some(message.clone());
            let mut events = vec![joined];
            // A member that sends audio has published its one track.
            for track in &message.tracks {
                let mut published = event("track_published");
                published.room = Some(room_message(room, 0));
                published.participant = Some(message.clone());
                published.track = Some(track.clone());
                events.push(published);
            }
            events
        }
        Lifecycle::ParticipantLeft {
            room, participant, ..
        } => {
            let mut left = event("participant_left");
            left.room = Some(room_message(room, 0));
            left.participant = Some(participant_message(participant));
            vec![left]
        }
    };
    events.iter().map(to_protojson).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;
    use switchboard_rooms::{LeaveReason, ParticipantInfo, ParticipantKind, RoomInfo};

    fn room() -> RoomInfo {
        RoomInfo {
            sid: "RM_x".into(),
            name: "call-1".into(),
            metadata: String::new(),
            num_participants: 1,
            created_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            max_participants: 10,
            empty_timeout: Duration::from_secs(300),
            agents: Vec::new(),
        }
    }

    fn caller() -> ParticipantInfo {
        ParticipantInfo {
            sid: "PA_abc".into(),
            identity: "sip_+15550100".into(),
            name: "Phone".into(),
            metadata: String::new(),
            attributes: BTreeMap::from([("sip.callStatus".to_owned(), "hangup".to_owned())]),
            kind: ParticipantKind::Sip,
            publishes_audio: true,
            audio_muted: false,
            joined_at: UNIX_EPOCH + Duration::from_secs(1_700_000_001),
        }
    }

    #[test]
    fn a_call_joining_publishes_its_track_and_leaving_carries_its_attributes() {
        let mut n = 0;
        let mut ids = || {
            n += 1;
            format!("EV_{n}")
        };
        let joined = Lifecycle::ParticipantJoined {
            room: room(),
            participant: caller(),
        };
        let bodies = webhook_bodies(&joined, &mut ids).unwrap_or_default();
        let events: Vec<serde_json::Value> = bodies
            .iter()
            .map(|b| serde_json::from_slice(b).unwrap_or_default())
            .collect();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0]["event"], "participant_joined");
        assert_eq!(events[0]["id"], "EV_1");
        assert_eq!(events[0]["room"]["name"], "call-1");
        assert_eq!(events[0]["participant"]["kind"], "SIP");
        assert_eq!(events[1]["event"], "track_published");
        assert_eq!(events[1]["track"]["type"], "AUDIO");
        let left = Lifecycle::ParticipantLeft {
            room: room(),
            participant: caller(),
            reason: LeaveReason::ClientInitiated,
        };
        let bodies = webhook_bodies(&left, &mut ids).unwrap_or_default();
        let event: serde_json::Value = serde_json::from_slice(&bodies[0]).unwrap_or_default();
        assert_eq!(event["event"], "participant_left");
        assert_eq!(
            event["participant"]["attributes"]["sip.callStatus"],
            "hangup"
        );
    }
}
