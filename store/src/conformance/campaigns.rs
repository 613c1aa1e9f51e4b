//! Conformance cases of campaigns and firing claims.

use ringpush_protocol::AppId;

use crate::{CampaignRecord, CampaignState, CampaignStore, Claim, Schedule, Store, now_ms};

const LEASE_MS: u64 = 30_000;

fn campaign(app: AppId, id: &str, created_at_ms: i64, state: CampaignState) -> CampaignRecord {
    CampaignRecord {
        id: id.to_owned(),
        app,
        name: format!("campaign {id}"),
        request: serde_json::json!({"broadcast": true, "data": {"n": 1}}),
        schedule: Schedule::Once {
            at_ms: created_at_ms + 60_000,
        },
        throttle_per_second: None,
        state,
        created_at_ms,
    }
}

/// A fresh campaign id (ids are random and unique across apps in real use too).
fn fresh_id(tag: &str) -> String {
    format!("cmp_{tag}_{:016x}", rand::random::<u64>())
}

fn ids_of(list: Vec<CampaignRecord>) -> Vec<String> {
    list.into_iter().map(|campaign| campaign.id).collect()
}

async fn scheduled_ids(campaigns: &dyn CampaignStore) -> Vec<String> {
    ids_of(campaigns.scheduled_campaigns().await.expect("scheduled"))
}

async fn state_of(campaigns: &dyn CampaignStore, app: AppId, id: &str) -> Option<CampaignState> {
    let record = campaigns.campaign(app, id).await.expect("read campaign");
    record.map(|campaign| campaign.state)
}

pub async fn campaigns_round_trip_every_field_and_kind(store: &dyn Store) {
    let campaigns = store.campaigns();
    let app = AppId::random();
    let now = now_ms();
    // A request with what Lua's cjson would change: empty arrays and objects, big and
    // fractional numbers, escapes and non-ASCII text.
    let request = serde_json::json!({
        "tags": "vip and not churned",
        "data": {"empty": [], "nothing": {}, "big": 9_007_199_254_740_993_u64, "pi": 3.25},
        "text": "Grüße \"quoted\" ☂ \u{1}",
        "ttl_seconds": 3600
    });
    let schedules = [
        Schedule::Once { at_ms: now + 1 },
        Schedule::LocalTime {
            date: "2026-11-23".to_owned(),
            time: "09:00".to_owned(),
            default_zone: "Asia/Tokyo".to_owned(),
        },
        Schedule::Cron {
            expression: "*/5 9-17 * * MON-FRI".to_owned(),
            zone: "Europe/Paris".to_owned(),
            until_ms: Some(now + 86_400_000),
        },
        Schedule::Cron {
            expression: "@daily".to_owned(),
            zone: "UTC".to_owned(),
            until_ms: None,
        },
    ];
    let mut written = Vec::new();
    for (index, schedule) in schedules.into_iter().enumerate() {
        let record = CampaignRecord {
            name: format!("Kampagne {index} — ☂"),
            request: request.clone(),
            schedule,
            throttle_per_second: (index % 2 == 0).then_some(250),
            ..campaign(
                app,
                &fresh_id("kind"),
                now + index as i64,
                CampaignState::Scheduled,
            )
        };
        campaigns.put_campaign(&record).await.expect("put");
        written.push(record);
    }
    for record in &written {
        let read = campaigns.campaign(app, &record.id).await.expect("read");
        assert_eq!(read.as_ref(), Some(record));
    }
    // Another app does not see them; an unknown id is nothing.
    let other_app = AppId::random();
    let hidden = campaigns
        .campaign(other_app, &written[0].id)
        .await
        .expect("read");
    assert_eq!(hidden, None);
    assert_eq!(
        campaigns.campaign(app, "cmp_none").await.expect("read"),
        None
    );
    assert!(
        campaigns
            .app_campaigns(other_app)
            .await
            .expect("list")
            .is_empty()
    );
}

