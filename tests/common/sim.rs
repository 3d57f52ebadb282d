//! An in-memory link between a client and an agent [`Channel`], with seeded faults in both
//! directions, a virtual clock and a fake KMS. No sockets, no real time: a run is a pure
//! function of its inputs and seed.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use porthole::ssm::channel::{
    AgentHandshake, Channel, ChannelConfig, CloseReason, Event, Transmit,
};
use porthole::ssm::faults::{FaultConfig, FaultInjector};
use porthole::ssm::payload;

/// Which start flow to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// No handshake (plain shell).
    Plain,
    /// Handshake with SessionType only.
    Handshake,
    /// Handshake with KMS encryption and the random challenge.
    Kms,
}

/// One wire-level delay step of the virtual clock.
pub const HOP: Duration = Duration::from_millis(1);

/// A fake `kms:GenerateDataKey` / `kms:Decrypt` that checks the encryption context.
#[derive(Debug, Default)]
pub struct FakeKms {
    keys: Vec<(Vec<u8>, BTreeMap<String, String>)>,
    counter: u8,
}

impl FakeKms {
    pub fn generate(&mut self, context: &BTreeMap<String, String>) -> (Vec<u8>, Vec<u8>) {
        self.counter = self.counter.wrapping_add(1);
        let key: Vec<u8> = (0..64u8)
            .map(|i| i.wrapping_mul(7).wrapping_add(self.counter))
            .collect();
        let blob = format!("blob-{}", self.keys.len()).into_bytes();
        self.keys.push((key.clone(), context.clone()));
        (key, blob)
    }

    pub fn decrypt(
        &self,
        blob: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Vec<u8>, String> {
        let index: usize = std::str::from_utf8(blob)
            .ok()
            .and_then(|s| s.strip_prefix("blob-"))
            .and_then(|s| s.parse().ok())
            .ok_or("InvalidCiphertextException")?;
        let (key, ctx) = self.keys.get(index).ok_or("InvalidCiphertextException")?;
        if ctx != context {
            return Err(format!(
                "encryption context mismatch: {ctx:?} vs {context:?}"
            ));
        }
        Ok(key.clone())
    }
}

pub struct Sim {
    pub now: Instant,
    pub client: Channel,
    pub agent: Channel,
    c2a: FaultInjector<Bytes>,
    a2c: FaultInjector<Bytes>,
    to_agent: VecDeque<Bytes>,
    to_client: VecDeque<Bytes>,
    pub kms: FakeKms,
    /// Bytes the client delivered as output, in order.
    pub output: Vec<u8>,
    /// Bytes the agent delivered as input, in order.
    pub input: Vec<u8>,
    pub client_events: Vec<Event>,
    pub agent_events: Vec<Event>,
    /// OpenDataChannel frames the agent side saw (text frames).
    pub opens: Vec<payload::OpenDataChannel>,
    /// Every binary frame the client transmitted, before faults.
    pub client_wire: Vec<Bytes>,
    pub steps: u64,
}

impl Sim {
    pub fn new(flow: Flow, faults: FaultConfig, seed: u64) -> Self {
        let now = Instant::now();
        let mut client_cfg = ChannelConfig::client("sess-1", "i-0123456789abcdef0");
        client_cfg.seed = Some(seed);
        let mut agent_cfg = ChannelConfig::agent("sess-1", "i-0123456789abcdef0");
        agent_cfg.seed = Some(seed.wrapping_add(1));
        agent_cfg.handshake = match flow {
            Flow::Plain => None,
            Flow::Handshake => Some(AgentHandshake {
                session_type: payload::session_type::STANDARD_STREAM.into(),
                properties: serde_json::Value::Null,
                kms_key_id: None,
                random_challenge: false,
            }),
            Flow::Kms => Some(AgentHandshake {
                session_type: payload::session_type::STANDARD_STREAM.into(),
                properties: serde_json::Value::Null,
                kms_key_id: Some("alias/porthole-test".into()),
                random_challenge: true,
            }),
        };
        let unix = 1_700_000_000_000;
        let mut sim = Self {
            now,
            client: Channel::new(client_cfg, now, unix),
            agent: Channel::new(agent_cfg, now, unix),
            c2a: FaultInjector::new(faults, seed.wrapping_mul(31).wrapping_add(2)),
            a2c: FaultInjector::new(faults, seed.wrapping_mul(31).wrapping_add(3)),
            to_agent: VecDeque::new(),
            to_client: VecDeque::new(),
            kms: FakeKms::default(),
            output: Vec::new(),
            input: Vec::new(),
            client_events: Vec::new(),
            agent_events: Vec::new(),
            opens: Vec::new(),
            client_wire: Vec::new(),
            steps: 0,
        };
        sim.client.socket_opened(now, Some("token-1"));
        sim.agent.socket_opened(now, None);
        sim
    }

