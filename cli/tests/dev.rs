//! `ringpush dev`, as the README runs it: one process, embedded store, made-up admin token.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use ringpush_testkit::free_port;
use serde_json::Value;
use support::{Lines, ringpush_bin};

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn dev_runs_the_whole_platform_in_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let [controller, dispatcher, device, grpc] =
        [(); 4].map(|()| format!("127.0.0.1:{}", free_port()));
    let mut dev = KillOnDrop(
        Command::new(ringpush_bin())
            .args([
                "dev",
                "--controller-listen",
                &controller,
                "--dispatcher-listen",
                &dispatcher,
            ])
            .args([
                "--device-listen",
                &device,
                "--grpc-listen",
                &grpc,
                "--data-dir",
            ])
            .arg(dir.path())
            .env_remove("RINGPUSH_ADMIN_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let banner = Lines::new(dev.0.stdout.take().unwrap());
    let admin_token = loop {
        let line = banner.next("the banner of dev", Duration::from_secs(60));
        if let Some(token) = line.trim().strip_prefix("admin token ") {
            break token.trim().to_owned();
        }
    };
    let controller_url = format!("http://{controller}");
    let dispatcher_url = format!("http://{dispatcher}");
    let run = |args: &[&str], envs: &[(&str, &str)]| {
        let output = Command::new(ringpush_bin())
            .args(args)
            .envs(envs.iter().copied())
            .env("RINGPUSH_CONTROLLER", &controller_url)
            .env("RINGPUSH_DISPATCHER", &dispatcher_url)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    };
    let app: Value = serde_json::from_slice(&run(
        &["app", "create", "demo"],
        &[("RINGPUSH_ADMIN_TOKEN", &admin_token)],
    ))
    .unwrap();
    let app_id = app["app_id"].as_str().unwrap();
    let client_key = app["client_key"].as_str().unwrap();
    let server_key = app["server_key"].as_str().unwrap();

    // A device registers while offline, receives nothing yet; a push waits for it.
    let identity = dir.path().join("phone.json");
    let mut listen = KillOnDrop(
        Command::new(ringpush_bin())
            .args(["listen", "--count", "3", "--identity"])
            .arg(&identity)
            .env("RINGPUSH_CONTROLLER", &controller_url)
            .env("RINGPUSH_DISPATCHER", &dispatcher_url)
            .env("RINGPUSH_APP_ID", app_id)
            .env("RINGPUSH_CLIENT_KEY", client_key)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = Lines::new(listen.0.stdout.take().unwrap());
    let first: Value =
        serde_json::from_str(&lines.next("the device id", Duration::from_secs(30))).unwrap();
    let device_id = first["device_id"].as_str().unwrap().to_owned();
    let envs = [
        ("RINGPUSH_APP_ID", app_id),
        ("RINGPUSH_SERVER_KEY", server_key),
    ];
    run(&["send", "--device", &device_id, "--data", "one"], &envs);
    run(
        &["send", "--device", &device_id, "--json", r#"{"n": 2}"#],
        &envs,
    );
    run(
        &[
            "send",
            "--device",
            &device_id,
            "--title",
            "Hi",
            "--deep-link",
            "app://x",
            "--priority",
            "high",
            "--collapse-key",
            "greeting",
        ],
        &envs,
    );
    let one: Value =
        serde_json::from_str(&lines.next("message one", Duration::from_secs(30))).unwrap();
    let two: Value =
        serde_json::from_str(&lines.next("message two", Duration::from_secs(30))).unwrap();
    assert_eq!(
        (one["data"].as_str(), one["seq"].as_u64()),
        (Some("one"), Some(1))
    );
    assert_eq!(
        (two["data"]["n"].as_u64(), two["seq"].as_u64()),
        (Some(2), Some(2))
    );
    // A notification without data, as `listen` prints it (the embedded store carries the
    // options too).
    let three: Value =
        serde_json::from_str(&lines.next("message three", Duration::from_secs(30))).unwrap();
    assert_eq!(three["data"], "", "{three}");
    assert_eq!(
        three["notification"],
        serde_json::json!({"title": "Hi", "deep_link": "app://x"})
    );
    assert_eq!(
        (three["priority"].as_str(), three["collapse_key"].as_str()),
        (Some("high"), Some("greeting"))
    );
    assert!(listen.0.wait().unwrap().success());

    // SIGTERM stops dev cleanly.
    Command::new("kill")
        .args(["-TERM", &dev.0.id().to_string()])
        .status()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = dev.0.try_wait().unwrap() {
            assert!(status.success(), "dev exits 0 on SIGTERM, got {status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "dev did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
