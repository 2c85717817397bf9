//! Public keys: reading a system user's key from PEM text, and verifying a signature
//! with it.
//!
//! Accepted, as ZITADEL accepts them (by content, not by label):
//! - `-----BEGIN PUBLIC KEY-----` or `-----BEGIN RSA PUBLIC KEY-----` holding PKIX
//!   (SubjectPublicKeyInfo) bytes;
//! - `-----BEGIN CERTIFICATE-----` (X.509) holding an RSA key; its NotBefore and
//!   NotAfter become the key's validity window.
//!
//! Also accepted, although ZITADEL cannot read it: PKCS#1 bytes under either label
//! ([`KeyFormat::Pkcs1`]; the registry warns about it when it loads one).
//!
//! Refused, with a message that says what to do: private keys, non-RSA keys, RSA
//! moduli under 2048 or over 8192 bits, more than one PEM block, empty text.
//!
//! Holds key material and the RSA operation only; it knows nothing of tokens or
//! users.

use std::{
    fmt,
    sync::OnceLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{
    digest,
    signature::{self, ParsedPublicKey, VerificationAlgorithm},
};
use spki::der::{Decode, Encode};

use crate::{algorithm::Algorithm, error::KeyError};

const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const MIN_BITS: usize = 2048;
const MAX_BITS: usize = 8192;

/// What a key file held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyFormat {
    /// A SubjectPublicKeyInfo (what `openssl rsa -pubout` writes), under either
    /// label: what ZITADEL reads.
    Pkix,
    /// A bare PKCS#1 `RSAPublicKey` (what `openssl rsa -RSAPublicKey_out` writes).
    /// This crate reads it; ZITADEL cannot (it parses keys as PKIX only): convert
    /// it with `openssl rsa -RSAPublicKey_in -in key.pub -pubout`.
    Pkcs1,
    /// An X.509 certificate holding an RSA key.
    Certificate,
}

impl KeyFormat {
    /// A short name: `PKIX`, `PKCS#1` or `certificate`.
    pub fn name(self) -> &'static str {
        match self {
            KeyFormat::Pkix => "PKIX",
            KeyFormat::Pkcs1 => "PKCS#1",
            KeyFormat::Certificate => "certificate",
        }
    }

    /// Whether ZITADEL itself can read a key in this format.
    pub fn zitadel_reads_it(self) -> bool {
        self != KeyFormat::Pkcs1
    }
}

impl fmt::Display for KeyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An RSA public key, parsed once at load, ready to verify signatures.
pub struct PublicKey {
    /// One parsed key per algorithm, made on first use (RS256 at load).
    parsed: [OnceLock<Option<ParsedPublicKey>>; Algorithm::COUNT],
    pkcs1: Box<[u8]>,
    bits: usize,
    fingerprint: [u8; 32],
    validity: Option<Validity>,
    format: KeyFormat,
}

/// A certificate's validity window, in seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// The certificate's NotBefore.
    pub not_before: u64,
    /// The certificate's NotAfter.
    pub not_after: u64,
}

impl Validity {
    /// NotBefore as a [`SystemTime`].
    pub fn not_before_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.not_before)
    }

    /// NotAfter as a [`SystemTime`].
    pub fn not_after_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.not_after)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("bits", &self.bits)
            .field("fingerprint", &self.fingerprint_hex())
            .field("validity", &self.validity)
            .field("format", &self.format)
            .finish()
    }
}

impl PublicKey {
    /// Reads exactly one PEM block holding an RSA public key or a certificate.
    pub fn from_pem(text: &[u8]) -> Result<PublicKey, KeyError> {
        if text.iter().all(u8::is_ascii_whitespace) {
            return Err(KeyError::Empty);
        }
        let blocks = pem::parse_many(text).map_err(|e| KeyError::BadPem(e.to_string()))?;
        let block = match blocks.as_slice() {
            [] => return Err(KeyError::NoPemBlock),
            [block] => block,
            more => return Err(KeyError::MultiplePemBlocks { count: more.len() }),
        };
        match block.tag() {
            "PUBLIC KEY" | "RSA PUBLIC KEY" => PublicKey::from_public_der(block.contents(), None),
            "CERTIFICATE" => PublicKey::from_certificate_der(block.contents()),
            label if label.contains("PRIVATE KEY") => Err(KeyError::PrivateKey),
            label => Err(KeyError::UnsupportedLabel(label.chars().take(64).collect())),
        }
    }

    /// Reads an X.509 certificate (DER) with an RSA key.
    fn from_certificate_der(der: &[u8]) -> Result<PublicKey, KeyError> {
        let cert = x509_cert::Certificate::from_der(der).map_err(|_| KeyError::BadDer {
            what: "certificate",
        })?;
        let tbs = cert.tbs_certificate();
        let validity = Validity {
            not_before: tbs.validity().not_before.to_unix_duration().as_secs(),
            not_after: tbs.validity().not_after.to_unix_duration().as_secs(),
        };
        let spki_der = tbs
            .subject_public_key_info()
            .to_der()
            .map_err(|_| KeyError::BadDer {
                what: "certificate's public key",
            })?;
        PublicKey::from_public_der(&spki_der, Some(validity))
    }