    /// Cuts the socket: everything in flight is lost, then both sides reconnect (the client
    /// with a new token, as after ResumeSession).
    pub fn replace_socket(&mut self, token: &str) {
        self.to_agent.clear();
        self.to_client.clear();
        let mut lost = Vec::new();
        self.c2a.flush(&mut lost);
        self.a2c.flush(&mut lost);
        // Frames still queued in the machines are discarded by socket_opened.
        self.client.socket_opened(self.now, Some(token));
        self.agent.socket_opened(self.now, None);
    }

    /// Moves frames one hop and handles events. Returns whether anything moved.
    pub fn step(&mut self) -> bool {
        self.steps += 1;
        let mut moved = false;
        let mut out = Vec::new();
        while let Some(t) = self.client.poll_transmit() {
            moved = true;
            match t {
                Transmit::Text(text) => {
                    // The service reads OpenDataChannel; it never reaches the agent machine.
                    self.opens
                        .push(serde_json::from_str(&text).expect("OpenDataChannel JSON"));
                }
                Transmit::Binary(frame) => {
                    self.client_wire.push(frame.clone());
                    self.c2a.apply(frame, &mut out)
                }
            }
        }
        self.to_agent.extend(out.drain(..));
        while let Some(t) = self.agent.poll_transmit() {
            moved = true;
            match t {
                Transmit::Text(_) => panic!("the agent never sends text frames"),
                Transmit::Binary(frame) => self.a2c.apply(frame, &mut out),
            }
        }
        self.to_client.extend(out.drain(..));

        self.now += HOP;
        while let Some(frame) = self.to_agent.pop_front() {
            moved = true;
            let _ = self.agent.handle_incoming(&frame, self.now);
        }
        while let Some(frame) = self.to_client.pop_front() {
            moved = true;
            let _ = self.client.handle_incoming(&frame, self.now);
        }
        moved |= self.handle_events();
        moved
    }

    fn handle_events(&mut self) -> bool {
        let mut any = false;
        while let Some(e) = self.client.poll_event() {
            any = true;
            match &e {
                Event::Output(b) => self.output.extend_from_slice(b),
                Event::DataKeyNeeded {
                    encryption_context, ..
                } => {
                    let (key, blob) = self.kms.generate(encryption_context);
                    self.client.provide_data_key(&key, &blob, self.now).unwrap();
                }
                _ => {}
            }
            self.client_events.push(e);
        }
        while let Some(e) = self.agent.poll_event() {
            any = true;
            match &e {
                Event::Input(b) => self.input.extend_from_slice(b),
                Event::DecryptNeeded {
                    ciphertext_blob,
                    encryption_context,
                } => match self.kms.decrypt(ciphertext_blob, encryption_context) {
                    Ok(key) => self.agent.provide_decrypted_key(&key, self.now).unwrap(),
                    Err(e) => self.agent.decrypt_failed(&e).unwrap(),
                },
                _ => {}
            }
            self.agent_events.push(e);
        }
        any
    }

    /// One round: a hop, or, when the link is quiet, release held frames and then jump the
    /// clock to the next timer.
    pub fn tick(&mut self) {
        if self.step() {
            return;
        }
        let mut out = Vec::new();
        self.c2a.flush(&mut out);
        self.to_agent.extend(out.drain(..));
        self.a2c.flush(&mut out);
        self.to_client.extend(out.drain(..));
        if !self.to_agent.is_empty() || !self.to_client.is_empty() {
            return;
        }
        let next = [self.client.poll_timeout(), self.agent.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        if let Some(t) = next {
            self.now = self.now.max(t);
        }
        self.client.handle_timeout(self.now);
        self.agent.handle_timeout(self.now);
    }

    /// Ticks until `done` holds, panicking after `max_ticks`.
    pub fn run_until(&mut self, max_ticks: u64, mut done: impl FnMut(&Self) -> bool) {
        for _ in 0..max_ticks {
            if done(self) {
                return;
            }
            if let Some(reason) = self.closed_reason() {
                panic!("channel closed: {reason}");
            }
            self.tick();
        }
        panic!(
            "not done after {max_ticks} ticks: output {} bytes, input {} bytes, client ready {}, agent ready {}",
            self.output.len(),
            self.input.len(),
            self.client.is_ready(),
            self.agent.is_ready()
        );
    }

    pub fn closed_reason(&self) -> Option<CloseReason> {
        self.client_events
            .iter()
            .chain(&self.agent_events)
            .find_map(|e| match e {
                Event::Closed(r) => Some(r.clone()),
                _ => None,
            })
    }
}