pub async fn app_campaigns_come_newest_first_and_puts_replace(store: &dyn Store) {
    let campaigns = store.campaigns();
    let (app, other_app) = (AppId::random(), AppId::random());
    let now = now_ms();
    let (first, second, third) = (fresh_id("a"), fresh_id("b"), fresh_id("c"));
    for (id, created, state) in [
        (&second, now + 20, CampaignState::Paused),
        (&first, now + 10, CampaignState::Scheduled),
        (&third, now + 30, CampaignState::Finished),
    ] {
        campaigns
            .put_campaign(&campaign(app, id, created, state))
            .await
            .expect("put");
    }
    let elsewhere = fresh_id("elsewhere");
    campaigns
        .put_campaign(&campaign(
            other_app,
            &elsewhere,
            now + 40,
            CampaignState::Scheduled,
        ))
        .await
        .expect("put");
    let listed = ids_of(campaigns.app_campaigns(app).await.expect("list"));
    assert_eq!(listed, [third.clone(), second.clone(), first.clone()]);
    // Replacing a campaign changes it in place: still one entry, with the new fields.
    let renamed = CampaignRecord {
        name: "renamed".to_owned(),
        ..campaign(app, &first, now + 10, CampaignState::Scheduled)
    };
    campaigns.put_campaign(&renamed).await.expect("put");
    let listed = campaigns.app_campaigns(app).await.expect("list");
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[2], renamed);
    // Equal creation times order by id, descending like the times.
    let (twin_a, twin_b) = (format!("{first}-1"), format!("{first}-2"));
    for id in [&twin_a, &twin_b] {
        campaigns
            .put_campaign(&campaign(app, id, now + 50, CampaignState::Paused))
            .await
            .expect("put");
    }
    let listed = ids_of(campaigns.app_campaigns(app).await.expect("list"));
    assert_eq!(listed, [twin_b, twin_a, third, second, first]);
    let listed = ids_of(campaigns.app_campaigns(other_app).await.expect("list"));
    assert_eq!(listed, [elsewhere]);
}

pub async fn scheduled_index_follows_puts_and_transitions(store: &dyn Store) {
    let campaigns = store.campaigns();
    let (app, other_app) = (AppId::random(), AppId::random());
    let now = now_ms();
    let (a, b, c) = (fresh_id("a"), fresh_id("b"), fresh_id("c"));
    campaigns
        .put_campaign(&campaign(app, &a, now + 1, CampaignState::Scheduled))
        .await
        .expect("put");
    campaigns
        .put_campaign(&campaign(other_app, &b, now + 2, CampaignState::Scheduled))
        .await
        .expect("put");
    campaigns
        .put_campaign(&campaign(app, &c, now, CampaignState::Paused))
        .await
        .expect("put");
    // Across apps, oldest first; the paused one is not listed.
    assert_eq!(scheduled_ids(campaigns).await, [a.clone(), b.clone()]);
    let scheduled = campaigns.scheduled_campaigns().await.expect("scheduled");
    assert_eq!(
        scheduled[1],
        campaign(other_app, &b, now + 2, CampaignState::Scheduled)
    );

    let (scheduled_only, paused_only) = (&[CampaignState::Scheduled], &[CampaignState::Paused]);
    let moved = campaigns
        .transition_campaign(app, &a, scheduled_only, CampaignState::Paused)
        .await
        .expect("pause");
    assert!(moved);
    assert_eq!(
        state_of(campaigns, app, &a).await,
        Some(CampaignState::Paused)
    );
    assert_eq!(scheduled_ids(campaigns).await, std::slice::from_ref(&b));
    // From a state it is not in: no move, nothing changes.
    let moved = campaigns
        .transition_campaign(app, &a, scheduled_only, CampaignState::Cancelled)
        .await
        .expect("cancel");
    assert!(!moved);
    assert_eq!(
        state_of(campaigns, app, &a).await,
        Some(CampaignState::Paused)
    );
    // Resuming puts it back in the index; both paused ones resume, then c is cancelled.
    for id in [&a, &c] {
        let moved = campaigns
            .transition_campaign(app, id, paused_only, CampaignState::Scheduled)
            .await
            .expect("resume");
        assert!(moved);
    }
    assert_eq!(
        scheduled_ids(campaigns).await,
        [c.clone(), a.clone(), b.clone()]
    );
    let either = [CampaignState::Scheduled, CampaignState::Paused];
    let moved = campaigns
        .transition_campaign(app, &c, &either, CampaignState::Cancelled)
        .await
        .expect("cancel");
    assert!(moved);
    assert_eq!(scheduled_ids(campaigns).await, [a.clone(), b.clone()]);
    // The read record carries the moved state, the rest unchanged.
    let cancelled = campaigns.campaign(app, &c).await.expect("read");
    assert_eq!(
        cancelled,
        Some(campaign(app, &c, now, CampaignState::Cancelled))
    );
    // Unknown campaigns (or the right id under the wrong app) do not move.
    for (app, id) in [(app, "cmp_unknown"), (other_app, a.as_str())] {
        let moved = campaigns
            .transition_campaign(app, id, &either, CampaignState::Cancelled)
            .await
            .expect("transition");
        assert!(!moved);
    }
    assert_eq!(state_of(campaigns, other_app, &a).await, None);
    // A put in another state takes a campaign out of the index, a put in Scheduled back in.
    campaigns
        .put_campaign(&campaign(other_app, &b, now + 2, CampaignState::Finished))
        .await
        .expect("put");
    assert_eq!(scheduled_ids(campaigns).await, std::slice::from_ref(&a));
    campaigns
        .put_campaign(&campaign(app, &c, now, CampaignState::Scheduled))
        .await
        .expect("put");
    assert_eq!(scheduled_ids(campaigns).await, [c, a]);
}

