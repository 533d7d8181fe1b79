//! Configuration as a user meets it: a Vili `.env` works; a bad value names its key and value.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

#[test]
fn vili_env_is_accepted_unchanged() {
    let base = Base::new("vili-env");
    std::fs::write(
        base.path.join(".env"),
        format!(
            "port={}\nscheme=http\nendpoint=localhost\nport_range={}-{}\nidentifier=app\nlog_dir=\nproperties_file_name=\nport_identifier=server.port\n",
            base.listen.port(),
            base.port_range.0,
            base.port_range.1
        ),
    )
    .unwrap();
    // A Vili port means all interfaces; reach it on loopback.
    let mut u = Understudy::start(&base);
    u.addr = std::net::SocketAddr::from(([127, 0, 0, 1], base.listen.port()));
    let (status, body) = u.get("/");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("app-<version>"),
        "503 says what to do: {body}"
    );
    u.stop();
}

#[test]
fn bad_values_fail_at_start_naming_key_and_value() {
    let cases = [
        ("PORT_RANGE", "20000"),
        ("LISTEN", "not-an-address"),
        ("READY_TIMEOUT", "5 minutes"),
        ("MIRROR_METHODS", "GET,B@D"),
        ("MAX_5XX_DELTA", "2"),
        ("scheme", "https"),
        ("MIRROR_MAX_BODY", "lots"),
    ];
    for (key, value) in cases {
        let base = Base::new("bad-env");
        base.write_env(&format!("{key}={value}"));
        let out = Command::new(BIN)
            .args(["run", "--base"])
            .arg(&base.path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(64),
            "{key}={value} should fail: {err}"
        );
        assert!(
            err.contains(&key.to_ascii_uppercase()) && err.contains(value),
            "{key}={value}: {err}"
        );
        assert!(err.contains("expected"), "says what is expected: {err}");
    }
    // A missing identifier is named too.
    let base = Base::new("no-identifier");
    std::fs::write(base.path.join(".env"), "LISTEN=127.0.0.1:0\n").unwrap();
    let out = Command::new(BIN)
        .args(["run", "--base"])
        .arg(&base.path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("IDENTIFIER"));
}

#[test]
fn env_and_cli_override_the_file() {
    let base = Base::new("override");
    base.write_env("");
    let addr = free_addr();
    let mut child = Command::new(BIN)
        .args(["run", "--base"])
        .arg(&base.path)
        .env("UNDERSTUDY_LISTEN", "127.0.0.1:1")
        .args(["--listen", &addr.to_string()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        "understudy on the CLI address",
        Duration::from_secs(10),
        || http(addr, "GET", "/").ok(),
    );
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    assert!(child.wait().unwrap().success());
}
