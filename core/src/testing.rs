//! In-process ports for tests: predictable entropy, a hand-driven clock.

use std::cell::Cell;

use async_trait::async_trait;

use crate::ports::{Clock, Entropy, Probe};
use crate::time::Timestamp;

/// Fills buffers with 0, 1, 2, … continuing across calls.
#[derive(Debug, Default)]
pub struct CountingEntropy {
    next: Cell<u8>,
}

impl Entropy for CountingEntropy {
    fn fill(&self, dest: &mut [u8]) {
        for byte in dest {
            *byte = self.next.get();
            self.next.set(self.next.get().wrapping_add(1));
        }
    }
}

/// A clock that advances by `step_micros` every time it is read.
#[derive(Debug)]
pub struct SteppingClock {
    now: Cell<u64>,
    step_micros: u64,
}

impl SteppingClock {
    pub fn new(start: Timestamp, step_micros: u64) -> Self {
        Self {
            now: Cell::new(start.as_unix_micros()),
            step_micros,
        }
    }
}

impl Clock for SteppingClock {
    fn now(&self) -> Timestamp {
        let now = self.now.get() + self.step_micros;
        self.now.set(now);
        Timestamp::from_unix_micros(now)
    }
}

#[derive(Debug)]
pub struct StaticProbe {
    pub name: &'static str,
    pub result: Result<(), &'static str>,
}

#[async_trait(?Send)]
impl Probe for StaticProbe {
    fn name(&self) -> &str {
        self.name
    }
    async fn check(&self) -> Result<(), String> {
        self.result.map_err(str::to_owned)
    }
}

/// Drives a future that never waits on real I/O to completion.
pub fn block_on<F: Future>(future: F) -> F::Output {
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}
