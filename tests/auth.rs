//! Access control (§10): users and logins, API keys, the first admin — on Postgres and
//! SQLite.

mod common;

use std::time::Duration;

use aiops_engine::auth::{self, ApiKey, Caller, User};
use aiops_engine::{Error, PageRequest, Role, UserId};
use common::{Backend, Harness};
use sea_orm::ConnectionTrait;

const PASSWORD: &str = "correct-horse-battery";

/// Every key of a user, as the machine's operator (the CLI) sees them.
async fn keys_of(h: &Harness, user: UserId) -> Vec<ApiKey> {
    h.engine
        .api_keys(Caller::Local, user, &PageRequest::first(200))
        .await
        .unwrap()
        .items
}

async fn all_users(h: &Harness) -> Vec<User> {
    h.engine
        .users(&PageRequest::first(200))
        .await
        .unwrap()
        .items
}

async fn user(h: &Harness, username: &str, role: Role) -> User {
    h.engine
        .create_user(username, PASSWORD, role)
        .await
        .unwrap()
}

fn assert_unauthenticated<T: std::fmt::Debug>(r: aiops_engine::Result<T>) -> String {
    match r {
        Err(e @ Error::Unauthenticated) => e.to_string(),
        other => panic!("expected Unauthenticated, got {other:?}"),
    }
}

async fn login_with_password(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let alice = user(&h, "alice", Role::Operator).await;
    assert_eq!(
        (alice.username.as_str(), alice.role, alice.disabled),
        ("alice", Role::Operator, false)
    );

    let p = h.engine.login("alice", PASSWORD).await.unwrap();
    assert_eq!(
        (p.user_id, p.username.as_str(), p.role, p.api_key_id),
        (alice.id, "alice", Role::Operator, None)
    );

    let wrong_password = assert_unauthenticated(h.engine.login("alice", "not-the-password").await);
    let unknown_user = assert_unauthenticated(h.engine.login("mallory", PASSWORD).await);
    assert_eq!(
        wrong_password, unknown_user,
        "the message must not tell which one was wrong"
    );
    assert!(!wrong_password.contains("alice") && !wrong_password.contains("password was"));

    // Disabled users cannot log in, with the same answer.
    h.engine
        .set_user_disabled(Caller::Local, alice.id, true)
        .await
        .unwrap();
    assert_eq!(
        assert_unauthenticated(h.engine.login("alice", PASSWORD).await),
        unknown_user
    );
    h.engine
        .set_user_disabled(Caller::Local, alice.id, false)
        .await
        .unwrap();
    h.engine.login("alice", PASSWORD).await.unwrap();

    let users = all_users(&h).await;
    assert_eq!(users, vec![h.engine.user(alice.id).await.unwrap()]);

    // Rules on new users.
    for (username, password, expect) in [
        ("bob", "short", "at least 12 characters"),
        ("Bob", PASSWORD, "lowercase letters"),
        ("bo", PASSWORD, "3 to 64 characters"),
    ] {
        match h.engine.create_user(username, password, Role::Viewer).await {
            Err(Error::Invalid(msg)) => assert!(msg.contains(expect), "{msg}"),
            other => panic!("{username}/{password}: {other:?}"),
        }
    }
}
both_backends!(users_log_in_with_their_password, login_with_password);

async fn duplicate_username(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    user(&h, "alice", Role::Viewer).await;
    match h
        .engine
        .create_user("alice", "another-password-1", Role::Admin)
        .await
    {
        Err(Error::Conflict(msg)) => assert_eq!(msg, "username \"alice\" is already taken"),
        other => panic!("{other:?}"),
    }
    assert_eq!(all_users(&h).await.len(), 1);
}
both_backends!(duplicate_username_is_a_conflict, duplicate_username);

