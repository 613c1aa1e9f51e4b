//! What a device remembers across restarts: its identity, the highest seq handed to the app
//! in each stream (inbox and timeline), the inbox seqs above it handed from platform
//! notifications, its attributes, and the last connector it reached.
//!
//! The file is JSON, replaced atomically on every change: the new content goes to a temporary
//! file in the same directory, is flushed to disk (`fsync`), then renamed over the old file, and
//! the directory is flushed so that the rename itself survives a power cut. A crash at any point
//! leaves either the old file or the new one, never a mix. One state file belongs to one client
//! at a time.
//!
//! Formats: 2 adds `timeline_seq` and `attributes` to format 1; 3 adds `seal_key`; 4 (this
//! SDK) adds `platform_handed`. An older file is read as format 4 with what it lacks empty
//! (timeline position 0, no attributes, no sealing key, no seq handed from a platform
//! notification), and written back as format 4 on the next change; no position is lost.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ringpush_audience::DeviceAttributes;
use ringpush_protocol::AppId;
use ringpush_protocol::seal::{KEY_LEN, SecretKey};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::platform::HandedInbox;
use crate::registration::Identity;

/// The version of the file layout this SDK writes, so that a later SDK can migrate it.
const FORMAT: u32 = 4;

/// The remembered state of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceState {
    /// Who the device is.
    pub identity: Identity,
    /// The highest inbox seq handed to the app: anything at or below it is never handed again.
    pub last_seq: u64,
    /// The same for the app's timeline (audience messages).
    pub timeline_seq: u64,
    /// Inbox seqs above `last_seq` already handed to the app from platform notifications
    /// (APNs, FCM, Web Push), ahead of the connection: never handed again when the connection
    /// brings them. At most [`MAX_PLATFORM_HANDED`](crate::MAX_PLATFORM_HANDED) of them,
    /// each forgotten once `last_seq` reaches it.
    pub platform_handed: BTreeSet<u64>,
    /// The connector the device last reached, tried first on the next start.
    pub connector_url: Option<String>,
    /// The attributes the device reports (`None`: the app never set any).
    pub attributes: Option<DeviceAttributes>,
}

/// Formats 2 to 4, as written; ids travel as their hex text.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    format: u32,
    app_id: String,
    device_id: String,
    device_token: String,
    /// Format 3: the secret key for sealed payloads, base64url (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seal_key: Option<String>,
    last_seq: u64,
    timeline_seq: u64,
    /// Format 4: inbox seqs above `last_seq` handed from platform notifications (absent in
    /// older formats: none).
    #[serde(default)]
    platform_handed: BTreeSet<u64>,
    connector_url: Option<String>,
    attributes: Option<DeviceAttributes>,
}

/// Format 1, as the first SDK wrote it: the inbox position only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFileV1 {
    #[allow(dead_code)] // read to refuse unknown fields; its value is known to be 1
    format: u32,
    app_id: String,
    device_id: String,
    device_token: String,
    last_seq: u64,
    connector_url: Option<String>,
}

impl From<StateFileV1> for StateFile {
    fn from(old: StateFileV1) -> Self {
        Self {
            format: FORMAT,
            app_id: old.app_id,
            device_id: old.device_id,
            device_token: old.device_token,
            seal_key: None,
            last_seq: old.last_seq,
            // Format 1 predates timelines: nothing of one was ever handed.
            timeline_seq: 0,
            platform_handed: BTreeSet::new(),
            connector_url: old.connector_url,
            attributes: None,
        }
    }
}

/// Just the format field, read first to pick the layout.
#[derive(Debug, Deserialize)]
struct FormatOnly {
    format: u32,
}

impl DeviceState {
    /// A fresh state for a newly registered device.
    pub fn new(identity: Identity) -> Self {
        Self {
            identity,
            last_seq: 0,
            timeline_seq: 0,
            platform_handed: BTreeSet::new(),
            connector_url: None,
            attributes: None,
        }
    }

