//! The SDK's audience features against a real deployment in the test process: attributes
//! matched by the connector's Broadcast, the timeline stream exactly once across restarts,
//! and reports reaching the message statistics.

mod common;

use std::time::Duration;

use common::{Cluster, assert_quiet, eventually, init_logs, next, texts};
use ringpush_sdk::{Client, DeviceAttributes, Message, Stream, state};
use ringpush_store::Counter;

fn vip() -> DeviceAttributes {
    DeviceAttributes {
        platform: Some("linux".into()),
        app_version: Some("2.3.0".into()),
        tags: ["vip".to_owned()].into(),
        ..DeviceAttributes::default()
    }
}

/// (stream, seq, text) of a message, to compare.
fn summary(message: &Message) -> (Stream, u64, String) {
    (
        message.stream,
        message.seq,
        message.data_str().expect("utf-8").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_receives_the_broadcasts_of_its_audiences_only() {
    init_logs();
    let cluster = Cluster::start().await;
    let identity = cluster.new_device().await;
    let device = identity.device_id;
    let mut client = Client::start(
        cluster
            .config()
            .with_identity(identity)
            .with_attributes(vip()),
    )
    .await
    .unwrap();
    cluster.wait_for_attributes(device, &vip()).await;

    // Not for this device, then for it: only the second arrives, and the gap between the two
    // timeline seqs is not a loss.
    let (_, churned_seq) = cluster.broadcast("churned", "for churned", None).await;
    let (vip_id, vip_seq) = cluster.broadcast("vip", "for vips", Some("spring")).await;
    assert!(vip_seq > churned_seq);
    let message = next(&mut client).await;
    assert_eq!(
        summary(&message),
        (Stream::Timeline, vip_seq, "for vips".to_owned())
    );
    assert_eq!(message.message_id, vip_id);
    assert_eq!(message.campaign_id.as_deref(), Some("spring"));
    assert_eq!(message.skipped_before, 0);
    assert_quiet(&mut client).await;

    // The inbox is a stream of its own, numbered from 1, beside the timeline.
    cluster.send(device, &texts("direct", 1)).await;
    let message = next(&mut client).await;
    assert_eq!(summary(&message), (Stream::Inbox, 1, "direct-0".to_owned()));
    assert_eq!(message.campaign_id, None);

    // Attributes changed at run time reach the connector: a topic, then a tag removed.
    client.subscribe("news").await.unwrap();
    client.remove_tag("vip").await.unwrap();
    let mut changed = vip();
    changed.tags.clear();
    changed.topics.insert("news".into());
    assert_eq!(client.attributes(), changed);
    cluster.wait_for_attributes(device, &changed).await;
    let (_, vip_again) = cluster.broadcast("vip", "for vips again", None).await;
    let (_, news_seq) = cluster.broadcast("topic = news", "the news", None).await;
    assert_eq!(
        summary(&next(&mut client).await),
        (Stream::Timeline, news_seq, "the news".to_owned())
    );
    assert!(news_seq > vip_again);
    assert_quiet(&mut client).await;

    assert_eq!((client.last_seq(), client.timeline_seq()), (1, news_seq));
    let stats = client.stats();
    assert_eq!(stats.messages_handed, 3);
    assert_eq!(stats.messages_skipped, 0, "timeline gaps are not losses");
    assert!(stats.attributes_sent >= 2, "{stats:?}");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_from_the_state_file_sees_no_timeline_message_twice() {
    init_logs();
    let cluster = Cluster::start().await;
    let identity = cluster.new_device().await;
    let device = identity.device_id;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.json");

    let mut first = Client::start(
        cluster
            .config()
            .with_identity(identity)
            .with_state_file(&path)
            .with_attributes(vip()),
    )
    .await
    .unwrap();
    // A tag added at run time is saved with the rest.
    first.add_tag("early").await.unwrap();
    let mut attributes = vip();
    attributes.tags.insert("early".into());
    cluster.wait_for_attributes(device, &attributes).await;

    let mut timeline = Vec::new();
    for index in 0..3 {
        let text = format!("t-{index}");
        let (_, seq) = cluster.broadcast("vip", &text, None).await;
        timeline.push((Stream::Timeline, seq, text));
    }
    assert_eq!(summary(&next(&mut first).await), timeline[0]);
    assert_eq!(summary(&next(&mut first).await), timeline[1]);
    cluster.send(device, &texts("m", 2)).await;
    // The process ends without closing, as a crash would: two timeline messages were handed
    // (and saved), the third and the inbox messages perhaps received but not handed.
    drop(first);
    let saved = state::load(&path).unwrap().unwrap();
    assert_eq!((saved.last_seq, saved.timeline_seq), (0, timeline[1].1));
    assert_eq!(saved.attributes.as_ref(), Some(&attributes));

    // Sent while the device is away: it catches up from the timeline.
    let (_, seq) = cluster.broadcast("vip", "t-3", None).await;
    timeline.push((Stream::Timeline, seq, "t-3".to_owned()));

    // A new client from the state file alone; a newer app version is configured.
    let mut config = cluster
        .config()
        .with_state_file(&path)
        .with_attributes(DeviceAttributes {
            app_version: Some("2.4.0".into()),
            ..vip()
        });
    config.controller_url = "http://127.0.0.1:1".into(); // registering would fail
    let mut second = Client::start(config).await.unwrap();
    assert_eq!(second.timeline_seq(), timeline[1].1);
    assert!(
        second.attributes().tags.contains("early"),
        "kept across the restart"
    );
    assert_eq!(second.attributes().app_version.as_deref(), Some("2.4.0"));
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(summary(&next(&mut second).await));
    }
    assert_quiet(&mut second).await;
    // Each stream in its own order; the two streams may interleave.
    let of = |stream: Stream| -> Vec<(Stream, u64, String)> {
        got.iter().filter(|m| m.0 == stream).cloned().collect()
    };
    assert_eq!(of(Stream::Timeline), timeline[2..]);
    assert_eq!(
        of(Stream::Inbox),
        [
            (Stream::Inbox, 1, "m-0".to_owned()),
            (Stream::Inbox, 2, "m-1".to_owned())
        ]
    );
    assert_eq!(second.stats().messages_handed, 4);
    second.close().await;

    // Once more after a clean close: nothing is handed again.
    let mut third = Client::start(cluster.config().with_state_file(&path))
        .await
        .unwrap();
    assert_eq!(third.timeline_seq(), timeline[3].1);
    assert_quiet(&mut third).await;
    let (_, seq) = cluster.broadcast("vip", "t-4", None).await;
    assert_eq!(
        summary(&next(&mut third).await),
        (Stream::Timeline, seq, "t-4".to_owned())
    );
    third.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_reach_the_statistics_even_when_made_offline() {
    init_logs();
    let mut cluster = Cluster::start().await;
    let identity = cluster.new_device().await;
    let device = identity.device_id;
    let mut client = Client::start(
        cluster
            .config()
            .with_identity(identity)
            .with_attributes(vip()),
    )
    .await
    .unwrap();
    cluster.wait_for_attributes(device, &vip()).await;

    let (message_id, _) = cluster.broadcast("vip", "sale", Some("spring")).await;
    let message = next(&mut client).await;
    assert_eq!(message.message_id, message_id);
    client.report_opened(&message);
    eventually("the opened and received reports to be counted", || async {
        let opened = cluster.stat(&message_id, Counter::Opened).await;
        let acked = cluster.stat(&message_id, Counter::Acked).await;
        (opened == 1 && acked == 1).then_some(())
    })
    .await;
    assert_eq!(cluster.stat("spring", Counter::Opened).await, 1);

    // Reported while the connector is away: kept, and sent after the reconnect.
    let address = cluster.stop_connector(0).await;
    eventually("the client to notice", || async {
        (!client.stats().connected).then_some(())
    })
    .await;
    client.report_clicked(&message);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cluster.stat(&message_id, Counter::Clicked).await, 0);
    cluster.start_connector("c1", &address).await;
    eventually("the clicked report to be counted", || async {
        (cluster.stat(&message_id, Counter::Clicked).await == 1).then_some(())
    })
    .await;
    assert_eq!(cluster.stat(&message_id, Counter::Opened).await, 1, "once");
    let stats = client.stats();
    assert_eq!(stats.reports_sent, 3, "{stats:?}");
    assert_eq!(stats.reports_dropped, 0);
    client.close().await;
}
