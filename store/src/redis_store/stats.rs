//! Statistics on Redis: per subject (a message or campaign id of an app) a totals hash and a
//! per-minute hash (`<minute>:<counter>` fields), under one hash tag. A batch is summed per
//! field first, then written as HINCRBYs in one pipeline (one per slot on a cluster); every
//! write pushes the subject's expiry to 90 days after it.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use ringpush_protocol::AppId;

use super::RedisStore;
use super::batch::SlotCommands;
use super::codec::corrupt;
use super::connection::redis_error;
use crate::stats::STATS_TTL_MS;
use crate::{Counter, StatIncrement, StatsRecord, StatsStore, StoreResult};

/// The increments of one subject, summed per counter and per (minute, counter).
#[derive(Default)]
struct SubjectSums {
    totals: BTreeMap<Counter, u64>,
    minutes: BTreeMap<(i64, Counter), u64>,
}

fn counter_named(name: &str) -> Option<Counter> {
    Counter::ALL
        .into_iter()
        .find(|counter| counter.name() == name)
}

/// HINCRBY takes a signed 64-bit increment; sums past it (never in practice) are capped.
fn increment(by: u64) -> i64 {
    i64::try_from(by).unwrap_or(i64::MAX)
}

#[async_trait]
impl StatsStore for RedisStore {
    async fn add_stats(&self, increments: &[StatIncrement]) -> StoreResult<()> {
        let mut subjects: BTreeMap<(AppId, &str), SubjectSums> = BTreeMap::new();
        for item in increments.iter().filter(|item| item.by > 0) {
            let sums = subjects.entry((item.app, &item.subject)).or_default();
            let total = sums.totals.entry(item.counter).or_default();
            *total = total.saturating_add(item.by);
            let minute = sums.minutes.entry((item.minute, item.counter)).or_default();
            *minute = minute.saturating_add(item.by);
        }
        let groups: Vec<SlotCommands> = subjects
            .into_iter()
            .map(|((app, subject), sums)| {
                let totals = self.keys.stats_totals(app, subject);
                let minutes = self.keys.stats_minutes(app, subject);
                let mut commands = Vec::with_capacity(sums.totals.len() + sums.minutes.len() + 2);
                for (counter, by) in sums.totals {
                    let mut command = redis::cmd("HINCRBY");
                    command.arg(&totals).arg(counter.name()).arg(increment(by));
                    commands.push(command);
                }
                for ((minute, counter), by) in sums.minutes {
                    let mut command = redis::cmd("HINCRBY");
                    let field = format!("{minute}:{}", counter.name());
                    command.arg(&minutes).arg(field).arg(increment(by));
                    commands.push(command);
                }
                for key in [&totals, &minutes] {
                    let mut command = redis::cmd("PEXPIRE");
                    command.arg(key).arg(STATS_TTL_MS);
                    commands.push(command);
                }
                SlotCommands {
                    key: totals,
                    commands,
                }
            })
            .collect();
        self.connection
            .run_command_batch(&groups)
            .await
            .map_err(|error| {
                let key = groups.first().map_or("", |group| group.key.as_str());
                redis_error("add stats", key, error)
            })?;
        Ok(())
    }

    async fn read_stats(&self, app: AppId, subject: &str) -> StoreResult<StatsRecord> {
        let totals_key = self.keys.stats_totals(app, subject);
        let minutes_key = self.keys.stats_minutes(app, subject);
        let (totals, minutes): (HashMap<String, u64>, HashMap<String, u64>) = redis::pipe()
            .hgetall(&totals_key)
            .hgetall(&minutes_key)
            .query_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("read stats", &totals_key, error))?;
        let mut record = StatsRecord::default();
        for (name, count) in totals {
            let counter = counter_named(&name)
                .ok_or_else(|| corrupt(&totals_key, &format!("unknown counter {name}")))?;
            record.totals.insert(counter, count);
        }
        for (field, count) in minutes {
            let unreadable = || corrupt(&minutes_key, &format!("unreadable field {field}"));
            let (minute, name) = field.split_once(':').ok_or_else(unreadable)?;
            let minute: i64 = minute.parse().map_err(|_| unreadable())?;
            let counter = counter_named(name).ok_or_else(unreadable)?;
            record
                .per_minute
                .entry(minute)
                .or_default()
                .insert(counter, count);
        }
        Ok(record)
    }
}
