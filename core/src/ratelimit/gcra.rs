//! GCRA, the generic cell rate algorithm: one timestamp of state per key
//! (the theoretical arrival time, TAT), O(1) per decision, and a pure
//! function of (state, now, policy).

/// A sustained rate of `limit` requests per `period_secs`, with up to
/// `burst` requests at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub limit: u32,
    pub period_secs: u32,
    pub burst: u32,
}

impl Policy {
    /// Microseconds between two requests at the sustained rate.
    pub fn interval_micros(&self) -> u64 {
        u64::from(self.period_secs) * 1_000_000 / u64::from(self.limit.max(1))
    }

    /// How far ahead of `now` the TAT may run and still admit a request.
    fn tolerance_micros(&self) -> u64 {
        self.interval_micros() * u64::from(self.burst.max(1) - 1)
    }
}

/// One decision and the state to store for the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The TAT to store (unchanged when denied).
    pub tat: u64,
    /// Requests still admitted at once after this one.
    pub remaining: u32,
    /// When denied: how long until a request would be admitted.
    pub retry_after_micros: u64,
    /// How long until the full burst is available again.
    pub reset_micros: u64,
}

/// Decides one request at `now` (Unix microseconds) given the stored TAT
/// (`None` for a key never seen, or forgotten — the same thing).
///
/// A stored TAT further ahead than any admitted request could have left it
/// (the clock went backwards, or another instance's clock runs ahead) is
/// clamped, so skew never locks a client out for longer than a full burst
/// takes to refill. Very large gaps simply restore the full burst.
pub fn decide(stored: Option<u64>, now: u64, policy: &Policy) -> Decision {
    let interval = policy.interval_micros();
    let tolerance = policy.tolerance_micros();
    let ceiling = now.saturating_add(tolerance).saturating_add(interval);
    let tat = stored.unwrap_or(now).max(now).min(ceiling);
    if tat - now > tolerance {
        return Decision {
            allowed: false,
            tat,
            remaining: 0,
            retry_after_micros: tat - now - tolerance,
            reset_micros: tat - now,
        };
    }
    let next = tat.saturating_add(interval);
    let headroom = (tolerance + interval).saturating_sub(next - now);
    Decision {
        allowed: true,
        tat: next,
        remaining: u32::try_from(headroom / interval.max(1)).unwrap_or(u32::MAX),
        retry_after_micros: 0,
        reset_micros: next - now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000;
    const T0: u64 = 1_800_000_000 * SEC;

    /// 10 per second, bursts of 5.
    const P: Policy = Policy {
        limit: 10,
        period_secs: 1,
        burst: 5,
    };

    /// Runs requests at the given offsets from T0; returns which passed.
    fn run(offsets_micros: &[u64], policy: &Policy) -> Vec<bool> {
        let mut tat = None;
        offsets_micros
            .iter()
            .map(|offset| {
                let d = decide(tat, T0 + offset, policy);
                tat = Some(d.tat);
                d.allowed
            })
            .collect()
    }

    #[test]
    fn a_burst_is_admitted_up_to_its_size_then_refused() {
        let got = run(&[0; 7], &P);
        assert_eq!(got, [true, true, true, true, true, false, false]);
        let first = decide(None, T0, &P);
        assert_eq!(first.remaining, 4, "four more fit in the burst");
        let mut tat = None;
        for _ in 0..5 {
            tat = Some(decide(tat, T0, &P).tat);
        }
        let denied = decide(tat, T0, &P);
        assert!(!denied.allowed);
        assert_eq!(denied.retry_after_micros, SEC / 10, "one interval");
        assert_eq!(denied.tat, tat.unwrap(), "a refusal does not consume");
    }

    #[test]
    fn refill_admits_exactly_the_sustained_rate() {
        // 100 requests every 50 ms (20/s against 10/s) for 5 s: the burst
        // plus one per 100 ms.
        let offsets: Vec<u64> = (0..100).map(|i| i * 50_000).collect();
        let admitted = run(&offsets, &P).iter().filter(|a| **a).count();
        assert_eq!(admitted, 5 + 50 - 1, "burst, then 10/s over 4.95 s");
        // At exactly the sustained rate nothing is refused.
        let steady: Vec<u64> = (0..100).map(|i| i * 100_000).collect();
        assert!(run(&steady, &P).iter().all(|a| *a));
    }

    #[test]
    fn waiting_retry_after_is_enough() {
        let mut tat = None;
        for _ in 0..5 {
            tat = Some(decide(tat, T0, &P).tat);
        }
        let denied = decide(tat, T0, &P);
        let later = T0 + denied.retry_after_micros;
        assert!(
            !decide(tat, later - 1, &P).allowed,
            "not a microsecond early"
        );
        assert!(decide(tat, later, &P).allowed);
    }

    #[test]
    fn clock_skew_never_locks_out_longer_than_a_full_refill() {
        // Another instance's clock ran an hour ahead and stored its TAT.
        let from_the_future = T0 + 3600 * SEC;
        let d = decide(Some(from_the_future), T0, &P);
        assert!(!d.allowed, "a burst's worth is spent");
        assert!(
            d.retry_after_micros <= P.interval_micros(),
            "clamped: {}",
            d.retry_after_micros
        );
        // A clock that steps backwards within one burst behaves as if time
        // stood still.
        let mut tat = Some(decide(None, T0, &P).tat);
        tat = Some(decide(tat, T0 - SEC / 2, &P).tat);
        assert!(tat.unwrap() <= T0 + 2 * P.interval_micros() + SEC / 2);
    }

    #[test]
    fn very_large_gaps_restore_the_full_burst_without_overflow() {
        let d = decide(Some(0), u64::MAX - 1, &P);
        assert!(d.allowed);
        assert_eq!(d.remaining, 4);
        let d = decide(Some(u64::MAX), u64::MAX, &P);
        assert!(d.allowed || d.retry_after_micros > 0, "no panic at the top");
        let far = decide(Some(T0), T0 + 365 * 24 * 3600 * SEC, &P);
        assert_eq!(far.remaining, 4);
    }

    #[test]
    fn reset_is_the_time_until_the_burst_is_whole_again() {
        let d = decide(None, T0, &P);
        assert_eq!(d.reset_micros, P.interval_micros());
        let d = decide(Some(d.tat), T0, &P);
        assert_eq!(d.reset_micros, 2 * P.interval_micros());
    }

    #[test]
    fn burst_of_one_means_strict_spacing() {
        let strict = Policy {
            limit: 1,
            period_secs: 1,
            burst: 1,
        };
        assert_eq!(
            run(&[0, 1, SEC - 1, SEC], &strict),
            [true, false, false, true]
        );
    }
}