async fn api_key_authenticates(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let admin = user(&h, "root-ops", Role::Admin).await;
    let (key, plaintext) = h
        .engine
        .create_api_key(Caller::Local, admin.id, "grafana", Some(Role::Viewer), None)
        .await
        .unwrap();
    assert_eq!(auth::api_key_prefix(&plaintext), Some(key.prefix.as_str()));
    assert_eq!(
        (key.user_id, key.name.as_str(), key.role),
        (admin.id, "grafana", Role::Viewer)
    );
    assert!(key.last_used_at.is_none() && key.expires_at.is_none() && key.revoked_at.is_none());

    let p = h.engine.authenticate(&plaintext).await.unwrap();
    assert_eq!(
        (p.user_id, p.username.as_str(), p.role, p.api_key_id),
        (admin.id, "root-ops", Role::Viewer, Some(key.id)),
        "the key's role, not the user's"
    );
    assert!(p.require(Role::Viewer).is_ok());
    assert!(matches!(
        p.require(Role::Operator),
        Err(Error::Forbidden {
            needed: Role::Operator,
            has: Role::Viewer
        })
    ));

    // last_used_at is recorded, then not rewritten within the minute.
    let listed = keys_of(&h, admin.id).await;
    assert_eq!(listed.len(), 1);
    let first_use = listed[0].last_used_at.expect("last_used_at set");
    h.engine.authenticate(&plaintext).await.unwrap();
    let again = keys_of(&h, admin.id).await;
    assert_eq!(again[0].last_used_at, Some(first_use));

    // Without a role, a key gets its user's.
    let (full, full_plaintext) = h
        .engine
        .create_api_key(
            Caller::Local,
            admin.id,
            "ci",
            None,
            Some(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    assert_eq!(full.role, Role::Admin);
    assert!(full.expires_at.is_some());
    assert_eq!(
        h.engine.authenticate(&full_plaintext).await.unwrap().role,
        Role::Admin
    );

    // Malformed, unknown and tampered tokens.
    let last = if plaintext.ends_with('x') { 'y' } else { 'x' };
    let tampered = format!("{}{last}", &plaintext[..plaintext.len() - 1]);
    for token in [
        "",
        "garbage",
        &format!("Basic {plaintext}"),
        &tampered,
        "aiops_abcd1234_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        assert_unauthenticated(h.engine.authenticate(token).await);
    }
}
both_backends!(
    api_key_authenticates_with_its_role_and_records_use,
    api_key_authenticates
);

async fn revoked_and_expired(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let op = user(&h, "ops", Role::Operator).await;
    let (key, plaintext) = h
        .engine
        .create_api_key(Caller::Local, op.id, "laptop", None, None)
        .await
        .unwrap();
    h.engine.authenticate(&plaintext).await.unwrap();
    let revoked = h
        .engine
        .revoke_api_key(Caller::Local, key.id)
        .await
        .unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_unauthenticated(h.engine.authenticate(&plaintext).await);
    // Idempotent: the first revocation time stays.
    let again = h
        .engine
        .revoke_api_key(Caller::Local, key.id)
        .await
        .unwrap();
    assert_eq!(again.revoked_at, revoked.revoked_at);
    assert!(matches!(
        h.engine
            .revoke_api_key(Caller::Local, aiops_engine::ApiKeyId::new())
            .await,
        Err(Error::NotFound { .. })
    ));

    let (_, short_lived) = h
        .engine
        .create_api_key(
            Caller::Local,
            op.id,
            "short",
            None,
            Some(Duration::from_millis(1)),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_unauthenticated(h.engine.authenticate(&short_lived).await);

    // A disabled user's keys stop working too.
    let (_, live) = h
        .engine
        .create_api_key(Caller::Local, op.id, "live", None, None)
        .await
        .unwrap();
    h.engine.authenticate(&live).await.unwrap();
    h.engine
        .set_user_disabled(Caller::Local, op.id, true)
        .await
        .unwrap();
    assert_unauthenticated(h.engine.authenticate(&live).await);
}
both_backends!(
    revoked_expired_and_disabled_keys_are_refused,
    revoked_and_expired
);

async fn key_role_above_user(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let op = user(&h, "ops", Role::Operator).await;
    match h
        .engine
        .create_api_key(Caller::Local, op.id, "too-much", Some(Role::Admin), None)
        .await
    {
        Err(
            e @ Error::KeyAboveCeiling {
                action: auth::KeyAction::Create,
                asked: Role::Admin,
                ceiling: auth::Ceiling::User,
                has: Role::Operator,
            },
        ) => assert_eq!(
            e.to_string(),
            "forbidden: cannot create an API key with role ADMIN: the key's user has role OPERATOR"
        ),
        other => panic!("{other:?}"),
    }
    assert!(keys_of(&h, op.id).await.is_empty());
}
both_backends!(key_role_above_its_user_is_forbidden, key_role_above_user);

fn assert_above_ceiling<T: std::fmt::Debug>(
    r: aiops_engine::Result<T>,
    action: auth::KeyAction,
    asked: Role,
    ceiling: auth::Ceiling,
    has: Role,
) {
    match r {
        Err(
            e @ Error::KeyAboveCeiling {
                action: a,
                asked: q,
                ceiling: c,
                has: h,
            },
        ) if (a, q, c, h) == (action, asked, ceiling, has) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("{action} an API key with role {asked}"))
                    && msg.contains(&format!("has role {has}")),
                "says what was asked and what the caller has: {msg}"
            );
        }
        other => panic!("expected {action} {asked} above {ceiling} {has}, got {other:?}"),
    }
}

