//! End-to-end tests of message options: notification shape, priority and collapse key, from
//! the REST API to the app, live and after an absence, for one device and for an audience.

mod support;

use std::path::Path;
use std::time::Duration;

use ringpush_sdk::{Client, Message, Notification, Priority};
use serde_json::{Value, json};
use support::Platform;

async fn device(platform: &Platform, app: &str, client_key: &str, state: &Path) -> Client {
    let config = support::devices::device_config(platform, app, client_key, state);
    Client::start(config).await.expect("device starts")
}

async fn next(client: &mut Client) -> Message {
    tokio::time::timeout(Duration::from_secs(20), client.next_message())
        .await
        .expect("a message within 20 s")
        .expect("no device error")
}

async fn send(platform: &Platform, app: &str, key: &str, body: Value) -> Value {
    let (status, answer) = platform
        .post(&format!("/v1/apps/{app}/messages"), key, &body, None)
        .await;
    assert_eq!(status, 200, "{answer}");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_reach_the_app_and_a_collapse_key_keeps_only_the_newest() {
    let platform = Platform::start(1).await;
    let (app, server_key, client_key) = platform.create_app().await;
    let state = platform.dir.path().join("phone.json");
    let mut phone = device(&platform, &app, &client_key, &state).await;
    let id = phone.device_id().to_string();

    // Live: a notification without data, high priority.
    send(
        &platform,
        &app,
        &server_key,
        json!({
            "device_ids": [id],
            "notification": {"title": "Order shipped", "body": "Tuesday", "deep_link": "shop://orders/42", "badge": 1},
            "priority": "high",
        }),
    )
    .await;
    let shipped = next(&mut phone).await;
    assert_eq!(shipped.priority, Priority::High);
    assert_eq!(
        shipped.notification,
        Some(Notification {
            title: Some("Order shipped".into()),
            body: Some("Tuesday".into()),
            deep_link: Some("shop://orders/42".into()),
            badge: Some(1),
        })
    );
    assert!(shipped.data.is_empty());
    phone.close().await;

    // Away: three scores under one key, and a message without one, in its inbox; three
    // headlines under one key on the app's timeline.
    let mut score_ids = Vec::new();
    for score in ["1:0", "2:0", "2:1"] {
        let answer = send(
            &platform,
            &app,
            &server_key,
            json!({"device_ids": [id], "data": score, "collapse_key": "score"}),
        )
        .await;
        score_ids.push(answer["message_ids"][0].as_str().unwrap().to_owned());
    }
    send(
        &platform,
        &app,
        &server_key,
        json!({"device_ids": [id], "data": "unrelated"}),
    )
    .await;
    for headline in ["first", "second", "third"] {
        send(
            &platform,
            &app,
            &server_key,
            json!({"broadcast": true, "data": headline, "collapse_key": "headline"}),
        )
        .await;
    }
    for replaced in &score_ids[..2] {
        let (status, body) = platform
            .get(&format!("/v1/apps/{app}/messages/{replaced}"), &server_key)
            .await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("expired")),
            "{body}"
        );
    }

    let mut phone = device(&platform, &app, &client_key, &state).await;
    let mut inbox = Vec::new();
    let mut timeline = Vec::new();
    while inbox.len() < 2 || timeline.is_empty() {
        let message = next(&mut phone).await;
        let text = message.data_str().unwrap().to_owned();
        match message.stream {
            ringpush_sdk::Stream::Inbox => inbox.push((text, message.collapse_key.clone())),
            ringpush_sdk::Stream::Timeline => timeline.push(text),
        }
    }
    assert_eq!(
        inbox,
        [
            ("2:1".to_owned(), Some("score".to_owned())),
            ("unrelated".to_owned(), None)
        ]
    );
    assert_eq!(timeline, ["third"]);
    // Nothing else is waiting: a last message comes next, not a replaced one.
    send(
        &platform,
        &app,
        &server_key,
        json!({"device_ids": [id], "data": "last"}),
    )
    .await;
    assert_eq!(next(&mut phone).await.data_str().unwrap(), "last");
    phone.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_options_get_clear_errors() {
    let platform = Platform::start(1).await;
    let (app, server_key, _) = platform.create_app().await;
    let device = "0123456789abcdef0123456789abcdef";
    let cases = [
        (
            json!({"device_ids": [device], "data": "x", "collapse_key": "has space"}),
            "collapse_key",
        ),
        (
            json!({"device_ids": [device], "data": "x", "priority": "urgent"}),
            "priority",
        ),
        (
            json!({"device_ids": [device], "notification": {}}),
            "notification",
        ),
        (
            json!({"device_ids": [device], "notification": {"deep_link": "orders/42"}}),
            "deep_link",
        ),
        (
            json!({"device_ids": [device], "notification": {"title": "x", "colour": "red"}}),
            "colour",
        ),
        (json!({"device_ids": [device]}), "data or notification"),
    ];
    for (body, says) in cases {
        let (status, answer) = platform
            .post(
                &format!("/v1/apps/{app}/messages"),
                &server_key,
                &body,
                None,
            )
            .await;
        assert_eq!(status, 400, "{body} -> {answer}");
        let text = answer.to_string();
        assert!(
            text.contains(says),
            "{body} -> {answer} should mention {says}"
        );
    }
}

