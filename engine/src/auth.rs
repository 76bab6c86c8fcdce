//! Access control (§10): roles, principals, password hashing and API keys.
//!
//! Passwords are stored as argon2id PHC strings (random salt, the crate's default
//! parameters). API keys look like `aiops_<prefix>_<secret>`; only the SHA-256 of the
//! whole key is stored, and the plaintext is returned once, when the key is created.
//! The engine methods that use these live in `engine.rs` (`create_user`, `login`,
//! `create_api_key`, `authenticate`, `bootstrap_admin`, …); the rows live in
//! `store::users` and `store::api_keys`, which are the only holders of hashes.

use std::path::Path;
use std::sync::OnceLock;

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};

use crate::ids::{ApiKeyId, UserId};
use crate::{Error, Result};

pub use crate::model::{ApiKey, User};
pub use crate::role::Role;

/// Who is calling: a user who logged in with a password, or one of their API keys
/// (then `role` is the key's role, never more than the user's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user_id: UserId,
    pub username: String,
    pub role: Role,
    pub api_key_id: Option<ApiKeyId>,
}

impl Principal {
    /// `Ok` if this principal has at least `role`, else [`Error::Forbidden`].
    pub fn require(&self, role: Role) -> Result<()> {
        if self.role >= role {
            Ok(())
        } else {
            Err(Error::Forbidden {
                needed: role,
                has: self.role,
            })
        }
    }
}

/// Who asks for an operation on API keys; it decides how strong a key the operation
/// may touch.
#[derive(Clone, Copy, Debug)]
pub enum Caller<'a> {
    /// The operator of the machine (the CLI, which holds the database URL anyway):
    /// bound only by the role of the user whose keys it manages.
    Local,
    /// An authenticated principal (an API key, or a password login): bound by its own
    /// role, so that a down-scoped key can neither mint, see nor revoke a stronger one.
    Principal(&'a Principal),
}

/// What was asked of an API key, for [`Error::KeyAboveCeiling`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAction {
    Create,
    Revoke,
}

impl std::fmt::Display for KeyAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyAction::Create => "create",
            KeyAction::Revoke => "revoke",
        })
    }
}

/// Whose role bounds an API key operation, for [`Error::KeyAboveCeiling`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ceiling {
    /// The calling principal's role (an API caller acting on its own user's keys).
    Caller,
    /// The role of the user the key belongs to.
    User,
}

impl std::fmt::Display for Ceiling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ceiling::Caller => "the caller",
            Ceiling::User => "the key's user",
        })
    }
}

// ---------------------------------------------------------------------------------
// Usernames and passwords

pub const MIN_PASSWORD_CHARS: usize = 12;
/// Bounds the work one login can cause; far above any real password or passphrase.
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// 3 to 64 characters out of `a-z 0-9 _ . -`.
pub fn validate_username(username: &str) -> Result<()> {
    let len = username.chars().count();
    if !(3..=64).contains(&len) {
        return Err(Error::Invalid(format!(
            "username: must be 3 to 64 characters, got {len}"
        )));
    }
    if let Some(c) = username
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '-'))
    {
        return Err(Error::Invalid(format!(
            "username: may only contain lowercase letters, digits, '_', '.' and '-', found {c:?}"
        )));
    }
    Ok(())
}

