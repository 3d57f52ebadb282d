//! Starting the emulator in-process and talking to it with the real AWS SDK clients and the
//! core's data-channel client.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_ssm::config::Credentials;
use porthole::emulator::{EmulatorConfig, RunningEmulator};
use porthole::ssm::channel::CloseReason;
use porthole::ssm::client::{
    self, AwsClients, ClientEvent, ClientHandle, ClientOptions, SessionStart,
};

/// A generous bound for anything a test waits for; waits end as soon as the event arrives.
pub const WAIT: Duration = Duration::from_secs(60);

pub struct Emu {
    pub emulator: RunningEmulator,
    pub aws: AwsClients,
    pub _dir: tempfile::TempDir,
}

pub async fn start(configure: impl FnOnce(&mut EmulatorConfig)) -> Emu {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EmulatorConfig::new(dir.path());
    configure(&mut config);
    let emulator = RunningEmulator::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let aws = aws_clients(&emulator.url(), "test").await;
    Emu {
        emulator,
        aws,
        _dir: dir,
    }
}

/// AWS clients for the emulator at `url` (`http://…`), with test credentials from `provider`
/// and no retries.
pub async fn aws_clients(url: &str, provider: &'static str) -> AwsClients {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, provider))
        .retry_config(RetryConfig::disabled())
        .load()
        .await;
    AwsClients {
        ssm: aws_sdk_ssm::Client::new(&sdk),
        kms: aws_sdk_kms::Client::new(&sdk),
    }
}

/// `ssm:StartSession` on `target` with `reason`, as the gateway calls it: what the
/// data-channel client needs to connect.
pub async fn start_session(ssm: &aws_sdk_ssm::Client, target: &str, reason: &str) -> SessionStart {
    let reply = ssm
        .start_session()
        .target(target)
        .reason(reason)
        .send()
        .await
        .unwrap();
    SessionStart {
        session_id: reply.session_id().unwrap().to_owned(),
        target: target.to_owned(),
        stream_url: reply.stream_url().unwrap().to_owned(),
        token: reply.token_value().unwrap().to_owned(),
    }
}

/// The default online node.
pub const NODE: &str = "i-0a1b2c3d4e5f60001";

impl Emu {
    pub async fn start_session(&self, target: &str) -> SessionStart {
        start_session(&self.aws.ssm, target, "integration test").await
    }

    pub async fn open(&self, target: &str) -> Term {
        self.open_with(target, ClientOptions::default()).await
    }

    pub async fn open_with(&self, target: &str, options: ClientOptions) -> Term {
        let start = self.start_session(target).await;
        Term::connect_with(start, self.aws.clone(), options).await
    }
}

/// A terminal on one session: the client handle plus everything it printed.
pub struct Term {
    pub start: SessionStart,
    pub handle: ClientHandle,
    pub output: Vec<u8>,
    pub events: Vec<ClientEvent>,
}

impl Term {
    pub async fn connect(start: SessionStart, aws: AwsClients) -> Self {
        Self::connect_with(start, aws, ClientOptions::default()).await
    }

    pub async fn connect_with(
        start: SessionStart,
        aws: AwsClients,
        options: ClientOptions,
    ) -> Self {
        let handle = client::start_with(start.clone(), aws, options)
            .await
            .unwrap();
        Self {
            start,
            handle,
            output: Vec::new(),
            events: Vec::new(),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }

    /// Waits for the next event, recording output.
    pub async fn next(&mut self) -> Option<ClientEvent> {
        let event = tokio::time::timeout(WAIT, self.handle.events.recv())
            .await
            .unwrap_or_else(|_| {
                panic!("no event within {WAIT:?}; output so far:\n{}", self.text())
            })?;
        if let ClientEvent::Output(bytes) = &event {
            self.output.extend_from_slice(bytes);
        }
        self.events.push(event.clone());
        Some(event)
    }

    /// Waits until the output contains `needle` (after byte `from`).
    pub async fn expect_from(&mut self, from: usize, needle: &str) -> usize {
        // Scan only what arrived since the last look (plus an overlap for a needle cut in two),
        // so waiting over megabytes of output stays linear.
        let mut scan = from.min(self.output.len());
        loop {
            if let Some(at) = find(&self.output[scan..], needle.as_bytes()) {
                return scan + at + needle.len();
            }
            scan = self.output.len().saturating_sub(needle.len()).max(scan);
            match self.next().await {
                Some(ClientEvent::Closed(reason)) => {
                    panic!(
                        "closed ({reason}) before {needle:?} appeared; output:\n{}",
                        self.text()
                    )
                }
                Some(_) => {}
                None => panic!("ended before {needle:?} appeared; output:\n{}", self.text()),
            }
        }
    }

    pub async fn expect(&mut self, needle: &str) -> usize {
        self.expect_from(0, needle).await
    }

    pub async fn send(&self, text: &str) {
        self.handle.input(text.as_bytes().to_vec()).await.unwrap();
    }

    /// Waits for the session to close and returns why.
    pub async fn closed(&mut self) -> CloseReason {
        loop {
            match self.next().await {
                Some(ClientEvent::Closed(reason)) => return reason,
                Some(_) => {}
                None => panic!("the client task ended without a Closed event"),
            }
        }
    }

    /// Runs a command and returns its output between two markers (echo of the typed command
    /// excluded: the markers are assembled by the shell).
    pub async fn run(&mut self, command: &str) -> String {
        let start = self.output.len();
        self.send(&format!("echo BE''GIN; {command}; echo EN''D\r"))
            .await;
        let begin = self.expect_from(start, "BEGIN\r\n").await;
        let end = self.expect_from(begin, "END\r\n").await;
        String::from_utf8_lossy(&self.output[begin..end - "END\r\n".len()]).into_owned()
    }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
