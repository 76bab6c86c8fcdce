//! The optional configuration file: `aiops --config aiops.toml <command>` (or
//! `AIOPS_CONFIG=aiops.toml`). A flat TOML table whose keys are the environment
//! variables' names without `AIOPS_`, in lower case (`listen` for `AIOPS_LISTEN`,
//! `database_url` for `DATABASE_URL`); see [`KEYS`] and the README.
//!
//! Precedence: flags win over the environment, the environment over the file, the
//! file over the defaults. How: before clap parses the command line, each key of the
//! file whose variable is *not* set in the environment is set in this process's
//! environment. Clap then reads it as it reads any variable (flags still win), and so
//! do the few settings read from the environment outside clap (the master keys, the
//! model-call timeouts, `AIOPS_LOG`). One mechanism for every setting, rather than
//! clap defaults for some and something else for the rest; the price is that
//! `main` must do it before any thread exists (`set_var` is unsound otherwise), so
//! `main` builds the async runtime itself, afterwards.
//!
//! An unknown key is an error naming the key and the file (no typo is silently
//! ignored); a value of the wrong type is an error naming the key. Secrets (the
//! master key, the bootstrap password, the metrics token) are accepted, but the
//! environment or a secrets manager is the better place: a file holding them that
//! other users can read draws a warning.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// The variable that names the file when `--config` is not given.
pub const CONFIG_ENV: &str = "AIOPS_CONFIG";

/// A value as the environment spells it.
trait EnvValue {
    fn to_env(&self) -> String;
}

impl EnvValue for String {
    fn to_env(&self) -> String {
        self.clone()
    }
}

impl EnvValue for u64 {
    fn to_env(&self) -> String {
        self.to_string()
    }
}

impl EnvValue for bool {
    fn to_env(&self) -> String {
        self.to_string()
    }
}

/// Lists are comma-separated in the environment.
impl EnvValue for Vec<String> {
    fn to_env(&self) -> String {
        self.join(",")
    }
}

/// One key the file sets: the variable it stands for and its value as the
/// environment spells it.
#[derive(Debug)]
struct Entry {
    key: &'static str,
    env: &'static str,
    value: String,
    secret: bool,
}

/// What the file does: the variables to set, and the keys the environment overrides.
#[derive(Debug)]
struct Plan {
    set: Vec<Entry>,
    overridden: Vec<&'static str>,
}

/// Declares the file's keys once: the struct serde fills, the variable each sets, and
/// whether it is a secret.
macro_rules! keys {
    ($($key:ident: $ty:ty => $env:literal $(, $secret:ident)?;)*) => {
        /// The file's content; every key optional, none unknown.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct ConfigFile {
            $(#[serde(default)] $key: Option<$ty>,)*
        }

        /// Every key of the file and the environment variable it stands for.
        #[cfg(test)]
        const KEYS: &[(&str, &str)] = &[$((stringify!($key), $env),)*];

        impl ConfigFile {
            /// Every key the file sets.
            fn entries(&self) -> Vec<Entry> {
                let mut out = Vec::new();
                $(
                    if let Some(v) = &self.$key {
                        out.push(Entry {
                            key: stringify!($key),
                            env: $env,
                            value: v.to_env(),
                            secret: keys!(@secret $($secret)?),
                        });
                    }
                )*
                out
            }
        }
    };
    (@secret secret) => { true };
    (@secret) => { false };
}

