//! A headless Debian Chromium driven through chromedriver (WebDriver, with fantoccini), for the
//! browser tests. Never downloads a browser: a machine without `/usr/bin/chromium` and
//! `/usr/bin/chromedriver` fails the test and says how to install them.

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::error::CmdError;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// Debian's Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's ChromeDriver (package chromium-driver).
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long a test waits for something it expects to see.
pub const WAIT: Duration = Duration::from_secs(20);
/// How long chromedriver gets to start listening.
const DRIVER_START: Duration = Duration::from_secs(15);

/// Flags that work headless as root on these machines (toolchain notes).
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1100,720",
];

/// Where browser-test artefacts (screenshots, the chromedriver log) go.
pub fn artefact_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The name of the screenshot saved when a wait times out: `failure-TEST.png`, after the test
/// that failed (libtest runs each test on a thread named after it), so that the failures of
/// several tests in one run each keep their own.
fn failure_name() -> String {
    let test = std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .map_or_else(
            || "unnamed".to_owned(),
            |name| {
                name.chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '_' {
                            c
                        } else {
                            '-'
                        }
                    })
                    .collect()
            },
        );
    format!("failure-{test}.png")
}

/// A WebDriver command chromedriver has beyond fantoccini's: `POST /session/{id}/PATH`.
#[derive(Debug)]
struct Post {
    path: &'static str,
    body: Value,
}

impl WebDriverCompatibleCommand for Post {
    fn endpoint(
        &self,
        base_url: &reqwest::Url,
        session_id: Option<&str>,
    ) -> Result<reqwest::Url, <reqwest::Url as std::str::FromStr>::Err> {
        base_url.join(&format!(
            "session/{}/{}",
            session_id.unwrap_or(""),
            self.path
        ))
    }

    fn method_and_body(&self, _: &reqwest::Url) -> (reqwest::Method, Option<String>) {
        (reqwest::Method::POST, Some(self.body.to_string()))
    }
}

