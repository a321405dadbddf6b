//! Content digests (`sha256:…`, `sha512:…`) and the streaming [`Digester`].

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use sha2::digest::common::hazmat::{SerializableState, SerializedState};
use sha2::{Digest as _, Sha256, Sha512};

use crate::error::{DigestError, Error, Result, excerpt};

/// A hash algorithm a registry can address content with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// SHA-256, the default everywhere.
    Sha256,
    /// SHA-512, which OCI distribution v1.1 allows as well.
    Sha512,
}

impl Algorithm {
    /// Every supported algorithm, in a stable order.
    pub const ALL: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

    /// The name used in digest strings and storage paths (`sha256`, `sha512`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// The number of hex characters a digest of this algorithm has.
    pub const fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Algorithm::from_name(s).ok_or_else(|| Error::InvalidDigest {
            input: excerpt(s),
            reason: DigestError::UnknownAlgorithm(excerpt(s)),
        })
    }
}

/// A validated content digest: `<algorithm>:<lowercase hex>`.
///
/// Only `sha256` (64 hex characters) and `sha512` (128) are accepted; the text is kept in its
/// canonical form, so comparing two `Digest`s compares the strings a registry stores.
///
/// ```
/// use wharf_oci::Digest;
///
/// let digest = Digest::sha256(b"hello");
/// assert_eq!(digest.algorithm().as_str(), "sha256");
/// assert_eq!(digest.to_string().parse::<Digest>()?, digest);
/// assert!("sha256:ABC".parse::<Digest>().is_err());
/// # Ok::<(), wharf_oci::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    algorithm: Algorithm,
    /// The whole canonical text, `algorithm:hex`, shared by clones.
    text: Arc<str>,
}

impl Digest {
    /// Hashes `data` with SHA-256.
    pub fn sha256(data: &[u8]) -> Digest {
        Digest::from_hash(Algorithm::Sha256, &Sha256::digest(data))
    }

    /// Hashes `data` with SHA-512.
    pub fn sha512(data: &[u8]) -> Digest {
        Digest::from_hash(Algorithm::Sha512, &Sha512::digest(data))
    }

    /// Hashes `data` with `algorithm`.
    pub fn compute(algorithm: Algorithm, data: &[u8]) -> Digest {
        match algorithm {
            Algorithm::Sha256 => Digest::sha256(data),
            Algorithm::Sha512 => Digest::sha512(data),
        }
    }

    /// Builds a digest from raw hash output.
    ///
    /// # Errors
    /// [`Error::InvalidDigest`] when `hash` is not as long as `algorithm`'s output.
    pub fn from_raw(algorithm: Algorithm, hash: &[u8]) -> Result<Digest> {
        if hash.len() * 2 != algorithm.hex_len() {
            return Err(Error::InvalidDigest {
                input: hex::encode(hash),
                reason: DigestError::WrongLength {
                    algorithm: algorithm.as_str(),
                    expected: algorithm.hex_len(),
                    found: hash.len() * 2,
                },
            });
        }
        Ok(Digest::from_hash(algorithm, hash))
    }

    fn from_hash(algorithm: Algorithm, hash: &[u8]) -> Digest {
        let mut text = String::with_capacity(algorithm.as_str().len() + 1 + hash.len() * 2);
        text.push_str(algorithm.as_str());
        text.push(':');
        text.push_str(&hex::encode(hash));
        Digest { algorithm, text: text.into() }
    }

    /// The algorithm that produced this digest.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex part, without the algorithm prefix.
    pub fn hex(&self) -> &str {
        &self.text[self.algorithm.as_str().len() + 1..]
    }

    /// The canonical text, `algorithm:hex`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Checks that `data` hashes to this digest.
    ///
    /// # Errors
    /// [`Error::DigestMismatch`] naming both digests when it does not.
    pub fn verify(&self, data: &[u8]) -> Result<()> {
        let actual = Digest::compute(self.algorithm, data);
        if actual == *self { Ok(()) } else { Err(Error::DigestMismatch { expected: self.clone(), actual }) }
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self> {
        let invalid = |reason| Error::InvalidDigest { input: excerpt(input), reason };
        let (name, hex) = input.split_once(':').ok_or_else(|| invalid(DigestError::MissingSeparator))?;
        let algorithm =
            Algorithm::from_name(name).ok_or_else(|| invalid(DigestError::UnknownAlgorithm(excerpt(name))))?;
        // Report a bad character before a bad length: it is the more specific complaint.
        for (position, character) in hex.chars().enumerate() {
            match character {
                '0'..='9' | 'a'..='f' => {}
                'A'..='F' => {
                    return Err(invalid(DigestError::Uppercase { character, position }));
                }
                _ => {
                    return Err(invalid(DigestError::BadCharacter { character, position }));
                }
            }
        }
        if hex.len() != algorithm.hex_len() {
            return Err(invalid(DigestError::WrongLength {
                algorithm: algorithm.as_str(),
                expected: algorithm.hex_len(),
                found: hex.len(),
            }));
        }
        Ok(Digest { algorithm, text: input.into() })
    }
}

impl TryFrom<&str> for Digest {
    type Error = Error;

