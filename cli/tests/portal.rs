//! End-to-end tests of the marketing portal (issue 5) in a real headless Chromium, against
//! real `ringpush` processes over a real redis-server, with simulated devices on the wire
//! protocol: operators log in, send a campaign to a tag and watch it arrive, schedule one and
//! cancel it, manage keys; a viewer cannot send, whatever the form says. Screenshots of the
//! main pages go to `target/test-artifacts/portal/`.

mod support;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ringpush_harness::browser::{Browser, keys};
use ringpush_harness::sim::{SimDevice, SimOptions};
use ringpush_protocol::device::{Attributes, ReportKind};
use serde_json::{Value, json};
use support::audiences::{App, members, register_many, wait_estimate};
use support::{Platform, eventually};

const PASSWORD: &str = "correct horse battery staple";
/// Devices with the campaign's tag, and devices without it.
const VIP: usize = 12;
const OTHERS: usize = 4;
/// Slow enough that the page shows the count rising.
const THROTTLE: u32 = 3;

fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts/portal")
}

async fn create_operator(platform: &Platform, name: &str, role: &str) {
    let body = json!({ "name": name, "role": role, "password": PASSWORD });
    let (status, answer) = platform
        .post("/v1/operators", support::ADMIN_TOKEN, &body, None)
        .await;
    assert_eq!(status, 201, "operator {name}: {answer}");
}

async fn log_in(browser: &Browser, platform: &Platform, name: &str) {
    browser
        .goto(&format!("{}/portal/", platform.controller_url))
        .await
        .unwrap();
    browser.fill("#name", name).await.unwrap();
    browser.fill("#password", PASSWORD).await.unwrap();
    browser.click("form button[type=submit]").await.unwrap();
    browser
        .wait_for_text("#operator", Duration::from_secs(10), |text| {
            text.starts_with(name)
        })
        .await
        .unwrap();
}

async fn log_out(browser: &Browser) {
    browser.click("header form button").await.unwrap();
    browser.find("#password").await.unwrap();
}

/// Connects `count` devices of `app` with `tags`; answers them and their ids.
async fn connect_tagged(
    platform: &Platform,
    app: &App,
    count: usize,
    tags: &[&str],
) -> (Vec<SimDevice>, Vec<String>) {
    let (registered, _) = register_many(platform, app, count).await;
    let members = members(platform);
    let ring = ringpush_ring::Ring::new(members, ringpush_ring::DEFAULT_VNODES);
    let mut devices = Vec::new();
    for (id, token) in &registered {
        let owner = ring.owner(id.parse().unwrap()).unwrap();
        let options = SimOptions {
            attributes: Some(Attributes {
                platform: "ios".into(),
                alias: format!("user-{}", &id[..6]),
                tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
                ..Attributes::default()
            }),
            arrivals: None,
            reports: vec![ReportKind::Received, ReportKind::Opened],
        };
        let device = SimDevice::connect_with(&owner.device_url, id, token, 0, options).await;
        device.welcomed().await;
        devices.push(device);
    }
    (devices, registered.into_iter().map(|(id, _)| id).collect())
}

fn timeline_total(devices: &[SimDevice]) -> u64 {
    devices
        .iter()
        .map(|device| device.counts.timeline.load(Ordering::Relaxed))
        .sum()
}

