//! The campaign scheduler. Every controller runs one; together they fire each due firing of
//! every scheduled campaign exactly once (docs/audiences.md, "Campaigns and scheduling").
//!
//! Each tick (1 s by default) a scheduler:
//! 1. lists the campaigns in `Scheduled` state, across apps;
//! 2. computes each one's firings due in the look-back window `now - lookback ..= now`
//!    (`ringpush_schedule::firings`; for `local_time`, over the zones the app's devices
//!    reported, from the registry);
//! 3. claims each firing not known to be done, with a lease (`CampaignStore::claim_firing`);
//!    the one scheduler that gets it fires it through [`FireCampaign`] with the idempotency
//!    key `campaign:<id>:<firing>`, in a task of its own, then marks it done;
//! 4. marks the campaign `Finished` once no firing can remain: its last possible firing
//!    (`ringpush_schedule::last_due_ms`) has passed and every firing in the window is done,
//!    or it has passed by more than the look-back.
//!
//! **Exactly once.** A claim is atomic in the store, so one scheduler fires a firing at a
//! time. A scheduler that dies (or stalls) mid-send loses its claim when the lease ends, and
//! another sends again under the same idempotency key, which appends nothing twice. The lease
//! should outlast the longest send (a throttled campaign sends slowly); a send that outlasts
//! it is repeated by another scheduler, harmlessly for the same reason.
//!
//! **Catching up.** A firing is fired late if it became due while no scheduler ran, as long
//! as it is still inside the look-back window (1 hour by default): a controller fleet that
//! was down for ten minutes sends what it missed when it comes back, and one that was down
//! for a day does not send yesterday's messages. Firings due before the campaign existed
//! are not firings (see `ringpush_schedule::firings`).
//!
//! **Failures.** A failed send releases nothing: the claim's lease runs out and the firing is
//! claimed again (by any scheduler) on a later tick. Each scheduler tries a firing at most
//! `max_attempts` times; on the claim after that it gives up, logs it, and marks the firing
//! done so that no scheduler tries again.
//!
//! **Paused and cancelled campaigns** are not listed, so they do not fire. Firings that fall
//! due while a campaign is paused are skipped, not sent late: the resume must call
//! [`skip_missed_firings`] before it moves the campaign back to `Scheduled`.
//!
//! Time comes from a [`Clock`], so tests run the scheduler on a clock they move, and
//! end-to-end tests and demos on a [`SimulatedClock`]. Firings are worked out in the clock's
//! campaign time ([`Clock::now_ms`]); claims' leases are judged by [`Clock::lease_now_ms`],
//! real time for every clock a controller runs on, so a lease keeps its real length however
//! fast campaign time runs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ringpush_schedule::{Firing, Schedule, ScheduleError};
use ringpush_store::{CampaignRecord, CampaignState, Claim, Store, StoreError};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use crate::clock::{Clock, SimulatedClock, SystemClock};

/// Sends one firing of a campaign; the controller implements it over its send path.
#[async_trait]
pub trait FireCampaign: Send + Sync {
    /// Sends `campaign`'s message for `firing` (for `local_time`, narrowed to devices in
    /// `firing.zone`; the default zone's firing also covers devices without a zone). Must be
    /// idempotent under `idempotency_key`: a firing may be fired again after a failure or a
    /// lost lease, and must then append nothing twice.
    async fn fire(
        &self,
        campaign: &CampaignRecord,
        firing: &Firing,
        idempotency_key: &str,
    ) -> Result<(), String>;
}

/// The idempotency key of a firing's send.
pub fn idempotency_key(campaign_id: &str, firing: &str) -> String {
    format!("campaign:{campaign_id}:{firing}")
}

/// How far back a scheduler catches up by default: 1 hour.
pub const DEFAULT_LOOKBACK_MS: u64 = 3_600_000;

/// Settings of a scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// This scheduler's name in claims: unique per controller process.
    pub owner: String,
    /// How often it looks for due firings.
    pub tick: Duration,
    /// How late a missed firing may still be fired.
    pub lookback_ms: u64,
    /// How long a claim keeps others off a firing: longer than the longest send.
    pub lease_ms: u64,
    /// Sends of one firing this scheduler tries before it gives the firing up.
    pub max_attempts: u32,
    /// Sends under way at once; due firings beyond it wait for a later tick.
    pub max_concurrent_fires: usize,
}