/// The attack: a key down-scoped to VIEWER, of an ADMIN user, tries to mint, see and
/// revoke stronger keys of its user. Every such call is refused by the engine.
async fn down_scoped_key(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    use auth::{Ceiling, KeyAction};
    let admin = user(&h, "root-ops", Role::Admin).await;
    let ops = user(&h, "ops", Role::Operator).await;
    let (full, full_token) = h
        .engine
        .create_api_key(Caller::Local, admin.id, "full", None, None)
        .await
        .unwrap();
    assert_eq!(
        full.role,
        Role::Admin,
        "the CLI keeps the user's role as ceiling"
    );
    let (scoped, scoped_token) = h
        .engine
        .create_api_key(Caller::Local, admin.id, "grafana", Some(Role::Viewer), None)
        .await
        .unwrap();
    let viewer = h.engine.authenticate(&scoped_token).await.unwrap();
    assert_eq!(viewer.role, Role::Viewer);
    let as_viewer = Caller::Principal(&viewer);

    // Minting: at most the caller's role; without a role, the caller's.
    for asked in [Role::Admin, Role::Operator] {
        assert_above_ceiling(
            h.engine
                .create_api_key(as_viewer, admin.id, "escalate", Some(asked), None)
                .await,
            KeyAction::Create,
            asked,
            Ceiling::Caller,
            Role::Viewer,
        );
    }
    let (child, child_token) = h
        .engine
        .create_api_key(as_viewer, admin.id, "child", None, None)
        .await
        .unwrap();
    assert_eq!(child.role, Role::Viewer);
    assert_eq!(
        h.engine.authenticate(&child_token).await.unwrap().role,
        Role::Viewer
    );

    // Listing: keys up to the caller's role, and itself; the ADMIN key is not shown.
    let listed = h
        .engine
        .api_keys(
            as_viewer,
            admin.id,
            &PageRequest {
                count_total: true,
                ..PageRequest::first(50)
            },
        )
        .await
        .unwrap();
    assert_eq!(
        listed.items.iter().map(|k| k.id).collect::<Vec<_>>(),
        vec![scoped.id, child.id]
    );
    assert_eq!(listed.total, Some(2), "the count agrees with what is shown");
    assert_eq!(keys_of(&h, admin.id).await.len(), 3, "the CLI sees all");

    // Revoking: not the stronger key; its own user's weaker keys and itself, yes.
    assert_above_ceiling(
        h.engine.revoke_api_key(as_viewer, full.id).await,
        KeyAction::Revoke,
        Role::Admin,
        Ceiling::Caller,
        Role::Viewer,
    );
    assert_eq!(
        h.engine.authenticate(&full_token).await.unwrap().role,
        Role::Admin,
        "the admin key still works"
    );
    // Other users' keys are for admins only, existing or not.
    let (ops_key, _) = h
        .engine
        .create_api_key(Caller::Local, ops.id, "laptop", None, None)
        .await
        .unwrap();
    for r in [
        h.engine.revoke_api_key(as_viewer, ops_key.id).await,
        h.engine
            .revoke_api_key(as_viewer, aiops_engine::ApiKeyId::new())
            .await,
    ] {
        assert!(
            matches!(
                r,
                Err(Error::Forbidden {
                    needed: Role::Admin,
                    has: Role::Viewer
                })
            ),
            "{r:?}"
        );
    }
    assert!(matches!(
        h.engine
            .api_keys(as_viewer, ops.id, &PageRequest::first(10))
            .await,
        Err(Error::Forbidden { .. })
    ));
    assert!(matches!(
        h.engine
            .create_api_key(as_viewer, ops.id, "x", None, None)
            .await,
        Err(Error::Forbidden { .. })
    ));
    let revoked = h.engine.revoke_api_key(as_viewer, child.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    let itself = h.engine.revoke_api_key(as_viewer, scoped.id).await.unwrap();
    assert!(itself.revoked_at.is_some());
    assert_unauthenticated(h.engine.authenticate(&scoped_token).await);

    // A password login has the user's role; keys made with it are bounded by it.
    let session = h.engine.login("ops", PASSWORD).await.unwrap();
    let (session_key, _) = h
        .engine
        .create_api_key(Caller::Principal(&session), ops.id, "session", None, None)
        .await
        .unwrap();
    assert_eq!(session_key.role, Role::Operator);
    assert_above_ceiling(
        h.engine
            .create_api_key(
                Caller::Principal(&session),
                ops.id,
                "more",
                Some(Role::Admin),
                None,
            )
            .await,
        KeyAction::Create,
        Role::Admin,
        Ceiling::Caller,
        Role::Operator,
    );

    // Admins acting on other users keep their rights, within that user's role.
    let root = h.engine.authenticate(&full_token).await.unwrap();
    let as_root = Caller::Principal(&root);
    let ops_keys = h
        .engine
        .api_keys(as_root, ops.id, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(ops_keys.items.len(), 2);
    assert_above_ceiling(
        h.engine
            .create_api_key(as_root, ops.id, "x", Some(Role::Admin), None)
            .await,
        KeyAction::Create,
        Role::Admin,
        Ceiling::User,
        Role::Operator,
    );
    let (for_ops, _) = h
        .engine
        .create_api_key(as_root, ops.id, "ci", None, None)
        .await
        .unwrap();
    assert_eq!(for_ops.role, Role::Operator);
    let revoked = h.engine.revoke_api_key(as_root, ops_key.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
}
both_backends!(
    a_down_scoped_key_cannot_mint_see_or_revoke_stronger_keys,
    down_scoped_key
);

async fn no_secrets_in_output(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let alice = user(&h, "alice", Role::Admin).await;
    let (key, plaintext) = h
        .engine
        .create_api_key(Caller::Local, alice.id, "bot", Some(Role::Operator), None)
        .await
        .unwrap();
    let principal = h.engine.authenticate(&plaintext).await.unwrap();
    let keys: Vec<ApiKey> = keys_of(&h, alice.id).await;
    let key_hash = auth::hash_api_key(&plaintext);
    let secret = plaintext.rsplit('_').next().unwrap().to_owned();

    // What is stored: an argon2id hash and the key's SHA-256, never the secrets.
    let db = &common::raw_db(&h.db.url).await;
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT password_hash FROM users",
        ))
        .await
        .unwrap()
        .unwrap();
    let password_hash: String = row.try_get_by_index(0).unwrap();
    assert!(password_hash.starts_with("$argon2id$"), "{password_hash}");
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT key_hash, prefix FROM api_keys",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get_by_index::<String>(0).unwrap(), key_hash);
    assert_eq!(row.try_get_by_index::<String>(1).unwrap(), key.prefix);

    let mut outputs = vec![
        format!("{alice:?}"),
        format!("{:?}", all_users(&h).await),
        format!("{key:?}"),
        format!("{keys:?}"),
        format!("{principal:?}"),
        format!(
            "{:?}",
            h.engine
                .revoke_api_key(Caller::Local, key.id)
                .await
                .unwrap()
        ),
    ];
    let errors = [
        h.engine
            .login("alice", "wrong-password-123")
            .await
            .unwrap_err(),
        h.engine.authenticate(&plaintext).await.unwrap_err(),
        h.engine
            .create_user("alice", PASSWORD, Role::Viewer)
            .await
            .unwrap_err(),
        h.engine
            .create_user("bob", "tiny-secret", Role::Viewer)
            .await
            .unwrap_err(),
        h.engine
            .create_api_key(Caller::Local, alice.id, "x", None, Some(Duration::ZERO))
            .await
            .unwrap_err(),
    ];
    for e in &errors {
        outputs.push(e.to_string());
        outputs.push(format!("{e:?}"));
    }
    for out in &outputs {
        for leaked in [
            PASSWORD,
            "tiny-secret",
            &password_hash,
            "$argon2",
            &plaintext,
            &secret,
            &key_hash,
        ] {
            assert!(!out.contains(leaked), "{leaked:?} leaked in {out:?}");
        }
    }
}
both_backends!(no_hash_or_secret_in_debug_or_errors, no_secrets_in_output);

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

async fn bootstrap(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Eight at once (as `serve` processes starting together would): one admin, and
    // none of the others fails on the password file the winner wrote before its commit.
    let results =
        futures::future::join_all((0..8).map(|_| h.engine.bootstrap_admin(&data, None))).await;
    let created: Vec<_> = results.into_iter().filter_map(|r| r.unwrap()).collect();
    assert_eq!(created.len(), 1, "{created:?}");
    let aiops_engine::auth::Bootstrapped::PasswordFile(path) = &created[0] else {
        panic!("a random password goes to a file: {created:?}");
    };
    assert_eq!(path, &data.join("initial-admin-password"));
    #[cfg(unix)]
    assert_eq!(mode(path), 0o600);
    #[cfg(unix)]
    assert_eq!(mode(&data), 0o700, "the data directory is private");
    let password = std::fs::read_to_string(path).unwrap().trim().to_owned();
    assert_eq!(password.len(), 24);
    assert!(password.bytes().all(|b| b.is_ascii_alphanumeric()));

    let users = all_users(&h).await;
    assert_eq!(users.len(), 1);
    assert_eq!(
        (users[0].username.as_str(), users[0].role),
        ("admin", Role::Admin)
    );
    let p = h.engine.login("admin", &password).await.unwrap();
    assert_eq!(p.role, Role::Admin);

    // Second start: nothing happens, the file is left alone.
    assert_eq!(h.engine.bootstrap_admin(&data, None).await.unwrap(), None);
    assert_eq!(std::fs::read_to_string(path).unwrap().trim(), password);
    assert_eq!(all_users(&h).await.len(), 1);
}
both_backends!(bootstrap_creates_one_admin_once, bootstrap);

async fn bootstrap_with_given_password(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A file from an earlier installation (perhaps of another database) is left alone.
    let stale = dir.path().join("initial-admin-password");
    std::fs::write(&stale, "old").unwrap();
    assert!(matches!(
        h.engine
            .bootstrap_admin(dir.path(), Some("too-short"))
            .await,
        Err(Error::Invalid(_))
    ));
    assert!(all_users(&h).await.is_empty());

    let done = h
        .engine
        .bootstrap_admin(dir.path(), Some("given-admin-password"))
        .await
        .unwrap();
    assert_eq!(done, Some(aiops_engine::auth::Bootstrapped::GivenPassword));
    assert_eq!(
        std::fs::read_to_string(&stale).unwrap(),
        "old",
        "a chosen password is not written to disk, and no file is overwritten"
    );
    h.engine
        .login("admin", "given-admin-password")
        .await
        .unwrap();
}
both_backends!(
    bootstrap_uses_a_given_password,
    bootstrap_with_given_password
);

/// A password file left by an earlier first start (of this or another database)
/// is never overwritten: the start is refused with the reason, and no user appears.
async fn bootstrap_refuses_to_overwrite(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("initial-admin-password");
    std::fs::write(&file, "password of another database's admin\n").unwrap();
    let err = h
        .engine
        .bootstrap_admin(dir.path(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("already exists") && err.contains("never overwritten"),
        "{err}"
    );
    assert!(all_users(&h).await.is_empty(), "nothing created");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "password of another database's admin\n"
    );
}
both_backends!(
    bootstrap_never_overwrites_a_password_file,
    bootstrap_refuses_to_overwrite
);

async fn bootstrap_with_existing_users(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    user(&h, "alice", Role::Viewer).await;
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        h.engine.bootstrap_admin(dir.path(), None).await.unwrap(),
        None
    );
    assert!(!dir.path().join("initial-admin-password").exists());
    assert!(matches!(
        h.engine.user_by_username("admin").await,
        Err(Error::NotFound { .. })
    ));
}
both_backends!(
    bootstrap_does_nothing_when_users_exist,
    bootstrap_with_existing_users
);
