//! The WebDriver client against a real headless Chromium: a page served from inside the test
//! is filled in, clicked and read back, a script runs, a screenshot is written, Tab moves the
//! focus, and the browser's processes and profile are gone after quit and after drop.
//!
//! Needs chromium and chromedriver (deploy/install-test-deps.sh installs them); without them
//! the tests fail with that hint rather than pass without a browser.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ringpush_harness::browser::{FIND_TIMEOUT, keys};
use ringpush_harness::{Browser, BrowserError};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The page: a form whose button writes, after a short delay (so waiting is needed), what
/// was typed and chosen into `#out`.
const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Browser test page</title></head>
<body>
<form id="form" onsubmit="return false">
  <label for="name">Name</label>
  <input id="name" name="name" value="initial">
  <label for="color">Colour</label>
  <select id="color" name="color">
    <option value="red">Red</option>
    <option value="green">Green</option>
    <option value="blue">Blue</option>
  </select>
  <button id="go" type="button">Go</button>
</form>
<p id="out">waiting</p>
<p id="hidden" style="display: none">not shown</p>
<script>
  document.getElementById('go').addEventListener('click', () => {
    const name = document.getElementById('name').value;
    const color = document.getElementById('color').value;
    setTimeout(() => {
      document.getElementById('out').textContent = 'Hello ' + name + ' in ' + color;
    }, 300);
  });
</script>
</body>
</html>
"#;

/// Serves [`PAGE`] for any request on a free loopback port; answers its URL and a count of
/// the requests served.
async fn serve_page() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/form", listener.local_addr().expect("address"));
    let served = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&served);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 2048];
                while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                    }
                }
                if !request.starts_with(b"GET ") {
                    return;
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{PAGE}",
                    PAGE.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (url, served)
}

/// `<workspace>/target/test-artifacts/browser`.
fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-artifacts/browser")
        .to_path_buf()
}

async fn start_browser() -> Browser {
    match Browser::start(&artifacts_dir()).await {
        Ok(browser) => browser,
        Err(error) => panic!("the browser did not start: {error}"),
    }
}

/// Processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(command_line) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let command_line = String::from_utf8_lossy(&command_line).replace('\0', " ");
        if command_line.contains(needle) {
            found.push(format!(
                "{}: {command_line}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    found
}

/// Chromium's and chromedriver's processes, while `profile` and `port` are in use.
fn browser_processes(profile: &Path, port: u16) -> Vec<String> {
    let mut found = processes_with(&profile.display().to_string());
    found.extend(processes_with(&format!("--port={port}")));
    found
}

/// Asserts that chromedriver, Chromium and the profile are gone (within a few seconds:
/// Chromium's helper processes exit right after the browser).
async fn assert_gone(profile: &Path, port: u16) {
    for _ in 0..50 {
        if browser_processes(profile, port).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(browser_processes(profile, port), Vec::<String>::new());
    assert!(!profile.exists(), "{} still exists", profile.display());
}

#[tokio::test]
async fn drives_a_form_in_headless_chromium() {
    let (url, served) = serve_page().await;
    let mut browser = start_browser().await;
    let profile = browser.profile_dir();
    let port = browser.driver_port();
    assert!(
        !browser_processes(&profile, port).is_empty(),
        "no chromium or chromedriver process runs"
    );

    browser.goto(&url).await.expect("goto");
    assert!(
        served.load(Ordering::SeqCst) >= 1,
        "the page was not fetched"
    );
    assert_eq!(browser.current_url().await.expect("url"), url);
    assert_eq!(browser.title().await.expect("title"), "Browser test page");
    assert!(
        browser
            .page_source()
            .await
            .expect("source")
            .contains(r#"<p id="out">waiting</p>"#)
    );

    // Lookup.
    assert_eq!(browser.find_all("option").await.expect("options").len(), 3);
    assert!(browser.exists("#go").await.expect("exists"));
    assert!(!browser.exists("#nope").await.expect("exists"));
    let name = browser.find("#name").await.expect("find #name");
    assert_eq!(name.attr("name").await.expect("attr"), Some("name".into()));
    assert_eq!(name.attr("placeholder").await.expect("attr"), None);
    assert!(name.is_displayed().await.expect("displayed"));
    let hidden = browser.find("#hidden").await.expect("find #hidden");
    assert!(!hidden.is_displayed().await.expect("displayed"));
    assert_eq!(
        browser.text("label[for=color]").await.expect("text"),
        "Colour"
    );
    let missing = browser.find("#nope").await.expect_err("#nope is not there");
    assert!(
        matches!(&missing, BrowserError::NoSuchElement { selector, url: at, timeout }
            if selector == "#nope" && at == &url && *timeout == FIND_TIMEOUT),
        "{missing}"
    );
    browser.set_find_timeout(Duration::from_millis(500));

    // The form: the text only changes after the click, from what was filled in and chosen.
    assert_eq!(browser.text("#out").await.expect("text"), "waiting");
    browser.fill("#name", "Ada").await.expect("fill");
    assert_eq!(name.property("value").await.expect("value"), json!("Ada"));
    browser
        .select_option("#color", "green")
        .await
        .expect("select");
    let color = browser.find("#color").await.expect("find #color");
    assert_eq!(
        color.property("value").await.expect("value"),
        json!("green")
    );
    assert!(
        browser.select_option("#color", "purple").await.is_err(),
        "no purple option"
    );
    browser.click("#go").await.expect("click");
    let text = browser
        .wait_for_text("#out", Duration::from_secs(5), |text| {
            text.starts_with("Hello")
        })
        .await
        .expect("the paragraph changes");
    assert_eq!(text, "Hello Ada in green");
    let timeout = browser
        .wait_for_text("#out", Duration::from_millis(300), |text| text == "never")
        .await
        .expect_err("the text never says that");
    assert!(
        timeout.to_string().contains("\"Hello Ada in green\""),
        "{timeout}"
    );
    browser
        .wait_for(
            "the button to exist",
            Duration::from_secs(1),
            async |browser| browser.exists("#go").await,
        )
        .await
        .expect("wait_for");

    // Scripts, with plain and element arguments, and a script's error.
    let answer = browser
        .execute(
            "return arguments[0] + document.querySelectorAll('option').length + arguments[1].id",
            &[json!(10), color.to_json()],
        )
        .await
        .expect("execute");
    assert_eq!(answer, json!("13color"));
    let thrown = browser
        .execute("throw new Error('boom')", &[])
        .await
        .expect_err("the script throws");
    match &thrown {
        BrowserError::WebDriver { error, message, .. } => {
            assert_eq!(error, "javascript error");
            assert!(message.contains("boom"), "{message}");
            assert!(message.lines().count() <= 3, "{message}");
        }
        other => panic!("wanted a WebDriver error, got {other}"),
    }

    // Screenshot: a fresh PNG file.
    let expected = artifacts_dir().join("form.png");
    let _ = std::fs::remove_file(&expected);
    let shot = browser.screenshot("form").await.expect("screenshot");
    assert_eq!(shot, expected);
    let png = std::fs::read(&shot).expect("read the screenshot");
    assert!(png.len() > 1000, "a {} byte screenshot", png.len());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    // Keyboard: Tab moves the focus through the form in order; typing goes to the focus.
    let active_id = async || {
        browser
            .execute("return document.activeElement.id", &[])
            .await
            .expect("active element")
    };
    browser
        .execute("document.getElementById('name').focus()", &[])
        .await
        .expect("focus");
    assert_eq!(active_id().await, json!("name"));
    browser.send_tab().await.expect("tab");
    assert_eq!(active_id().await, json!("color"));
    browser.send_tab().await.expect("tab");
    assert_eq!(active_id().await, json!("go"));
    let active = browser.active_element().await.expect("active element");
    assert_eq!(active.attr("id").await.expect("id"), Some("go".into()));
    name.click().await.expect("click #name");
    assert_eq!(active_id().await, json!("name"));
    browser.press_key("!").await.expect("press !");
    name.send_keys(&format!("?{}", keys::TAB))
        .await
        .expect("keys");
    assert_eq!(name.property("value").await.expect("value"), json!("Ada!?"));
    assert_eq!(active_id().await, json!("color"));

    browser.quit().await.expect("quit");
    assert_gone(&profile, port).await;
}

#[tokio::test]
async fn dropping_the_browser_stops_it() {
    let (url, _served) = serve_page().await;
    let browser = start_browser().await;
    let profile = browser.profile_dir();
    let port = browser.driver_port();
    browser.goto(&url).await.expect("goto");
    assert!(
        !processes_with(&profile.display().to_string()).is_empty(),
        "no chromium process runs"
    );
    drop(browser);
    assert_gone(&profile, port).await;
}