impl SchedulerConfig {
    /// Defaults: tick 1 s, look back 1 hour, lease 10 minutes, 5 attempts, 16 sends at once.
    pub fn new(owner: String) -> Self {
        Self {
            owner,
            tick: Duration::from_secs(1),
            lookback_ms: DEFAULT_LOOKBACK_MS,
            lease_ms: 600_000,
            max_attempts: 5,
            max_concurrent_fires: 16,
        }
    }
}

/// Why the firings of a campaign could not be worked out.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("schedule: {0}")]
    Schedule(#[from] ScheduleError),
}

/// What one tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    /// (campaign id, firing name) of the sends this tick started.
    pub started: Vec<(String, String)>,
    /// Campaigns this tick marked `Finished`.
    pub finished: Vec<String>,
}

/// A firing of a campaign, as this scheduler remembers it.
type FiringKey = (String, String);

/// What this scheduler knows of a firing still inside its window.
#[derive(Debug, Default, Clone, Copy)]
struct FiringMemory {
    /// Seen done: final, so it is not claimed again.
    done: bool,
    /// Sends this scheduler started.
    attempts: u32,
}

/// One controller's scheduler. Owns its state; [`Scheduler::run`] drives it.
pub struct Scheduler {
    store: Arc<dyn Store>,
    executor: Arc<dyn FireCampaign>,
    clock: Arc<dyn Clock>,
    config: SchedulerConfig,
    /// Sends under way, one task each; their number is bounded by `max_concurrent_fires`.
    /// Dropping the scheduler aborts them (their claims then lapse, see the module doc).
    fires: JoinSet<()>,
    /// Firings of the current windows: done ones are not claimed again (saves a store call
    /// per firing per tick), attempts bound retries. Pruned to the windows every tick.
    memory: HashMap<FiringKey, FiringMemory>,
    /// Campaigns whose firings could not be worked out, already logged: logged once, not
    /// every tick. Pruned to the listed campaigns every tick.
    broken: HashSet<String>,
}

impl Scheduler {
    pub fn new(
        store: Arc<dyn Store>,
        executor: Arc<dyn FireCampaign>,
        clock: Arc<dyn Clock>,
        config: SchedulerConfig,
    ) -> Self {
        Self {
            store,
            executor,
            clock,
            config,
            fires: JoinSet::new(),
            memory: HashMap::new(),
            broken: HashSet::new(),
        }
    }

