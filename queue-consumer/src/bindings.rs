//! The Queues producer bindings of `wrangler.toml`, named in one place for
//! the consumer (dead letters) and the Worker (its `Jobs` port, readiness
//! probes): `JOBS_<QUEUE>` and `JOBS_<QUEUE>_DLQ`, with the core's queue
//! name in upper case and `-` as `_` (`JOBS_META_EVENTS_DLQ`).

use tepi_core::Queue;

/// The producer binding of `queue`.
pub fn jobs(queue: Queue) -> String {
    format!(
        "JOBS_{}",
        queue.as_str().to_ascii_uppercase().replace('-', "_")
    )
}

/// The producer binding of `queue`'s dead-letter queue.
pub fn dead_letters(queue: Queue) -> String {
    jobs(queue) + "_DLQ"
}

/// Every queue's binding, then every dead-letter queue's.
pub fn all() -> impl Iterator<Item = String> {
    Queue::ALL
        .into_iter()
        .map(jobs)
        .chain(Queue::ALL.into_iter().map(dead_letters))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_queue() {
        assert_eq!(jobs(Queue::Workflows), "JOBS_WORKFLOWS");
        assert_eq!(jobs(Queue::MetaEvents), "JOBS_META_EVENTS");
        assert_eq!(dead_letters(Queue::MetaEvents), "JOBS_META_EVENTS_DLQ");
        assert_eq!(dead_letters(Queue::Uploads), "JOBS_UPLOADS_DLQ");
        assert_eq!(all().count(), 2 * Queue::ALL.len());
    }

    #[test]
    fn every_binding_is_declared_in_wrangler_toml() {
        let wrangler = include_str!("../../wrangler.toml");
        for name in all() {
            assert!(
                wrangler.contains(&format!("binding = \"{name}\"")),
                "{name} is not a [[queues.producers]] binding of wrangler.toml"
            );
        }
    }
}
