//! A small W3C WebDriver client for end-to-end tests of the web portal in a real headless
//! Chromium: [`Browser`] owns one `chromedriver` child on a free loopback port, one session
//! in it (a fresh temporary profile), and the directory screenshots go to; [`Element`] is
//! one element of that session's page.
//!
//! It speaks the protocol over HTTP with `reqwest` (JSON in, `{"value": ...}` out) and
//! covers what portal tests need: navigation, CSS lookup (with [`Browser::find`] waiting for
//! an element to appear), clicking and typing, key presses through the Actions API, scripts,
//! waiting for a condition, screenshots. WebDriver errors become
//! [`BrowserError::WebDriver`].
//!
//! The binaries: Chromium is `$CHROMIUM` if set, else `/usr/bin/chromium`; chromedriver is
//! `$CHROMEDRIVER` if set, else `chromedriver` on `PATH`. `deploy/install-test-deps.sh`
//! installs both (Debian's `chromium` and `chromium-driver`).
//!
//! Cleanup: chromedriver runs under a small shell guard in a process group of its own,
//! holding the read end of a pipe whose write end only this process holds (as
//! `ringpush-testkit` does for redis-server). [`Browser::quit`] or dropping the browser
//! deletes the session (chromedriver then closes Chromium), closes the pipe, and the guard
//! kills the whole group; if this process dies without dropping the browser, the pipe closes
//! all the same. The temporary profile is removed last.
//!
//! What it does not own: assertions, the web server under test, frames, windows, cookies.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};

/// Key codes for [`Element::send_keys`] and [`Browser::press_key`] (WebDriver's "normalised
/// key values", private-use code points).
pub mod keys {
    pub const TAB: &str = "\u{E004}";
    pub const ENTER: &str = "\u{E007}";
    pub const SHIFT: &str = "\u{E008}";
    pub const ESCAPE: &str = "\u{E00C}";
    pub const SPACE: &str = "\u{E00D}";
    pub const ARROW_LEFT: &str = "\u{E012}";
    pub const ARROW_UP: &str = "\u{E013}";
    pub const ARROW_RIGHT: &str = "\u{E014}";
    pub const ARROW_DOWN: &str = "\u{E015}";
}

/// How long chromedriver may take to answer `GET /status` with `ready: true`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`Browser::find`] waits for an element to appear, unless
/// [`Browser::set_find_timeout`] says otherwise.
pub const FIND_TIMEOUT: Duration = Duration::from_secs(5);
/// How often waits poll.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// How often a chromedriver that is not up yet is probed.
const READY_POLL_EVERY: Duration = Duration::from_millis(50);
/// Upper bound for one WebDriver command (a page load included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long dropping a browser waits for chromedriver to delete the session.
const DROP_DELETE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the guard may take to kill its process group once its pipe closed.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// Starts tried: another process may grab the port between picking and binding it.
const START_ATTEMPTS: usize = 3;
/// Lines of a WebDriver error message kept (chromedriver appends session info).
const MESSAGE_LINES: usize = 3;
/// Characters of a WebDriver error message kept.
const MESSAGE_CHARS: usize = 500;
/// The key of a web element reference in JSON (W3C WebDriver, "elements").
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// The Chromium used when `$CHROMIUM` is not set.
const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// Runs chromedriver (the arguments) in the background and, when stdin reaches end of file
/// (the harness closed it or ended), kills the whole process group: the guard, chromedriver
/// and any Chromium it started. Exits when chromedriver exits, so a driver that died (say,
/// on a port clash) shows as a finished child. (A background job's stdin is /dev/null, so
/// the watcher reads the pipe through a copy on fd 3.)
const GUARD_SCRIPT: &str = r#"
"$@" &
driver=$!
exec 3<&0
( read -r _unused <&3; kill -KILL 0 ) &
wait "$driver"
"#;