/// The number in a counter cell (`1,234` → 1234); `None` while it shows a dash.
fn number(text: &str) -> Option<u64> {
    text.replace(',', "").trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_run_campaigns_in_a_real_browser() {
    let platform = Platform::start(2).await;
    let app = App::create(&platform).await;
    for (name, role) in [("ada", "admin"), ("mark", "marketer"), ("vera", "viewer")] {
        create_operator(&platform, name, role).await;
    }
    let (vip, vip_ids) = connect_tagged(&platform, &app, VIP, &["vip", "jp"]).await;
    let (others, _) = connect_tagged(&platform, &app, OTHERS, &["churned"]).await;
    wait_estimate(&platform, &app, &json!({ "tags": "vip" }), VIP as u64).await;

    let browser = Browser::start(&artifacts())
        .await
        .expect("chromium and chromedriver (deploy/install-test-deps.sh installs them)");
    let portal = format!("{}/portal", platform.controller_url);

    // A marketer logs in; a wrong password first is refused with a clear message.
    browser.goto(&format!("{portal}/login")).await.unwrap();
    browser.screenshot("login").await.unwrap();
    browser.fill("#name", "mark").await.unwrap();
    browser.fill("#password", "not the password").await.unwrap();
    browser.click("form button[type=submit]").await.unwrap();
    let refused = browser.text("#login-error").await.unwrap();
    assert!(
        refused.contains("wrong operator name or password"),
        "{refused}"
    );
    log_in(&browser, &platform, "mark").await;
    browser.screenshot("apps").await.unwrap();

    // Compose to a tag: the live estimate states the reach before anything is sent.
    browser
        .click(&format!("a[href='/portal/apps/{}/campaigns']", app.id))
        .await
        .unwrap();
    browser.click("#nav-compose").await.unwrap();
    browser.fill("#name", "VIP early access").await.unwrap();
    browser.fill("#title", "Early access").await.unwrap();
    browser
        .fill("#body", "The spring sale opens for you first")
        .await
        .unwrap();
    browser.click("#audience-tags").await.unwrap();
    browser.fill("#tags", "vip and not churned").await.unwrap();
    browser
        .wait_for_text("#reach", Duration::from_secs(10), |text| {
            text == format!("{VIP} devices")
        })
        .await
        .unwrap();
    // A bad expression is reported live, by the API's own message.
    browser.fill("#tags", "vip and (").await.unwrap();
    let problem = browser
        .wait_for_text("#reach", Duration::from_secs(10), |text| {
            !text.ends_with("devices") && text != "…"
        })
        .await
        .unwrap();
    assert!(!problem.is_empty());
    browser.fill("#tags", "vip and not churned").await.unwrap();
    browser
        .fill("#throttle", &THROTTLE.to_string())
        .await
        .unwrap();
    browser.screenshot("compose").await.unwrap();
    browser.click("#review").await.unwrap();

    // The review states the reach and previews the notification; nothing is sent yet.
    let reach = browser.text("#review-reach").await.unwrap();
    assert_eq!(reach, VIP.to_string());
    assert_eq!(
        timeline_total(&vip),
        0,
        "nothing is sent before the confirmation"
    );
    browser.screenshot("review").await.unwrap();
    browser.click("#confirm").await.unwrap();

    // The campaign page's delivered count rises as the devices receive it.
    browser.find("#stat-delivered").await.unwrap();
    let campaign_url = browser.current_url().await.unwrap();
    let mut seen = Vec::new();
    browser
        .wait_for(
            "delivered to reach every VIP device",
            Duration::from_secs(40),
            async |b| {
                let text = b.text("#stat-delivered").await?;
                if let Some(delivered) = number(&text)
                    && seen.last() != Some(&delivered)
                {
                    seen.push(delivered);
                }
                Ok(seen.last() == Some(&(VIP as u64)))
            },
        )
        .await
        .unwrap();
    browser
        .wait_for_text("#campaign-state", Duration::from_secs(10), |text| {
            text == "finished"
        })
        .await
        .unwrap();
    assert!(
        seen.windows(2).all(|pair| pair[0] < pair[1]),
        "the count only rises: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|&delivered| delivered > 0 && delivered < VIP as u64),
        "the page showed the count on its way up, not only the end: {seen:?}"
    );
    eventually(
        "every VIP device has the push",
        Duration::from_secs(10),
        async || timeline_total(&vip) == VIP as u64,
    )
    .await;
    assert_eq!(
        timeline_total(&others),
        0,
        "devices outside the tag get nothing"
    );
    browser
        .wait_for_text("#stat-acked", Duration::from_secs(10), |text| {
            number(text) == Some(VIP as u64)
        })
        .await
        .unwrap();
    browser
        .wait_for_text("#share-delivered", Duration::from_secs(5), |text| {
            text == "100.0%"
        })
        .await
        .unwrap();
    browser.screenshot("campaign").await.unwrap();
    browser
        .execute("document.getElementById('chart').scrollIntoView();", &[])
        .await
        .unwrap();
    assert!(
        browser.exists("#chart canvas").await.unwrap(),
        "the chart is drawn"
    );
    browser.screenshot("campaign-chart").await.unwrap();

    // Schedule one for later, then cancel it before it fires.
    browser
        .goto(&format!("{portal}/apps/{}/compose", app.id))
        .await
        .unwrap();
    browser.fill("#name", "New year greeting").await.unwrap();
    browser.fill("#title", "Happy new year").await.unwrap();
    browser.fill("#tags", "vip").await.unwrap();
    browser.click("#timing-at").await.unwrap();
    // A datetime-local input's typing order depends on the locale: set its value directly.
    browser
        .execute(
            "document.getElementById('at').value = '2030-01-01T09:00';",
            &[],
        )
        .await
        .unwrap();
    browser.fill("#at_zone", "Asia/Tokyo").await.unwrap();
    browser.click("#review").await.unwrap();
    browser.click("#confirm").await.unwrap();
    let state = browser.text("#campaign-state").await.unwrap();
    assert_eq!(state, "scheduled");
    browser.click("#action-cancel").await.unwrap();
    browser
        .wait_for_text("#campaign-state", Duration::from_secs(5), |text| {
            text == "cancelled"
        })
        .await
        .unwrap();
    browser
        .goto(&format!("{portal}/apps/{}/campaigns", app.id))
        .await
        .unwrap();
    let list = browser.text("#campaigns").await.unwrap();
    assert!(
        list.contains("New year greeting") && list.contains("cancelled"),
        "{list}"
    );
    assert!(
        list.contains("VIP early access") && list.contains("finished"),
        "{list}"
    );
    browser.screenshot("campaigns").await.unwrap();

    // An uploaded list of aliases: its reach is stated on the review, and going back keeps
    // every field.
    let list = std::env::temp_dir().join(format!("portal-list-{}.csv", std::process::id()));
    let aliases: Vec<String> = vip_ids[..2]
        .iter()
        .map(|id| format!("user-{}", &id[..6]))
        .collect();
    std::fs::write(
        &list,
        format!("alias,note\n{},a\n{},b\n", aliases[0], aliases[1]),
    )
    .unwrap();
    browser
        .goto(&format!("{portal}/apps/{}/compose", app.id))
        .await
        .unwrap();
    browser.fill("#name", "Two users").await.unwrap();
    browser.fill("#body", "Your order shipped").await.unwrap();
    browser.click("#audience-list").await.unwrap();
    browser
        .select_option("#list_kind", "aliases")
        .await
        .unwrap();
    let upload = browser.find("#list_file").await.unwrap();
    upload.send_keys(list.to_str().unwrap()).await.unwrap();
    browser.click("#review").await.unwrap();
    // The header line of the file is an alias nobody has: it reaches no device.
    assert_eq!(browser.text("#review-reach").await.unwrap(), "2");
    browser.click("form[action$='/edit'] button").await.unwrap();
    // Wait for the edit page (reading before it loads found no #list: seen once).
    browser.find("#list").await.unwrap();
    let kept = browser
        .execute("return document.getElementById('list').value;", &[])
        .await
        .unwrap();
    assert_eq!(
        kept,
        json!(format!("alias\n{}\n{}", aliases[0], aliases[1]))
    );
    assert_eq!(
        browser
            .find("#name")
            .await
            .unwrap()
            .property("value")
            .await
            .unwrap(),
        json!("Two users")
    );
    std::fs::remove_file(&list).unwrap();

    // Everyone needs the reach typed in: a wrong number sends nothing.
    browser.click("#audience-everyone").await.unwrap();
    browser.click("#review").await.unwrap();
    let everyone = (VIP + OTHERS).to_string();
    assert_eq!(browser.text("#review-reach").await.unwrap(), everyone);
    browser.fill("#confirm_reach", "1").await.unwrap();
    browser.click("#confirm").await.unwrap();
    let refused = browser.text("#review-error").await.unwrap();
    assert!(refused.contains("nothing was sent"), "{refused}");
    let (_, campaigns) = platform
        .get(&format!("/v1/apps/{}/campaigns", app.id), &app.server_key)
        .await;
    assert_eq!(campaigns.as_array().map(Vec::len), Some(2), "{campaigns}");
    browser.screenshot("typed-confirmation").await.unwrap();

    // Device lookup by alias: attributes, presence and positions.
    let alias = format!("user-{}", &vip_ids[0][..6]);
    browser
        .goto(&format!("{portal}/apps/{}/devices?q={alias}", app.id))
        .await
        .unwrap();
    let tags = browser.text(".device-tags").await.unwrap();
    assert_eq!(tags, "jp, vip");
    let card = browser.text(".device").await.unwrap();
    assert!(
        card.contains(&vip_ids[0]) && card.contains("online"),
        "{card}"
    );
    browser.screenshot("device").await.unwrap();

    // Keyboard use: Tab from the start of a page reaches the skip link, then the navigation.
    browser
        .execute("document.activeElement.blur();", &[])
        .await
        .unwrap();
    browser.press_key(keys::TAB).await.unwrap();
    let focused = browser
        .execute("return document.activeElement.textContent;", &[])
        .await
        .unwrap();
    assert_eq!(focused, json!("Skip to content"));
    log_out(&browser).await;

    // A viewer sees no compose link, gets a refusal on the compose page, and a crafted
    // confirmation is refused by the API: nothing is created.
    log_in(&browser, &platform, "vera").await;
    browser
        .goto(&format!("{portal}/apps/{}/campaigns", app.id))
        .await
        .unwrap();
    assert!(!browser.exists("#nav-compose").await.unwrap());
    assert!(!browser.exists("#action-cancel").await.unwrap());
    browser
        .goto(&format!("{portal}/apps/{}/compose", app.id))
        .await
        .unwrap();
    let refusal = browser.text("#error-message").await.unwrap();
    assert!(refusal.contains("viewer role cannot send"), "{refusal}");
    browser.screenshot("viewer-refused").await.unwrap();
    // From a page of the viewer's own session, so the CSRF token is right: the refusal is
    // the API's role check, not the CSRF check.
    browser
        .goto(&format!("{portal}/apps/{}/campaigns", app.id))
        .await
        .unwrap();
    let crafted = browser
        .execute(
            "const csrf = document.querySelector('meta[name=csrf-token]').content;
             const body = new URLSearchParams({ csrf, name: 'sneaky', title: 't', audience: 'everyone',
               timing: 'now', reviewed_reach: '1', confirm_reach: '1', submission: 'crafted1' });
             return fetch(arguments[0], { method: 'POST', body })
               .then(r => r.text().then(text => [r.status, text]));",
            &[json!(format!("/portal/apps/{}/send", app.id))],
        )
        .await
        .unwrap();
    assert_eq!(crafted[0], json!(403), "the API refuses a viewer's send");
    let page = crafted[1].as_str().unwrap();
    assert!(page.contains("viewer role cannot send"), "{page}");
    let direct = browser
        .execute(
            "const csrf = document.querySelector('meta[name=csrf-token]').content;
             return fetch(arguments[0], { method: 'POST', headers: { 'X-CSRF-Token': csrf,
               'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'x',
               message: { broadcast: true, data: 'x' } }) }).then(r => r.json());",
            &[json!(format!("/v1/apps/{}/campaigns", app.id))],
        )
        .await
        .unwrap();
    assert_eq!(direct["error"]["code"], json!("forbidden"), "{direct}");
    let (_, campaigns) = platform
        .get(&format!("/v1/apps/{}/campaigns", app.id), &app.server_key)
        .await;
    assert_eq!(campaigns.as_array().map(Vec::len), Some(2), "{campaigns}");
    log_out(&browser).await;

    // An admin creates a server key (shown once), which works until it is revoked.
    log_in(&browser, &platform, "ada").await;
    browser
        .goto(&format!("{portal}/apps/{}/keys", app.id))
        .await
        .unwrap();
    browser.select_option("#kind", "server").await.unwrap();
    browser.click("form[action$='/keys'] button").await.unwrap();
    let secret = browser.text("code.secret").await.unwrap();
    assert!(secret.starts_with("sk_"), "{secret}");
    browser.screenshot("keys").await.unwrap();
    let campaigns_path = format!("/v1/apps/{}/campaigns", app.id);
    assert_eq!(platform.get(&campaigns_path, &secret).await.0, 200);
    let key_id = browser
        .find("code.secret")
        .await
        .unwrap()
        .attr("id")
        .await
        .unwrap()
        .unwrap()
        .trim_start_matches("secret-")
        .to_owned();
    browser.click(&format!("#sure-{key_id}")).await.unwrap();
    browser
        .click(&format!("#key-{key_id} button.danger"))
        .await
        .unwrap();
    // The revocation posts a form and reloads the page: read only from the new page.
    let status = browser
        .wait_for_text(
            &format!("#key-{key_id} .key-status"),
            Duration::from_secs(10),
            |text| text.starts_with("revoked"),
        )
        .await
        .unwrap();
    assert!(status.starts_with("revoked"), "{status}");
    let scopes = browser
        .text(&format!("#key-{key_id} .key-scopes"))
        .await
        .unwrap();
    assert_eq!(scopes, "send, read_stats, manage_devices");
    let (code, answer): (u16, Value) = platform.get(&campaigns_path, &secret).await;
    assert_eq!(code, 401, "a revoked key stops working: {answer}");
    browser.goto(&campaign_url).await.unwrap();
    browser.screenshot("campaign-admin").await.unwrap();
    browser.quit().await.unwrap();
}
