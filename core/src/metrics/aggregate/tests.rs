//! The aggregate on real SQLite: exact sums across many instances' deltas,
//! the Pushgateway group operations, cross-pusher merging, type conflicts
//! and expiry.

use std::collections::BTreeMap;

use super::*;
use crate::metrics::HttpMetrics;
use crate::storage::migrate;
use crate::testing::{SqliteSql, block_on};

const T0: i64 = 1_795_582_978;

fn db() -> SqliteSql {
    let db = SqliteSql::open_in_memory();
    block_on(migrate(&db)).unwrap();
    db
}

fn change(source: &str, mode: Mode, body: &str, labels: &[(&str, &str)], at: i64) -> Change {
    Change {
        source: source.to_owned(),
        scope: Scope::Api,
        mode,
        body: body.to_owned(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        at,
    }
}

/// Every sample of an exposition: (name, labels) → value, via the strict
/// parser (so the exposition is also proven valid).
fn samples(text: &str) -> BTreeMap<(String, Vec<(String, String)>), f64> {
    exposition::parse(text.as_bytes())
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .into_iter()
        .flat_map(|f| f.samples)
        .map(|s| ((s.name, s.labels), s.value))
        .collect()
}

fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.sort();
    samples(text).get(&(name.to_owned(), labels)).copied()
}

fn expose(agg: &SqlAggregator<'_>, at: i64) -> String {
    block_on(agg.exposition(
        Scope::Api,
        Timestamp::from_unix_micros(u64::try_from(at).unwrap() * 1_000_000),
    ))
    .unwrap()
}

#[test]
fn deltas_from_many_instances_sum_exactly() {
    let db = db();
    let agg = SqlAggregator {
        sql: &db,
        ttl_secs: 600,
    };
    let mut everything = HttpMetrics::default();
    // 60 isolates, each flushing a few deltas of what it saw.
    for isolate in 0..60_u32 {
        for flush in 0..3_u32 {
            let mut delta = HttpMetrics::default();
            for request in 0..(isolate % 7 + flush) {
                let status = if request % 4 == 0 { 404 } else { 200 };
                let ms = f64::from(isolate * 13 + request * 7 + flush) * 0.75;
                delta.record("GET", "/v1/uploads/{id}", status, ms);
                everything.record("GET", "/v1/uploads/{id}", status, ms);
            }
            if isolate % 5 == 0 {
                delta.record_rate_limited("api");
                everything.record_rate_limited("api");
            }
            let at = T0 + i64::from(isolate);
            block_on(agg.apply(&change("api", Mode::Add, &delta.encode(), &[], at))).unwrap();
        }
    }
    let aggregated = samples(&expose(&agg, T0 + 100));
    let expected = samples(&everything.encode());
    assert_eq!(
        aggregated, expected,
        "the aggregate equals one registry that saw every request"
    );
    assert!(expected.len() > 20, "a meaningful comparison");
}

#[test]
fn gauges_keep_the_latest_value_and_counters_add() {
    let db = db();
    let agg = SqlAggregator {
        sql: &db,
        ttl_secs: 600,
    };
    let body = |g: f64, c: f64| {
        format!("# TYPE mem gauge\nmem {g}\n# TYPE hits_total counter\nhits_total {c}\n")
    };
    block_on(agg.apply(&change("api", Mode::Add, &body(10.0, 1.0), &[], T0))).unwrap();
    block_on(agg.apply(&change("api", Mode::Add, &body(7.0, 2.0), &[], T0 + 1))).unwrap();
    let text = expose(&agg, T0 + 2);
    assert_eq!(value(&text, "mem", &[]), Some(7.0));
    assert_eq!(value(&text, "hits_total", &[]), Some(3.0));
}

const BATCH: &str = "# TYPE jobs_total counter\njobs_total{kind=\"a\"} 5\n\
# TYPE last_run_seconds gauge\nlast_run_seconds 100\n";