/// Length rules for a new password. The message never contains the password.
pub fn validate_password(password: &str) -> Result<()> {
    let len = password.chars().count();
    if len < MIN_PASSWORD_CHARS {
        return Err(Error::Invalid(format!(
            "password: must be at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if len > MAX_PASSWORD_CHARS {
        return Err(Error::Invalid(format!(
            "password: must be at most {MAX_PASSWORD_CHARS} characters"
        )));
    }
    Ok(())
}

/// Validates `password` and hashes it with argon2id and a fresh random salt, as a PHC
/// string. CPU-heavy by design (tens of milliseconds): call it off the async threads.
pub fn hash_password(password: &str) -> Result<String> {
    validate_password(password)?;
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        // argon2's errors describe parameters or the RNG, never the input.
        .map_err(|e| Error::Invalid(format!("password: cannot be hashed: {e}")))
}

/// Whether `password` matches the PHC string `phc`. The argon2 crate compares the
/// outputs in constant time; a malformed `phc` never matches.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash that no password is known for. Logins of unknown users are verified against
/// it, so they take as long as logins with a wrong password and the response time does
/// not tell whether a user exists.
fn dummy_password_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        Argon2::default()
            .hash_password(random_alphanumeric(32).as_bytes())
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// [`hash_password`] on the blocking pool.
pub(crate) async fn hash_password_off_thread(password: String) -> Result<String> {
    run_blocking(move || hash_password(&password)).await?
}

/// [`verify_password`] on the blocking pool; `None` verifies against a dummy hash (see
/// [`dummy_password_hash`]) and is always `false`.
pub(crate) async fn verify_password_off_thread(
    password: String,
    phc: Option<String>,
) -> Result<bool> {
    run_blocking(move || match phc {
        Some(phc) => verify_password(&password, &phc),
        None => {
            verify_password(&password, dummy_password_hash());
            false
        }
    })
    .await
}

async fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Ok(v),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(Error::Unavailable("shutting down".into())),
    }
}

/// A random password of `len` letters and digits (~5.95 bits each).
pub fn random_password(len: usize) -> String {
    random_alphanumeric(len)
}

// `rand::rng()` is a CSPRNG (ChaCha12, seeded and periodically reseeded from the OS).
fn random_alphanumeric(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

// ---------------------------------------------------------------------------------
// API keys

/// Every API key starts with this, so keys are recognisable (and greppable by secret
/// scanners) wherever they leak.
pub const API_KEY_MARKER: &str = "aiops_";
/// Length of the non-secret identifier after the marker (`[a-z0-9]`).
pub const API_KEY_PREFIX_LEN: usize = 8;
/// Length of the secret (`[A-Za-z0-9]`, ~190 bits).
pub const API_KEY_SECRET_LEN: usize = 32;

/// A new key `aiops_<prefix>_<secret>` and its prefix (the 8 characters shown in
/// listings to tell keys apart).
pub fn generate_api_key() -> (String, String) {
    generate_token(API_KEY_MARKER)
}

/// The prefix of a well-formed API key, `None` for anything else (so malformed tokens
/// are refused without a database read).
pub fn api_key_prefix(token: &str) -> Option<&str> {
    token_prefix(API_KEY_MARKER, token)
}

/// Every Alertmanager receiver token starts with this (not [`API_KEY_MARKER`]: a
/// receiver token is no API key, and secret scanners can tell them apart).
pub const RECEIVER_TOKEN_MARKER: &str = "aiopsam_";

/// A new token `<marker><prefix>_<secret>` (the secret as random as an API key's)
/// and its prefix.
pub fn generate_token(marker: &str) -> (String, String) {
    const LOWER_ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let prefix: String = (0..API_KEY_PREFIX_LEN)
        .map(|_| char::from(LOWER_ALNUM[rng.random_range(0..LOWER_ALNUM.len())]))
        .collect();
    let secret = random_alphanumeric(API_KEY_SECRET_LEN);
    (format!("{marker}{prefix}_{secret}"), prefix)
}

/// The prefix of a well-formed token made by [`generate_token`] with `marker`.
pub fn token_prefix<'a>(marker: &str, token: &'a str) -> Option<&'a str> {
    let rest = token.strip_prefix(marker)?;
    let (prefix, secret) = rest.split_once('_')?;
    let prefix_ok = prefix.len() == API_KEY_PREFIX_LEN
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let secret_ok =
        secret.len() == API_KEY_SECRET_LEN && secret.bytes().all(|b| b.is_ascii_alphanumeric());
    (prefix_ok && secret_ok).then_some(prefix)
}

/// SHA-256 of the whole key, lowercase hex: the only form in which keys are stored.
///
/// A fast hash is right here, unlike for passwords: a key carries ~190 random bits, so
/// nobody can guess keys to match a leaked hash however fast each guess is, and slow
/// hashing would only cost CPU on every API request. Looking keys up by hash also
/// makes the comparison happen in an index, not in a timing-sensitive string compare
/// of secrets.
pub fn hash_api_key(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---------------------------------------------------------------------------------
// Files

/// Name of the file `bootstrap_admin` writes the first admin's password to.
pub const INITIAL_ADMIN_PASSWORD_FILE: &str = "initial-admin-password";

/// Writes `contents` to a new file at `path` readable and writable by its owner only
/// (0600 on Unix). An existing file is never replaced.
pub(crate) fn write_secret_file(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    let fail = |e: std::io::Error| Error::Invalid(format!("cannot write {}: {e}", path.display()));
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        crate::store::create_private_dir(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(password_file_exists(path));
        }
        Err(e) => return Err(fail(e)),
    };
    file.write_all(contents.as_bytes()).map_err(fail)?;
    file.write_all(b"\n").map_err(fail)?;
    file.sync_all().map_err(fail)
}