    /// Ticks until `shutdown` fires. Sends under way are then abandoned: their claims lapse
    /// and another controller sends them again under the same idempotency key.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.config.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(owner = %self.config.owner, "campaign scheduler started");
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            self.tick().await;
        }
        self.fires.shutdown().await;
        tracing::info!(owner = %self.config.owner, "campaign scheduler stopped");
    }

    /// One pass over the scheduled campaigns: starts the sends that are due (they go on in
    /// their own tasks) and finishes the campaigns that have nothing left.
    pub async fn tick(&mut self) -> TickReport {
        self.reap_fires();
        let mut report = TickReport::default();
        let now = self.clock.now_ms();
        let campaigns = match self.store.campaigns().scheduled_campaigns().await {
            Ok(campaigns) => campaigns,
            Err(error) => {
                tracing::warn!(%error, "cannot list scheduled campaigns; trying again next tick");
                return report;
            }
        };
        self.broken
            .retain(|id| campaigns.iter().any(|campaign| &campaign.id == id));
        let mut in_window = HashSet::new();
        for campaign in campaigns {
            let campaign = Arc::new(campaign);
            let firings = match self.firings_in_window(&campaign, now).await {
                Ok(firings) => firings,
                Err(error) => {
                    if self.broken.insert(campaign.id.clone()) {
                        tracing::error!(campaign_id = %campaign.id, app_id = %campaign.app, %error, "cannot work out the campaign's firings");
                    }
                    continue;
                }
            };
            let mut all_done = true;
            for firing in firings {
                let key = (campaign.id.clone(), firing.name.clone());
                in_window.insert(key.clone());
                if !self.handle_firing(&campaign, firing, &mut report).await {
                    all_done = false;
                }
            }
            if self.nothing_left(&campaign, now, all_done) && self.finish_campaign(&campaign).await
            {
                report.finished.push(campaign.id.clone());
            }
        }
        self.memory.retain(|key, _| in_window.contains(key));
        report
    }

    /// Waits for every send under way (for tests, and for callers that drain).
    pub async fn wait_for_fires(&mut self) {
        while let Some(result) = self.fires.join_next().await {
            log_task_end(result);
        }
    }

    fn reap_fires(&mut self) {
        while let Some(result) = self.fires.try_join_next() {
            log_task_end(result);
        }
    }

    async fn firings_in_window(
        &self,
        campaign: &CampaignRecord,
        now: i64,
    ) -> Result<Vec<Firing>, SchedulerError> {
        firings_due(self.store.as_ref(), campaign, now, self.config.lookback_ms).await
    }

    /// Claims and fires one firing if it is due and free. Answers whether it is done.
    async fn handle_firing(
        &mut self,
        campaign: &Arc<CampaignRecord>,
        firing: Firing,
        report: &mut TickReport,
    ) -> bool {
        let key = (campaign.id.clone(), firing.name.clone());
        let memory = self.memory.get(&key).copied().unwrap_or_default();
        if memory.done {
            return true;
        }
        if self.fires.len() >= self.config.max_concurrent_fires {
            return false;
        }
        let claim = self
            .store
            .campaigns()
            .claim_firing(
                &campaign.id,
                &firing.name,
                &self.config.owner,
                self.config.lease_ms,
                self.clock.lease_now_ms(),
            )
            .await;
        match claim {
            Ok(Claim::Done) => {
                self.memory.entry(key).or_default().done = true;
                true
            }
            Ok(Claim::HeldBy(_)) => false,
            Err(error) => {
                tracing::warn!(campaign_id = %campaign.id, firing = %firing.name, %error, "cannot claim a firing; trying again next tick");
                false
            }
            Ok(Claim::Claimed) if memory.attempts >= self.config.max_attempts => {
                self.give_up(campaign, &firing, memory.attempts).await
            }
            Ok(Claim::Claimed) => {
                // Paused or cancelled since it was listed: leave the claim to lapse.
                if !self.still_scheduled(campaign).await {
                    return false;
                }
                self.memory.entry(key).or_default().attempts += 1;
                report
                    .started
                    .push((campaign.id.clone(), firing.name.clone()));
                self.start_fire(Arc::clone(campaign), firing, memory.attempts + 1);
                false
            }
        }
    }

    async fn still_scheduled(&self, campaign: &CampaignRecord) -> bool {
        match self
            .store
            .campaigns()
            .campaign(campaign.app, &campaign.id)
            .await
        {
            Ok(Some(current)) => current.state == CampaignState::Scheduled,
            Ok(None) => false,
            Err(error) => {
                tracing::warn!(campaign_id = %campaign.id, %error, "cannot re-read a campaign before firing; trying again later");
                false
            }
        }
    }

    /// Marks a firing that failed `attempts` times done, so that nobody tries it again.
    async fn give_up(&mut self, campaign: &CampaignRecord, firing: &Firing, attempts: u32) -> bool {
        tracing::error!(campaign_id = %campaign.id, app_id = %campaign.app, firing = %firing.name, attempts, "campaign firing failed every attempt; giving it up");
        metrics::counter!("ringpush_scheduler_firings_total", "outcome" => "given_up").increment(1);
        let finished = self
            .store
            .campaigns()
            .finish_firing(&campaign.id, &firing.name)
            .await;
        match finished {
            Ok(()) => {
                let key = (campaign.id.clone(), firing.name.clone());
                self.memory.entry(key).or_default().done = true;
                true
            }
            Err(error) => {
                tracing::warn!(campaign_id = %campaign.id, firing = %firing.name, %error, "cannot mark a given-up firing done");
                false
            }
        }
    }

    fn start_fire(&mut self, campaign: Arc<CampaignRecord>, firing: Firing, attempt: u32) {
        let store = Arc::clone(&self.store);
        let executor = Arc::clone(&self.executor);
        self.fires.spawn(async move {
            let key = idempotency_key(&campaign.id, &firing.name);
            tracing::info!(campaign_id = %campaign.id, app_id = %campaign.app, firing = %firing.name, attempt, "firing campaign");
            if let Err(error) = executor.fire(&campaign, &firing, &key).await {
                metrics::counter!("ringpush_scheduler_firings_total", "outcome" => "failed")
                    .increment(1);
                tracing::warn!(campaign_id = %campaign.id, firing = %firing.name, attempt, %error, "campaign firing failed; retried once its claim lapses");
                return;
            }
            metrics::counter!("ringpush_scheduler_firings_total", "outcome" => "fired").increment(1);
            if let Err(error) = store
                .campaigns()
                .finish_firing(&campaign.id, &firing.name)
                .await
            {
                // The send happened; another scheduler may send again once the claim lapses,
                // under the same idempotency key, which appends nothing twice.
                tracing::warn!(campaign_id = %campaign.id, firing = %firing.name, %error, "cannot mark a fired firing done");
            }
        });
    }

    /// Whether the campaign can have no firing left to send.
    fn nothing_left(&self, campaign: &CampaignRecord, now: i64, window_all_done: bool) -> bool {
        let last_due =
            match ringpush_schedule::last_due_ms(&campaign.schedule, campaign.created_at_ms) {
                Ok(Some(last_due)) => last_due,
                // Recurs without end, or broken (logged when its firings were worked out).
                Ok(None) | Err(_) => return false,
            };
        let window_start = now.saturating_sub_unsigned(self.config.lookback_ms);
        last_due < window_start || (last_due <= now && window_all_done)
    }

    /// Moves a campaign from `Scheduled` to `Finished`; answers whether it moved.
    async fn finish_campaign(&self, campaign: &CampaignRecord) -> bool {
        let moved = self
            .store
            .campaigns()
            .transition_campaign(
                campaign.app,
                &campaign.id,
                &[CampaignState::Scheduled],
                CampaignState::Finished,
            )
            .await;
        match moved {
            Ok(moved) => {
                if moved {
                    tracing::info!(campaign_id = %campaign.id, app_id = %campaign.app, "campaign finished");
                }
                moved
            }
            Err(error) => {
                tracing::warn!(campaign_id = %campaign.id, %error, "cannot mark a campaign finished; trying again next tick");
                false
            }
        }
    }
}

