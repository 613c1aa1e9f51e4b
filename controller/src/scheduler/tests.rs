//! The scheduler on a real embedded store, with a clock the tests move and an executor
//! that records each send (the controller's real one sends through the API's path).

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

use ringpush_audience::DeviceAttributes;
use ringpush_protocol::{AppId, DeviceId};
use ringpush_store::EmbeddedStore;

use super::*;

const SECOND: i64 = 1_000;
const MINUTE: i64 = 60 * SECOND;
const LEASE_MS: u64 = 30_000;

const HOUR: i64 = 60 * MINUTE;
/// 2026-11-23T00:00:00Z, a Monday.
const NOV_23: i64 = 1_795_392_000_000;

/// `hour:minute` UTC on 2026-11-23 (hours past 23 or below 0 reach the days around it).
fn at(hour: i64, minute: i64) -> i64 {
    NOV_23 + hour * HOUR + minute * MINUTE
}

struct TestClock(AtomicI64);

impl TestClock {
    fn at(ms: i64) -> Arc<Self> {
        Arc::new(Self(AtomicI64::new(ms)))
    }
    fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
    fn advance(&self, by_ms: i64) {
        self.0.fetch_add(by_ms, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// One send as the executor saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fired {
    campaign_id: String,
    firing: String,
    zone: Option<String>,
    key: String,
}

/// Records every send; fails the first `failures` ones; with `hang`, never returns (a
/// controller that dies or stalls mid-send).
#[derive(Default)]
struct Recorder {
    fired: Mutex<Vec<Fired>>,
    failures: AtomicU32,
    hang: bool,
}

impl Recorder {
    fn failing(failures: u32) -> Arc<Self> {
        Arc::new(Self {
            failures: AtomicU32::new(failures),
            ..Self::default()
        })
    }
    fn hanging() -> Arc<Self> {
        Arc::new(Self {
            hang: true,
            ..Self::default()
        })
    }
    fn fired(&self) -> Vec<Fired> {
        self.fired.lock().expect("lock").clone()
    }
    fn firings(&self) -> Vec<String> {
        self.fired().into_iter().map(|fired| fired.firing).collect()
    }
}

#[async_trait]
impl FireCampaign for Recorder {
    async fn fire(
        &self,
        campaign: &CampaignRecord,
        firing: &Firing,
        idempotency_key: &str,
    ) -> Result<(), String> {
        self.fired.lock().expect("lock").push(Fired {
            campaign_id: campaign.id.clone(),
            firing: firing.name.clone(),
            zone: firing.zone.clone(),
            key: idempotency_key.to_owned(),
        });
        if self.hang {
            std::future::pending::<()>().await;
        }
        let failed = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if failed {
            return Err("connector unreachable".to_owned());
        }
        Ok(())
    }
}

struct Fixture {
    store: Arc<dyn Store>,
    clock: Arc<TestClock>,
    _dir: tempfile::TempDir,
}

fn fixture(now: i64) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).expect("open store");
    Fixture {
        store: Arc::new(store),
        clock: TestClock::at(now),
        _dir: dir,
    }
}

impl Fixture {
    fn scheduler(&self, owner: &str, executor: Arc<Recorder>) -> Scheduler {
        let config = SchedulerConfig {
            lease_ms: LEASE_MS,
            ..SchedulerConfig::new(owner.to_owned())
        };
        self.scheduler_with(config, executor)
    }

    fn scheduler_with(&self, config: SchedulerConfig, executor: Arc<Recorder>) -> Scheduler {
        let clock: Arc<dyn Clock> = self.clock.clone();
        Scheduler::new(Arc::clone(&self.store), executor, clock, config)
    }

    async fn put(&self, id: &str, schedule: Schedule, created_at_ms: i64) -> CampaignRecord {
        let campaign = CampaignRecord {
            id: id.to_owned(),
            app: AppId(7),
            name: id.to_owned(),
            request: serde_json::json!({"broadcast": true, "data": {"id": id}}),
            schedule,
            throttle_per_second: None,
            state: CampaignState::Scheduled,
            created_at_ms,
        };
        self.store
            .campaigns()
            .put_campaign(&campaign)
            .await
            .expect("put campaign");
        campaign
    }