pub async fn racing_transitions_move_a_campaign_once(store: &dyn Store) {
    let campaigns = store.campaigns();
    let app = AppId::random();
    let id = fresh_id("race");
    campaigns
        .put_campaign(&campaign(app, &id, now_ms(), CampaignState::Scheduled))
        .await
        .expect("put");
    // Ten callers pause and ten cancel at once: exactly one of all twenty moves it.
    let racers = (0..20).map(|index| {
        let to = if index % 2 == 0 {
            CampaignState::Paused
        } else {
            CampaignState::Cancelled
        };
        let id = id.clone();
        async move {
            let moved = campaigns
                .transition_campaign(app, &id, &[CampaignState::Scheduled], to)
                .await
                .expect("transition");
            moved.then_some(to)
        }
    });
    let winners: Vec<CampaignState> = futures_util::future::join_all(racers)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(state_of(campaigns, app, &id).await, Some(winners[0]));
    assert!(!scheduled_ids(campaigns).await.contains(&id));
}

pub async fn firing_claims_hold_expire_and_finish(store: &dyn Store) {
    let campaigns = store.campaigns();
    let id = fresh_id("claims");
    let firing = "2026-11-23T09:00@Asia/Tokyo";
    let now = now_ms();
    let claim =
        |owner: &'static str, at: i64| campaigns.claim_firing(&id, firing, owner, LEASE_MS, at);
    assert_eq!(claim("ctl-a", now).await.expect("claim"), Claim::Claimed);
    // While the lease lives, everyone (its owner too) is told who holds it.
    let held_by_a = Claim::HeldBy("ctl-a".to_owned());
    assert_eq!(claim("ctl-b", now + 1).await.expect("claim"), held_by_a);
    assert_eq!(claim("ctl-a", now + 2).await.expect("claim"), held_by_a);
    let last_moment = now + LEASE_MS as i64 - 1;
    assert_eq!(claim("ctl-b", last_moment).await.expect("claim"), held_by_a);
    // At the end of the lease (its owner died, or failed to send) another takes it over.
    let expired = now + LEASE_MS as i64;
    assert_eq!(
        claim("ctl-b", expired).await.expect("claim"),
        Claim::Claimed
    );
    let held_by_b = Claim::HeldBy("ctl-b".to_owned());
    assert_eq!(claim("ctl-a", expired + 1).await.expect("claim"), held_by_b);
    // Other firings of the campaign, and the same firing name of another campaign, are free.
    let other = campaigns
        .claim_firing(&id, "2026-11-23T09:00@UTC", "ctl-a", LEASE_MS, expired)
        .await
        .expect("claim");
    assert_eq!(other, Claim::Claimed);
    let other_campaign = fresh_id("other");
    let other = campaigns
        .claim_firing(&other_campaign, firing, "ctl-c", LEASE_MS, expired)
        .await
        .expect("claim");
    assert_eq!(other, Claim::Claimed);
    // Done is final: for everyone, at any later time, lease or no lease.
    campaigns.finish_firing(&id, firing).await.expect("finish");
    for (owner, at) in [
        ("ctl-a", expired + 2),
        ("ctl-b", expired + 3),
        ("ctl-d", now + 86_400_000),
    ] {
        assert_eq!(
            claim(owner, at).await.expect("claim"),
            Claim::Done,
            "{owner}"
        );
    }
    // Finishing twice, or a firing never claimed (a skipped one), is fine.
    campaigns.finish_firing(&id, firing).await.expect("finish");
    campaigns
        .finish_firing(&id, "cron:2026-11-23T09:00Z")
        .await
        .expect("finish");
    let skipped = campaigns
        .claim_firing(&id, "cron:2026-11-23T09:00Z", "ctl-a", LEASE_MS, now)
        .await
        .expect("claim");
    assert_eq!(skipped, Claim::Done);
    // Campaign ids that run into each other's firing names stay apart.
    let (short, long) = (format!("{id}:x"), format!("{id}:x:y"));
    let split = campaigns
        .claim_firing(&short, "y:f", "ctl-a", LEASE_MS, now)
        .await
        .expect("claim");
    assert_eq!(split, Claim::Claimed);
    let joined = campaigns
        .claim_firing(&long, "f", "ctl-b", LEASE_MS, now)
        .await
        .expect("claim");
    assert_eq!(joined, Claim::Claimed, "a different campaign's firing");
}