    fn to_json(&self) -> Vec<u8> {
        let file = StateFile {
            format: FORMAT,
            app_id: self.identity.app_id.to_string(),
            device_id: self.identity.device_id.to_string(),
            device_token: self.identity.device_token.clone(),
            seal_key: self
                .identity
                .seal_key
                .as_ref()
                .map(|key| URL_SAFE_NO_PAD.encode(key.0)),
            last_seq: self.last_seq,
            timeline_seq: self.timeline_seq,
            platform_handed: self.platform_handed.clone(),
            connector_url: self.connector_url.clone(),
            attributes: self.attributes.clone(),
        };
        let mut bytes = serde_json::to_vec_pretty(&file)
            .expect("a struct of strings, numbers and string maps always serializes");
        bytes.push(b'\n');
        bytes
    }

    fn from_json(path: &Path, bytes: &[u8]) -> Result<Self> {
        let corrupt = |detail: String| Error::StateCorrupt {
            path: path.to_owned(),
            detail,
        };
        let FormatOnly { format } =
            serde_json::from_slice(bytes).map_err(|error| corrupt(error.to_string()))?;
        let file: StateFile = match format {
            1 => serde_json::from_slice::<StateFileV1>(bytes)
                .map_err(|error| corrupt(error.to_string()))?
                .into(),
            // Format 2 is format 3 without a sealing key; format 3 is format 4 without seqs
            // handed from platform notifications.
            2..=FORMAT => {
                let file: StateFile =
                    serde_json::from_slice(bytes).map_err(|error| corrupt(error.to_string()))?;
                if format < 4 && !file.platform_handed.is_empty() {
                    return Err(corrupt(format!(
                        "format {format} has no platform_handed; a file with one is not a migration"
                    )));
                }
                file
            }
            other => {
                return Err(corrupt(format!(
                    "format {other} is not a supported format (1 to {FORMAT})"
                )));
            }
        };
        Ok(Self {
            identity: Identity {
                app_id: file
                    .app_id
                    .parse()
                    .map_err(|error| corrupt(format!("{error}")))?,
                device_id: file
                    .device_id
                    .parse()
                    .map_err(|error| corrupt(format!("{error}")))?,
                device_token: file.device_token,
                seal_key: match file.seal_key {
                    Some(text) => Some(seal_secret(&text).map_err(corrupt)?),
                    None => None,
                },
            },
            last_seq: file.last_seq,
            timeline_seq: file.timeline_seq,
            // Whatever a file says, what is at or below the position, or past the bound, is
            // dropped as the running client would have dropped it.
            platform_handed: HandedInbox::new(file.last_seq, file.platform_handed).from_platform,
            connector_url: file.connector_url,
            attributes: file.attributes,
        })
    }
}

/// A sealing secret key from its base64url text.
fn seal_secret(text: &str) -> std::result::Result<SecretKey, String> {
    let bytes: [u8; KEY_LEN] = URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| "seal_key is not 32 bytes of base64url".to_owned())?;
    Ok(SecretKey(bytes))
}

