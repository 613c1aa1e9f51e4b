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
//! time. While its send runs, the scheduler renews its claim every third of a lease, so a
//! slow send (a throttled campaign) keeps it; a send still running after `max_send` is
//! abandoned. A scheduler that dies (or stalls, or abandons) mid-send loses its claim when
//! the lease ends, and another sends again under the same idempotency key, which appends
//! nothing twice.
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
    /// How long a claim keeps others off a firing without a renewal (renewed every third of
    /// it while the send runs): how long a dead controller's firing waits for another.
    pub lease_ms: u64,
    /// The longest one send may run before it is abandoned (its claim then lapses and the
    /// firing is sent again, by any scheduler).
    pub max_send: Duration,
    /// Sends of one firing this scheduler tries before it gives the firing up.
    pub max_attempts: u32,
    /// Sends under way at once; due firings beyond it wait for a later tick.
    pub max_concurrent_fires: usize,
}

impl SchedulerConfig {
    /// Defaults: tick 1 s, look back 1 hour, lease 10 minutes, sends of 6 hours at most,
    /// 5 attempts, 16 sends at once.
    pub fn new(owner: String) -> Self {
        Self {
            owner,
            tick: Duration::from_secs(1),
            lookback_ms: DEFAULT_LOOKBACK_MS,
            lease_ms: 600_000,
            max_send: Duration::from_secs(6 * 3600),
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
        let claim = ClaimKeeper {
            store: Arc::clone(&self.store),
            clock: Arc::clone(&self.clock),
            owner: self.config.owner.clone(),
            lease_ms: self.config.lease_ms,
        };
        let max_send = self.config.max_send;
        self.fires.spawn(async move {
            let key = idempotency_key(&campaign.id, &firing.name);
            tracing::info!(campaign_id = %campaign.id, app_id = %campaign.app, firing = %firing.name, attempt, "firing campaign");
            let send = tokio::time::timeout(max_send, executor.fire(&campaign, &firing, &key));
            let sent = tokio::select! {
                sent = send => sent.unwrap_or_else(|_| Err(format!("the send ran longer than {max_send:?}; abandoned"))),
                never = claim.keep(&campaign.id, &firing.name) => match never {},
            };
            if let Err(error) = sent {
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

/// Keeps a scheduler's claim on a firing while its send runs.
struct ClaimKeeper {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    owner: String,
    lease_ms: u64,
}

impl ClaimKeeper {
    /// Renews the claim every third of a lease; never returns (the send's end drops it).
    /// Once the claim is lost (another scheduler took it over after a stall) it stops: the
    /// other sends again under the same key, harmlessly.
    async fn keep(&self, campaign_id: &str, firing: &str) -> std::convert::Infallible {
        let every = Duration::from_millis((self.lease_ms / 3).max(1));
        loop {
            tokio::time::sleep(every).await;
            let renewed = self
                .store
                .campaigns()
                .renew_firing(
                    campaign_id,
                    firing,
                    &self.owner,
                    self.lease_ms,
                    self.clock.lease_now_ms(),
                )
                .await;
            match renewed {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(
                        campaign_id,
                        firing,
                        "claim lost mid-send; another controller sends it again under the same key"
                    );
                    return std::future::pending().await;
                }
                Err(error) => {
                    tracing::warn!(campaign_id, firing, %error, "cannot renew a claim; trying again");
                }
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
mod tests;
