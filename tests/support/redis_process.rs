//! Shared by the test fixtures of several crates (included with
//! `#[path]`): which redis-server answers on a loopback port.

/// The process ID of the redis-server answering on loopback `port` (from
/// `INFO server`), to tell a test's own server from anyone else's.
pub fn redis_process_id(port: u16) -> Option<u32> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .ok()?;
    s.write_all(b"INFO server\r\n").ok()?;
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(at) = text.find("process_id:") {
            if text[at..].contains('\n') {
                break;
            }
        }
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    text.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
}