/// Reads the state file; `None` if it does not exist yet.
pub fn load(path: &Path) -> Result<Option<DeviceState>> {
    match std::fs::read(path) {
        Ok(bytes) => DeviceState::from_json(path, &bytes).map(Some),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::StateIo {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Replaces the state file with `state`, atomically (see the module doc).
pub fn save(path: &Path, state: &DeviceState) -> Result<()> {
    let io_error = |source| Error::StateIo {
        path: path.to_owned(),
        source,
    };
    let temp = write_temp(path, &state.to_json()).map_err(io_error)?;
    commit(&temp, path).map_err(io_error)
}

/// The temporary file a save writes first: beside the target, so the rename stays within one
/// file system, and never the target itself.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// First half of a save: the full new content, on disk, under the temporary name.
fn write_temp(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let temp = temp_path(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    // The file holds the device token: readable by its owner only.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(temp)
}

/// Second half of a save: the rename that makes the new content the state, made durable.
fn commit(temp: &Path, path: &Path) -> std::io::Result<()> {
    std::fs::rename(temp, path)?;
    sync_parent_dir(path)
}

#[cfg(unix)]
fn sync_parent_dir(path: &Path) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)?.sync_all()
}

#[cfg(not(unix))]
fn sync_parent_dir(_path: &Path) -> std::io::Result<()> {
    // Directories cannot be opened for syncing everywhere; the rename is still atomic.
    Ok(())
}

/// Checks that a loaded state belongs to the configured app.
pub(crate) fn check_app(path: &Path, state: &DeviceState, app_id: AppId) -> Result<()> {
    if state.identity.app_id == app_id {
        return Ok(());
    }
    Err(Error::StateOfAnotherApp {
        path: path.to_owned(),
        expected: app_id.to_string(),
        found: state.identity.app_id.to_string(),
    })
}

/// The state shared by the app side and the connection task, with the file behind it.
///
/// Every change goes through [`StateKeeper::update`], which changes the copy in memory and
/// writes the whole state under one lock, so two writers can never interleave their files.
/// The lock is a plain mutex held only on a blocking thread, never across an `.await`.
#[derive(Debug, Clone)]
pub(crate) struct StateKeeper {
    /// `None`: the state lives in memory only.
    path: Option<Arc<PathBuf>>,
    current: Arc<Mutex<DeviceState>>,
}

impl StateKeeper {
    pub(crate) fn new(path: Option<PathBuf>, state: DeviceState) -> Self {
        Self {
            path: path.map(Arc::new),
            current: Arc::new(Mutex::new(state)),
        }
    }

    /// A copy of the state as it is now.
    pub(crate) fn snapshot(&self) -> DeviceState {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Applies `change`; if it changed anything and there is a file, writes the file before
    /// answering. On a write error the memory copy is left as it was, so memory never claims
    /// more than the file.
    pub(crate) async fn update(
        &self,
        change: impl FnOnce(&mut DeviceState) + Send + 'static,
    ) -> Result<()> {
        self.try_update(move |state| {
            change(state);
            Ok(())
        })
        .await
    }

    /// Like [`StateKeeper::update`], but `change` may refuse: its error is returned and
    /// nothing changes. `change` runs under the lock, so changes never overwrite each other.
    pub(crate) async fn try_update(
        &self,
        change: impl FnOnce(&mut DeviceState) -> Result<()> + Send + 'static,
    ) -> Result<()> {
        let Some(path) = self.path.clone() else {
            let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
            let mut next = current.clone();
            change(&mut next)?;
            *current = next;
            return Ok(());
        };
        let current = self.current.clone();
        let write = move || {
            let mut guard = current.lock().unwrap_or_else(PoisonError::into_inner);
            let mut next = guard.clone();
            change(&mut next)?;
            if next == *guard {
                return Ok(());
            }
            save(&path, &next)?;
            *guard = next;
            Ok(())
        };
        tokio::task::spawn_blocking(write)
            .await
            .map_err(|join_error| Error::StateIo {
                path: self.path.as_deref().cloned().unwrap_or_default(),
                source: std::io::Error::other(join_error.to_string()),
            })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringpush_protocol::DeviceId;

    fn state(last_seq: u64) -> DeviceState {
        DeviceState {
            identity: Identity {
                app_id: AppId(0xabc),
                device_id: DeviceId(0x1234),
                device_token: "token-1".into(),
                seal_key: Some(SecretKey([7; 32])),
            },
            last_seq,
            timeline_seq: last_seq * 10,
            platform_handed: BTreeSet::from([last_seq + 2, last_seq + 5]),
            connector_url: Some("ws://127.0.0.1:9000/v1/connect".into()),
            attributes: Some(DeviceAttributes {
                platform: Some("linux".into()),
                tags: ["vip".to_owned(), "beta".to_owned()].into(),
                custom: [("plan".to_owned(), "gold".to_owned())].into(),
                ..DeviceAttributes::default()
            }),
        }
    }

    #[test]
    fn round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.json");
        assert_eq!(load(&path).unwrap(), None);
        save(&path, &state(41)).unwrap();
        assert_eq!(load(&path).unwrap(), Some(state(41)));
        let mut fresh = DeviceState::new(state(0).identity);
        save(&path, &fresh).unwrap();
        assert_eq!(load(&path).unwrap(), Some(fresh.clone()));
        fresh.last_seq = u64::MAX;
        save(&path, &fresh).unwrap();
        assert_eq!(load(&path).unwrap().unwrap().last_seq, u64::MAX);
        assert!(
            !temp_path(&path).exists(),
            "a finished save leaves no temp file"
        );
    }

    #[test]
    fn a_crash_before_the_rename_leaves_the_old_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.json");
        save(&path, &state(5)).unwrap();
        // The process dies after writing the new content (fully or in part) but before the
        // rename: the target still holds the old state, whole.
        let temp = write_temp(&path, &state(6).to_json()).unwrap();
        assert_ne!(temp, path, "the temp file is never the target");
        assert_eq!(
            temp.parent(),
            path.parent(),
            "same directory, so rename is atomic"
        );
        assert_eq!(load(&path).unwrap(), Some(state(5)));
        std::fs::write(&temp, &state(7).to_json()[..10]).unwrap();
        assert_eq!(load(&path).unwrap(), Some(state(5)));
        // The next save replaces the leftover temp file and wins.
        save(&path, &state(8)).unwrap();
        assert_eq!(load(&path).unwrap(), Some(state(8)));
    }

    #[test]
    fn refuses_corrupt_files_and_other_apps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.json");
        std::fs::write(&path, b"{\"format\":1,").unwrap();
        assert!(matches!(load(&path), Err(Error::StateCorrupt { .. })));
        let json = String::from_utf8(state(1).to_json()).unwrap();
        let current = format!("\"format\": {FORMAT}");
        std::fs::write(&path, json.replace(&current, "\"format\": 9")).unwrap();
        assert!(matches!(load(&path), Err(Error::StateCorrupt { .. })));
        std::fs::write(&path, json.replace("0000000000000abc", "nothex")).unwrap();
        assert!(matches!(load(&path), Err(Error::StateCorrupt { .. })));
        assert!(check_app(&path, &state(1), AppId(0xabc)).is_ok());
        assert!(matches!(
            check_app(&path, &state(1), AppId(0xdef)),
            Err(Error::StateOfAnotherApp { .. })
        ));
    }

    #[tokio::test]
    async fn the_keeper_writes_before_answering_and_keeps_memory_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.json");
        let keeper = StateKeeper::new(Some(path.clone()), state(0));
        keeper.update(|s| s.last_seq = 3).await.unwrap();
        assert_eq!(load(&path).unwrap().unwrap().last_seq, 3);
        assert_eq!(keeper.snapshot().last_seq, 3);

        let gone = dir.path().join("missing-dir").join("device.json");
        let keeper = StateKeeper::new(Some(gone), state(3));
        assert!(matches!(
            keeper.update(|s| s.last_seq = 4).await,
            Err(Error::StateIo { .. })
        ));
        assert_eq!(
            keeper.snapshot().last_seq,
            3,
            "memory never runs ahead of the file"
        );

        let in_memory = StateKeeper::new(None, state(0));
        in_memory.update(|s| s.last_seq = 9).await.unwrap();
        assert_eq!(in_memory.snapshot().last_seq, 9);
    }

    #[tokio::test]
    async fn a_format_1_file_keeps_its_positions_and_is_written_back_as_the_current_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.json");
        // Exactly what the first SDK wrote.
        let old = r#"{
  "format": 1,
  "app_id": "0000000000000abc",
  "device_id": "00000000000000000000000000001234",
  "device_token": "token-1",
  "last_seq": 41,
  "connector_url": "ws://127.0.0.1:9000/v1/connect"
}
"#;
        std::fs::write(&path, old).unwrap();
        let loaded = load(&path).unwrap().unwrap();
        let expected = DeviceState {
            identity: Identity {
                seal_key: None,
                ..state(41).identity
            },
            timeline_seq: 0,
            platform_handed: BTreeSet::new(),
            attributes: None,
            ..state(41)
        };
        assert_eq!(loaded, expected);
        // Format 1 never had these fields: one there is a corrupt file, not a migration.
        let odd = old.replace("\"last_seq\"", "\"timeline_seq\": 3,\n  \"last_seq\"");
        std::fs::write(&path, odd).unwrap();
        assert!(matches!(load(&path), Err(Error::StateCorrupt { .. })));

        // The next change writes the current format, with every position kept.
        std::fs::write(&path, old).unwrap();
        let keeper = StateKeeper::new(Some(path.clone()), load(&path).unwrap().unwrap());
        keeper.update(|state| state.timeline_seq = 7).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(&format!("\"format\": {FORMAT}")), "{text}");
        let reloaded = load(&path).unwrap().unwrap();
        assert_eq!((reloaded.last_seq, reloaded.timeline_seq), (41, 7));
        assert_eq!(reloaded.identity, expected.identity);
    }

    #[test]
    fn a_format_2_file_is_a_device_without_a_sealing_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.json");
        let without_platform_seqs = DeviceState {
            platform_handed: BTreeSet::new(),
            ..state(3)
        };
        let json = String::from_utf8(without_platform_seqs.to_json()).unwrap();
        assert!(json.contains("\"seal_key\""), "{json}");
        let line_of = |field: &str| {
            json.lines()
                .find(|line| line.contains(&format!("\"{field}\"")))
                .unwrap()
                .to_owned()
        };
        let key_line = line_of("seal_key");
        let format_2 = json
            .replace(&format!("{key_line}\n"), "")
            .replace(&format!("{}\n", line_of("platform_handed")), "")
            .replace(&format!("\"format\": {FORMAT}"), "\"format\": 2");
        assert!(!format_2.contains("platform_handed"), "{format_2}");
        std::fs::write(&path, format_2).unwrap();
        let loaded = load(&path).unwrap().unwrap();
        assert_eq!(loaded.identity.seal_key, None);
        assert_eq!(loaded.last_seq, 3);
        // A key that is not 32 bytes is a corrupt file.
        std::fs::write(
            &path,
            json.replace(key_line.trim(), "\"seal_key\": \"AAAA\","),
        )
        .unwrap();
        assert!(matches!(load(&path), Err(Error::StateCorrupt { .. })));
    }

    #[tokio::test]
    async fn a_format_3_file_has_no_seq_handed_from_a_platform_and_is_written_back_as_format_4() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.json");
        // Exactly what the format 3 SDK wrote.
        let old = r#"{
  "format": 3,
  "app_id": "0000000000000abc",
  "device_id": "00000000000000000000000000001234",
  "device_token": "token-1",
  "seal_key": "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc",
  "last_seq": 41,
  "timeline_seq": 410,
  "connector_url": "ws://127.0.0.1:9000/v1/connect",
  "attributes": {
    "platform": "linux",
    "tags": ["beta", "vip"],
    "custom": {"plan": "gold"}
  }
}
"#;
        std::fs::write(&path, old).unwrap();
        let loaded = load(&path).unwrap().unwrap();
        let expected = DeviceState {
            platform_handed: BTreeSet::new(),
            ..state(41)
        };
        assert_eq!(loaded, expected);
        // Format 3 never had the field: a file with seqs in it is corrupt, not a migration.
        let odd = old.replace("\"last_seq\"", "\"platform_handed\": [44],\n  \"last_seq\"");
        std::fs::write(&path, odd).unwrap();
        assert!(matches!(load(&path), Err(Error::StateCorrupt { .. })));

        // The next change writes format 4, with the set and every position kept.
        std::fs::write(&path, old).unwrap();
        let keeper = StateKeeper::new(Some(path.clone()), load(&path).unwrap().unwrap());
        keeper
            .update(|state| state.platform_handed.insert(44).then_some(()).unwrap())
            .await
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"format\": 4"), "{text}");
        let reloaded = load(&path).unwrap().unwrap();
        assert_eq!(
            reloaded,
            DeviceState {
                platform_handed: BTreeSet::from([44]),
                ..expected
            }
        );
    }

    #[test]
    fn seqs_handed_from_a_platform_at_or_below_the_position_are_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.json");
        let mut written = state(10);
        written.platform_handed = BTreeSet::from([3, 10, 11, 20]);
        save(&path, &written).unwrap();
        let loaded = load(&path).unwrap().unwrap();
        assert_eq!(loaded.platform_handed, BTreeSet::from([11, 20]));
    }

    #[test]
    fn keeps_both_positions_and_the_attributes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.json");
        let mut written = state(3);
        written.timeline_seq = 9_000;
        save(&path, &written).unwrap();
        let loaded = load(&path).unwrap().unwrap();
        assert_eq!(loaded, written);
        assert_eq!(loaded.timeline_seq, 9_000);
        assert!(loaded.attributes.unwrap().tags.contains("vip"));
    }

    #[tokio::test]
    async fn a_refused_change_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.json");
        for keeper in [
            StateKeeper::new(Some(path.clone()), state(1)),
            StateKeeper::new(None, state(1)),
        ] {
            let refused = keeper
                .try_update(|state| {
                    state.last_seq = 99;
                    Err(Error::InvalidAttributes("too big".into()))
                })
                .await;
            assert!(matches!(refused, Err(Error::InvalidAttributes(_))));
            assert_eq!(keeper.snapshot(), state(1));
        }
        assert_eq!(load(&path).unwrap(), None, "nothing was written");
    }
}