    fn try_from(value: &str) -> Result<Self> {
        value.parse()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.text)
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Hashes a stream of chunks, and can save its state to resume after a restart.
///
/// SHA-256 uses the CPU's SHA extensions (SHA-NI on x86-64, the SHA2 instructions on
/// AArch64) when the processor has them, detected at run time.
///
/// ```
/// use wharf_oci::{Algorithm, Digest, Digester};
///
/// let mut digester = Digester::new(Algorithm::Sha256);
/// digester.update(b"hello ");
/// // An upload saves this next to its data, and restores it when the client resumes.
/// let saved = digester.save_state();
/// let mut resumed = Digester::restore_state(&saved)?;
/// resumed.update(b"world");
/// assert_eq!(resumed.len(), 11);
/// assert_eq!(resumed.finalize(), Digest::sha256(b"hello world"));
/// # Ok::<(), wharf_oci::Error>(())
/// ```
#[derive(Clone)]
pub struct Digester {
    hasher: Hasher,
    len: u64,
}

#[derive(Clone)]
enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

/// First bytes of every saved state, so that foreign bytes are refused rather than misread.
const STATE_MAGIC: &[u8; 4] = b"WHD1";
const STATE_HEADER_LEN: usize = STATE_MAGIC.len() + 1 + 8;
/// A sha256 of everything before it ends every saved state.
const STATE_CHECKSUM_LEN: usize = 32;

impl Digester {
    /// Starts hashing with `algorithm`.
    pub fn new(algorithm: Algorithm) -> Digester {
        let hasher = match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        };
        Digester { hasher, len: 0 }
    }