/// The campaign's firings due in `now - lookback_ms ..= now`.
async fn firings_due(
    store: &dyn Store,
    campaign: &CampaignRecord,
    now: i64,
    lookback_ms: u64,
) -> Result<Vec<Firing>, SchedulerError> {
    let zones = match campaign.schedule {
        Schedule::LocalTime { .. } => store.registry().app_time_zones(campaign.app).await?,
        Schedule::Once { .. } | Schedule::Cron { .. } => Vec::new(),
    };
    let window_start = now.saturating_sub_unsigned(lookback_ms);
    Ok(ringpush_schedule::firings(
        &campaign.schedule,
        campaign.created_at_ms,
        window_start,
        now,
        &zones,
    )?)
}

/// Marks done the firings of `campaign` that fell due in the look-back window up to
/// `now_ms`, so that a paused campaign being resumed does not send them late. Call it
/// before moving the campaign back to `Scheduled`: a firing that falls due between the two
/// calls is then sent (it is due after the pause ended). Answers how many it marked.
pub async fn skip_missed_firings(
    store: &dyn Store,
    campaign: &CampaignRecord,
    now_ms: i64,
    lookback_ms: u64,
) -> Result<usize, SchedulerError> {
    let firings = firings_due(store, campaign, now_ms, lookback_ms).await?;
    for firing in &firings {
        store
            .campaigns()
            .finish_firing(&campaign.id, &firing.name)
            .await?;
        tracing::info!(campaign_id = %campaign.id, firing = %firing.name, "firing skipped: it fell due while the campaign was paused");
    }
    Ok(firings.len())
}

fn log_task_end(result: Result<(), tokio::task::JoinError>) {
    if let Err(error) = result
        && error.is_panic()
    {
        tracing::error!(%error, "a campaign firing task panicked; its claim lapses and it is retried");
    }
}

#[cfg(test)]
mod tests {
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
        let skipped =
            skip_missed_firings(fixture.store.as_ref(), &campaign, now, DEFAULT_LOOKBACK_MS)
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
}