/// A running chromedriver and a browser session; both end on [`Browser::close`] (or drop).
pub struct Browser {
    pub client: Client,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium through it.
    pub async fn start() -> Self {
        for (path, what) in [(CHROMIUM, "Chromium"), (CHROMEDRIVER, "ChromeDriver")] {
            assert!(
                std::path::Path::new(path).exists(),
                "{what} is missing ({path}). The browser tests need Debian's Chromium and \
                 ChromeDriver: `apt-get install -y chromium chromium-driver` (scripts/test \
                 installs them). They never download a browser."
            );
        }
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let log = artefact_dir().join("chromedriver.log");
        let mut driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
        let deadline = tokio::time::Instant::now() + DRIVER_START;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            if let Some(status) = driver.try_wait().unwrap() {
                panic!(
                    "chromedriver exited ({status}) before listening; see {}",
                    log.display()
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not listen on port {port} within {DRIVER_START:?}; see {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let profile = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| (*s).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start Chromium through chromedriver: {e}; see {}",
                    log.display()
                )
            });
        Self {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Ends the browser session and chromedriver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill().await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its value.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// The terminal's screen, one line per row (xterm.js's DOM renderer).
    pub async fn screen(&self) -> String {
        let text = self
            .js(
                "return Array.from(document.querySelectorAll('.xterm-rows > div'), \
                 (row) => row.textContent).join('\\n');",
                vec![],
            )
            .await;
        text.as_str().unwrap_or("").replace('\u{a0}', " ")
    }

    /// Saves a screenshot of the page as `name` in [`artefact_dir`] and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "the screenshot is not a PNG"
        );
        let path = artefact_dir().join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Waits until `probe` returns `Some`, trying every 100 ms for [`WAIT`]. On a timeout, saves
    /// a screenshot and fails with `what`, the page's URL and the terminal's screen.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(value) = probe().await {
                return value;
            }
            if tokio::time::Instant::now() >= deadline {
                let shot = self.screenshot(&failure_name()).await;
                let url = self.client.current_url().await.map(|u| u.to_string());
                let screen = self.screen().await;
                panic!(
                    "timed out after {WAIT:?} waiting for {what}\nurl: {url:?}\nscreenshot: {}\n\
                     terminal screen:\n{screen}",
                    shot.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the page's path is `path`; returns the query (without `?`), if any.
    pub async fn wait_for_path(&self, path: &str) -> Option<String> {
        self.wait_for(&format!("the page {path}"), || async {
            let url = self.client.current_url().await.ok()?;
            (url.path() == path).then(|| url.query().map(str::to_owned))
        })
        .await
    }

    /// The page's path.
    pub async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    /// Waits until an element matching `css` is displayed; returns it.
    pub async fn wait_for_shown(&self, css: &str) -> fantoccini::elements::Element {
        self.wait_for(&format!("{css} to be shown"), || async {
            let element = self.client.find(Locator::Css(css)).await.ok()?;
            element.is_displayed().await.ok()?.then_some(element)
        })
        .await
    }

    /// Waits until the text of the element matching `css` contains `needle`; returns the text.
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> String {
        self.wait_for(&format!("{css} to contain {needle:?}"), || async {
            let text = self
                .client
                .find(Locator::Css(css))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.contains(needle).then_some(text)
        })
        .await
    }

    /// Waits until the attribute `attr` of the element matching `css` is `value`.
    pub async fn wait_for_attr(&self, css: &str, attr: &str, value: &str) {
        self.wait_for(&format!("{css} to have {attr}={value:?}"), || async {
            let element = self.client.find(Locator::Css(css)).await.ok()?;
            (element.attr(attr).await.ok()??.as_str() == value).then_some(())
        })
        .await
    }

    /// Waits until the terminal's screen satisfies `check`; returns the screen.
    pub async fn wait_for_screen(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        self.wait_for(&format!("the terminal to show {what}"), || async {
            let screen = self.screen().await;
            check(&screen).then_some(screen)
        })
        .await
    }

    /// Types into the terminal (xterm.js reads keys from its helper textarea; it needs focus).
    pub async fn type_in_terminal(&self, text: &str) {
        self.client
            .find(Locator::Css("#terminal .xterm-screen"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.client
            .find(Locator::Css("textarea.xterm-helper-textarea"))
            .await
            .unwrap()
            .send_keys(text)
            .await
            .unwrap();
    }

    /// Signs in as `user` from the sign-in page of the gateway at `url`; waits for the
    /// targets page.
    pub async fn sign_in(&self, url: &str, user: &str, password: &str) {
        self.client
            .goto(&format!("{url}/login?next=/targets"))
            .await
            .unwrap();
        self.wait_for("the sign-in form to be ready", || async {
            let button = self.client.find(Locator::Css("#login-submit")).await.ok()?;
            button.is_enabled().await.ok()?.then_some(())
        })
        .await;
        self.fill("#username", user).await;
        self.fill("#password", password).await;
        self.click("#login-submit").await;
        self.wait_for_path("/targets").await;
    }

    /// Fills the input matching `css` with `text` (clearing it first).
    pub async fn fill(&self, css: &str, text: &str) {
        let input = self.client.find(Locator::Css(css)).await.unwrap();
        input.clear().await.unwrap();
        input.send_keys(text).await.unwrap();
    }

    /// The current value of the form field matching `css` (empty when it has none).
    #[allow(dead_code)] // each browser test binary compiles this file; not all read fields
    pub async fn value(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default()
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Accepts the `confirm()` dialog the page is about to show.
    pub async fn accept_confirm(&self) {
        self.wait_for("a confirm dialog", || async {
            self.client.accept_alert().await.ok()
        })
        .await;
    }

    /// A Chrome DevTools Protocol command, through chromedriver.
    #[allow(dead_code)] // each browser test binary compiles this file; not all use CDP
    pub async fn cdp(&self, cmd: &str, params: Value) -> Result<Value, CmdError> {
        self.client
            .issue_cmd(Post {
                path: "goog/cdp/execute",
                body: json!({"cmd": cmd, "params": params}),
            })
            .await
    }

    /// Lets the page read and write the clipboard without asking (WebDriver's Set Permission).
    #[allow(dead_code)] // each browser test binary compiles this file; not all use the clipboard
    pub async fn grant_clipboard(&self) {
        for name in ["clipboard-read", "clipboard-write"] {
            self.client
                .issue_cmd(Post {
                    path: "permissions",
                    body: json!({"descriptor": {"name": name}, "state": "granted"}),
                })
                .await
                .unwrap_or_else(|e| panic!("granting {name}: {e}"));
        }
    }
}