    /// The algorithm in use.
    pub fn algorithm(&self) -> Algorithm {
        match self.hasher {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Feeds the next chunk.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.hasher {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
        self.len += data.len() as u64;
    }

    /// The number of bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing has been hashed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything fed so far.
    pub fn finalize(self) -> Digest {
        match self.hasher {
            Hasher::Sha256(h) => Digest::from_hash(Algorithm::Sha256, &h.finalize()),
            Hasher::Sha512(h) => Digest::from_hash(Algorithm::Sha512, &h.finalize()),
        }
    }

    /// Finishes and checks the result against `expected`.
    ///
    /// # Errors
    /// [`Error::DigestMismatch`] when the content hashes to something else (a different
    /// algorithm counts as a mismatch: the content was hashed with this digester's).
    pub fn verify(self, expected: &Digest) -> Result<Digest> {
        let actual = self.finalize();
        if actual == *expected { Ok(actual) } else { Err(Error::DigestMismatch { expected: expected.clone(), actual }) }
    }

    /// Saves the hash state (algorithm, length and the hash's internal state) as bytes.
    ///
    /// The format is stable within a major version of this crate; [`Digester::restore_state`]
    /// reads it back.
    pub fn save_state(&self) -> Vec<u8> {
        let inner: &[u8] = match &self.hasher {
            Hasher::Sha256(h) => &h.serialize(),
            Hasher::Sha512(h) => &h.serialize(),
        };
        let mut out = Vec::with_capacity(STATE_HEADER_LEN + inner.len());
        out.extend_from_slice(STATE_MAGIC);
        out.push(match self.algorithm() {
            Algorithm::Sha256 => 1,
            Algorithm::Sha512 => 2,
        });
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(inner);
        let checksum = Sha256::digest(&out);
        out.extend_from_slice(&checksum);
        out
    }

    /// Restores a state written by [`Digester::save_state`].
    ///
    /// # Errors
    /// [`Error::InvalidHashState`] when the bytes were not written by `save_state` or are cut short.
    pub fn restore_state(bytes: &[u8]) -> Result<Digester> {
        let invalid = |reason| Error::InvalidHashState { reason };
        if bytes.len() < STATE_HEADER_LEN + STATE_CHECKSUM_LEN || &bytes[..STATE_MAGIC.len()] != STATE_MAGIC {
            return Err(invalid("missing header"));
        }
        // The hash's internal state is not self-checking: a torn or corrupted copy would
        // restore and then hash wrongly (or overflow its length counter). Refuse it up front.
        let (bytes, checksum) = bytes.split_at(bytes.len() - STATE_CHECKSUM_LEN);
        if Sha256::digest(bytes).as_slice() != checksum {
            return Err(invalid("checksum mismatch (corrupt or truncated state)"));
        }
        let tag = bytes[STATE_MAGIC.len()];
        let len_bytes: [u8; 8] =
            bytes[STATE_MAGIC.len() + 1..STATE_HEADER_LEN].try_into().map_err(|_| invalid("missing length"))?;
        let len = u64::from_le_bytes(len_bytes);
        let inner = &bytes[STATE_HEADER_LEN..];
        let hasher = match tag {
            1 => Hasher::Sha256(restore_hasher::<Sha256>(inner)?),
            2 => Hasher::Sha512(restore_hasher::<Sha512>(inner)?),
            _ => return Err(invalid("unknown algorithm tag")),
        };
        Ok(Digester { hasher, len })
    }
}

fn restore_hasher<H: SerializableState>(inner: &[u8]) -> Result<H> {
    let state =
        SerializedState::<H>::try_from(inner).map_err(|_| Error::InvalidHashState { reason: "wrong state length" })?;
    H::deserialize(&state).map_err(|_| Error::InvalidHashState { reason: "corrupt hash state" })
}

impl fmt::Debug for Digester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Digester").field("algorithm", &self.algorithm()).field("len", &self.len).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const ABC_SHA512: &str = "sha512:ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f";

    fn reason(input: &str) -> DigestError {
        match input.parse::<Digest>() {
            Err(Error::InvalidDigest { reason, .. }) => reason,
            other => panic!("{input:?} should be refused, got {other:?}"),
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(Digest::sha256(b"").as_str(), EMPTY_SHA256);
        assert_eq!(Digest::sha512(b"abc").as_str(), ABC_SHA512);
        let parsed: Digest = ABC_SHA512.parse().unwrap();
        assert_eq!(parsed.algorithm(), Algorithm::Sha512);
        assert_eq!(parsed.hex().len(), 128);
        assert_eq!(parsed.to_string(), ABC_SHA512);
    }

    #[test]
    fn rejections_say_why() {
        assert_eq!(reason("sha256"), DigestError::MissingSeparator);
        assert_eq!(reason("md5:d41d8cd98f00b204e9800998ecf8427e"), DigestError::UnknownAlgorithm("md5".into()));
        assert_eq!(
            reason(&EMPTY_SHA256.replace(":e3", ":")),
            DigestError::WrongLength { algorithm: "sha256", expected: 64, found: 62 }
        );
        assert_eq!(reason(&EMPTY_SHA256.replace(":e3", ":E3")), DigestError::Uppercase { character: 'E', position: 0 });
        assert_eq!(
            reason(&EMPTY_SHA256.replace("b855", "b85g")),
            DigestError::BadCharacter { character: 'g', position: 63 }
        );
        assert_eq!(reason("SHA256:abc"), DigestError::UnknownAlgorithm("SHA256".into()));
        assert_eq!(reason(":"), DigestError::UnknownAlgorithm(String::new()));
        assert_eq!(reason("sha512:"), DigestError::WrongLength { algorithm: "sha512", expected: 128, found: 0 });
        let message = "sha256:xyz".parse::<Digest>().unwrap_err().to_string();
        assert!(message.contains("sha256:xyz") && message.contains("'x'"), "{message}");
    }

    #[test]
    fn verify_reports_both_digests() {
        let digest = Digest::sha256(b"right");
        digest.verify(b"right").unwrap();
        let err = digest.verify(b"wrong").unwrap_err();
        assert_eq!(err, Error::DigestMismatch { expected: digest, actual: Digest::sha256(b"wrong") });
    }

    #[test]
    fn from_raw_checks_length() {
        let raw = [7u8; 32];
        assert_eq!(Digest::from_raw(Algorithm::Sha256, &raw).unwrap().hex(), "07".repeat(32));
        assert!(Digest::from_raw(Algorithm::Sha512, &raw).is_err());
    }

    #[test]
    fn serde_is_a_string() {
        let digest = Digest::sha256(b"x");
        let json = serde_json::to_string(&digest).unwrap();
        assert_eq!(json, format!("\"{digest}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), digest);
        assert!(serde_json::from_str::<Digest>("\"sha256:00\"").is_err());
    }

    #[test]
    fn digester_resumes_from_saved_state_at_every_split() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for algorithm in Algorithm::ALL {
            let expected = Digest::compute(algorithm, &data);
            for split in [0, 1, 63, 64, 65, 127, 128, 129, 999, 1000] {
                let mut first = Digester::new(algorithm);
                first.update(&data[..split]);
                let saved = first.save_state();
                let mut resumed = Digester::restore_state(&saved).unwrap();
                assert_eq!(resumed.len(), split as u64);
                resumed.update(&data[split..]);
                assert_eq!(resumed.verify(&expected).unwrap(), expected, "{algorithm} split {split}");
            }
        }
    }

    #[test]
    fn restore_refuses_foreign_bytes() {
        let saved = Digester::new(Algorithm::Sha256).save_state();
        assert!(Digester::restore_state(b"").is_err());
        assert!(Digester::restore_state(&saved[..saved.len() - 1]).is_err());
        let mut wrong_tag = saved.clone();
        wrong_tag[4] = 9;
        assert!(Digester::restore_state(&wrong_tag).is_err());
        for at in [5, 13, 20, saved.len() - 1] {
            let mut flipped = saved.clone();
            flipped[at] ^= 1;
            assert_eq!(
                Digester::restore_state(&flipped).unwrap_err(),
                Error::InvalidHashState { reason: "checksum mismatch (corrupt or truncated state)" },
                "byte {at} flipped"
            );
        }
        let mut wrong_magic = saved;
        wrong_magic[0] = b'X';
        assert!(Digester::restore_state(&wrong_magic).is_err());
    }

    #[test]
    fn verify_with_other_algorithm_is_a_mismatch() {
        let err = Digester::new(Algorithm::Sha512).verify(&Digest::sha256(b"")).unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }));
    }
}