    async fn state(&self, id: &str) -> CampaignState {
        let campaign = self.store.campaigns().campaign(AppId(7), id).await;
        campaign.expect("read").expect("exists").state
    }

    async fn transition(&self, id: &str, from: CampaignState, to: CampaignState) {
        let moved = self
            .store
            .campaigns()
            .transition_campaign(AppId(7), id, &[from], to)
            .await
            .expect("transition");
        assert!(moved, "{id}: {from:?} -> {to:?}");
    }
}

/// Ticks and waits for the sends the tick started.
async fn tick(scheduler: &mut Scheduler) -> TickReport {
    let report = scheduler.tick().await;
    scheduler.wait_for_fires().await;
    report
}

#[tokio::test]
async fn a_once_campaign_fires_once_then_finishes() {
    let at = at(9, 0);
    let fixture = fixture(at - 10 * SECOND);
    fixture
        .put("cmp_once", Schedule::Once { at_ms: at }, at - MINUTE)
        .await;
    let recorder = Arc::new(Recorder::default());
    let mut scheduler = fixture.scheduler("ctl-a", recorder.clone());
    assert_eq!(
        tick(&mut scheduler).await,
        TickReport::default(),
        "not due yet"
    );
    fixture.clock.set(at);
    let report = tick(&mut scheduler).await;
    let firing = "once:2026-11-23T09:00:00Z".to_owned();
    assert_eq!(report.started, [("cmp_once".to_owned(), firing.clone())]);
    assert_eq!(
        recorder.fired(),
        [Fired {
            campaign_id: "cmp_once".to_owned(),
            firing: firing.clone(),
            zone: None,
            key: format!("campaign:cmp_once:{firing}"),
        }]
    );
    // The next tick sees it done and nothing left: the campaign finishes.
    fixture.clock.advance(SECOND);
    let report = tick(&mut scheduler).await;
    assert_eq!(report.finished, ["cmp_once".to_owned()]);
    assert_eq!(fixture.state("cmp_once").await, CampaignState::Finished);
    for _ in 0..3 {
        fixture.clock.advance(10 * MINUTE);
        assert_eq!(tick(&mut scheduler).await, TickReport::default());
    }
    assert_eq!(recorder.fired().len(), 1);
}

#[tokio::test]
async fn two_schedulers_fire_each_firing_exactly_once() {
    let start = at(9, 0);
    let fixture = fixture(start);
    let every_minute = Schedule::Cron {
        expression: "* * * * *".to_owned(),
        zone: "UTC".to_owned(),
        until_ms: Some(start + 10 * MINUTE),
    };
    fixture.put("cmp_cron", every_minute, start).await;
    fixture
        .put(
            "cmp_once",
            Schedule::Once {
                at_ms: start + 90 * SECOND,
            },
            start,
        )
        .await;
    let recorder = Arc::new(Recorder::default());
    let mut first = fixture.scheduler("ctl-a", recorder.clone());
    let mut second = fixture.scheduler("ctl-b", recorder.clone());
    // Both tick at the same moments, every 15 s, for 12 minutes.
    for _ in 0..=48 {
        tokio::join!(first.tick(), second.tick());
        tokio::join!(first.wait_for_fires(), second.wait_for_fires());
        fixture.clock.advance(15 * SECOND);
    }
    let mut fired = recorder.firings();
    fired.sort();
    let mut expected: Vec<String> = (0..=10)
        .map(|minute| format!("cron:2026-11-23T09:{minute:02}Z"))
        .collect();
    expected.push("once:2026-11-23T09:01:30Z".to_owned());
    expected.sort();
    assert_eq!(fired, expected);
    assert_eq!(fixture.state("cmp_cron").await, CampaignState::Finished);
    assert_eq!(fixture.state("cmp_once").await, CampaignState::Finished);
}