#[test]
fn put_replaces_the_group_post_replaces_families_delete_removes_it() {
    let db = db();
    let agg = SqlAggregator {
        sql: &db,
        ttl_secs: 600,
    };
    let group = [("job", "batch")];
    let put = |body: &str| {
        block_on(agg.apply(&change(
            "push:job=batch",
            Mode::ReplaceGroup,
            body,
            &group,
            T0,
        )))
    };
    put(BATCH).unwrap();
    put(BATCH).unwrap();
    let text = expose(&agg, T0);
    assert_eq!(
        value(&text, "jobs_total", &[("job", "batch"), ("kind", "a")]),
        Some(5.0),
        "a PUT replaces: pushing twice is not 10"
    );
    put("# TYPE other gauge\nother 1\n").unwrap();
    let text = expose(&agg, T0);
    assert_eq!(
        value(&text, "jobs_total", &[("job", "batch"), ("kind", "a")]),
        None,
        "gone with the PUT"
    );
    assert_eq!(value(&text, "other", &[("job", "batch")]), Some(1.0));

    put(BATCH).unwrap();
    block_on(agg.apply(&change(
        "push:job=batch",
        Mode::ReplaceFamilies,
        "# TYPE jobs_total counter\njobs_total{kind=\"b\"} 2\n",
        &group,
        T0,
    )))
    .unwrap();
    let text = expose(&agg, T0);
    assert_eq!(
        value(&text, "jobs_total", &[("job", "batch"), ("kind", "a")]),
        None,
        "the family was replaced"
    );
    assert_eq!(
        value(&text, "jobs_total", &[("job", "batch"), ("kind", "b")]),
        Some(2.0)
    );
    assert_eq!(
        value(&text, "last_run_seconds", &[("job", "batch")]),
        Some(100.0),
        "other families stay"
    );

    block_on(agg.apply(&change("push:job=batch", Mode::DeleteGroup, "", &group, T0))).unwrap();
    assert_eq!(expose(&agg, T0), "", "nothing left");
}

#[test]
fn pushers_of_one_job_are_summed_and_their_gauges_take_the_latest() {
    let db = db();
    let agg = SqlAggregator {
        sql: &db,
        ttl_secs: 600,
    };
    let histogram = |count: u32| {
        format!(
            "# TYPE req_ms histogram\nreq_ms_bucket{{le=\"10\"}} {count}\nreq_ms_bucket{{le=\"100\"}} {}\n\
             req_ms_bucket{{le=\"+Inf\"}} {}\nreq_ms_sum {}\nreq_ms_count {}\n\
             # TYPE up gauge\nup {count}\n",
            count * 2,
            count * 2,
            count * 30,
            count * 2
        )
    };
    // Each pusher is its own group (its `instance`); the exposed series
    // carry the job only, so they meet and merge.
    for (i, count) in [1_u32, 2, 3].into_iter().enumerate() {
        let source = format!("push:job=web/instance=i{i}");
        let at = T0 + i64::try_from(i).unwrap();
        block_on(agg.apply(&change(
            &source,
            Mode::ReplaceGroup,
            &histogram(count),
            &[("job", "web")],
            at,
        )))
        .unwrap();
    }
    let text = expose(&agg, T0 + 5);
    let job = [("job", "web")];
    assert_eq!(
        value(&text, "req_ms_bucket", &[("job", "web"), ("le", "10")]),
        Some(6.0)
    );
    assert_eq!(
        value(&text, "req_ms_bucket", &[("job", "web"), ("le", "+Inf")]),
        Some(12.0)
    );
    assert_eq!(value(&text, "req_ms_sum", &job), Some(180.0));
    assert_eq!(value(&text, "req_ms_count", &job), Some(12.0));
    assert_eq!(
        value(&text, "up", &job),
        Some(3.0),
        "the last pusher's gauge"
    );
    let le: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("req_ms_bucket"))
        .map(|l| &l[l.find("le=").unwrap()..])
        .collect();
    assert_eq!(
        le,
        ["le=\"10\"} 6", "le=\"100\"} 12", "le=\"+Inf\"} 12"],
        "buckets in numeric order"
    );
}

