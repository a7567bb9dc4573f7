//! Compiles the LiveKit .proto files shipped in `proto/` (copied unchanged
//! from the livekit-protocol crate this workspace pins): the SIP and
//! RoomService protos, the webhook event and what they import, into a
//! descriptor set, so the
//! API can write protojson exactly as LiveKit's server does.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files = protox::compile(
        [
            "livekit_sip.proto",
            "livekit_room.proto",
            "livekit_webhook.proto",
            // LiveKit clients' signalling, for its JSON form (text frames).
            "livekit_rtc.proto",
        ],
        ["proto"],
    )?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("livekit_descriptor.bin");
    std::fs::write(out, prost::Message::encode_to_vec(&files))?;
    Ok(())
}