keys! {
    database_url: String => "DATABASE_URL";
    listen: String => "AIOPS_LISTEN";
    data_dir: String => "AIOPS_DATA_DIR";
    log: String => "AIOPS_LOG";
    log_json: bool => "AIOPS_LOG_JSON";
    cors_origins: Vec<String> => "AIOPS_CORS_ORIGINS";
    mutations_per_minute: u64 => "AIOPS_MUTATIONS_PER_MINUTE";
    login_attempts_per_minute: u64 => "AIOPS_LOGIN_ATTEMPTS_PER_MINUTE";
    max_connections: u64 => "AIOPS_MAX_CONNECTIONS";
    header_timeout_ms: u64 => "AIOPS_HEADER_TIMEOUT_MS";
    max_concurrent_runs: u64 => "AIOPS_MAX_CONCURRENT_RUNS";
    lease_ttl_ms: u64 => "AIOPS_LEASE_TTL_MS";
    heartbeat_ms: u64 => "AIOPS_HEARTBEAT_MS";
    poll_ms: u64 => "AIOPS_POLL_MS";
    shutdown_grace_ms: u64 => "AIOPS_SHUTDOWN_GRACE_MS";
    retention_days: u64 => "AIOPS_RETENTION_DAYS";
    prometheus_url: String => "AIOPS_PROMETHEUS_URL";
    alertmanager_url: String => "AIOPS_ALERTMANAGER_URL";
    enable_script_workflow: bool => "AIOPS_ENABLE_SCRIPT_WORKFLOW";
    // Read by the schedules' work (issue 10) once merged; harmless before.
    schedule_allow_seconds: bool => "AIOPS_SCHEDULE_ALLOW_SECONDS";
    script_record_dir: String => "AIOPS_SCRIPT_RECORD_DIR";
    llm_read_timeout_ms: u64 => "AIOPS_LLM_READ_TIMEOUT_MS";
    llm_call_timeout_ms: u64 => "AIOPS_LLM_CALL_TIMEOUT_MS";
    llm_breaker_open_ms: u64 => "AIOPS_LLM_BREAKER_OPEN_MS";
    master_key: String => "AIOPS_MASTER_KEY", secret;
    old_master_keys: Vec<String> => "AIOPS_OLD_MASTER_KEYS", secret;
    bootstrap_admin_password: String => "AIOPS_BOOTSTRAP_ADMIN_PASSWORD", secret;
    metrics_token: String => "AIOPS_METRICS_TOKEN", secret;
}

/// What reading the file did, to be logged once logging is set up.
#[derive(Debug, Default)]
pub struct Loaded {
    pub path: Option<PathBuf>,
    /// Keys whose value the file provided (the environment did not set them).
    pub applied: Vec<&'static str>,
    /// Keys the environment overrode.
    pub overridden: Vec<&'static str>,
    pub warnings: Vec<String>,
}

impl Loaded {
    pub fn log(&self) {
        if let Some(path) = &self.path {
            tracing::debug!(
                path = %path.display(),
                applied = ?self.applied,
                overridden_by_environment = ?self.overridden,
                "configuration file read"
            );
        }
        for warning in &self.warnings {
            tracing::warn!("{warning}");
        }
    }
}

/// The file named by `--config` in `args` (the process's arguments, program name
/// first), else by `AIOPS_CONFIG`.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        if arg == "--" {
            break;
        }
        if arg == "--config" {
            return rest.next().map(PathBuf::from);
        }
        if let Some(value) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return Some(PathBuf::from(value));
        }
    }
    std::env::var_os(CONFIG_ENV).map(PathBuf::from)
}

/// The variables the file sets: the entries of `text` whose variable `is_set` says
/// the environment does not have, and the keys the environment overrides. `name`
/// names the file in errors.
fn plan(text: &str, name: &str, is_set: impl Fn(&str) -> bool) -> anyhow::Result<Plan> {
    let deserializer = toml::Deserializer::parse(text)
        .map_err(|e| anyhow::anyhow!("{name}: not valid TOML: {e}"))?;
    let file: ConfigFile = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.message();
        match message.strip_prefix("unknown field") {
            // serde's message names the key and lists the known ones.
            Some(rest) => anyhow::anyhow!("{name}: unknown key{rest}"),
            None => anyhow::anyhow!("{name}: key `{key}`: {message}"),
        }
    })?;
    let (overridden, set): (Vec<Entry>, Vec<Entry>) =
        file.entries().into_iter().partition(|e| is_set(e.env));
    Ok(Plan {
        set,
        overridden: overridden.into_iter().map(|e| e.key).collect(),
    })
}

