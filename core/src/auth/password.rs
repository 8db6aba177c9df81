//! Password hashing: Argon2id at OWASP's minimum (19 MiB, 2 passes, 1 lane),
//! stored as a PHC string so the parameters travel with the hash and can be
//! raised later without invalidating stored passwords.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::ports::Entropy;

/// Memory cost in KiB (19 MiB), passes and lanes: OWASP's Password Storage
/// Cheat Sheet minimum for Argon2id.
pub const MEMORY_KIB: u32 = 19 * 1024;
pub const PASSES: u32 = 2;
pub const LANES: u32 = 1;

/// A hash with the same parameters as real ones and an output no password
/// produces: verifying against it costs what a real check costs, so an
/// unknown account answers as slowly as a wrong password.
const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$dGVwaS1kdW1teS1zYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, Some(32)).expect("valid Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes `password` with a fresh 16-byte salt.
pub fn hash(password: &str, entropy: &dyn Entropy) -> String {
    let mut salt = [0u8; 16];
    entropy.fill(&mut salt);
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2id accepts any password and 16-byte salt")
        .to_string()
}

/// Whether `password` matches `stored`. `None` (no such account) still does
/// the full work against a dummy hash and answers `false`. The comparison of
/// outputs is constant-time (password-hash's `Output` uses `subtle`).
pub fn verify(stored: Option<&str>, password: &str) -> bool {
    let (phc, real) = match stored {
        Some(phc) => (phc, true),
        None => (DUMMY, false),
    };
    let Ok(parsed) = PasswordHash::new(phc) else {
        tracing::error!(target: "tepi::auth", "stored password hash is not a PHC string");
        return false;
    };
    let matches = argon2()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    matches && real
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::SeededEntropy;

    #[test]
    fn hashes_verify_only_their_password() {
        let entropy = SeededEntropy::new(7);
        let stored = hash("correct horse battery", &entropy);
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(verify(Some(&stored), "correct horse battery"));
        assert!(!verify(Some(&stored), "correct horse batterY"));
        assert!(!verify(Some(&stored), ""));
        let again = hash("correct horse battery", &entropy);
        assert_ne!(stored, again, "a fresh salt every time");
    }

    #[test]
    fn unknown_accounts_and_broken_hashes_never_verify() {
        assert!(!verify(None, "anything"), "dummy hash");
        assert!(!verify(Some("not a phc string"), "anything"));
    }

    #[test]
    fn dummy_hash_costs_what_a_real_one_costs() {
        let parsed = PasswordHash::new(DUMMY).unwrap();
        let params = Params::try_from(&parsed).unwrap();
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (MEMORY_KIB, PASSES, LANES),
            "same parameters as real hashes"
        );
        assert_eq!(parsed.hash.map(|h| h.len()), Some(32), "same output length");
    }
}
