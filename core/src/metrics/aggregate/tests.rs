//! The aggregate on real SQLite: exact sums across many instances' deltas,
//! the Pushgateway group operations, cross-pusher merging, type and name
//! conflicts, series budgets, non-finite values, all-or-nothing groups and
//! expiry.

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
        pusher: source.starts_with("push:").then(|| "key_batch".to_owned()),
    }
}

fn config(ttl_secs: u32) -> MetricsConfig {
    MetricsConfig {
        ttl_secs,
        ..MetricsConfig::default()
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
    crate::sort::sort(&mut labels);
    samples(text).get(&(name.to_owned(), labels)).copied()
}

/// The exposition at `at`, without the aggregate's own size gauges
/// (`tepi_metrics_series*`, asserted on their own).
fn expose(agg: &SqlAggregator<'_>, at: i64) -> String {
    let text = expose_all(agg, at);
    let mut kept = String::new();
    for line in text.lines() {
        if !line.contains("tepi_metrics_series") {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept
}

fn expose_all(agg: &SqlAggregator<'_>, at: i64) -> String {
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
        config: config(600),
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
        config: config(600),
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
        config: config(600),
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
        config: config(600),
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
        config: config(600),
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
        config: config(60),
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
        block_on(remote::serve(&sql, &config(600), &req))
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

fn limited(db: &SqliteSql, push: PushLimits) -> SqlAggregator<'_> {
    SqlAggregator {
        sql: db,
        config: MetricsConfig {
            push,
            ..MetricsConfig::default()
        },
    }
}

/// `n` gauge series of one family: `g{i="0"} 0` …
fn series(family: &str, n: u32) -> String {
    let mut body = format!("# TYPE {family} gauge\n");
    for i in 0..n {
        let _ = writeln!(body, "{family}{{i=\"{i}\"}} {i}");
    }
    body
}

fn pushed_by(pusher: &str, group: &str, mode: Mode, body: &str, at: i64) -> Change {
    Change {
        pusher: Some(pusher.to_owned()),
        ..change(
            &format!("push:job={group}"),
            mode,
            body,
            &[("job", group)],
            at,
        )
    }
}

/// The limit a refusal names.
fn quota(result: Result<(), Refusal>) -> Limit {
    match result {
        Err(Refusal::Quota(exceeded)) => exceeded.limit,
        other => panic!("not a quota refusal: {other:?}"),
    }
}

#[test]
#[allow(clippy::too_many_lines)] // one story, step by step
fn series_budgets_per_group_pusher_and_aggregate_refuse_only_what_they_would_add() {
    let db = db();
    let agg = limited(
        &db,
        PushLimits {
            max_group_series: 10,
            max_pusher_groups: 3,
            max_pusher_series: 25,
            max_total_series: 40,
            ..PushLimits::default()
        },
    );
    let apply = |c: Change| block_on(agg.apply(&c));
    // Per group: POSTs add families until the group is full.
    apply(pushed_by(
        "k1",
        "a",
        Mode::ReplaceGroup,
        &series("x", 6),
        T0,
    ))
    .unwrap();
    assert_eq!(
        quota(apply(pushed_by(
            "k1",
            "a",
            Mode::ReplaceFamilies,
            &series("y", 5),
            T0
        ))),
        Limit::GroupSeries
    );
    apply(pushed_by(
        "k1",
        "a",
        Mode::ReplaceFamilies,
        &series("y", 4),
        T0,
    ))
    .unwrap();
    // Replacing a family with as many series fits in a full group.
    apply(pushed_by(
        "k1",
        "a",
        Mode::ReplaceFamilies,
        &series("x", 6),
        T0,
    ))
    .unwrap();
    // Per pusher: series across its groups, then the number of groups.
    apply(pushed_by(
        "k1",
        "b",
        Mode::ReplaceGroup,
        &series("x", 10),
        T0,
    ))
    .unwrap();
    assert_eq!(
        quota(apply(pushed_by(
            "k1",
            "c",
            Mode::ReplaceGroup,
            &series("x", 6),
            T0
        ))),
        Limit::PusherSeries,
        "20 held + 6 > 25"
    );
    apply(pushed_by(
        "k1",
        "c",
        Mode::ReplaceGroup,
        &series("x", 5),
        T0,
    ))
    .unwrap();
    assert_eq!(
        quota(apply(pushed_by(
            "k1",
            "d",
            Mode::ReplaceGroup,
            &series("x", 1),
            T0
        ))),
        Limit::PusherGroups
    );
    // Another pusher is not held to k1's budgets, only to the aggregate's.
    apply(pushed_by(
        "k2",
        "e",
        Mode::ReplaceGroup,
        &series("x", 10),
        T0,
    ))
    .unwrap();
    let total = |text: &str| value(text, "tepi_metrics_series", &[]);
    let text = expose_all(&agg, T0);
    assert_eq!(total(&text), Some(35.0));
    assert_eq!(value(&text, "tepi_metrics_series_limit", &[]), Some(40.0));
    assert_eq!(
        quota(apply(pushed_by(
            "k2",
            "f",
            Mode::ReplaceGroup,
            &series("x", 6),
            T0
        ))),
        Limit::TotalSeries
    );
    // At the budget, a group may still be replaced by one no larger.
    apply(pushed_by(
        "k2",
        "e",
        Mode::ReplaceGroup,
        &series("z", 10),
        T0,
    ))
    .unwrap();
    // Refused pushes changed nothing; deleting frees the budget.
    let text = expose_all(&agg, T0);
    assert_eq!(value(&text, "x", &[("job", "f"), ("i", "0")]), None);
    apply(pushed_by("k2", "e", Mode::DeleteGroup, "", T0)).unwrap();
    apply(pushed_by(
        "k2",
        "f",
        Mode::ReplaceGroup,
        &series("x", 6),
        T0,
    ))
    .unwrap();
    // Expired groups no longer count against their pusher, though nobody
    // scraped since.
    let later = T0 + 601;
    apply(pushed_by(
        "k1",
        "d",
        Mode::ReplaceGroup,
        &series("x", 10),
        later,
    ))
    .unwrap();
    apply(pushed_by(
        "k1",
        "g",
        Mode::ReplaceGroup,
        &series("x", 10),
        later,
    ))
    .unwrap();
    apply(pushed_by(
        "k2",
        "h",
        Mode::ReplaceGroup,
        &series("x", 10),
        later,
    ))
    .unwrap();
    apply(pushed_by(
        "k2",
        "i",
        Mode::ReplaceGroup,
        &series("x", 10),
        later,
    ))
    .unwrap();
    assert_eq!(total(&expose_all(&agg, later)), Some(40.0));
    // The service's own deltas are never refused, even at the budget.
    let mut own = HttpMetrics::default();
    own.record("GET", "/healthz", 200, 1.0);
    apply(change("api", Mode::Add, &own.encode(), &[], later)).unwrap();
    let text = expose_all(&agg, later);
    assert!(total(&text).unwrap() > 40.0, "{text}");
    assert_eq!(
        value(
            &text,
            "http_requests_total",
            &[("method", "GET"), ("route", "/healthz"), ("status", "200")]
        ),
        Some(1.0)
    );
}

#[test]
fn no_family_may_take_the_sample_names_of_another() {
    let db = db();
    let agg = SqlAggregator {
        sql: &db,
        config: config(600),
    };
    let histogram = "# TYPE x histogram\nx_bucket{le=\"+Inf\"} 1\nx_sum 2\nx_count 1\n";
    let apply = |group: &str, body: &str| {
        block_on(agg.apply(&pushed_by("k", group, Mode::ReplaceGroup, body, T0)))
    };
    apply("a", histogram).unwrap();
    for clash in [
        "# TYPE x_count counter\nx_count 1\n",
        "x_sum 1\n",
        "# TYPE x_bucket gauge\nx_bucket 1\n",
    ] {
        assert!(
            matches!(
                apply("b", clash),
                Err(Refusal::NameCollision { ref other, .. }) if other == "x"
            ),
            "{clash}"
        );
    }
    // The other way round: a stored counter `y_count`, then a summary `y`.
    apply("b", "# TYPE y_count counter\ny_count 1\n").unwrap();
    assert!(matches!(
        apply("c", "# TYPE y summary\ny_sum 1\ny_count 1\n"),
        Err(Refusal::NameCollision { ref other, .. }) if other == "y_count"
    ));
    // A group may replace its own families with ones that would collide
    // with them: they are gone once the PUT applies.
    apply("b", "# TYPE y summary\ny_sum 1\ny_count 1\n").unwrap();
    let text = expose(&agg, T0);
    assert_eq!(text.matches("# TYPE y").count(), 1, "{text}");
    assert_eq!(text.matches("# TYPE x").count(), 1, "{text}");
}

#[test]
fn nan_and_infinities_are_stored_where_the_format_allows_them() {
    let db = db();
    let agg = SqlAggregator {
        sql: &db,
        config: config(600),
    };
    let body = "# TYPE temp gauge\ntemp NaN\n# TYPE ratio untyped\nratio +Inf\nfloor -Inf\n\
                # TYPE lat summary\nlat{quantile=\"0.5\"} NaN\nlat_sum NaN\nlat_count 0\n";
    block_on(agg.apply(&pushed_by("k", "batch", Mode::ReplaceGroup, body, T0))).unwrap();
    let text = expose(&agg, T0);
    let job = [("job", "batch")];
    assert!(value(&text, "temp", &job).unwrap().is_nan(), "{text}");
    assert_eq!(value(&text, "ratio", &job), Some(f64::INFINITY));
    assert_eq!(value(&text, "floor", &job), Some(f64::NEG_INFINITY));
    assert!(value(&text, "lat_sum", &job).unwrap().is_nan());
    assert_eq!(value(&text, "lat_count", &job), Some(0.0));
    // And replaced like any other value.
    block_on(agg.apply(&pushed_by(
        "k",
        "batch",
        Mode::ReplaceGroup,
        "# TYPE temp gauge\ntemp 21.5\n",
        T0,
    )))
    .unwrap();
    assert_eq!(value(&expose(&agg, T0), "temp", &job), Some(21.5));
}

#[test]
fn a_pushed_samples_instance_label_never_reaches_the_exposition() {
    let db = db();
    let agg = SqlAggregator {
        sql: &db,
        config: config(600),
    };
    let body = "x{instance=\"10.0.0.7:9100\",zone=\"a\"} 1\n";
    block_on(agg.apply(&pushed_by("k", "batch", Mode::ReplaceGroup, body, T0))).unwrap();
    let text = expose(&agg, T0);
    assert!(!text.contains("instance"), "{text}");
    assert_eq!(
        value(&text, "x", &[("job", "batch"), ("zone", "a")]),
        Some(1.0)
    );
}

/// Real SQLite that records every statement it runs and, when told to,
/// fails the aggregate's inserts after `inserts_left` of them, as a full
/// disk or a lost connection would in the middle of a change.
struct Watched<'a> {
    db: &'a SqliteSql,
    inserts_left: std::cell::Cell<Option<u32>>,
    seen: std::cell::RefCell<Vec<String>>,
}

impl<'a> Watched<'a> {
    fn new(db: &'a SqliteSql, inserts_left: Option<u32>) -> Self {
        Self {
            db,
            inserts_left: std::cell::Cell::new(inserts_left),
            seen: std::cell::RefCell::default(),
        }
    }
}

#[async_trait(?Send)]
impl Sql for Watched<'_> {
    async fn execute(
        &self,
        statement: &str,
        params: &[SqlValue],
    ) -> Result<crate::ports::Rows, PortError> {
        self.seen.borrow_mut().push(statement.to_owned());
        if statement.starts_with("INSERT INTO metric_series")
            && let Some(left) = self.inserts_left.get()
        {
            if left == 0 {
                return Err(PortError("disk I/O error".into()));
            }
            self.inserts_left.set(Some(left - 1));
        }
        self.db.execute(statement, params).await
    }
}

#[test]
fn a_group_is_replaced_whole_or_not_at_all() {
    let db = db();
    let agg = SqlAggregator {
        sql: &db,
        config: config(600),
    };
    let before =
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n";
    block_on(agg.apply(&pushed_by("k", "batch", Mode::ReplaceGroup, before, T0))).unwrap();
    let expected = expose(&agg, T0);
    let failing = SqlAggregator {
        sql: &Watched::new(&db, Some(2)),
        config: config(600),
    };
    let after =
        "# TYPE h histogram\nh_bucket{le=\"1\"} 5\nh_bucket{le=\"+Inf\"} 9\nh_sum 30\nh_count 9\n";
    assert!(matches!(
        block_on(failing.apply(&pushed_by("k", "batch", Mode::ReplaceGroup, after, T0 + 1))),
        Err(Refusal::Storage(_))
    ));
    assert_eq!(
        expose(&agg, T0 + 1),
        expected,
        "the old group, every bucket, sum and count of it"
    );
}

#[test]
fn a_pushs_checks_and_writes_share_one_transaction_where_sql_allows_it() {
    let db = db();
    let recording = Watched::new(&db, None);
    let agg = SqlAggregator {
        sql: &recording,
        config: config(600),
    };
    block_on(agg.apply(&pushed_by(
        "k",
        "a",
        Mode::ReplaceGroup,
        &series("x", 3),
        T0,
    )))
    .unwrap();
    let seen = recording.seen.borrow();
    let first_read = seen.iter().position(|s| s.starts_with("SELECT")).unwrap();
    let last_write = seen.iter().rposition(|s| s.starts_with("INSERT")).unwrap();
    assert_eq!(
        seen[0], "BEGIN IMMEDIATE",
        "the write lock is taken before any check"
    );
    assert!(first_read > 0 && last_write > first_read);
    assert_eq!(seen.last().unwrap(), "COMMIT");
    assert_eq!(
        seen.iter().filter(|s| s.starts_with("BEGIN")).count(),
        1,
        "one transaction: {seen:?}"
    );
    drop(seen);
    // A refusal rolls back, leaving nothing half-done.
    recording.seen.borrow_mut().clear();
    let collision = "# TYPE h_count counter\nh_count 1\n";
    block_on(agg.apply(&pushed_by(
        "k",
        "b",
        Mode::ReplaceGroup,
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        T0,
    )))
    .unwrap();
    recording.seen.borrow_mut().clear();
    assert!(block_on(agg.apply(&pushed_by("k", "c", Mode::ReplaceGroup, collision, T0))).is_err());
    assert_eq!(recording.seen.borrow().last().unwrap(), "ROLLBACK");
}

#[test]
fn minute_snapshots_keep_the_first_writer_and_forget_old_minutes_over_the_protocol() {
    use bytes::Bytes;
    let sql = SqliteSql::open_in_memory(); // the object's own storage
    block_on(crate::storage::migrate_metrics(&sql)).unwrap();
    let call = |method: http::Method, path: &str, body: &str| {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .body(Bytes::from(body.to_owned()))
            .unwrap();
        block_on(remote::serve(&sql, &config(600), &req))
    };
    let minute = T0 / 60;
    for (m, point) in [(minute - 3, "old"), (minute - 1, "a"), (minute, "b")] {
        let path = format!("/minutes?minute={m}&oldest={}", minute - 2);
        assert_eq!(call(http::Method::POST, &path, point).status(), 204);
    }
    let again = format!("/minutes?minute={minute}&oldest={}", minute - 2);
    assert_eq!(call(http::Method::POST, &again, "late").status(), 204);
    let listed = call(
        http::Method::GET,
        &format!("/minutes?since={}", minute - 10),
        "",
    );
    assert_eq!(listed.status(), 200);
    let points: Vec<&str> = std::str::from_utf8(listed.body())
        .unwrap()
        .lines()
        .collect();
    assert_eq!(
        points,
        ["a", "b"],
        "oldest first; the first writer of a minute wins; minutes before `oldest` are gone"
    );
    let bad = call(http::Method::POST, "/minutes?minute=x&oldest=1", "p");
    assert_eq!(bad.status(), 400);
}

#[test]
fn an_instances_additions_go_as_few_statements_and_sum_exactly() {
    let db = db();
    let recording = Watched::new(&db, None);
    let agg = SqlAggregator {
        sql: &recording,
        config: config(600),
    };
    let mut everything = HttpMetrics::default();
    for round in 0..2_u32 {
        // Five routes: many statements' worth of series.
        let mut delta = HttpMetrics::default();
        for route in ["/a", "/b", "/c", "/d", "/e"] {
            let ms = f64::from(round * 40 + 3);
            delta.record("GET", route, 200, ms);
            everything.record("GET", route, 200, ms);
        }
        block_on(agg.apply(&change("api", Mode::Add, &delta.encode(), &[], T0))).unwrap();
    }
    // Both rounds add the same series.
    let rows = samples(&everything.encode()).len();
    assert!(rows > ADD_ROWS_PER_STATEMENT, "{rows} series in a delta");
    let inserts = recording
        .seen
        .borrow()
        .iter()
        .filter(|s| s.starts_with("INSERT INTO metric_series"))
        .count();
    assert_eq!(
        inserts,
        2 * rows.div_ceil(ADD_ROWS_PER_STATEMENT),
        "one statement per 10 series, per change"
    );
    assert_eq!(
        samples(&expose(&agg, T0 + 1)),
        samples(&everything.encode()),
        "the second round added to the first, series by series"
    );
}

#[test]
fn one_series_named_twice_is_refused_by_name_and_distinct_ones_pass() {
    let parse = |text: &str| exposition::parse(text.as_bytes()).unwrap();
    let group = [("job".to_owned(), "g".to_owned())];
    // One bucket bound spelled two ways is one series.
    let twice = parse(concat!(
        "# TYPE h histogram\n",
        "h_bucket{zone=\"a\",le=\"1\"} 1\n",
        "h_bucket{zone=\"a\",le=\"1.0\"} 1\n",
        "h_bucket{zone=\"a\",le=\"+Inf\"} 1\n",
        "h_sum{zone=\"a\"} 1\n",
        "h_count{zone=\"a\"} 1\n",
    ));
    let refused = check_series(&twice, &group, true).unwrap_err();
    assert_eq!(
        refused.message,
        "h_bucket{job=\"g\",zone=\"a\"} le=\"1\" appears twice"
    );
    let distinct = parse("# TYPE up gauge\nup{zone=\"a\"} 1\nup{zone=\"b\"} 1\nup 1\n");
    assert_eq!(check_series(&distinct, &group, true), Ok(()));
}
