//! Ports: the few things the core needs from a platform, as small traits.
//!
//! Wasm is single-threaded, so no trait here asks for `Send`. Adapters
//! implement them over platform bindings; tests implement them in-process.

use async_trait::async_trait;

use crate::time::Timestamp;

/// Random bytes for request ids, trace ids and span ids. Adapters back it with
/// `getrandom`; tests supply fixed or counting bytes so ids are predictable.
pub trait Entropy {
    fn fill(&self, dest: &mut [u8]);
}

/// Reads the platform clock. Only used to measure how long a request took;
/// the request's own notion of "now" is the `now` argument of `App::handle`.
pub trait Clock {
    fn now(&self) -> Timestamp;
}

/// One readiness check of a platform binding (a database, a bucket, a queue).
#[async_trait(?Send)]
pub trait Probe {
    /// The binding's name as configured, e.g. `DB` or `UPLOADS`.
    fn name(&self) -> &str;
    /// `Err` carries a reason an operator can act on.
    async fn check(&self) -> Result<(), String>;
}

/// Everything a request may touch outside the core.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub entropy: &'a dyn Entropy,
    pub clock: &'a dyn Clock,
    pub probes: &'a [&'a dyn Probe],
}

impl std::fmt::Debug for Ports<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.probes.iter().map(|p| p.name()).collect();
        f.debug_struct("Ports")
            .field("probes", &names)
            .finish_non_exhaustive()
    }
}
