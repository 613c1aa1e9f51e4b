//! One connection type over a single Redis server or a Redis Cluster, and batches of script
//! calls run in as few round trips as each allows.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::io::tcp::TcpSettings;
use redis::io::tcp::socket2::TcpKeepalive;
use redis::{Cmd, ErrorKind, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, Script, Value};

use crate::{StoreError, StoreResult};

/// TCP options of every connection to Redis: see [`UNACKED_TIMEOUT`] and the keepalives.
fn tcp_settings() -> TcpSettings {
    let keepalive = TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL);
    TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive)
        .set_user_timeout(UNACKED_TIMEOUT)
}

/// Scheme of a cluster URL: `redis+cluster://host:port[,host:port...]`.
pub(super) const CLUSTER_SCHEME: &str = "redis+cluster://";
/// How long opening a TCP connection to a node may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a command or pipeline may wait for its answer before the call fails.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long sent data may go unacknowledged by the server before the kernel drops the
/// connection (TCP_USER_TIMEOUT), so that the next call makes a fresh one. Without it a
/// connection stalled by a partition recovers only at TCP's next retransmission after the
/// heal: 12 s after a 30 s cut in the three-region test, up to minutes after longer ones.
const UNACKED_TIMEOUT: Duration = Duration::from_secs(8);
/// Idle connections are probed after this long without traffic, then every interval.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Reconnection attempts before a call fails (the next call tries again).
const RECONNECT_RETRIES: usize = 3;
/// Slot groups of one batch in flight at once on a cluster.
const CLUSTER_GROUPS_IN_FLIGHT: usize = 64;

/// A single server (reconnecting by itself) or a cluster. Cheap to clone: both are handles
/// onto one multiplexed connection task.
#[derive(Clone)]
pub(super) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    /// Connects to `url`: `redis://…` for a single server,
    /// `redis+cluster://[user:password@]host:port[,host:port...]` for a cluster.
    pub(super) async fn open(url: &str) -> StoreResult<Self> {
        if let Some(nodes) = url.strip_prefix(CLUSTER_SCHEME) {
            return Self::open_cluster(nodes).await;
        }
        let info = url
            .into_connection_info()
            .map_err(|error| StoreError::Unavailable(format!("bad redis url: {error}")))?
            .set_tcp_settings(tcp_settings());
        let client = redis::Client::open(info)
            .map_err(|error| StoreError::Unavailable(format!("bad redis url: {error}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(RECONNECT_RETRIES);
        let manager = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|error| unavailable("connect to redis", error))?;
        Ok(Self::Single(manager))
    }

    async fn open_cluster(nodes: &str) -> StoreResult<Self> {
        // Credentials, if any, are given once before the node list and apply to every node.
        let (credentials, hosts) = match nodes.rsplit_once('@') {
            Some((credentials, hosts)) => (format!("{credentials}@"), hosts),
            None => (String::new(), nodes),
        };
        let node_urls: Vec<String> = hosts
            .split(',')
            .map(|host| host.trim().trim_end_matches('/'))
            .filter(|host| !host.is_empty())
            .map(|host| format!("redis://{credentials}{host}"))
            .collect();
        let client = ClusterClient::builder(node_urls)
            .connection_timeout(CONNECTION_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(RECONNECT_RETRIES as u32)
            .tcp_settings(tcp_settings())
            .build()
            .map_err(|error| StoreError::Unavailable(format!("bad redis cluster url: {error}")))?;
        let connection = client
            .get_async_connection()
            .await
            .map_err(|error| unavailable("connect to redis cluster", error))?;
        Ok(Self::Cluster(connection))
    }

    /// Runs one call of `script` per entry of `calls` and answers their replies in the same
    /// order. On a single server all calls go in one pipeline. On a cluster, where a pipeline
    /// must stay in one slot, calls are grouped by the slot of their first key (keeping their
    /// order within a group) and the groups run concurrently.
    pub(super) async fn run_script_batch(
        &self,
        script: &Script,
        calls: &[ScriptCall],
    ) -> Result<Vec<Value>, RedisError> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        if let Self::Single(_) = self {
            let all: Vec<&ScriptCall> = calls.iter().collect();
            return self.clone().run_script_pipeline(script, &all).await;
        }
        let mut groups: HashMap<Slot, Vec<usize>> = HashMap::new();
        for (index, call) in calls.iter().enumerate() {
            groups.entry(call.slot()).or_default().push(index);
        }
        let mut replies = vec![Value::Nil; calls.len()];
        let mut group_replies = futures_util::stream::iter(groups.into_values().map(|indices| {
            let connection = self.clone();
            async move {
                let group: Vec<&ScriptCall> = indices.iter().map(|&index| &calls[index]).collect();
                let values = connection.run_script_pipeline(script, &group).await?;
                Ok::<_, RedisError>((indices, values))
            }
        }))
        .buffer_unordered(CLUSTER_GROUPS_IN_FLIGHT);
        while let Some((indices, values)) = group_replies.try_next().await? {
            for (index, value) in indices.into_iter().zip(values) {
                replies[index] = value;
            }
        }
        Ok(replies)
    }

    /// One pipeline: the script is loaded first (a no-op when the server has it), so that the
    /// EVALSHAs after it cannot fail with NOSCRIPT, whichever node the pipeline lands on.
    async fn run_script_pipeline(
        mut self,
        script: &Script,
        calls: &[&ScriptCall],
    ) -> Result<Vec<Value>, RedisError> {
        let mut pipeline = Pipeline::with_capacity(calls.len() + 1);
        pipeline.load_script(script).ignore();
        for call in calls {
            let mut invocation = script.prepare_invoke();
            for key in &call.keys {
                invocation.key(key);
            }
            for arg in &call.args {
                invocation.arg(arg.as_slice());
            }
            pipeline.invoke_script(&invocation);
        }
        let values: Vec<Value> = pipeline.query_async(&mut self).await?;
        if values.len() != calls.len() {
            return Err(RedisError::from((
                ErrorKind::UnexpectedReturnType,
                "pipeline answered a different number of replies than it had calls",
            )));
        }
        Ok(values)
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

/// One script call of a batch. All its keys must hash to the slot of the first one.
pub(super) struct ScriptCall {
    pub(super) keys: Vec<String>,
    pub(super) args: Vec<Vec<u8>>,
}

impl ScriptCall {
    fn slot(&self) -> Slot {
        Slot::for_key(self.keys.first().map_or("", String::as_str))
    }
}

/// A Redis failure as a store error: type mismatches mean the data is not ours to read,
/// everything else that the backend could not be used.
pub(super) fn redis_error(context: &str, key: &str, error: RedisError) -> StoreError {
    match error.kind() {
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => StoreError::Corrupt {
            key: key.to_owned(),
            detail: format!("{context}: {error}"),
        },
        _ => unavailable(context, error),
    }
}

fn unavailable(context: &str, error: RedisError) -> StoreError {
    StoreError::Unavailable(format!("{context}: {error}"))
}
