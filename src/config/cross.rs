//! Checks that look past one key's value: two keys that must not agree (LISTEN and ADMIN_LISTEN)
//! and keys that name a file which must be there (PROPERTIES_FILE_NAME, the program of
//! JAR_COMMAND and EXEC_COMMAND). Run at start and at each reload, so a refused value stops
//! understudy at start and keeps the old config at a reload.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::parse::{command_shown, invalid};
use super::{Config, ConfigError};

/// Refuse an ADMIN_LISTEN that is LISTEN's address (or overlaps it, as 0.0.0.0 does every IPv4
/// address): the second bind would fail with a bare "Address already in use".
pub(super) fn listen_apart(cfg: &Config) -> Result<(), ConfigError> {
    let Some(admin) = cfg.admin_listen else {
        return Ok(());
    };
    if !clash(cfg.listen, admin) {
        return Ok(());
    }
    Err(invalid(
        "ADMIN_LISTEN",
        &admin.to_string(),
        &format!(
            "an address other than LISTEN's ({}): users and the admin API cannot share a port; \
             give ADMIN_LISTEN another port (such as 127.0.0.1:{}) or set it off",
            cfg.listen,
            cfg.listen.port().wrapping_add(1).max(1)
        ),
    ))
}

/// Whether binding both addresses would collide: the same (non-ephemeral) port on the same IP,
/// or on a wildcard IP that covers the other (`[::]` covers IPv4 too, as Linux binds it).
fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    let covers =
        |w: SocketAddr, o: SocketAddr| w.ip().is_unspecified() && (w.is_ipv6() || o.is_ipv4());
    a.port() != 0 && a.port() == b.port() && (a.ip() == b.ip() || covers(a, b) || covers(b, a))
}

/// Refuse a PROPERTIES_FILE_NAME that names no readable file: instances would start without
/// their configuration (an app's defaults, maybe another database).
pub(super) fn properties_readable(base: &Path, cfg: &Config) -> Result<(), ConfigError> {
    let Some(name) = cfg.properties_file.as_deref() else {
        return Ok(());
    };
    let path = base.join(name);
    let why = match std::fs::File::open(&path).and_then(|f| f.metadata()) {
        Ok(m) if m.is_file() => return Ok(()),
        Ok(_) => "it is not a regular file".to_string(),
        Err(e) => e.to_string(),
    };
    Err(invalid(
        "PROPERTIES_FILE_NAME",
        name,
        &format!(
            "a readable properties file, but {} cannot be read ({why}); put the file there (a \
             name is looked up in the base dir), give its absolute path, or set \
             PROPERTIES_FILE_NAME empty to pass the port without one",
            path.display()
        ),
    ))
}

/// Refuse a JAR_COMMAND or EXEC_COMMAND (one the user set, in `set`) whose program is not there
/// or cannot be run: every build would fail to start and be rejected as if it were at fault. The
/// default `java` is not checked, so a host that only runs executables needs no Java.
pub(super) fn commands_runnable(
    set: &BTreeMap<String, String>,
    cfg: &Config,
) -> Result<(), ConfigError> {
    for (key, words) in [
        ("JAR_COMMAND", &cfg.jar_command),
        ("EXEC_COMMAND", &cfg.exec_command),
    ] {
        let (Some(value), Some(program)) = (set.get(key), words.first()) else {
            continue;
        };
        let Some(why) = not_runnable(program) else {
            continue;
        };
        return Err(invalid(
            key,
            &command_shown(value),
            &format!(
                "a command whose first word names a program that can be run, but {why}; install \
                 it, fix the name, or give its absolute path (such as /usr/bin/java)"
            ),
        ));
    }
    Ok(())
}

/// Why `program` (a command's first word) cannot be run, if it is known before a build starts: a
/// word holding a placeholder (`{artifact}`) or a relative path (taken from each instance folder)
/// is left to the start. A bare name is looked up on PATH, as the start will.
fn not_runnable(program: &str) -> Option<String> {
    if program.contains('{') || (program.contains('/') && !program.starts_with('/')) {
        return None;
    }
    if program.starts_with('/') {
        return runnable_file(Path::new(program)).err();
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let found = std::env::split_paths(&path).any(|dir| runnable_file(&dir.join(program)).is_ok());
    (!found).then(|| {
        format!(
            "{program} is in no directory of PATH ({})",
            path.to_string_lossy()
        )
    })
}

/// Whether `path` is a file some execute bit allows to run, or why not.
fn runnable_file(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(m) if m.is_file() => Err(format!("{} is not executable", path.display())),
        Ok(_) => Err(format!("{} is not a file", path.display())),
        Err(e) => Err(format!("{} cannot be run ({e})", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_clash_on_the_same_port_of_the_same_or_a_covering_ip() {
        assert!(clash(at("127.0.0.1:80"), at("127.0.0.1:80")));
        assert!(clash(at("0.0.0.0:80"), at("127.0.0.1:80")));
        assert!(clash(at("127.0.0.1:80"), at("[::]:80")));
        assert!(!clash(at("0.0.0.0:80"), at("[::1]:80")));
        assert!(!clash(at("127.0.0.1:80"), at("127.0.0.2:80")));
        assert!(!clash(at("127.0.0.1:80"), at("127.0.0.1:81")));
        assert!(!clash(at("127.0.0.1:0"), at("127.0.0.1:0")));
    }

    #[test]
    fn a_command_program_is_looked_up_on_path_or_at_its_absolute_path() {
        assert_eq!(not_runnable("sh"), None);
        assert_eq!(not_runnable("/bin/sh"), None);
        assert_eq!(not_runnable("{artifact}"), None);
        assert_eq!(not_runnable("./run"), None);
        let why = not_runnable("javaa-no-such-program").unwrap();
        assert!(
            why.contains("javaa-no-such-program is in no directory of PATH"),
            "{why}"
        );
        let why = not_runnable("/no/such/java").unwrap();
        assert!(why.contains("/no/such/java cannot be run"), "{why}");
        let file = tempfile::NamedTempFile::new().unwrap();
        let plain = file.path().to_str().unwrap();
        std::fs::set_permissions(plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(not_runnable(plain).is_some_and(|w| w.contains("not executable")));
        assert!(not_runnable("/").is_some_and(|w| w.contains("not a file")));
    }

    #[test]
    fn a_command_set_to_a_missing_program_is_refused_naming_key_and_what_to_do() {
        use crate::config::test_support::{invalid_key, load_set};
        let (key, value, expected) = invalid_key(load_set(
            "IDENTIFIER=a\n",
            &[("JAR_COMMAND", "javaa -Xmx128m -jar {artifact}")],
        ));
        assert_eq!(key, "JAR_COMMAND");
        assert!(value.starts_with("javaa"), "{value}");
        assert!(
            expected.contains("javaa is in no directory of PATH") && expected.contains("install"),
            "{expected}"
        );
        let r = load_set(
            "IDENTIFIER=a\n",
            &[("EXEC_COMMAND", "/no/such/run {artifact}")],
        );
        assert_eq!(invalid_key(r).0, "EXEC_COMMAND");
        assert!(load_set(
            "IDENTIFIER=a\n",
            &[("EXEC_COMMAND", "nice -n 5 {artifact}")]
        )
        .is_ok());
    }
}
