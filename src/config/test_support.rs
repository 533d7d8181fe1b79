//! What the config's unit tests share: loading a `.env` text from a fresh directory, and
//! taking an error apart.

use std::collections::BTreeMap;

use super::{Config, ConfigError};

/// `load` with `.env` text and `UNDERSTUDY_*` variables, in a fresh temp dir.
pub(super) fn load(env_text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    load_with(env_text, vars, &[])
}

/// `load`, with `files` (name, text) written in the base dir beside `.env`.
pub(super) fn load_with(
    env_text: &str,
    vars: &[(&str, &str)],
    files: &[(&str, &str)],
) -> Result<Config, ConfigError> {
    let dir = std::env::temp_dir().join(format!(
        "understudy-config-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(".env"), env_text).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let env: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let r = Config::load(&dir, &env, &[]);
    std::fs::remove_dir_all(&dir).unwrap();
    r
}

/// A different number on each call, for unique directory names.
fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// `load` with `.env` text and CLI overrides, in a fresh temp dir.
pub(super) fn load_set(env_text: &str, set: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), env_text).unwrap();
    let set: Vec<(String, String)> = set
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::load(dir.path(), &BTreeMap::new(), &set)
}

/// The key, value and expectation of a `ConfigError::Invalid`; anything else panics.
pub(super) fn invalid_key(r: Result<Config, ConfigError>) -> (String, String, String) {
    match r {
        Err(ConfigError::Invalid {
            key,
            value,
            expected,
        }) => (key, value, expected),
        other => panic!("expected ConfigError::Invalid, got {other:?}"),
    }
}
