//! Secrets at rest: AES-256-GCM under a master key, in a self-describing envelope.
//!
//! A stored value is `v1:<kid>:<base64(nonce ‖ ciphertext ‖ tag)>`. The key id names
//! the master key that encrypted it, so after a new key becomes active the old ones
//! still decrypt and `aiops secrets rotate` can re-encrypt row by row. Every value is
//! bound to its place (table, row id, column) as associated data: a ciphertext copied
//! into another row or column does not decrypt. Nonces are random (96 bits), far
//! beyond safe for the number of secrets an installation holds.
//!
//! Key ids are derived from the keys (a truncated SHA-256), so an operator only ever
//! handles keys, never ids, and two different keys cannot share an id by mistake.

use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The environment variable holding the active master key.
pub const MASTER_KEY_ENV: &str = "AIOPS_MASTER_KEY";
/// Previous master keys (comma-separated), kept only to decrypt until rotated away.
pub const OLD_MASTER_KEYS_ENV: &str = "AIOPS_OLD_MASTER_KEYS";
/// The file `serve` generates a key into when none is configured.
pub const MASTER_KEY_FILE: &str = "master.key";

const VERSION: &str = "v1";
const NONCE_LEN: usize = 12;

/// Why a secret could not be read or a key not loaded. Never carries secret material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("{0}: a master key must be 32 bytes, as 44 characters of base64 or 64 hex digits")]
    BadKey(String),
    #[error("the stored secret of {0} is not a v1 envelope")]
    Malformed(String),
    #[error(
        "the secret of {place} was encrypted with master key {kid}, which is not configured \
         (set {MASTER_KEY_ENV}, or list the old key in {OLD_MASTER_KEYS_ENV})"
    )]
    UnknownKey { place: String, kid: String },
    #[error("the secret of {0} does not decrypt: wrong key, or the value was altered or moved")]
    Undecryptable(String),
}

/// Where a secret lives; bound into its ciphertext as associated data.
#[derive(Clone, Copy, Debug)]
pub struct Place<'a> {
    pub table: &'a str,
    pub row_id: &'a str,
    pub column: &'a str,
}

impl Place<'_> {
    fn aad(&self) -> String {
        format!(
            "aiops-secret:{}:{}:{}",
            self.table, self.row_id, self.column
        )
    }
}

impl fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{} of row {}", self.table, self.column, self.row_id)
    }
}

/// A decrypted secret. Its `Debug` shows nothing and its memory is wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The plaintext, for the one place that sends it (an HTTP header, a signature).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What may be shown of it: its last four characters when it is long enough that
    /// they give little away, else nothing.
    pub fn hint(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        if chars.len() >= 12 {
            format!("…{}", chars[chars.len() - 4..].iter().collect::<String>())
        } else {
            "…".to_owned()
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

struct MasterKey {
    id: String,
    cipher: Aes256Gcm,
}

/// The master keys of this process: one active (encrypts), any number of old ones
/// (decrypt only). `Debug` shows the key ids, never the keys.
pub struct Keyring {
    active: MasterKey,
    old: Vec<MasterKey>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("active", &self.active.id)
            .field("old", &self.old.iter().map(|k| &k.id).collect::<Vec<_>>())
            .finish()
    }
}

/// Where the keyring came from, for the start-up log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    Environment,
    File(PathBuf),
    Generated(PathBuf),
}