#[test]
fn a_family_pushed_with_another_type_is_refused() {
    let db = db();
    let agg = SqlAggregator {
        sql: &db,
        ttl_secs: 600,
    };
    block_on(agg.apply(&change(
        "push:job=a",
        Mode::ReplaceGroup,
        BATCH,
        &[("job", "a")],
        T0,
    )))
    .unwrap();
    let refused = block_on(agg.apply(&change(
        "push:job=b",
        Mode::ReplaceGroup,
        "# TYPE jobs_total gauge\njobs_total 1\n",
        &[("job", "b")],
        T0,
    )));
    assert_eq!(
        refused,
        Err(Refusal::TypeConflict {
            family: "jobs_total".into(),
            stored: "counter"
        })
    );
    let invalid = block_on(agg.apply(&change(
        "push:job=b",
        Mode::ReplaceGroup,
        "x 1 123\n",
        &[],
        T0,
    )));
    assert!(
        matches!(invalid, Err(Refusal::Invalid(e)) if e.line == 1),
        "timestamps refused"
    );
}

#[test]
fn pushed_series_and_gauges_expire_while_own_counters_stay() {
    let db = db();
    let agg = SqlAggregator {
        sql: &db,
        ttl_secs: 60,
    };
    block_on(agg.apply(&change(
        "push:job=a",
        Mode::ReplaceGroup,
        BATCH,
        &[("job", "a")],
        T0,
    )))
    .unwrap();
    let own = "# TYPE hits_total counter\nhits_total 4\n# TYPE mem gauge\nmem 9\n";
    block_on(agg.apply(&change("api", Mode::Add, own, &[], T0))).unwrap();
    let fresh = expose(&agg, T0 + 60);
    assert!(value(&fresh, "jobs_total", &[("job", "a"), ("kind", "a")]).is_some());
    let later = expose(&agg, T0 + 61);
    assert_eq!(
        value(&later, "jobs_total", &[("job", "a"), ("kind", "a")]),
        None,
        "the group stopped reporting"
    );
    assert_eq!(value(&later, "mem", &[]), None, "gauges expire");
    assert_eq!(
        value(&later, "hits_total", &[]),
        Some(4.0),
        "own counters are cumulative"
    );
}

#[test]
fn the_remote_protocol_round_trips_changes_refusals_and_expositions() {
    use bytes::Bytes;
    let sql = SqliteSql::open_in_memory(); // no app migrations: the object's own storage
    block_on(crate::storage::migrate_metrics(&sql)).unwrap();
    let call = |method: http::Method, path: &str, body: String| {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .body(Bytes::from(body))
            .unwrap();
        block_on(remote::serve(&sql, 600, &req))
    };
    let push = change("push:job=a", Mode::ReplaceGroup, BATCH, &[("job", "a")], T0);
    let (path, body) = remote::apply_request(&push);
    assert_eq!(call(http::Method::POST, &path, body).status(), 204);
    let conflict = change(
        "push:job=b",
        Mode::ReplaceGroup,
        "# TYPE jobs_total gauge\njobs_total 1\n",
        &[("job", "b")],
        T0,
    );
    let (path, body) = remote::apply_request(&conflict);
    let refused = call(http::Method::POST, &path, body);
    assert_eq!(
        remote::refusal(refused.status().as_u16(), refused.body()),
        Refusal::TypeConflict {
            family: "jobs_total".into(),
            stored: "counter"
        }
    );
    let invalid = change("push:job=b", Mode::ReplaceGroup, "a 1\na 1\n", &[], T0);
    let (path, body) = remote::apply_request(&invalid);
    let refused = call(http::Method::POST, &path, body);
    assert!(
        matches!(remote::refusal(refused.status().as_u16(), refused.body()), Refusal::Invalid(e) if e.line == 2)
    );
    let now = Timestamp::from_unix_micros(u64::try_from(T0).unwrap() * 1_000_000);
    let exposed = call(
        http::Method::GET,
        &remote::exposition_path(Scope::Api, now),
        String::new(),
    );
    assert_eq!(exposed.status(), 200);
    let text = String::from_utf8(exposed.body().to_vec()).unwrap();
    assert_eq!(
        value(&text, "jobs_total", &[("job", "a"), ("kind", "a")]),
        Some(5.0)
    );
}
