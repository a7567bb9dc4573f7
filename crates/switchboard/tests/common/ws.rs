//! A WebSocket participant (`GET /rooms/<room>/ws`) for tests: joins with
//! a token, sends 20 ms PCM frames (tones), records what it hears and the
//! JSON messages it gets.

use std::f64::consts::PI;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::api::join_token;

pub type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects to `/rooms/<room>/ws` with a bearer token and a query string.
pub async fn connect(
    api: SocketAddr,
    room: &str,
    token: Option<&str>,
    query: &str,
) -> Result<Ws, tungstenite::Error> {
    let url = format!("ws://{api}/rooms/{room}/ws{query}");
    let mut request = url.into_client_request().unwrap();
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    }
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .expect("handshake in time")
    .map(|(ws, _)| ws)
}

/// The HTTP status a refused handshake got.
pub async fn refused(api: SocketAddr, room: &str, token: Option<&str>, query: &str) -> u16 {
    match connect(api, room, token, query).await {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("expected an HTTP refusal, got a socket"),
    }
}

/// A WebSocket participant: what it heard and was told.
pub struct Client {
    pub ws: Ws,
    pub rate: u32,
    pub joined: Value,
    pub messages: Vec<Value>,
    pub heard: Vec<i16>,
    pub frames: usize,
    pub closed: Option<Option<tungstenite::protocol::CloseFrame>>,
    pub tone_phase: f64,
}

impl Client {
    pub async fn join(api: SocketAddr, room: &str, identity: &str, rate: u32) -> Client {
        Client::join_with(api, room, &join_token(room, identity), rate, "").await
    }

    pub async fn join_with(
        api: SocketAddr,
        room: &str,
        token: &str,
        rate: u32,
        extra: &str,
    ) -> Client {
        let ws = connect(api, room, Some(token), &format!("?rate={rate}{extra}"))
            .await
            .unwrap_or_else(|e| panic!("join {room}: {e}"));
        let mut client = Client {
            ws,
            rate,
            joined: Value::Null,
            messages: Vec::new(),
            heard: Vec::new(),
            frames: 0,
            closed: None,
            tone_phase: 0.0,
        };
        let first = client.next_message(Duration::from_secs(10)).await;
        assert_eq!(first["type"], "joined", "{first}");
        client.joined = first;
        client
    }

    pub fn frame_bytes(&self) -> usize {
        (self.rate / 50) as usize * 2
    }

    /// Takes one socket message into the record; false once closed.
    pub fn record(&mut self, message: Message) -> Option<Value> {
        match message {
            Message::Binary(data) => {
                assert_eq!(
                    data.len(),
                    self.frame_bytes(),
                    "every server frame is 20 ms at the client's rate"
                );
                self.frames += 1;
                self.heard.extend(
                    data.chunks_exact(2)
                        .map(|b| i16::from_le_bytes([b[0], b[1]])),
                );
                None
            }
            Message::Text(text) => {
                let value: Value = serde_json::from_str(text.as_str()).unwrap();
                self.messages.push(value.clone());
                Some(value)
            }
            Message::Close(frame) => {
                self.closed = Some(frame);
                None
            }
            _ => None,
        }
    }

    /// The next JSON message (audio is recorded on the way).
    pub async fn next_message(&mut self, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .unwrap_or_else(|_| {
                    panic!("no message within {within:?}; got {:?}", self.messages)
                });
            match next {
                Some(Ok(message)) => {
                    if let Some(value) = self.record(message) {
                        return value;
                    }
                    if self.closed.is_some() {
                        panic!("socket closed; messages {:?}", self.messages);
                    }
                }
                other => panic!("socket ended: {other:?}; messages {:?}", self.messages),
            }
        }
    }

    /// The next message of a type (others are kept in `messages`).
    pub async fn expect(&mut self, kind: &str) -> Value {
        loop {
            let m = self.next_message(Duration::from_secs(10)).await;
            if m["type"] == kind {
                return m;
            }
        }
    }

    pub fn tone_frame(&mut self, freq: f64, amplitude: f64) -> Vec<u8> {
        let n = (self.rate / 50) as usize;
        let step = 2.0 * PI * freq / f64::from(self.rate);
        let mut out = Vec::with_capacity(n * 2);
        for _ in 0..n {
            let s = (amplitude * self.tone_phase.sin()) as i16;
            out.extend_from_slice(&s.to_le_bytes());
            self.tone_phase = (self.tone_phase + step) % (2.0 * PI);
        }
        out
    }

    pub async fn send_json(&mut self, value: Value) {
        self.ws
            .send(Message::Text(value.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn send_binary(&mut self, data: Vec<u8>) {
        self.ws.send(Message::Binary(data.into())).await.unwrap();
    }
}

/// Runs clients side by side for `duration`: each sends its tone (if any)
/// every 20 ms and records what it gets.
pub async fn play(clients: &mut [(&mut Client, Option<f64>)], duration: Duration) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let end = tokio::time::Instant::now() + duration;
    while tokio::time::Instant::now() < end {
        tick.tick().await;
        for (client, tone) in clients.iter_mut() {
            if let Some(freq) = tone {
                let frame = client.tone_frame(*freq, 8000.0);
                client.send_binary(frame).await;
            }
            // Take whatever has arrived, without waiting.
            while let Ok(Some(Ok(message))) =
                tokio::time::timeout(Duration::from_millis(1), client.ws.next()).await
            {
                client.record(message);
            }
        }
    }
}

/// The amplitude of the `freq` component of `samples` (Goertzel).
pub fn amplitude(samples: &[i16], rate: u32, freq: f64) -> f64 {
    let w = 2.0 * PI * freq / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / samples.len() as f64
}

/// The last second of what a client heard.
pub fn last_second(client: &Client) -> &[i16] {
    let n = client.rate as usize;
    assert!(
        client.heard.len() > n,
        "heard only {} samples",
        client.heard.len()
    );
    &client.heard[client.heard.len() - n..]
}
