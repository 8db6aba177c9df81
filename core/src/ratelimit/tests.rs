use std::net::IpAddr;

use http::HeaderMap;

use super::*;
use crate::api::context::TenantId;
use crate::ports::Sql;
use crate::storage::migrate;
use crate::testing::{SeededEntropy, SqliteSql, block_on};

const SEC: u64 = 1_000_000;
const T0: u64 = 1_800_000_000 * SEC;
const P: Policy = Policy {
    limit: 10,
    period_secs: 1,
    burst: 3,
};

#[test]
fn setting_one_class_policy_leaves_every_other_class_at_its_default() {
    for (i, class) in RouteClass::ALL.into_iter().enumerate() {
        assert_eq!(class as usize, i, "{class:?} indexes the policies");
        let mut policies = Policies::default();
        policies.set(class, P);
        for other in RouteClass::ALL {
            let want = if other == class {
                P
            } else {
                other.default_policy()
            };
            assert_eq!(policies.get(other), want, "{class:?} set, {other:?} read");
        }
    }
}

#[test]
fn policies_parse_from_variables() {
    let cases = [
        ("10/1m", Ok((10, 60, 10)), "burst defaults to the limit"),
        ("10/60s;burst=5", Ok((10, 60, 5)), "explicit burst"),
        (" 5/1h ; burst=1 ", Ok((5, 3600, 1)), "spaces"),
        ("10/1d", Err("needs a unit"), "days are not a unit"),
        ("10", Err("is not <limit>/<period>"), "no period"),
        ("0/1s", Err("limit"), "zero"),
        ("10/0s", Err("period"), "zero period"),
        ("10/1s;burst=0", Err("burst"), "zero burst"),
        ("10/1s;rate=2", Err("burst"), "unknown option"),
    ];
    for (raw, want, why) in cases {
        let got = parse_policy(raw);
        match want {
            Ok((limit, period_secs, burst)) => assert_eq!(
                got,
                Ok(Policy {
                    limit,
                    period_secs,
                    burst
                }),
                "{why}"
            ),
            Err(fragment) => {
                let err = got.expect_err(why);
                assert!(err.contains(fragment), "{why}: {err}");
            }
        }
    }
}

#[test]
fn headers_render_the_ietf_fields() {
    let verdict = Verdict {
        class: RouteClass::Api,
        policy: P,
        decision: decide(None, T0, &P),
    };
    let [(policy_name, policy), (state_name, state)] = verdict.headers();
    assert_eq!(policy_name, "ratelimit-policy");
    assert_eq!(policy, "\"api\";q=10;w=1");
    assert_eq!(state_name, "ratelimit");
    assert_eq!(state, "\"api\";r=2;t=1");
    let mut tat = None;
    for _ in 0..3 {
        tat = Some(decide(tat, T0, &P).tat);
    }
    let refused = Verdict {
        class: RouteClass::Login,
        policy: P,
        decision: decide(tat, T0, &P),
    };
    assert_eq!(refused.retry_after_secs(), 1, "rounded up, never 0");
    assert_eq!(refused.headers()[1].1, "\"login\";r=0;t=1");
}

#[test]
fn keys_separate_tenants_subjects_and_classes() {
    let user = |tenant: &str, id: &str| Principal::User {
        tenant: TenantId::parse(tenant).unwrap(),
        user_id: id.into(),
        role: crate::auth::Role::User,
    };
    let ip: IpAddr = "203.0.113.7".parse().unwrap();
    let keys = [
        key(RouteClass::Api, Some(&user("acme", "u1")), Some(ip)),
        key(RouteClass::Api, Some(&user("globex", "u1")), Some(ip)),
        key(RouteClass::Admin, Some(&user("acme", "u1")), Some(ip)),
        key(RouteClass::Api, None, Some(ip)),
        key(RouteClass::Api, None, None),
    ];
    assert_eq!(keys[0], "api:t:acme:u1");
    assert_eq!(keys[3], "api:ip:203.0.113.7");
    let mut unique = keys.to_vec();
    crate::sort::sort(&mut unique);
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "{keys:?}");
}

#[test]
fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
    let proxy: IpAddr = "10.0.0.2".parse().unwrap();
    let client: IpAddr = "198.51.100.4".parse().unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-forwarded-for",
        "6.6.6.6, 198.51.100.4, 10.0.0.2".parse().unwrap(),
    );
    let cases = [
        (
            Some(client),
            &[][..],
            Some(client),
            "direct client: XFF ignored",
        ),
        (
            Some(proxy),
            &[][..],
            Some(proxy),
            "untrusted proxy: its own address",
        ),
        (
            Some(proxy),
            &[proxy][..],
            Some(client),
            "trusted: right-most untrusted entry",
        ),
        (None, &[proxy][..], None, "no peer known"),
    ];
    for (peer, trusted, want, why) in cases {
        assert_eq!(client_ip(&headers, peer, trusted), want, "{why}");
    }
    headers.insert("x-forwarded-for", "not an address".parse().unwrap());
    assert_eq!(
        client_ip(&headers, Some(proxy), &[proxy]),
        Some(proxy),
        "garbage XFF"
    );
}

#[test]
fn the_local_table_is_bounded_and_forgets_idle_keys_first() {
    let mut table = LocalTable::with_capacity(3);
    for k in ["a", "b", "c"] {
        assert!(table.decide(k, T0, &P).allowed);
    }
    // "a" is used again; at T0 every TAT is still ahead of now.
    assert!(table.decide("a", T0, &P).allowed);
    assert!(table.decide("d", T0, &P).allowed);
    assert_eq!(table.len(), 3, "bounded");
    // The least recently used ("b") went; "a" kept its state (two spent).
    assert!(table.decide("a", T0, &P).allowed);
    assert!(
        !table.decide("a", T0, &P).allowed,
        "a's burst of 3 is spent"
    );
    // Later, refilled keys are dropped before any live one.
    let later = T0 + 10 * SEC;
    assert!(table.decide("e", later, &P).allowed);
    assert_eq!(table.len(), 1, "only e: the rest had refilled");
}

#[test]
fn sql_state_is_shared_by_fresh_instances() {
    let db = SqliteSql::open_in_memory();
    block_on(migrate(&db)).unwrap();
    let entropy = SeededEntropy::new(3);
    // Every call stands for a fresh Spin instance: no memory between them.
    let admitted: Vec<bool> = (0..5)
        .map(|_| {
            block_on(SqlStore::decide(&db, &entropy, "api:t:acme:u1", T0, &P))
                .unwrap()
                .allowed
        })
        .collect();
    assert_eq!(admitted, [true, true, true, false, false]);
    let other = block_on(SqlStore::decide(&db, &entropy, "api:t:globex:u1", T0, &P)).unwrap();
    assert!(other.allowed, "another tenant's key is untouched");
    let later = block_on(SqlStore::decide(
        &db,
        &entropy,
        "api:t:acme:u1",
        T0 + SEC,
        &P,
    ))
    .unwrap();
    assert!(later.allowed, "refilled");
}

#[test]
fn sql_state_queries_use_the_key_or_tat_index() {
    let db = SqliteSql::open_in_memory();
    block_on(migrate(&db)).unwrap();
    for (name, statement) in store::STATEMENTS {
        let params = vec![crate::ports::SqlValue::Null; 3];
        let n = statement.matches('?').count().min(3);
        let plan =
            block_on(db.execute(&format!("EXPLAIN QUERY PLAN {statement}"), &params[..n])).unwrap();
        let detail = format!("{:?}", plan.rows);
        assert!(!detail.contains("SCAN"), "{name}: {detail}");
    }
}