#[tokio::test]
async fn a_scheduler_that_dies_after_claiming_is_taken_over() {
    let at = at(9, 0);
    let fixture = fixture(at);
    fixture
        .put("cmp_once", Schedule::Once { at_ms: at }, at - MINUTE)
        .await;
    let stalled = Recorder::hanging();
    let mut dying = fixture.scheduler("ctl-dying", stalled.clone());
    let report = dying.tick().await;
    assert_eq!(report.started.len(), 1);
    // Let its send start, then the controller dies mid-send.
    while stalled.fired().is_empty() {
        tokio::task::yield_now().await;
    }
    drop(dying);
    let recorder = Arc::new(Recorder::default());
    let mut survivor = fixture.scheduler("ctl-survivor", recorder.clone());
    // While the dead one's lease lives, the firing is left alone.
    fixture.clock.set(at + LEASE_MS as i64 - 1);
    assert_eq!(tick(&mut survivor).await, TickReport::default());
    assert!(recorder.fired().is_empty());
    // Once it has lapsed, the survivor sends, under the same idempotency key.
    fixture.clock.set(at + LEASE_MS as i64);
    let report = tick(&mut survivor).await;
    assert_eq!(report.started.len(), 1);
    let (lost, resent) = (stalled.fired(), recorder.fired());
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].key, lost[0].key);
    assert_eq!(resent[0].key, "campaign:cmp_once:once:2026-11-23T09:00:00Z");
    fixture.clock.advance(SECOND);
    assert_eq!(tick(&mut survivor).await.finished, ["cmp_once".to_owned()]);
    assert_eq!(recorder.fired().len(), 1);
}

/// Campaign time that the test moves apart from lease time, as a simulated clock does.
struct SplitClock {
    campaign: AtomicI64,
    lease: AtomicI64,
}

