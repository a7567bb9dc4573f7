//! baresip (Debian `baresip-core`) as a real caller: it dials switchboard,
//! plays a WAV (aufile) and records what it hears (sndfile, `*-dec.wav`).
//! Missing baresip is a failure, never a skip.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Writes a 16-bit PCM WAV of `mono` samples, repeated over `channels`.
pub fn write_wav(path: &Path, rate: u32, channels: u16, mono: &[i16]) {
    let samples: Vec<i16> = mono
        .iter()
        .flat_map(|&s| std::iter::repeat_n(s, usize::from(channels)))
        .collect();
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2 * u32::from(channels)).to_le_bytes());
    out.extend_from_slice(&(2 * channels).to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in &samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, out).unwrap();
}

/// Reads a 16-bit PCM WAV: (rate, channels, interleaved samples). A
/// recording cut short (length unset) is read to its end.
pub fn read_wav(path: &Path) -> (u32, u16, Vec<i16>) {
    let bytes = std::fs::read(path).unwrap();
    let mut pos = 12;
    let (mut rate, mut channels, mut samples) = (0, 0, vec![]);
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let declared = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let body = &bytes[pos + 8..(pos + 8 + declared).min(bytes.len())];
        if id == b"fmt " {
            channels = u16::from_le_bytes([body[2], body[3]]);
            rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
        } else if id == b"data" {
            let body = if declared == 0 || declared > bytes.len() {
                &bytes[pos + 8..]
            } else {
                body
            };
            samples = body
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            break;
        }
        pos += 8 + declared + (declared & 1);
    }
    (rate, channels, samples)
}

/// `seconds` of a sine at `hz`, amplitude 6000.
pub fn tone(rate: u32, hz: f32, seconds: f32) -> Vec<i16> {
    (0..(rate as f32 * seconds) as usize)
        .map(|i| (6000.0 * (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin()) as i16)
        .collect()
}

/// A UDP port p with p+1 free too, and TCP p (baresip listens on them).
pub fn free_sip_port() -> u16 {
    loop {
        let a = UdpSocket::bind(("127.0.0.1", 0)).unwrap();
        let port = a.local_addr().unwrap().port();
        if port < u16::MAX
            && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok()
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
}

/// A running baresip that dialled on start.
pub struct Baresip {
    child: Option<Child>,
    /// Its config folder (the WAV source and the recordings live here).
    pub dir: PathBuf,
}

/// How a baresip caller is set up.
pub struct CallerSpec<'a> {
    /// A name for its folder.
    pub name: &'a str,
    /// `audio_codecs` of the account (e.g. `PCMU`, `G722`, `opus/48000/2`).
    pub codec: &'a str,
    /// The source WAV's rate and channels (the codec's).
    pub wav_rate: u32,
    /// 2 for opus/48000/2.
    pub channels: u16,
    /// What it plays.
    pub source: Vec<i16>,
    /// `mediaenc` of the account (`srtp-mand`), if any.
    pub mediaenc: Option<&'a str>,
    /// The SIP URI it dials.
    pub dial: String,
    /// Seconds before baresip quits (`-t`).
    pub run_secs: u32,
    /// Digest credentials (user, password) it answers challenges with.
    pub auth: Option<(&'a str, &'a str)>,
}

impl Baresip {
    /// Starts baresip; it dials `spec.dial` at once.
    pub fn call(spec: CallerSpec<'_>) -> Baresip {
        let dir = std::env::temp_dir().join(format!(
            "switchboard-calls-{}-{}-{}",
            spec.name,
            std::process::id(),
            free_sip_port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("dump")).unwrap();
        write_wav(
            &dir.join("source.wav"),
            spec.wav_rate,
            spec.channels,
            &spec.source,
        );
        // The SIP port is picked free and then bound by baresip: another
        // test may take it in between (baresip then logs "Address already
        // in use" and quits), so a start that fails is tried on another.
        let mut attempts = 0;
        let child = loop {
            let sip_port = free_sip_port();
            let config = format!(
                "poll_method epoll\nsip_listen 127.0.0.1:{sip_port}\nnet_interface 127.0.0.1\n\
    audio_player aubridge,nil\naudio_alert aubridge,nil\naudio_source aufile,{src}\n\
    module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule g722.so\nmodule opus.so\n\
    module aufile.so\nmodule aubridge.so\nmodule srtp.so\nmodule sndfile.so\nsnd_path {dump}\n\
    module_app account.so\nmodule_app menu.so\n",
                src = dir.join("source.wav").display(),
                dump = dir.join("dump").display(),
            );
            std::fs::write(dir.join("config"), config).unwrap();
            let mediaenc = spec
                .mediaenc
                .map(|m| format!(";mediaenc={m}"))
                .unwrap_or_default();
            let auth = spec
                .auth
                .map(|(user, pass)| format!(";auth_user={user};auth_pass={pass}"))
                .unwrap_or_default();
            std::fs::write(
                dir.join("accounts"),
                format!(
                    "<sip:+1555{port:07}@127.0.0.1:{sip_port};transport=udp>;regint=0{auth}{mediaenc};audio_codecs={codec}\n",
                    port = sip_port,
                    codec = spec.codec,
                ),
            )
            .unwrap();
            let child = Command::new("baresip")
                .arg("-f")
                .arg(&dir)
                .args(["-t", &spec.run_secs.to_string(), "-e"])
                .arg(format!("/dial {}", spec.dial))
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(dir.join("baresip.log")).unwrap())
                .stderr(Stdio::null())
                .spawn()
                .expect(
                    "baresip must be installed: apt-get install baresip-core (tests/deps/media.apt)",
                );
            attempts += 1;
            match wait_until_ready(child, &dir.join("baresip.log")) {
                Ok(child) => break child,
                Err(_) if attempts < 5 => continue,
                Err(log) => panic!("baresip did not start in 5 tries:\n{log}"),
            }
        };
        Baresip {
            child: Some(child),
            dir,
        }
    }

    /// What baresip printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("baresip.log")).unwrap_or_default()
    }

    /// Waits for baresip to quit (its `-t`), then returns what it heard:
    /// (rate, mono samples) of its decoder recording.
    pub fn heard(&mut self, within: Duration) -> (u32, Vec<i16>) {
        let deadline = Instant::now() + within;
        if let Some(child) = self.child.as_mut() {
            while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let dump = std::fs::read_dir(self.dir.join("dump"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .unwrap_or_else(|| panic!("baresip wrote no recording:\n{}", self.log()));
        let (rate, channels, samples) = read_wav(&dump);
        let mono = samples
            .chunks(usize::from(channels.max(1)))
            .map(|c| c[0])
            .collect();
        (rate, mono)
    }

    /// The SIP URI for calling `user` on `target`.
    pub fn uri(user: &str, target: SocketAddr) -> String {
        format!("sip:{user}@{target}")
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until baresip says it is ready; its log when it quit first (a
/// taken port). A baresip still starting after 10 s (a loaded machine) is
/// let run: the test's own assertions report what it then does.
fn wait_until_ready(
    mut child: std::process::Child,
    log: &std::path::Path,
) -> Result<std::process::Child, String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("baresip is ready") {
            return Ok(child);
        }
        if text.contains("init failed") || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(text);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(child)
}