/// Reads the configuration file named in `args` or by `AIOPS_CONFIG`, if any, and
/// sets the variables it provides that the environment does not.
///
/// Must be called before any other thread exists (see the module's comment).
pub fn apply(args: &[OsString]) -> anyhow::Result<Loaded> {
    let Some(path) = config_path(args) else {
        return Ok(Loaded::default());
    };
    let name = path.display().to_string();
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the config file {name}"))?;
    let plan = plan(&text, &name, |env| std::env::var_os(env).is_some())?;
    let mut loaded = Loaded {
        path: Some(path.clone()),
        overridden: plan.overridden,
        ..Loaded::default()
    };
    let secrets: Vec<&str> = plan
        .set
        .iter()
        .filter(|e| e.secret)
        .map(|e| e.key)
        .collect();
    if !secrets.is_empty() && readable_by_others(&path) {
        loaded.warnings.push(format!(
            "the config file {name} holds secrets ({}) and other users may read it: \
             chmod 600 it, or better, pass secrets in the environment",
            secrets.join(", ")
        ));
    }
    for entry in plan.set {
        // SAFETY: `main` calls this before it builds the runtime or spawns anything,
        // so no other thread can be reading or writing the environment.
        unsafe { std::env::set_var(entry.env, entry.value) };
        loaded.applied.push(entry.key);
    }
    Ok(loaded)
}

#[cfg(unix)]
fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
}

#[cfg(not(unix))]
fn readable_by_others(_path: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(text: &str, set: &[&str]) -> anyhow::Result<Vec<(String, String)>> {
        let plan = plan(text, "aiops.toml", |env| set.contains(&env))?;
        Ok(plan
            .set
            .into_iter()
            .map(|e| (e.env.to_owned(), e.value))
            .collect())
    }

    #[test]
    fn keys_become_variables_and_the_environment_wins() {
        let text = r#"
            database_url = "postgres://db/aiops"
            listen = "0.0.0.0:9000"
            lease_ttl_ms = 20000
            log_json = true
            cors_origins = ["https://a.example", "https://b.example"]
        "#;
        let set = vars(text, &["AIOPS_LISTEN"]).expect("valid file");
        assert_eq!(
            set,
            [
                ("DATABASE_URL", "postgres://db/aiops"),
                ("AIOPS_LOG_JSON", "true"),
                ("AIOPS_CORS_ORIGINS", "https://a.example,https://b.example"),
                ("AIOPS_LEASE_TTL_MS", "20000"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        let plan = plan(text, "aiops.toml", |env| env == "AIOPS_LISTEN").expect("ok");
        assert_eq!(plan.overridden, ["listen"]);
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_it_and_the_file() {
        let err = vars("listen = \"x\"\nlisten_adress = \"y\"\n", &[])
            .expect_err("unknown key")
            .to_string();
        assert!(
            err.contains("aiops.toml") && err.contains("listen_adress"),
            "{err}"
        );
        // A table is a key too: the file is flat.
        let err = vars("[api]\nlisten = \"x\"\n", &[])
            .expect_err("unknown table")
            .to_string();
        assert!(err.contains("`api`"), "{err}");
    }

    #[test]
    fn a_type_error_names_the_key() {
        let err = vars("lease_ttl_ms = \"thirty seconds\"\n", &[])
            .expect_err("type error")
            .to_string();
        assert!(
            err.contains("aiops.toml") && err.contains("key `lease_ttl_ms`"),
            "{err}"
        );
        let err = vars("log_json = \"yes\"\n", &[])
            .expect_err("type error")
            .to_string();
        assert!(err.contains("key `log_json`"), "{err}");
        let err = vars("listen = \n", &[])
            .expect_err("syntax error")
            .to_string();
        assert!(err.contains("not valid TOML"), "{err}");
    }

    #[test]
    fn every_clap_variable_has_a_key() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        for file in std::fs::read_dir(dir).expect("src") {
            let path = file.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("source");
            for part in text.split("env = \"").skip(1) {
                let var = &part[..part.find('"').expect("closing quote")];
                assert!(
                    var == CONFIG_ENV || KEYS.iter().any(|(_, env)| *env == var),
                    "{var} ({}) has no key in the config file",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn the_path_comes_from_the_flag() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            config_path(&args(&["aiops", "--config", "a.toml", "serve"])),
            Some(PathBuf::from("a.toml"))
        );
        assert_eq!(
            config_path(&args(&["aiops", "serve", "--config=b.toml"])),
            Some(PathBuf::from("b.toml"))
        );
    }
}
