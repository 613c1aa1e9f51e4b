//! Batches of plain commands (not scripts), each group confined to one hash slot, run in as
//! few round trips as the connection allows: the companion of
//! `Connection::run_script_batch` for writes and reads that need no script.

use std::collections::HashMap;

use futures_util::{StreamExt, TryStreamExt};
use redis::cluster_routing::Slot;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, Value};

use super::connection::Connection;

/// Slot groups of one batch in flight at once on a cluster (as for script batches).
const CLUSTER_GROUPS_IN_FLIGHT: usize = 64;

/// Commands that all touch keys of the slot of `key` (one device, one app, one subject).
pub(super) struct SlotCommands {
    pub(super) key: String,
    pub(super) commands: Vec<Cmd>,
}

impl Connection {
    /// Runs every group's commands and answers each group's replies, groups in request order.
    /// On a single server everything goes in one pipeline; on a cluster, groups of one slot
    /// share a pipeline (keeping their order) and the slots run concurrently.
    pub(super) async fn run_command_batch(
        &self,
        groups: &[SlotCommands],
    ) -> Result<Vec<Vec<Value>>, RedisError> {
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        if let Self::Single(_) = self {
            let all: Vec<usize> = (0..groups.len()).collect();
            return self.clone().run_group_pipeline(groups, &all).await;
        }
        let mut by_slot: HashMap<Slot, Vec<usize>> = HashMap::new();
        for (index, group) in groups.iter().enumerate() {
            by_slot
                .entry(Slot::for_key(&group.key))
                .or_default()
                .push(index);
        }
        let mut replies = vec![Vec::new(); groups.len()];
        let mut slot_replies = futures_util::stream::iter(by_slot.into_values().map(|indices| {
            let connection = self.clone();
            async move {
                let values = connection.run_group_pipeline(groups, &indices).await?;
                Ok::<_, RedisError>((indices, values))
            }
        }))
        .buffer_unordered(CLUSTER_GROUPS_IN_FLIGHT);
        while let Some((indices, values)) = slot_replies.try_next().await? {
            for (index, value) in indices.into_iter().zip(values) {
                replies[index] = value;
            }
        }
        Ok(replies)
    }

    /// One pipeline with the commands of `groups[indices]`; answers their replies per group.
    async fn run_group_pipeline(
        mut self,
        groups: &[SlotCommands],
        indices: &[usize],
    ) -> Result<Vec<Vec<Value>>, RedisError> {
        let total: usize = indices.iter().map(|&i| groups[i].commands.len()).sum();
        let mut pipeline = Pipeline::with_capacity(total);
        for &index in indices {
            for command in &groups[index].commands {
                pipeline.add_command(command.clone());
            }
        }
        let values: Vec<Value> = if total == 0 {
            Vec::new()
        } else {
            pipeline.query_async(&mut self).await?
        };
        if values.len() != total {
            return Err(RedisError::from((
                ErrorKind::UnexpectedReturnType,
                "pipeline answered a different number of replies than it had commands",
            )));
        }
        let mut values = values.into_iter();
        Ok(indices
            .iter()
            .map(|&index| values.by_ref().take(groups[index].commands.len()).collect())
            .collect())
    }
}