    /// Reads PKIX or PKCS#1 public key bytes, whatever the label said.
    fn from_public_der(der: &[u8], validity: Option<Validity>) -> Result<PublicKey, KeyError> {
        let mut format = match validity {
            Some(_) => KeyFormat::Certificate,
            None => KeyFormat::Pkix,
        };
        let pkcs1_der = match spki::SubjectPublicKeyInfoRef::from_der(der) {
            Ok(info) => {
                let oid = info.algorithm.oid.to_string();
                if oid != OID_RSA_ENCRYPTION {
                    return Err(KeyError::NotRsa {
                        found: key_kind(&oid),
                    });
                }
                info.subject_public_key.raw_bytes()
            }
            Err(_) if pkcs1::RsaPublicKey::<pkcs1::UintRef>::from_der(der).is_ok() => {
                format = KeyFormat::Pkcs1;
                der
            }
            Err(_) if looks_private(der) => return Err(KeyError::PrivateKey),
            Err(_) => return Err(KeyError::BadDer { what: "public key" }),
        };
        let rsa = pkcs1::RsaPublicKey::<pkcs1::UintRef>::from_der(pkcs1_der)
            .map_err(|_| KeyError::BadDer { what: "RSA key" })?;
        let modulus = rsa.modulus.as_bytes();
        let bits = modulus_bits(modulus);
        if bits < MIN_BITS {
            return Err(KeyError::TooSmall { bits });
        }
        if bits > MAX_BITS {
            return Err(KeyError::TooLarge { bits });
        }
        let key = PublicKey {
            parsed: Default::default(),
            pkcs1: pkcs1_der.into(),
            bits,
            fingerprint: [0; 32],
            validity,
            format,
        };
        // Parse for RS256 now, so a key the crypto library refuses is refused at load.
        if key.parsed(Algorithm::RS256).is_none() {
            return Err(KeyError::BadDer { what: "RSA key" });
        }
        let spki = spki_der(pkcs1_der).ok_or(KeyError::BadDer { what: "RSA key" })?;
        let mut fingerprint = [0; 32];
        fingerprint.copy_from_slice(digest::digest(&digest::SHA256, &spki).as_ref());
        Ok(PublicKey { fingerprint, ..key })
    }

    fn parsed(&self, algorithm: Algorithm) -> Option<&ParsedPublicKey> {
        self.parsed[algorithm as usize]
            .get_or_init(|| {
                ParsedPublicKey::new(verification_algorithm(algorithm), &self.pkcs1).ok()
            })
            .as_ref()
    }

    /// Checks `signature` over `message` with `algorithm`.
    pub fn verify(&self, algorithm: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        if signature.len() != self.modulus_len() {
            return false;
        }
        #[cfg(feature = "testing")]
        RSA_OPERATIONS.with(|count| count.set(count.get() + 1));
        // The message hashed here, then the digest verified: the same check as
        // `verify_sig`, without setting up a hashing context inside the RSA call.
        let digest = digest::digest(digest_algorithm(algorithm), message);
        self.parsed(algorithm)
            .is_some_and(|key| key.verify_digest_sig(&digest, signature).is_ok())
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// The length in bytes of a signature made with this key.
    pub fn modulus_len(&self) -> usize {
        self.bits.div_ceil(8)
    }

    /// SHA-256 of the key's SubjectPublicKeyInfo (DER).
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// The fingerprint as lowercase hex, as `openssl pkey -pubin -outform DER | sha256sum`
    /// prints it.
    pub fn fingerprint_hex(&self) -> String {
        self.fingerprint
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The certificate's validity window, when the key came from a certificate.
    pub fn validity(&self) -> Option<Validity> {
        self.validity
    }

    /// What the key text held.
    pub fn format(&self) -> KeyFormat {
        self.format
    }
}

#[cfg(feature = "testing")]
thread_local! {
    /// RSA verifications started on this thread (feature `testing`).
    pub(crate) static RSA_OPERATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The hash `algorithm` signs.
fn digest_algorithm(algorithm: Algorithm) -> &'static digest::Algorithm {
    match algorithm {
        Algorithm::RS256 | Algorithm::PS256 => &digest::SHA256,
        Algorithm::RS384 | Algorithm::PS384 => &digest::SHA384,
        Algorithm::RS512 | Algorithm::PS512 => &digest::SHA512,
    }
}

fn verification_algorithm(algorithm: Algorithm) -> &'static dyn VerificationAlgorithm {
    match algorithm {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
    }
}

/// The canonical SubjectPublicKeyInfo DER of an RSA key given as PKCS#1 DER.
fn spki_der(pkcs1_der: &[u8]) -> Option<Vec<u8>> {
    use spki::der::asn1::{AnyRef, BitStringRef, ObjectIdentifier};
    let info = spki::SubjectPublicKeyInfoRef {
        algorithm: spki::AlgorithmIdentifier {
            oid: ObjectIdentifier::new(OID_RSA_ENCRYPTION).ok()?,
            parameters: Some(AnyRef::NULL),
        },
        subject_public_key: BitStringRef::from_bytes(pkcs1_der).ok()?,
    };
    info.to_der().ok()
}

fn modulus_bits(modulus: &[u8]) -> usize {
    let trimmed: &[u8] = match modulus.iter().position(|b| *b != 0) {
        Some(start) => &modulus[start..],
        None => return 0,
    };
    trimmed.len() * 8 - trimmed[0].leading_zeros() as usize
}

fn looks_private(der: &[u8]) -> bool {
    pkcs8::PrivateKeyInfoRef::from_der(der).is_ok()
        || pkcs1::RsaPrivateKey::<pkcs1::UintRef>::from_der(der).is_ok()
}

fn key_kind(oid: &str) -> &'static str {
    match oid {
        "1.2.840.10045.2.1" => "an elliptic-curve key",
        "1.3.101.112" => "an Ed25519 key",
        "1.3.101.113" => "an Ed448 key",
        "1.2.840.10040.4.1" => "a DSA key",
        "1.2.840.113549.1.1.10" => "an RSA-PSS-only key (export it as a plain RSA key)",
        _ => "another kind of key",
    }
}