impl Clock for SplitClock {
    fn now_ms(&self) -> i64 {
        self.campaign.load(Ordering::SeqCst)
    }
    fn lease_now_ms(&self) -> i64 {
        self.lease.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn leases_are_judged_on_the_lease_clock_however_fast_campaign_time_runs() {
    let at = at(9, 0);
    let fixture = fixture(at);
    fixture
        .put("cmp_once", Schedule::Once { at_ms: at }, at - MINUTE)
        .await;
    let real_start = 1_000_000;
    let clock = Arc::new(SplitClock {
        campaign: AtomicI64::new(at),
        lease: AtomicI64::new(real_start),
    });
    let scheduler_on = |owner: &str, executor: Arc<Recorder>| {
        let config = SchedulerConfig {
            lease_ms: LEASE_MS,
            ..SchedulerConfig::new(owner.to_owned())
        };
        let clock: Arc<dyn Clock> = clock.clone();
        Scheduler::new(Arc::clone(&fixture.store), executor, clock, config)
    };
    let stalled = Recorder::hanging();
    let mut dying = scheduler_on("ctl-dying", stalled.clone());
    assert_eq!(dying.tick().await.started.len(), 1);
    while stalled.fired().is_empty() {
        tokio::task::yield_now().await;
    }
    drop(dying);
    let recorder = Arc::new(Recorder::default());
    let mut survivor = scheduler_on("ctl-survivor", recorder.clone());
    // Campaign time runs far past the lease (still inside the look-back); real time does
    // not: the claim still holds.
    clock
        .campaign
        .store(at + 20 * LEASE_MS as i64, Ordering::SeqCst);
    assert_eq!(tick(&mut survivor).await, TickReport::default());
    assert!(recorder.fired().is_empty());
    // Once real time has passed the lease, the survivor takes the firing over.
    clock
        .lease
        .store(real_start + LEASE_MS as i64, Ordering::SeqCst);
    assert_eq!(tick(&mut survivor).await.started.len(), 1);
    assert_eq!(recorder.fired()[0].key, stalled.fired()[0].key);
}

#[tokio::test]
async fn paused_campaigns_skip_what_falls_due_while_paused() {
    let start = at(9, 0);
    let fixture = fixture(start);
    let every_minute = Schedule::Cron {
        expression: "* * * * *".to_owned(),
        zone: "Europe/Paris".to_owned(),
        until_ms: None,
    };
    let campaign = fixture.put("cmp_cron", every_minute, start).await;
    let recorder = Arc::new(Recorder::default());
    let mut scheduler = fixture.scheduler("ctl-a", recorder.clone());
    tick(&mut scheduler).await;
    assert_eq!(recorder.firings(), ["cron:2026-11-23T09:00Z"]);
    fixture
        .transition("cmp_cron", CampaignState::Scheduled, CampaignState::Paused)
        .await;
    // Paused from 09:00:30 to 09:05:30: nothing fires.
    for _ in 0..10 {
        fixture.clock.advance(30 * SECOND);
        assert_eq!(tick(&mut scheduler).await, TickReport::default());
    }
    // Resumed the way the API does: skip what fell due, then move back.
    let now = fixture.clock.now_ms();
    let skipped = skip_missed_firings(fixture.store.as_ref(), &campaign, now, DEFAULT_LOOKBACK_MS)
        .await
        .expect("skip");
    assert_eq!(skipped, 6, "09:00 (already done) to 09:05");
    fixture
        .transition("cmp_cron", CampaignState::Paused, CampaignState::Scheduled)
        .await;
    for _ in 0..4 {
        fixture.clock.advance(30 * SECOND);
        tick(&mut scheduler).await;
    }
    assert_eq!(
        recorder.firings(),
        [
            "cron:2026-11-23T09:00Z",
            "cron:2026-11-23T09:06Z",
            "cron:2026-11-23T09:07Z"
        ]
    );
}

#[tokio::test]
async fn cancelled_campaigns_never_fire() {
    let at = at(9, 0);
    let fixture = fixture(at - MINUTE);
    fixture
        .put("cmp_cancelled", Schedule::Once { at_ms: at }, at - MINUTE)
        .await;
    fixture
        .transition(
            "cmp_cancelled",
            CampaignState::Scheduled,
            CampaignState::Cancelled,
        )
        .await;
    let mut stored_cancelled = fixture
        .put("cmp_stored", Schedule::Once { at_ms: at }, at - MINUTE)
        .await;
    stored_cancelled.state = CampaignState::Cancelled;
    fixture
        .store
        .campaigns()
        .put_campaign(&stored_cancelled)
        .await
        .expect("put");
    let recorder = Arc::new(Recorder::default());
    let mut scheduler = fixture.scheduler("ctl-a", recorder.clone());
    for _ in 0..10 {
        assert_eq!(tick(&mut scheduler).await, TickReport::default());
        fixture.clock.advance(30 * SECOND);
    }
    assert!(recorder.fired().is_empty());
    assert_eq!(
        fixture.state("cmp_cancelled").await,
        CampaignState::Cancelled
    );
}

#[tokio::test]
async fn cron_fires_each_occurrence_once_until_its_end() {
    let start = at(9, 0);
    let fixture = fixture(start);
    let every_five = Schedule::Cron {
        expression: "*/5 * * * *".to_owned(),
        zone: "Asia/Tokyo".to_owned(),
        until_ms: Some(start + 20 * MINUTE),
    };
    fixture.put("cmp_cron", every_five, start - MINUTE).await;
    let recorder = Arc::new(Recorder::default());
    let mut scheduler = fixture.scheduler("ctl-a", recorder.clone());
    // Uneven ticks: every 7 s for 25 minutes.
    while fixture.clock.now_ms() <= start + 25 * MINUTE {
        tick(&mut scheduler).await;
        fixture.clock.advance(7 * SECOND);
    }
    assert_eq!(
        recorder.firings(),
        [
            "cron:2026-11-23T09:00Z",
            "cron:2026-11-23T09:05Z",
            "cron:2026-11-23T09:10Z",
            "cron:2026-11-23T09:15Z",
            "cron:2026-11-23T09:20Z"
        ]
    );
    assert_eq!(fixture.state("cmp_cron").await, CampaignState::Finished);
}

#[tokio::test]
async fn a_scheduler_that_was_down_catches_up_within_the_lookback_only() {
    // An hourly campaign made at 00:30; no controller ran until 03:10.
    let fixture = fixture(at(3, 10));
    let hourly = Schedule::Cron {
        expression: "0 * * * *".to_owned(),
        zone: "UTC".to_owned(),
        until_ms: None,
    };
    fixture.put("cmp_hourly", hourly, at(0, 30)).await;
    let recorder = Arc::new(Recorder::default());
    let mut scheduler = fixture.scheduler("ctl-a", recorder.clone());
    tick(&mut scheduler).await;
    // 01:00 and 02:00 are more than an hour late: only 03:00 is sent.
    assert_eq!(recorder.firings(), ["cron:2026-11-23T03:00Z"]);
    // A once campaign whose time passed more than the look-back ago finishes unsent.
    fixture
        .put("cmp_missed", Schedule::Once { at_ms: at(1, 0) }, 0)
        .await;
    let report = tick(&mut scheduler).await;
    assert_eq!(report.finished, ["cmp_missed".to_owned()]);
    assert_eq!(recorder.fired().len(), 1);
}

#[tokio::test]
async fn failed_sends_are_retried_when_the_claim_lapses() {
    let at = at(9, 0);
    let fixture = fixture(at);
    fixture
        .put("cmp_once", Schedule::Once { at_ms: at }, at - MINUTE)
        .await;
    let recorder = Recorder::failing(2);
    let mut scheduler = fixture.scheduler("ctl-a", recorder.clone());
    tick(&mut scheduler).await;
    // Its own claim still holds: no retry before the lease ends.
    fixture.clock.advance(SECOND);
    assert_eq!(tick(&mut scheduler).await, TickReport::default());
    fixture.clock.set(at + LEASE_MS as i64);
    tick(&mut scheduler).await;
    fixture.clock.set(at + 2 * LEASE_MS as i64);
    tick(&mut scheduler).await;
    let fired = recorder.fired();
    assert_eq!(fired.len(), 3, "two failures, then a success");
    assert!(
        fired.iter().all(|attempt| attempt == &fired[0]),
        "same firing, same key"
    );
    fixture.clock.advance(SECOND);
    assert_eq!(tick(&mut scheduler).await.finished, ["cmp_once".to_owned()]);
}

#[tokio::test]
async fn a_firing_that_always_fails_is_given_up_after_max_attempts() {
    let at = at(9, 0);
    let fixture = fixture(at);
    fixture
        .put("cmp_once", Schedule::Once { at_ms: at }, at - MINUTE)
        .await;
    let recorder = Recorder::failing(u32::MAX);
    let config = SchedulerConfig {
        lease_ms: LEASE_MS,
        max_attempts: 3,
        ..SchedulerConfig::new("ctl-a".to_owned())
    };
    let mut scheduler = fixture.scheduler_with(config, recorder.clone());
    for _ in 0..6 {
        tick(&mut scheduler).await;
        fixture.clock.advance(LEASE_MS as i64);
    }
    assert_eq!(recorder.fired().len(), 3);
    // Given up means done for every scheduler: another one does not try again.
    let other = Arc::new(Recorder::default());
    let mut fresh = fixture.scheduler("ctl-b", other.clone());
    tick(&mut fresh).await;
    assert!(other.fired().is_empty());
    assert_eq!(fixture.state("cmp_once").await, CampaignState::Finished);
}

#[tokio::test]
async fn local_time_fires_once_per_reported_zone_and_the_default() {
    let fixture = fixture(at(-12, 0));
    let zones = [
        Some("Asia/Tokyo"),
        Some("America/New_York"),
        Some("Asia/Tokyo"),
        None,
    ];
    let updates: Vec<(AppId, DeviceId, DeviceAttributes)> = zones
        .iter()
        .map(|zone| {
            let attributes = DeviceAttributes {
                timezone: zone.map(str::to_owned),
                ..DeviceAttributes::default()
            };
            (AppId(7), DeviceId::random(), attributes)
        })
        .collect();
    fixture
        .store
        .registry()
        .put_attributes(&updates)
        .await
        .expect("attributes");
    let nine = Schedule::LocalTime {
        date: "2026-11-23".to_owned(),
        time: "09:00".to_owned(),
        default_zone: "Europe/London".to_owned(),
    };
    fixture.put("cmp_local", nine, at(-12, 0)).await;
    let recorder = Arc::new(Recorder::default());
    let mut scheduler = fixture.scheduler("ctl-a", recorder.clone());
    // Every 10 minutes for a day and a half.
    let mut finished_at = None;
    while fixture.clock.now_ms() < at(24, 0) {
        let report = tick(&mut scheduler).await;
        if !report.finished.is_empty() {
            finished_at.get_or_insert(fixture.clock.now_ms());
        }
        fixture.clock.advance(10 * MINUTE);
    }
    let fired: Vec<(String, Option<String>)> = recorder
        .fired()
        .into_iter()
        .map(|fired| (fired.firing, fired.zone))
        .collect();
    assert_eq!(
        fired,
        [
            (
                "2026-11-23T09:00@Asia/Tokyo".to_owned(),
                Some("Asia/Tokyo".to_owned())
            ),
            (
                "2026-11-23T09:00@Europe/London".to_owned(),
                Some("Europe/London".to_owned())
            ),
            (
                "2026-11-23T09:00@America/New_York".to_owned(),
                Some("America/New_York".to_owned())
            ),
        ]
    );
    // Finished once the furthest west a zone can be (UTC-12) has reached 09:00.
    assert_eq!(finished_at, Some(at(21, 0)));
}

#[tokio::test]
async fn run_ticks_until_shutdown() {
    let fixture = fixture(ringpush_store::now_ms());
    let now = fixture.clock.now_ms();
    fixture
        .put("cmp_now", Schedule::Once { at_ms: now }, now)
        .await;
    let recorder = Arc::new(Recorder::default());
    let config = SchedulerConfig {
        tick: Duration::from_millis(10),
        ..SchedulerConfig::new("ctl-a".to_owned())
    };
    let scheduler = fixture.scheduler_with(config, recorder.clone());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(scheduler.run(shutdown.clone()));
    let finished = tokio::time::timeout(Duration::from_secs(30), async {
        while fixture.state("cmp_now").await != CampaignState::Finished {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    finished.await.expect("the campaign finishes");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("run ends on shutdown")
        .expect("run does not panic");
    assert_eq!(recorder.fired().len(), 1);
}

/// Sends that run until the test lets them end.
#[derive(Default)]
struct Gated {
    started: AtomicU32,
    release: tokio::sync::Notify,
}

#[async_trait]
impl FireCampaign for Gated {
    async fn fire(&self, _: &CampaignRecord, _: &Firing, _: &str) -> Result<(), String> {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.release.notified().await;
        Ok(())
    }
}

#[tokio::test]
async fn a_send_longer_than_its_lease_keeps_its_claim() {
    let at = at(9, 0);
    let fixture = fixture(at);
    fixture
        .put("cmp_slow", Schedule::Once { at_ms: at }, at - MINUTE)
        .await;
    let gated = Arc::new(Gated::default());
    let config = SchedulerConfig {
        lease_ms: 300,
        ..SchedulerConfig::new("ctl-slow".to_owned())
    };
    let clock: Arc<dyn Clock> = fixture.clock.clone();
    let mut slow = Scheduler::new(Arc::clone(&fixture.store), gated.clone(), clock, config);
    assert_eq!(slow.tick().await.started.len(), 1);
    let recorder = Arc::new(Recorder::default());
    let mut other = fixture.scheduler("ctl-other", recorder.clone());
    // The send runs for five leases of the claim's clock; renewed every 100 ms (a third of
    // the lease), the claim stays the slow scheduler's throughout.
    for _ in 0..5 {
        fixture.clock.advance(300);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(tick(&mut other).await.started, []);
    }
    assert!(recorder.fired().is_empty());
    assert_eq!(gated.started.load(Ordering::SeqCst), 1);
    gated.release.notify_one();
    slow.wait_for_fires().await;
    fixture.clock.advance(SECOND);
    assert_eq!(tick(&mut other).await.finished, ["cmp_slow".to_owned()]);
    assert!(
        recorder.fired().is_empty(),
        "sent once, by the slow scheduler"
    );
}