/// `ringpush send` as a user runs it: notification flags reach the app; `--progress` on an
/// audience waits until every device acked and, without a terminal, says so on one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_send_command_takes_options_and_reports_progress() {
    let platform = Platform::start(1).await;
    let (app, server_key, client_key) = platform.create_app().await;
    let mut phones = Vec::new();
    for name in ["a", "b"] {
        let state = platform.dir.path().join(format!("{name}.json"));
        phones.push(device(&platform, &app, &client_key, &state).await);
    }
    let first_id = phones[0].device_id().to_string();
    let run = {
        let (url, app, key) = (
            platform.controller_url.clone(),
            app.clone(),
            server_key.clone(),
        );
        move |args: &[&str]| run_send(&url, &app, &key, args)
    };

    let args = [
        "send",
        "--device",
        &first_id,
        "--title",
        "Hi",
        "--badge",
        "2",
        "--priority",
        "high",
        "--collapse-key",
        "greeting",
    ];
    let (answer, _) = run(&args);
    assert!(answer["message_ids"][0].is_string(), "{answer}");
    let greeting = next(&mut phones[0]).await;
    assert_eq!(
        (
            greeting.notification.clone().and_then(|n| n.badge),
            greeting.priority
        ),
        (Some(2), Priority::High)
    );
    assert_eq!(greeting.collapse_key.as_deref(), Some("greeting"));

    // The devices take their messages while the command watches the statistics.
    let receivers: Vec<_> = phones
        .into_iter()
        .map(|mut phone| {
            tokio::spawn(async move {
                let message = next(&mut phone).await;
                phone.close().await;
                message.data_str().unwrap().to_owned()
            })
        })
        .collect();
    let (answer, stderr) = tokio::task::spawn_blocking(move || {
        run(&[
            "send",
            "--broadcast",
            "--data",
            "everyone",
            "--progress",
            "--wait-seconds",
            "30",
        ])
    })
    .await
    .unwrap();
    assert!(answer["message_id"].is_string(), "{answer}");
    assert!(
        stderr.contains("delivered 2/2, acked 2/2, pending 0"),
        "the progress ends with everything acked: {stderr}"
    );
    for receiver in receivers {
        assert_eq!(receiver.await.unwrap(), "everyone");
    }
}

/// Runs `ringpush` with `args` against a controller; answers its JSON answer and stderr.
fn run_send(controller: &str, app: &str, server_key: &str, args: &[&str]) -> (Value, String) {
    let output = std::process::Command::new(support::ringpush_bin())
        .args(args)
        .args(["--controller", controller])
        .env("RINGPUSH_APP_ID", app)
        .env("RINGPUSH_SERVER_KEY", server_key)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{args:?}: {stderr}");
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    (answer, stderr)
}
