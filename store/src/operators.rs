//! Operators of the web portal (people who sign in, each with a role) and their sessions.
//!
//! The store keeps what it is given: names are validated by the caller (the controller
//! allows 1 to 64 characters of `[a-z0-9._-]`), password hashes are PHC strings the store
//! never reads, and a session is found by the SHA-256 of its id (the id itself lives only in
//! the operator's cookie).

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::StoreResult;

/// What an operator may do in the portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, operators included.
    Admin,
    /// Campaigns and sends.
    Marketer,
    /// Reads only.
    Viewer,
}

impl Role {
    /// `"admin"`, `"marketer"` or `"viewer"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Marketer => "marketer",
            Self::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is none of `admin`, `marketer`, `viewer`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?} (expected admin, marketer or viewer)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(text: &str) -> Result<Self, UnknownRole> {
        [Self::Admin, Self::Marketer, Self::Viewer]
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| UnknownRole(text.to_owned()))
    }
}

/// An operator as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorRecord {
    pub name: String,
    /// The password's hash as a PHC string (`$argon2id$...`), opaque to the store.
    pub password_hash: String,
    pub role: Role,
    pub created_at_ms: i64,
}

/// A signed-in operator's session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// SHA-256 of the session id (see [`crate::secret_hash`]): what the session is found by.
    pub id_hash: [u8; 32],
    /// The operator's name.
    pub operator: String,
    /// The token forms must echo back.
    pub csrf_token: String,
    pub created_at_ms: i64,
    /// The session ends at this time; it is never found at or after it.
    pub expires_at_ms: i64,
}

/// Operators and sessions.
#[async_trait]
pub trait OperatorStore: Send + Sync {
    /// Stores a new operator; `AlreadyExists` if the name is taken.
    async fn create_operator(&self, operator: &OperatorRecord) -> StoreResult<()>;
    /// The operator with this name.
    async fn operator(&self, name: &str) -> StoreResult<Option<OperatorRecord>>;
    /// Every operator, by name.
    async fn operators(&self) -> StoreResult<Vec<OperatorRecord>>;
    /// Removes the operator; answers whether it existed. Its sessions stay stored but callers
    /// find no operator for them.
    async fn delete_operator(&self, name: &str) -> StoreResult<bool>;
    /// Stores a session until its `expires_at_ms` (by the wall clock, [`crate::now_ms`]); a
    /// session already expired is not stored. A session with the same id hash is replaced.
    async fn create_session(&self, session: &SessionRecord) -> StoreResult<()>;
    /// The session with this id hash; `None` if unknown or expired at `now_ms`.
    async fn session(&self, id_hash: &[u8; 32], now_ms: i64) -> StoreResult<Option<SessionRecord>>;
    /// Ends a session (signing out); a no-op for an unknown one.
    async fn delete_session(&self, id_hash: &[u8; 32]) -> StoreResult<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_their_names() {
        for role in [Role::Admin, Role::Marketer, Role::Viewer] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{role}\""));
        }
        assert_eq!(
            "Admin".parse::<Role>(),
            Err(UnknownRole("Admin".to_owned()))
        );
    }
}
