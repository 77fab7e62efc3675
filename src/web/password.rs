//! Operator passwords: argon2id with a random salt per password (a PHC string such as
//! `$argon2id$v=19$m=19456,t=2,p=1$...`). Only the hash is stored, through the event log, so a
//! standby can check logins too. Hashing is slow on purpose: run it off the async threads.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Shortest password accepted, in bytes.
pub const MIN_PASSWORD_BYTES: usize = 10;
/// Longest password accepted, in bytes (bounds the work an attacker can ask for).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a password cannot be set.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Too short or too long.
    #[error("a password must be {MIN_PASSWORD_BYTES} to {MAX_PASSWORD_BYTES} bytes, got {0}")]
    Length(usize),
    /// The hasher failed (it should not).
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// Hashes a new password (argon2id, default parameters, random salt).
pub fn hash(password: &str) -> Result<String, PasswordError> {
    if !(MIN_PASSWORD_BYTES..=MAX_PASSWORD_BYTES).contains(&password.len()) {
        return Err(PasswordError::Length(password.len()));
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches the stored PHC string (false for a malformed hash).
pub fn verify(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only_and_is_salted() {
        let a = hash("correct horse battery").unwrap();
        let b = hash("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify("correct horse battery", &a));
        assert!(!verify("correct horse batterY", &a));
        assert!(!verify("x", "not a phc string"));
        assert!(matches!(hash("short"), Err(PasswordError::Length(5))));
    }
}