pub async fn racing_claims_have_one_winner(store: &dyn Store) {
    let campaigns = store.campaigns();
    let id = fresh_id("race");
    let now = now_ms();
    let owners: Vec<String> = (0..20).map(|index| format!("ctl-{index}")).collect();
    let claims = owners.iter().map(|owner| {
        let id = id.clone();
        async move {
            let claim = campaigns
                .claim_firing(&id, "cron:2026-11-23T09:00Z", owner, LEASE_MS, now)
                .await
                .expect("claim");
            (owner.clone(), claim)
        }
    });
    let outcomes = futures_util::future::join_all(claims).await;
    let winners: Vec<&String> = outcomes
        .iter()
        .filter(|(_, claim)| *claim == Claim::Claimed)
        .map(|(owner, _)| owner)
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let held = Claim::HeldBy(winners[0].clone());
    for (owner, claim) in &outcomes {
        if owner != winners[0] {
            assert_eq!(claim, &held, "{owner}");
        }
    }
}

pub async fn firing_claims_are_renewed_by_their_owner_only(store: &dyn Store) {
    let campaigns = store.campaigns();
    let id = fresh_id("renew");
    let firing = "cron:2026-11-23T09:00Z";
    let now = now_ms();
    let lease = LEASE_MS as i64;
    assert_eq!(
        campaigns
            .claim_firing(&id, firing, "ctl-a", LEASE_MS, now)
            .await
            .expect("claim"),
        Claim::Claimed
    );
    // Another owner cannot renew it; its owner can, near the end of the lease.
    let renew =
        |owner: &'static str, at: i64| campaigns.renew_firing(&id, firing, owner, LEASE_MS, at);
    assert!(!renew("ctl-b", now + 1).await.expect("renew"));
    assert!(renew("ctl-a", now + lease - 1).await.expect("renew"));
    // So the first lease's end no longer frees it: it runs a lease from the renewal.
    let held_by_a = Claim::HeldBy("ctl-a".to_owned());
    let claim =
        |owner: &'static str, at: i64| campaigns.claim_firing(&id, firing, owner, LEASE_MS, at);
    assert_eq!(claim("ctl-b", now + lease).await.expect("claim"), held_by_a);
    assert_eq!(
        claim("ctl-b", now + 2 * lease - 1).await.expect("claim"),
        Claim::Claimed
    );
    // Taken over: its old owner's renewals fail from now on.
    assert!(!renew("ctl-a", now + 2 * lease).await.expect("renew"));
    // Done: nobody renews it; an unknown firing is nobody's either.
    campaigns.finish_firing(&id, firing).await.expect("finish");
    assert!(!renew("ctl-b", now + 2 * lease + 1).await.expect("renew"));
    assert!(
        !campaigns
            .renew_firing(&id, "cron:never", "ctl-a", LEASE_MS, now)
            .await
            .expect("renew")
    );
}