/// What goes wrong driving the browser.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error("{program} not found ({detail}): run deploy/install-test-deps.sh")]
    NotInstalled { program: String, detail: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("chromedriver did not start: {detail}; its log ends:\n{log}")]
    DriverStart { detail: String, log: String },
    #[error("{command}: {source}")]
    Http {
        command: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{command}: WebDriver error `{error}`: {message}")]
    WebDriver {
        command: String,
        error: String,
        message: String,
    },
    #[error("{command}: unexpected answer: {detail}")]
    Protocol { command: String, detail: String },
    #[error("no element matches `{selector}` on {url} within {timeout:?}")]
    NoSuchElement {
        selector: String,
        url: String,
        timeout: Duration,
    },
    #[error("timed out after {timeout:?} waiting for {what}; last seen: {last}")]
    Timeout {
        what: String,
        timeout: Duration,
        last: String,
    },
}

impl BrowserError {
    /// The WebDriver error code (`"no such element"`, `"javascript error"`, ...) if this is a
    /// WebDriver error.
    pub fn webdriver_error(&self) -> Option<&str> {
        match self {
            BrowserError::WebDriver { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Whether the element this error is about left the page (it was replaced, say by a
    /// reload): chromedriver says so as "stale element reference", or, when the page changes
    /// during the call, as an "unknown error" whose node "does not belong to the document".
    pub fn is_stale_element(&self) -> bool {
        match self {
            BrowserError::WebDriver { error, message, .. } => {
                error == "stale element reference"
                    || message.contains("does not belong to the document")
            }
            _ => false,
        }
    }
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BrowserError {
    let what = what.into();
    move |source| BrowserError::Io { what, source }
}

/// One WebDriver session: the HTTP client and the session's URL. Shared by the browser and
/// its elements.
struct Session {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`.
    url: String,
}

impl Session {
    /// `method` on the session's `path` (e.g. `/url`); answers the reply's `value`.
    async fn command(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, BrowserError> {
        call(
            &self.http,
            method,
            &format!("{}{path}", self.url),
            path,
            body,
        )
        .await
    }

    async fn get(&self, path: &str) -> Result<Value, BrowserError> {
        self.command(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, BrowserError> {
        self.command(Method::POST, path, Some(body)).await
    }

    async fn get_string(&self, path: &str) -> Result<String, BrowserError> {
        match self.get(path).await? {
            Value::String(text) => Ok(text),
            other => Err(unexpected(path, "a string", &other)),
        }
    }

    /// The elements matching `css`, in document order, under `scope` (an element's path
    /// such as `/element/ID`) or the whole document (`""`).
    async fn find_all(
        self: &Arc<Self>,
        scope: &str,
        css: &str,
    ) -> Result<Vec<Element>, BrowserError> {
        let path = format!("{scope}/elements");
        let found = self
            .post(&path, json!({"using": "css selector", "value": css}))
            .await?;
        let Value::Array(references) = &found else {
            return Err(unexpected(&path, "an array", &found));
        };
        references
            .iter()
            .map(|reference| {
                reference
                    .get(ELEMENT_KEY)
                    .and_then(Value::as_str)
                    .map(|id| Element {
                        session: Arc::clone(self),
                        id: id.to_owned(),
                    })
                    .ok_or_else(|| unexpected(&path, "element references", &found))
            })
            .collect()
    }
}

/// One HTTP request to chromedriver; unwraps `{"value": ...}` and turns
/// `{"value": {"error", "message"}}` into [`BrowserError::WebDriver`].
async fn call(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    label: &str,
    body: Option<Value>,
) -> Result<Value, BrowserError> {
    let command = format!("{method} {label}");
    let mut request = http.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let http_error = |source| BrowserError::Http {
        command: command.clone(),
        source,
    };
    let response = request.send().await.map_err(http_error)?;
    let status = response.status();
    let text = response.text().await.map_err(http_error)?;
    let reply: Value = serde_json::from_str(&text).map_err(|error| BrowserError::Protocol {
        command: command.clone(),
        detail: format!("HTTP {status}, not JSON ({error}): {}", cut(&text)),
    })?;
    let Some(value) = reply.get("value") else {
        return Err(BrowserError::Protocol {
            command,
            detail: format!("HTTP {status}, no `value`: {}", cut(&text)),
        });
    };
    if let Some(error) = value.get("error").and_then(Value::as_str) {
        let message = value.get("message").and_then(Value::as_str).unwrap_or("");
        return Err(BrowserError::WebDriver {
            command,
            error: error.to_owned(),
            message: cut(message),
        });
    }
    if !status.is_success() {
        return Err(BrowserError::Protocol {
            command,
            detail: format!("HTTP {status}: {}", cut(&text)),
        });
    }
    Ok(value.clone())
}

/// The first [`MESSAGE_LINES`] lines of `text`, at most [`MESSAGE_CHARS`] characters.
fn cut(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let joined = lines[..lines.len().min(MESSAGE_LINES)].join("\n");
    let mut kept: String = joined.chars().take(MESSAGE_CHARS).collect();
    if lines.len() > MESSAGE_LINES || joined.chars().count() > MESSAGE_CHARS {
        kept.push_str(" ...");
    }
    kept
}

fn unexpected(path: &str, wanted: &str, got: &Value) -> BrowserError {
    BrowserError::Protocol {
        command: path.to_owned(),
        detail: format!("wanted {wanted}, got {}", cut(&got.to_string())),
    }
}

/// `text` as the inside of a double-quoted CSS string.
fn css_string(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `program` as a path: itself if it names a path, else the first match on `PATH`.
fn locate(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return path.is_file().then_some(path);
    }
    let search = std::env::var_os("PATH")?;
    std::env::split_paths(&search)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

fn require(program: &str, env: &str) -> Result<PathBuf, BrowserError> {
    locate(program).ok_or_else(|| BrowserError::NotInstalled {
        program: program.to_owned(),
        detail: if program.contains('/') {
            format!("no such file; ${env} names another")
        } else {
            format!("not on PATH; ${env} names another")
        },
    })
}

/// The last `lines` lines of a log file ("" if unreadable).
fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The chromedriver child: the guard shell (leader of its own process group) and the pipe
/// that keeps it alive.
struct Driver {
    guard: Child,
    /// Holds the guard's stdin open; closing it kills the process group.
    guard_stdin: Option<ChildStdin>,
    /// The guard was waited for: its pid (the group's id) may belong to someone else now.
    reaped: bool,
    address: SocketAddr,
}

impl Driver {
    fn spawn(chromedriver: &Path, port: u16, log: &Path) -> Result<Driver, BrowserError> {
        let log_file = std::fs::File::create(log).map_err(io_error("create chromedriver.log"))?;
        let log_copy = log_file
            .try_clone()
            .map_err(io_error("clone chromedriver.log"))?;
        let mut guard = Command::new("sh")
            .arg("-c")
            .arg(GUARD_SCRIPT)
            .arg("chromedriver-guard")
            .arg(chromedriver)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(log_file)
            .stderr(log_copy)
            .spawn()
            .map_err(io_error("spawn sh for chromedriver"))?;
        let guard_stdin = guard.stdin.take();
        Ok(Driver {
            guard,
            guard_stdin,
            reaped: false,
            address: SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Whether chromedriver (the guard) has exited.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.guard.try_wait().ok().flatten();
        if status.is_some() {
            self.reaped = true;
        }
        status
    }

    /// Waits until `GET /status` answers `ready: true`.
    async fn wait_ready(&mut self, http: &reqwest::Client, log: &Path) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let status_url = format!("{}/status", self.url());
        loop {
            if let Some(status) = self.exited() {
                return Err(format!(
                    "chromedriver on {} exited ({status}):\n{}",
                    self.address,
                    log_tail(log, 20)
                ));
            }
            let probe = http
                .get(&status_url)
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if let Ok(response) = probe
                && let Ok(reply) = response.json::<Value>().await
                && reply["value"]["ready"] == Value::Bool(true)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "chromedriver on {} not ready within {READY_TIMEOUT:?}:\n{}",
                    self.address,
                    log_tail(log, 20)
                ));
            }
            tokio::time::sleep(READY_POLL_EVERY).await;
        }
    }

    /// Closes the pipe (the guard kills its group), waits for the guard; kills the group
    /// itself if the guard takes too long. Blocking, and bounded.
    fn stop(&mut self) {
        drop(self.guard_stdin.take());
        if self.reaped {
            return;
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // The guard is still alive, so its pid is still the group's id.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.guard.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.guard.kill();
        let _ = self.guard.wait();
        self.reaped = true;
    }
}

/// A headless Chromium driven through chromedriver. See the module doc; dropping it is as
/// good as [`Browser::quit`] except that errors are not reported.
pub struct Browser {
    session: Arc<Session>,
    session_id: String,
    driver: Driver,
    artifacts: PathBuf,
    find_timeout: Duration,
    quitted: bool,
    /// Last: removed after the driver is stopped. Holds `profile/` (Chromium's
    /// `--user-data-dir`) and `chromedriver.log`.
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("session", &self.session.url)
            .field("artifacts", &self.artifacts)
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session in a fresh
    /// profile; screenshots go to `artifacts` (created if missing).
    pub async fn start(artifacts: &Path) -> Result<Browser, BrowserError> {
        std::fs::create_dir_all(artifacts).map_err(io_error(format!(
            "create the artifacts directory {}",
            artifacts.display()
        )))?;
        let chromium_name =
            std::env::var("CHROMIUM").unwrap_or_else(|_| DEFAULT_CHROMIUM.to_owned());
        let chromium = require(&chromium_name, "CHROMIUM")?;
        let chromedriver_name =
            std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned());
        let chromedriver = require(&chromedriver_name, "CHROMEDRIVER")?;

        let dir = tempfile::Builder::new()
            .prefix("ringpush-browser-")
            .tempdir()
            .map_err(io_error("create a temporary directory"))?;
        let profile = dir.path().join("profile");
        std::fs::create_dir(&profile).map_err(io_error("create the profile directory"))?;
        let log = dir.path().join("chromedriver.log");
        let http = reqwest::Client::builder()
            .timeout(COMMAND_TIMEOUT)
            .build()
            .map_err(|source| BrowserError::Http {
                command: "build the HTTP client".to_owned(),
                source,
            })?;

        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            let mut driver = Driver::spawn(&chromedriver, ringpush_testkit::free_port(), &log)?;
            if let Err(failure) = driver.wait_ready(&http, &log).await {
                driver.stop();
                last_failure = failure;
                continue;
            }
            let session_id =
                match new_session(&http, &driver.url(), &chromium, &profile, &log).await {
                    Ok(id) => id,
                    Err(error) => {
                        driver.stop();
                        return Err(error);
                    }
                };
            return Ok(Browser {
                session: Arc::new(Session {
                    http,
                    url: format!("{}/session/{session_id}", driver.url()),
                }),
                session_id,
                driver,
                artifacts: artifacts.to_path_buf(),
                find_timeout: FIND_TIMEOUT,
                quitted: false,
                dir,
            });
        }
        Err(BrowserError::DriverStart {
            detail: format!("{START_ATTEMPTS} attempts failed"),
            log: last_failure,
        })
    }

    /// Where screenshots go.
    pub fn artifacts(&self) -> &Path {
        &self.artifacts
    }

    /// Chromium's `--user-data-dir` (removed when the browser goes).
    pub fn profile_dir(&self) -> PathBuf {
        self.dir.path().join("profile")
    }

    /// How long [`Browser::find`] and the conveniences built on it wait for an element
    /// ([`FIND_TIMEOUT`] to begin with).
    pub fn set_find_timeout(&mut self, timeout: Duration) {
        self.find_timeout = timeout;
    }

    /// The port chromedriver listens on.
    pub fn driver_port(&self) -> u16 {
        self.driver.address.port()
    }

    /// Loads `url` and waits for the load to finish.
    pub async fn goto(&self, url: &str) -> Result<(), BrowserError> {
        self.session.post("/url", json!({"url": url})).await?;
        Ok(())
    }

    pub async fn current_url(&self) -> Result<String, BrowserError> {
        self.session.get_string("/url").await
    }

    pub async fn title(&self) -> Result<String, BrowserError> {
        self.session.get_string("/title").await
    }

    /// The serialised DOM as it is now (not the HTML as served).
    pub async fn page_source(&self) -> Result<String, BrowserError> {
        self.session.get_string("/source").await
    }

    /// The first element matching `css`, waiting up to [`FIND_TIMEOUT`] (see
    /// [`Browser::set_find_timeout`]) for one to appear.
    pub async fn find(&self, css: &str) -> Result<Element, BrowserError> {
        self.find_in("", css, css).await
    }

    /// Every element matching `css` now (no wait), in document order.
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element>, BrowserError> {
        self.session.find_all("", css).await
    }

    /// Whether an element matches `css` now (no wait).
    pub async fn exists(&self, css: &str) -> Result<bool, BrowserError> {
        Ok(!self.find_all(css).await?.is_empty())
    }

    /// The element that has the focus (`document.activeElement`).
    pub async fn active_element(&self) -> Result<Element, BrowserError> {
        let found = self.session.get("/element/active").await?;
        found
            .get(ELEMENT_KEY)
            .and_then(Value::as_str)
            .map(|id| Element {
                session: Arc::clone(&self.session),
                id: id.to_owned(),
            })
            .ok_or_else(|| unexpected("/element/active", "an element reference", &found))
    }

    /// The first match of `css` under `scope` (see [`Session::find_all`]), polling up to
    /// the find timeout; errors name `label` and the current URL.
    async fn find_in(&self, scope: &str, css: &str, label: &str) -> Result<Element, BrowserError> {
        let deadline = Instant::now() + self.find_timeout;
        loop {
            if let Some(element) = self.session.find_all(scope, css).await?.into_iter().next() {
                return Ok(element);
            }
            if Instant::now() >= deadline {
                let url = self
                    .current_url()
                    .await
                    .unwrap_or_else(|error| format!("<unknown URL: {error}>"));
                return Err(BrowserError::NoSuchElement {
                    selector: label.to_owned(),
                    url,
                    timeout: self.find_timeout,
                });
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Clicks the first match of `css` (waiting for it like [`Browser::find`]).
    pub async fn click(&self, css: &str) -> Result<(), BrowserError> {
        self.find(css).await?.click().await
    }

    /// Clears the first match of `css`, then types `text` into it.
    pub async fn fill(&self, css: &str, text: &str) -> Result<(), BrowserError> {
        let element = self.find(css).await?;
        element.clear().await?;
        element.send_keys(text).await
    }

    /// Picks the `<option value="value">` of the select matching `css` by clicking it
    /// (waiting for both to appear).
    pub async fn select_option(&self, css: &str, value: &str) -> Result<(), BrowserError> {
        let select = self.find(css).await?;
        let option_css = format!("option[value=\"{}\"]", css_string(value));
        let scope = format!("/element/{}", select.id);
        let option = self
            .find_in(&scope, &option_css, &format!("{css} {option_css}"))
            .await?;
        option.click().await
    }

    /// The rendered text of the first match of `css`.
    pub async fn text(&self, css: &str) -> Result<String, BrowserError> {
        self.find(css).await?.text().await
    }

    /// Polls `check` every 100 ms until it answers true; an error from `check` ends the wait
    /// at once. `what` names the condition in the timeout error.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl AsyncFnMut(&Browser) -> Result<bool, BrowserError>,
    ) -> Result<(), BrowserError> {
        let deadline = Instant::now() + timeout;
        loop {
            if check(self).await? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(BrowserError::Timeout {
                    what: what.to_owned(),
                    timeout,
                    last: "the check still answered false".to_owned(),
                });
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Polls the text of the first match of `css` every 100 ms until `accept` takes it;
    /// answers that text. No match yet, or an element replaced while read, counts as not
    /// yet. The timeout error quotes the last text seen.
    pub async fn wait_for_text(
        &self,
        css: &str,
        timeout: Duration,
        accept: impl Fn(&str) -> bool,
    ) -> Result<String, BrowserError> {
        let deadline = Instant::now() + timeout;
        let mut last: Option<String> = None;
        loop {
            if let Some(element) = self.find_all(css).await?.into_iter().next() {
                match element.text().await {
                    Ok(text) if accept(&text) => return Ok(text),
                    Ok(text) => last = Some(text),
                    Err(error) if error.is_stale_element() => {}
                    Err(error) => return Err(error),
                }
            }
            if Instant::now() >= deadline {
                return Err(BrowserError::Timeout {
                    what: format!("the text of `{css}`"),
                    timeout,
                    last: last.map_or_else(
                        || "no element matched".to_owned(),
                        |text| format!("{text:?}"),
                    ),
                });
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Runs `script` as the body of a function (`arguments[i]` are `args`; pass elements
    /// with [`Element::to_json`]) and answers what it returns.
    pub async fn execute(&self, script: &str, args: &[Value]) -> Result<Value, BrowserError> {
        self.session
            .post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    /// Presses and releases `key` (a character or a [`keys`] code) through the Actions API:
    /// it goes to whatever has the focus, as a user's key press would.
    pub async fn press_key(&self, key: &str) -> Result<(), BrowserError> {
        self.session
            .post(
                "/actions",
                json!({"actions": [{
                    "type": "key",
                    "id": "keyboard",
                    "actions": [
                        {"type": "keyDown", "value": key},
                        {"type": "keyUp", "value": key},
                    ],
                }]}),
            )
            .await?;
        Ok(())
    }

    /// Presses Tab (moves the focus on).
    pub async fn send_tab(&self) -> Result<(), BrowserError> {
        self.press_key(keys::TAB).await
    }

    /// Writes a screenshot of the viewport to `<artifacts>/<name>.png`; answers its path.
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf, BrowserError> {
        let encoded = self.session.get_string("/screenshot").await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_bytes())
            .map_err(|error| BrowserError::Protocol {
                command: "GET /screenshot".to_owned(),
                detail: format!("not base64: {error}"),
            })?;
        let path = self.artifacts.join(format!("{name}.png"));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io_error(format!("create {}", parent.display())))?;
        }
        std::fs::write(&path, png).map_err(io_error(format!("write {}", path.display())))?;
        Ok(path)
    }

    /// Deletes the session (Chromium closes), stops chromedriver and removes the profile.
    /// Cleans up even when deleting the session fails, then reports that failure.
    pub async fn quit(mut self) -> Result<(), BrowserError> {
        self.quitted = true;
        let deleted = self.session.command(Method::DELETE, "", None).await;
        self.driver.stop();
        deleted.map(drop)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.quitted {
            delete_session_blocking(self.driver.address, &self.session_id);
        }
        self.driver.stop();
    }
}

/// `DELETE /session/ID` over a plain blocking socket, best effort (drop cannot await).
fn delete_session_blocking(address: SocketAddr, session_id: &str) {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(1)) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(DROP_DELETE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(DROP_DELETE_TIMEOUT));
    let request = format!(
        "DELETE /session/{session_id} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return;
    }
    // chromedriver answers once Chromium is closed, and keeps the connection open despite
    // `Connection: close`: read up to the end of the reply's head, not to end of file.
    let mut reply = Vec::new();
    let mut buffer = [0u8; 1024];
    while !reply.windows(4).any(|window| window == b"\r\n\r\n") {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(read) => reply.extend_from_slice(&buffer[..read]),
        }
    }
}

/// Creates the session; answers its id.
async fn new_session(
    http: &reqwest::Client,
    driver_url: &str,
    chromium: &Path,
    profile: &Path,
    log: &Path,
) -> Result<String, BrowserError> {
    let args = [
        "--headless=new".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--window-size=1280,900".to_owned(),
        format!("--user-data-dir={}", profile.display()),
    ];
    let capabilities = json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {"binary": chromium, "args": args},
    }}});
    let created = call(
        http,
        Method::POST,
        &format!("{driver_url}/session"),
        "/session",
        Some(capabilities),
    )
    .await
    .map_err(|error| match error {
        BrowserError::WebDriver {
            command,
            error,
            message,
        } => BrowserError::WebDriver {
            command,
            error,
            message: format!("{message}\nchromedriver's log ends:\n{}", log_tail(log, 10)),
        },
        other => other,
    })?;
    created
        .get("sessionId")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| unexpected("/session", "a sessionId", &created))
}

/// One element of the page, as chromedriver knows it. Stale once the page drops it.
#[derive(Clone)]
pub struct Element {
    session: Arc<Session>,
    id: String,
}

impl std::fmt::Debug for Element {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Element").field(&self.id).finish()
    }
}

impl Element {
    fn path(&self, rest: &str) -> String {
        format!("/element/{}{rest}", self.id)
    }

    /// The reference to pass this element to [`Browser::execute`].
    pub fn to_json(&self) -> Value {
        json!({ ELEMENT_KEY: self.id })
    }

    /// The elements matching `css` under this one now (no wait).
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element>, BrowserError> {
        self.session.find_all(&self.path(""), css).await
    }

    /// Scrolls it into view and clicks its centre (an error if something covers it).
    pub async fn click(&self) -> Result<(), BrowserError> {
        self.session.post(&self.path("/click"), json!({})).await?;
        Ok(())
    }

    /// Its rendered text (`innerText`-like: hidden text is left out).
    pub async fn text(&self) -> Result<String, BrowserError> {
        self.session.get_string(&self.path("/text")).await
    }

    /// The attribute `name` (or the property of that name, as WebDriver defines it); `None`
    /// if absent.
    pub async fn attr(&self, name: &str) -> Result<Option<String>, BrowserError> {
        match self
            .session
            .get(&self.path(&format!("/attribute/{name}")))
            .await?
        {
            Value::Null => Ok(None),
            Value::String(text) => Ok(Some(text)),
            other => Ok(Some(other.to_string())),
        }
    }

    /// The DOM property `name` (e.g. `value`, `checked`), `null` if absent.
    pub async fn property(&self, name: &str) -> Result<Value, BrowserError> {
        self.session
            .get(&self.path(&format!("/property/{name}")))
            .await
    }

    /// Empties an input or textarea.
    pub async fn clear(&self) -> Result<(), BrowserError> {
        self.session.post(&self.path("/clear"), json!({})).await?;
        Ok(())
    }

    /// Focuses it and types `text` (which may hold [`keys`] codes).
    pub async fn send_keys(&self, text: &str) -> Result<(), BrowserError> {
        self.session
            .post(&self.path("/value"), json!({"text": text}))
            .await?;
        Ok(())
    }

    /// Whether it is rendered visibly.
    pub async fn is_displayed(&self) -> Result<bool, BrowserError> {
        match self.session.get(&self.path("/displayed")).await? {
            Value::Bool(shown) => Ok(shown),
            other => Err(unexpected(&self.path("/displayed"), "a boolean", &other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_cut_to_their_first_lines() {
        assert_eq!(cut("one line"), "one line");
        assert_eq!(cut("a\nb\nc\n"), "a\nb\nc");
        assert_eq!(cut("a\nb\nc\nd\ne"), "a\nb\nc ...");
        assert_eq!(cut(&"x".repeat(600)).chars().count(), MESSAGE_CHARS + 4);
    }

    #[test]
    fn css_strings_are_escaped() {
        assert_eq!(css_string(r#"a"b\c"#), r#"a\"b\\c"#);
    }
}