/// What the first start did about the first admin's password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bootstrapped {
    /// A random password, written to this file (mode 0600).
    PasswordFile(std::path::PathBuf),
    /// The password the operator chose (`AIOPS_BOOTSTRAP_ADMIN_PASSWORD`); not written.
    GivenPassword,
}

pub(crate) fn password_file_exists(path: &Path) -> Error {
    Error::Invalid(format!(
        "{} already exists: it holds the password of an earlier first admin, perhaps of \
         another database, and is never overwritten. Nothing was created. Move it away, or \
         point AIOPS_DATA_DIR elsewhere, or choose the password with AIOPS_BOOTSTRAP_ADMIN_PASSWORD",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_to_argon2id_and_verify() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains("correct horse"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse battery!", &hash));
        assert!(!verify_password("", &hash));
        assert!(!verify_password(
            "correct horse battery",
            "not a phc string"
        ));
        // A fresh salt every time.
        assert_ne!(hash, hash_password("correct horse battery").unwrap());
    }

    #[test]
    fn short_passwords_are_refused_without_echoing_them() {
        let err = hash_password("short-pw").unwrap_err();
        assert!(matches!(err, Error::Invalid(_)));
        let msg = err.to_string();
        assert!(msg.contains("at least 12 characters"), "{msg}");
        assert!(!msg.contains("short-pw"));
        assert!(validate_password(&"x".repeat(12)).is_ok());
        assert!(validate_password(&"x".repeat(MAX_PASSWORD_CHARS + 1)).is_err());
    }

    #[test]
    fn usernames_are_checked() {
        for ok in ["bob", "alice.smith", "ops-bot_2", &"a".repeat(64)] {
            assert!(validate_username(ok).is_ok(), "{ok}");
        }
        for bad in ["ab", "Alice", "al ice", "bob@example", &"a".repeat(65), ""] {
            assert!(
                matches!(validate_username(bad), Err(Error::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn api_keys_have_the_documented_format() {
        let (key, prefix) = generate_api_key();
        assert_eq!(key.len(), 6 + 8 + 1 + 32);
        assert_eq!(api_key_prefix(&key), Some(prefix.as_str()));
        assert!(key.starts_with(&format!("aiops_{prefix}_")));
        assert!(
            prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert_ne!(generate_api_key().0, key, "keys are random");

        let secret = "A".repeat(32);
        assert_eq!(
            api_key_prefix(&format!("aiops_abcd1234_{secret}")),
            Some("abcd1234")
        );
        for bad in [
            format!("aiops_ABCD1234_{secret}"),  // uppercase prefix
            format!("aiops_abcd123_{secret}"),   // short prefix
            format!("aiops_abcd1234_{secret}x"), // long secret
            format!("aiops_abcd1234_{}", "A".repeat(31) + "-"),
            format!("aiop_abcd1234_{secret}"), // marker
            format!("Bearer aiops_abcd1234_{secret}"),
            String::new(),
        ] {
            assert_eq!(api_key_prefix(&bad), None, "{bad}");
        }
    }

    #[test]
    fn api_key_hash_is_sha256_hex() {
        // SHA-256("abc"), FIPS 180-2 test vector.
        assert_eq!(
            hash_api_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn roles_are_ordered_and_principals_checked() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!(Role::Admin.min(Role::Viewer), Role::Viewer);
        assert_eq!(Role::parse_ignore_case("operator").unwrap(), Role::Operator);
        assert_eq!("ADMIN".parse::<Role>().unwrap(), Role::Admin);
        assert!(Role::parse_ignore_case("root").is_err());
        assert_eq!(serde_json::to_value(Role::Viewer).unwrap(), "VIEWER");

        let p = Principal {
            user_id: UserId::new(),
            username: "op".into(),
            role: Role::Operator,
            api_key_id: None,
        };
        assert!(p.require(Role::Viewer).is_ok());
        assert!(p.require(Role::Operator).is_ok());
        match p.require(Role::Admin) {
            Err(Error::Forbidden { needed, has }) => {
                assert_eq!((needed, has), (Role::Admin, Role::Operator))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn random_passwords_are_alphanumeric() {
        let p = random_password(24);
        assert_eq!(p.len(), 24);
        assert!(p.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}
