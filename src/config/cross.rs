//! Checks that look past one key's value: two keys that must not agree (LISTEN and ADMIN_LISTEN)
//! and a key that names a file which must be there (PROPERTIES_FILE_NAME). Run at start and at
//! each reload, so a refused value stops understudy at start and keeps the old config at a reload.

use std::net::SocketAddr;
use std::path::Path;

use super::parse::invalid;
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
}
