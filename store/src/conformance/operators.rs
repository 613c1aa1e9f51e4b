//! Conformance cases of the portal's operators and sessions.

use crate::{OperatorRecord, Role, SessionRecord, Store, StoreError, now_ms, secret_hash};

fn operator(name: &str, role: Role) -> OperatorRecord {
    OperatorRecord {
        name: name.to_owned(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${name}"),
        role,
        created_at_ms: now_ms(),
    }
}

fn session(id: &str, operator: &str, expires_at_ms: i64) -> SessionRecord {
    SessionRecord {
        id_hash: secret_hash(id),
        operator: operator.to_owned(),
        csrf_token: format!("csrf-{id}"),
        created_at_ms: now_ms(),
        expires_at_ms,
    }
}

fn names(list: &[OperatorRecord]) -> Vec<&str> {
    list.iter().map(|operator| operator.name.as_str()).collect()
}

pub async fn operators_are_created_once_listed_and_deleted(store: &dyn Store) {
    let operators = store.operators();
    assert_eq!(operators.operators().await.expect("operators"), []);
    let ada = operator("ada", Role::Admin);
    let zoe = operator("zoe.m-2", Role::Viewer);
    let mia = operator("mia_k", Role::Marketer);
    for created in [&zoe, &ada, &mia] {
        operators
            .create_operator(created)
            .await
            .expect("create operator");
    }
    assert_eq!(
        operators.operator("ada").await.expect("operator"),
        Some(ada.clone())
    );
    assert_eq!(operators.operator("bob").await.expect("operator"), None);
    let taken = operators
        .create_operator(&operator("ada", Role::Viewer))
        .await;
    assert!(
        matches!(taken, Err(StoreError::AlreadyExists(_))),
        "{taken:?}"
    );
    assert_eq!(
        operators.operator("ada").await.expect("operator"),
        Some(ada.clone())
    );
    let listed = operators.operators().await.expect("operators");
    assert_eq!(names(&listed), ["ada", "mia_k", "zoe.m-2"]);
    assert_eq!(listed[2], zoe);

    let kept = session("of mia", "mia_k", now_ms() + 3_600_000);
    operators
        .create_session(&kept)
        .await
        .expect("create session");
    assert!(operators.delete_operator("mia_k").await.expect("delete"));
    assert!(!operators.delete_operator("mia_k").await.expect("delete"));
    // The session stays; whoever reads it finds no operator for it.
    let found = operators.session(&kept.id_hash, now_ms()).await;
    assert_eq!(found.expect("session"), Some(kept));
    assert!(!operators.delete_operator("bob").await.expect("delete"));
    assert_eq!(operators.operator("mia_k").await.expect("operator"), None);
    let listed = operators.operators().await.expect("operators");
    assert_eq!(names(&listed), ["ada", "zoe.m-2"]);
    // A deleted name is free again.
    let again = operator("mia_k", Role::Viewer);
    operators.create_operator(&again).await.expect("recreate");
    assert_eq!(
        operators.operator("mia_k").await.expect("operator"),
        Some(again)
    );
}

pub async fn sessions_are_created_read_expire_and_deleted(store: &dyn Store) {
    let operators = store.operators();
    let now = now_ms();
    // An hour ahead, so that Redis (which expires the key by its own clock) keeps it.
    let expires_at = now + 3_600_000;
    let first = session("first", "ada", expires_at);
    let second = session("second", "zoe", expires_at + 1);
    for created in [&first, &second] {
        operators
            .create_session(created)
            .await
            .expect("create session");
    }
    let found = operators.session(&first.id_hash, now).await;
    assert_eq!(found.expect("session"), Some(first.clone()));
    let unknown = operators.session(&secret_hash("nobody"), now).await;
    assert_eq!(unknown.expect("session"), None);
    // Expired by the caller's clock: no longer found, at its end or after.
    for at in [expires_at, expires_at + 60_000] {
        let found = operators.session(&first.id_hash, at).await;
        assert_eq!(found.expect("session"), None, "{at}");
    }
    let found = operators.session(&second.id_hash, expires_at).await;
    assert_eq!(found.expect("session"), Some(second.clone()));
    // A session already over when created is never found.
    let stale = session("stale", "ada", now - 1_000);
    operators.create_session(&stale).await.expect("create");
    let found = operators.session(&stale.id_hash, now - 2_000).await;
    assert_eq!(found.expect("session"), None);

    operators
        .delete_session(&first.id_hash)
        .await
        .expect("delete session");
    assert_eq!(
        operators.session(&first.id_hash, now).await.expect("read"),
        None
    );
    operators
        .delete_session(&first.id_hash)
        .await
        .expect("delete again");
    let found = operators.session(&second.id_hash, now).await;
    assert_eq!(found.expect("session"), Some(second));
}
