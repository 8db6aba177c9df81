//! How a background job's outcome becomes a decision about its message:
//! acknowledge it, retry it after a delay, or move it to the dead-letter
//! queue. Pure: the attempt count, the outcome and the randomness for the
//! jitter are inputs, so the queue consumers (Cloudflare Queues) and the
//! outbox drain (Spin) decide identically, and tests drive every branch.

use crate::ports::Entropy;

/// What went wrong with one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// An HTTP answer (from a webhook, or a storage port's platform).
    Status(u16),
    /// The job ran out of its time budget.
    Timeout,
    /// No answer at all (connection refused, DNS, TLS), or storage
    /// unavailable: transient, counted with 5xx.
    Unreachable,
    /// The job itself is malformed (bad envelope, unknown type): no retry
    /// can fix it.
    Invalid,
}

/// The class of a failure, as the worker metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// 4xx other than 408 and 429, and invalid jobs: permanent.
    Client,
    /// 5xx, 408 and 429: transient.
    Server,
    /// The time budget ran out: transient.
    Timeout,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "4xx",
            Self::Server => "5xx",
            Self::Timeout => "timeout",
        }
    }

    pub fn is_transient(self) -> bool {
        !matches!(self, Self::Client)
    }
}

impl Failure {
    pub fn class(self) -> FailureClass {
        match self {
            // Request Timeout and Too Many Requests say "try again later".
            Self::Status(408 | 429 | 500..=599) | Self::Unreachable => FailureClass::Server,
            Self::Timeout => FailureClass::Timeout,
            Self::Status(_) | Self::Invalid => FailureClass::Client,
        }
    }
}

/// Retries: exponential backoff with full jitter, capped, and a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay ceiling of the first retry, in seconds.
    pub base_secs: u32,
    /// No delay exceeds this, in seconds.
    pub cap_secs: u32,
    /// Attempts in all (the first one included); then the dead-letter queue.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base_secs: 2,
            cap_secs: 300,
            max_attempts: 5,
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1 for the first), drawn
    /// uniformly from 0 ..= min(cap, base · 2^(retry − 1)) ("full jitter"),
    /// so that jobs that failed together do not retry together.
    pub fn delay_secs(&self, retry: u32, entropy: &dyn Entropy) -> u32 {
        let exponent = retry.saturating_sub(1).min(31);
        let ceiling = u64::from(self.base_secs)
            .saturating_mul(1 << exponent)
            .min(u64::from(self.cap_secs));
        let mut bytes = [0u8; 8];
        entropy.fill(&mut bytes);
        let draw = u64::from_le_bytes(bytes) % (ceiling + 1);
        u32::try_from(draw).unwrap_or(self.cap_secs)
    }
}

/// What to do with a message after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Done (or already done before: a redelivery of an applied job).
    Ack,
    /// Deliver again after `delay_secs`.
    Retry {
        delay_secs: u32,
        class: FailureClass,
    },
    /// Give up: permanent failure, or retries exhausted.
    DeadLetter {
        class: FailureClass,
        reason: &'static str,
    },
}

/// The decision for attempt number `attempt` (1 for the first delivery).
pub fn decide(
    outcome: Result<(), Failure>,
    attempt: u32,
    policy: &RetryPolicy,
    entropy: &dyn Entropy,
) -> Decision {
    let Err(failure) = outcome else {
        return Decision::Ack;
    };
    let class = failure.class();
    if !class.is_transient() {
        return Decision::DeadLetter {
            class,
            reason: "permanent failure",
        };
    }
    if attempt >= policy.max_attempts {
        return Decision::DeadLetter {
            class,
            reason: "retries exhausted",
        };
    }
    Decision::Retry {
        delay_secs: policy.delay_secs(attempt, entropy),
        class,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::SeededEntropy;

    #[test]
    fn failures_are_classified_by_status() {
        let cases = [
            (Failure::Status(400), FailureClass::Client),
            (Failure::Status(404), FailureClass::Client),
            (Failure::Status(408), FailureClass::Server),
            (Failure::Status(429), FailureClass::Server),
            (Failure::Status(500), FailureClass::Server),
            (Failure::Status(503), FailureClass::Server),
            (Failure::Timeout, FailureClass::Timeout),
            (Failure::Unreachable, FailureClass::Server),
            (Failure::Invalid, FailureClass::Client),
        ];
        for (failure, class) in cases {
            assert_eq!(failure.class(), class, "{failure:?}");
        }
    }

    #[test]
    fn decisions_follow_class_and_attempts() {
        let policy = RetryPolicy::default();
        let entropy = SeededEntropy::new(1);
        assert_eq!(decide(Ok(()), 1, &policy, &entropy), Decision::Ack);
        assert!(matches!(
            decide(Err(Failure::Status(422)), 1, &policy, &entropy),
            Decision::DeadLetter {
                class: FailureClass::Client,
                reason: "permanent failure"
            }
        ));
        assert!(matches!(
            decide(Err(Failure::Status(503)), 4, &policy, &entropy),
            Decision::Retry {
                class: FailureClass::Server,
                ..
            }
        ));
        assert!(matches!(
            decide(Err(Failure::Timeout), 5, &policy, &entropy),
            Decision::DeadLetter {
                class: FailureClass::Timeout,
                reason: "retries exhausted"
            }
        ));
    }

    #[test]
    fn delays_grow_exponentially_are_jittered_and_capped() {
        let policy = RetryPolicy {
            base_secs: 2,
            cap_secs: 60,
            max_attempts: 10,
        };
        let entropy = SeededEntropy::new(7);
        for retry in 1..=8u32 {
            let ceiling = (2u32 << (retry - 1)).min(60);
            let draws: Vec<u32> = (0..400)
                .map(|_| policy.delay_secs(retry, &entropy))
                .collect();
            assert!(
                draws.iter().all(|d| *d <= ceiling),
                "retry {retry}: within 0..={ceiling}"
            );
            let max = *draws.iter().max().unwrap();
            let min = *draws.iter().min().unwrap();
            assert_eq!(
                (min, max),
                (0, ceiling),
                "retry {retry}: the whole range is used (full jitter)"
            );
        }
        assert!(
            policy.delay_secs(u32::MAX, &entropy) <= 60,
            "no overflow far out"
        );
    }
}
