//! The signature algorithms a token may name, and the set of them a verifier allows.
//!
//! Holds names and sets only: no keys, no token parsing.

use std::{fmt, str::FromStr};

use crate::error::AuthError;

/// A signature algorithm a token may use. All of them are RSA: ZITADEL's system
/// users have RSA keys, so only RS* and PS* can ever verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::upper_case_acronyms)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (allowed by default).
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256 and a 32-byte salt (allowed by default).
    PS256,
    /// RSASSA-PSS with SHA-384 and a 48-byte salt.
    PS384,
    /// RSASSA-PSS with SHA-512 and a 64-byte salt.
    PS512,
}

impl Algorithm {
    pub(crate) const COUNT: usize = 6;

    /// The allowed list when none is configured: RS256 and PS256, the RSA members of
    /// ZITADEL's default list.
    pub const DEFAULT: [Algorithm; 2] = [Algorithm::RS256, Algorithm::PS256];

    /// Every algorithm this crate knows.
    pub const ALL: [Algorithm; Algorithm::COUNT] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ];

    /// The JOSE name, e.g. `RS256`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
        }
    }
}

impl FromStr for Algorithm {
    type Err = AuthError;

    /// Reads a JOSE name exactly (`none`, HMAC and EC names are refused).
    fn from_str(name: &str) -> Result<Algorithm, AuthError> {
        Ok(match name {
            "RS256" => Algorithm::RS256,
            "RS384" => Algorithm::RS384,
            "RS512" => Algorithm::RS512,
            "PS256" => Algorithm::PS256,
            "PS384" => Algorithm::PS384,
            "PS512" => Algorithm::PS512,
            _ => return Err(AuthError::AlgorithmNotAllowed),
        })
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The algorithms a verifier allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct AlgorithmSet(u8);

impl AlgorithmSet {
    /// Whether `algorithm` is in the set.
    pub fn contains(self, algorithm: Algorithm) -> bool {
        self.0 & bit(algorithm) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<Algorithm> for AlgorithmSet {
    fn from_iter<I: IntoIterator<Item = Algorithm>>(algorithms: I) -> Self {
        AlgorithmSet(algorithms.into_iter().fold(0, |set, alg| set | bit(alg)))
    }
}

fn bit(algorithm: Algorithm) -> u8 {
    1 << (algorithm as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_holds_exactly_its_members() {
        let set: AlgorithmSet = Algorithm::DEFAULT.into_iter().collect();
        for algorithm in Algorithm::ALL {
            assert_eq!(
                set.contains(algorithm),
                Algorithm::DEFAULT.contains(&algorithm),
                "{algorithm}"
            );
        }
        assert!(AlgorithmSet::default().is_empty());
        assert!(!set.is_empty());
    }
}