impl Keyring {
    /// A keyring from the encoded active key and old keys (base64 or hex each).
    pub fn new(active: &str, old: &[&str]) -> Result<Self, SecretError> {
        let active = master_key(active, MASTER_KEY_ENV)?;
        let old = old
            .iter()
            .map(|k| master_key(k, OLD_MASTER_KEYS_ENV))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { active, old })
    }

    /// The keyring the environment configures; `None` when `AIOPS_MASTER_KEY` is unset.
    pub fn from_env() -> Result<Option<Self>, SecretError> {
        let Ok(active) = std::env::var(MASTER_KEY_ENV) else {
            return Ok(None);
        };
        let old = std::env::var(OLD_MASTER_KEYS_ENV).unwrap_or_default();
        let old: Vec<&str> = old
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        Self::new(&active, &old).map(Some)
    }

    /// The environment's keyring, else the key in `<data_dir>/master.key`, else (when
    /// `may_generate`: a fresh single-process server) a new key written there (0600).
    /// `None` when there is no key and none may be made.
    pub fn load(data_dir: &Path, may_generate: bool) -> crate::Result<Option<(Self, KeySource)>> {
        if let Some(ring) = Self::from_env()? {
            return Ok(Some((ring, KeySource::Environment)));
        }
        let path = data_dir.join(MASTER_KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let key = Zeroizing::new(text);
                let ring = Self::new(key.trim(), &[])
                    .map_err(|e| SecretError::BadKey(format!("{}: {e}", path.display())))?;
                return Ok(Some((ring, KeySource::File(path))));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(crate::Error::Invalid(format!(
                    "cannot read the master key file {}: {e}",
                    path.display()
                )));
            }
        }
        if !may_generate {
            return Ok(None);
        }
        let encoded = Zeroizing::new(generate_key());
        std::fs::create_dir_all(data_dir).map_err(|e| {
            crate::Error::Invalid(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        crate::auth::write_secret_file(&path, &format!("{}\n", encoded.as_str()))?;
        let ring = Self::new(&encoded, &[])?;
        Ok(Some((ring, KeySource::Generated(path))))
    }

    /// The id of the key new secrets are encrypted with.
    pub fn active_id(&self) -> &str {
        &self.active.id
    }

    /// Encrypts `secret` for `place` under the active key.
    pub fn encrypt(&self, place: Place<'_>, secret: &Secret) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = place.aad();
        let sealed = self
            .active
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: secret.expose().as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer does not fail");
        let mut bytes = Vec::with_capacity(NONCE_LEN + sealed.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        format!("{VERSION}:{}:{}", self.active.id, B64.encode(bytes))
    }

    /// Decrypts a stored value of `place`.
    pub fn decrypt(&self, place: Place<'_>, stored: &str) -> Result<Secret, SecretError> {
        let (kid, bytes) =
            parse_envelope(stored).ok_or_else(|| SecretError::Malformed(place.to_string()))?;
        let key = std::iter::once(&self.active)
            .chain(&self.old)
            .find(|k| k.id == kid)
            .ok_or_else(|| SecretError::UnknownKey {
                place: place.to_string(),
                kid: kid.to_owned(),
            })?;
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at the nonce length");
        let aad = place.aad();
        let plain = key
            .cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SecretError::Undecryptable(place.to_string()))?;
        let text = String::from_utf8(plain.to_vec())
            .map_err(|_| SecretError::Undecryptable(place.to_string()))?;
        Ok(Secret::new(text))
    }

    /// Whether a stored value is under another key than the active one (rotation
    /// re-encrypts it). Malformed values count as not current.
    pub fn is_current(&self, stored: &str) -> bool {
        parse_envelope(stored).is_some_and(|(kid, _)| kid == self.active.id)
    }

    /// Re-encrypts a stored value under the active key; unchanged (`None`) when it is
    /// already current.
    pub fn reencrypt(&self, place: Place<'_>, stored: &str) -> Result<Option<String>, SecretError> {
        if self.is_current(stored) {
            // Still proves it decrypts: rotation must not report a broken row as done.
            self.decrypt(place, stored)?;
            return Ok(None);
        }
        let secret = self.decrypt(place, stored)?;
        Ok(Some(self.encrypt(place, &secret)))
    }
}

/// A new random master key, base64-encoded.
pub fn generate_key() -> String {
    let key = Aes256Gcm::generate_key(&mut OsRng);
    B64.encode(key)
}

impl From<SecretError> for crate::Error {
    fn from(e: SecretError) -> Self {
        crate::Error::Invalid(e.to_string())
    }
}

fn master_key(encoded: &str, origin: &str) -> Result<MasterKey, SecretError> {
    let encoded = encoded.trim();
    let bytes = Zeroizing::new(
        decode_hex(encoded)
            .or_else(|| B64.decode(encoded).ok())
            .filter(|b| b.len() == 32)
            .ok_or_else(|| SecretError::BadKey(origin.to_owned()))?,
    );
    let digest = Sha256::new()
        .chain_update(b"aiops-master-key-id:")
        .chain_update(bytes.as_slice())
        .finalize();
    let id = format!(
        "k{}",
        digest[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let cipher =
        Aes256Gcm::new_from_slice(&bytes).map_err(|_| SecretError::BadKey(origin.to_owned()))?;
    Ok(MasterKey { id, cipher })
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// `(kid, nonce ‖ ciphertext ‖ tag)` of a v1 envelope.
fn parse_envelope(stored: &str) -> Option<(&str, Vec<u8>)> {
    let mut parts = stored.splitn(3, ':');
    let (version, kid, body) = (parts.next()?, parts.next()?, parts.next()?);
    if version != VERSION || kid.is_empty() {
        return None;
    }
    let bytes = B64.decode(body).ok()?;
    // A nonce and at least a tag.
    (bytes.len() >= NONCE_LEN + 16).then_some((kid, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: Place<'static> = Place {
        table: "alert_sources",
        row_id: "11111111-1111-1111-1111-111111111111",
        column: "auth_encrypted",
    };

    fn ring() -> Keyring {
        Keyring::new(&generate_key(), &[]).unwrap()
    }

    #[test]
    fn a_secret_round_trips_and_the_envelope_names_the_key() {
        let ring = ring();
        let stored = ring.encrypt(ROW, &Secret::new("s3cret-token-value"));
        assert!(
            stored.starts_with(&format!("v1:{}:", ring.active_id())),
            "{stored}"
        );
        assert!(!stored.contains("s3cret"));
        assert_eq!(
            ring.decrypt(ROW, &stored).unwrap().expose(),
            "s3cret-token-value"
        );
    }

    #[test]
    fn each_encryption_uses_a_fresh_nonce() {
        let ring = ring();
        let secret = Secret::new("same");
        let a = ring.encrypt(ROW, &secret);
        let b = ring.encrypt(ROW, &secret);
        assert_ne!(a, b);
        let nonce = |s: &str| parse_envelope(s).unwrap().1[..NONCE_LEN].to_vec();
        assert_ne!(nonce(&a), nonce(&b));
    }

    #[test]
    fn a_ciphertext_moved_to_another_row_or_column_does_not_decrypt() {
        let ring = ring();
        let stored = ring.encrypt(ROW, &Secret::new("token"));
        let other_row = Place {
            row_id: "22222222-2222-2222-2222-222222222222",
            ..ROW
        };
        let other_column = Place {
            column: "password_encrypted",
            ..ROW
        };
        for place in [other_row, other_column] {
            assert!(matches!(
                ring.decrypt(place, &stored),
                Err(SecretError::Undecryptable(_))
            ));
        }
    }

    #[test]
    fn an_altered_ciphertext_does_not_decrypt() {
        let ring = ring();
        let stored = ring.encrypt(ROW, &Secret::new("token"));
        let (kid, mut bytes) = parse_envelope(&stored).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let altered = format!("v1:{kid}:{}", B64.encode(bytes));
        assert!(matches!(
            ring.decrypt(ROW, &altered),
            Err(SecretError::Undecryptable(_))
        ));
        assert!(matches!(
            ring.decrypt(ROW, "plaintext"),
            Err(SecretError::Malformed(_))
        ));
    }

    #[test]
    fn rotation_keeps_old_values_readable_and_moves_them_to_the_new_key() {
        let (k1, k2) = (generate_key(), generate_key());
        let before = Keyring::new(&k1, &[]).unwrap();
        let stored = before.encrypt(ROW, &Secret::new("token"));
        // Only the new key: the old value names a key nobody has.
        let without_old = Keyring::new(&k2, &[]).unwrap();
        let err = without_old.decrypt(ROW, &stored).unwrap_err();
        assert!(matches!(&err, SecretError::UnknownKey { kid, .. } if kid == before.active_id()));
        assert!(err.to_string().contains(OLD_MASTER_KEYS_ENV), "{err}");
        // New key active, old key kept: still readable, and rotation moves it.
        let after = Keyring::new(&k2, &[&k1]).unwrap();
        assert_eq!(after.decrypt(ROW, &stored).unwrap().expose(), "token");
        assert!(!after.is_current(&stored));
        let rotated = after
            .reencrypt(ROW, &stored)
            .unwrap()
            .expect("re-encrypted");
        assert!(after.is_current(&rotated));
        assert_eq!(
            without_old.decrypt(ROW, &rotated).unwrap().expose(),
            "token"
        );
        assert_eq!(after.reencrypt(ROW, &rotated).unwrap(), None, "idempotent");
    }

    #[test]
    fn keys_are_32_bytes_in_base64_or_hex_and_never_shown() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let ring = Keyring::new(hex, &[]).unwrap();
        let b64 = B64.encode(decode_hex(hex).unwrap());
        assert_eq!(
            Keyring::new(&b64, &[]).unwrap().active_id(),
            ring.active_id()
        );
        for bad in ["", "short", &hex[..62], &B64.encode([0u8; 16])] {
            let err = Keyring::new(bad, &[]).unwrap_err();
            assert!(err.to_string().contains("32 bytes"), "{err}");
            if !bad.is_empty() {
                assert!(!err.to_string().contains(bad), "{err}");
            }
        }
        let shown = format!("{ring:?} {:?}", Secret::new("hunter2-hunter2"));
        assert!(
            !shown.contains("0011") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn hints_show_little() {
        assert_eq!(Secret::new("sk-abcdefghijklmnop").hint(), "…mnop");
        assert_eq!(Secret::new("short").hint(), "…");
    }

    #[test]
    fn a_key_is_generated_once_into_the_data_directory() {
        if std::env::var_os(MASTER_KEY_ENV).is_some() {
            return; // the environment's key wins; nothing to observe here
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(Keyring::load(dir.path(), false).unwrap().is_none());
        let (first, source) = Keyring::load(dir.path(), true).unwrap().unwrap();
        let path = dir.path().join(MASTER_KEY_FILE);
        assert_eq!(source, KeySource::Generated(path.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, source) = Keyring::load(dir.path(), true).unwrap().unwrap();
        assert_eq!(source, KeySource::File(path.clone()));
        assert_eq!(again.active_id(), first.active_id());
        std::fs::write(&path, "not a key").unwrap();
        let err = Keyring::load(dir.path(), true).unwrap_err().to_string();
        assert!(
            err.contains("master.key") && err.contains("32 bytes"),
            "{err}"
        );
    }
}
