//! The core loop: builds dropped into the base dir become running and testing instances; the
//! proxy serves running and mirrors to testing; symlinks and folders follow.

use std::io::Write;
use std::time::Duration;

use crate::support::*;

#[test]
fn drop_v1_serves_drop_v2_is_mirrored_gets_only() {
    let base = Base::new("core-loop");
    base.write_env("");
    let mut u = Understudy::start(&base);

    // v1 arrives by cp (written in place).
    base.copy_fixture("1.0.0", "");
    let body = wait_until("v1 to serve", Duration::from_secs(10), || {
        match u.get("/hello") {
            (200, b) => Some(b),
            _ => None,
        }
    });
    assert!(body.contains("hello from 1.0.0"), "{body}");
    assert!(base.path.join("app-1.0.0/1/stdout").is_file());
    assert!(base.path.join("app-1.0.0/1/logs/json").is_dir());
    // The symlink follows the route by a moment (route first, then the link).
    let link = wait_until("the running symlink", Duration::from_secs(10), || {
        base.link("running")
    });
    assert_eq!(link, std::path::PathBuf::from("app-1.0.0/1"));

    // v2 arrives by an atomic mv.
    base.drop_fixture("1.1.0", "");
    wait_until("testing to be ready", Duration::from_secs(10), || {
        base.fixture_stats("testing")
    });
    let (_, testing_pid) = base.wait_instance_info("testing");
    let (_, running_pid) = base.wait_instance_info("running");
    assert!(
        pid_alive(testing_pid) && pid_alive(running_pid),
        "symlinks point at live instances"
    );

    let stdout = base.path.join("running/stdout");
    let before = std::fs::metadata(&stdout).unwrap().len();
    for i in 0..20 {
        let (status, body) = u.get(&format!("/items/{i}"));
        assert_eq!(status, 200);
        assert!(
            body.contains("hello from 1.0.0"),
            "users get running's answer: {body}"
        );
    }
    for _ in 0..5 {
        let (status, body) = http(u.addr, "POST", "/items").unwrap();
        assert_eq!(status, 200);
        assert!(body.contains("1.0.0 POST"), "{body}");
    }
    // A last GET is a barrier: once it is mirrored, every earlier copy has been sent.
    u.get("/barrier");
    let stats = wait_until(
        "21 mirrored GETs at testing",
        Duration::from_secs(10),
        || {
            base.fixture_stats("testing")
                .filter(|s| s["mirrored"] == 21)
        },
    );
    assert_eq!(
        stats["requests"], 21,
        "POSTs are not mirrored by default: {stats}"
    );
    assert_eq!(stats["version"], "1.1.0");
    let after = std::fs::metadata(&stdout).unwrap().len();
    assert!(after > before, "running/stdout grows ({before} → {after})");
    let json_log = std::fs::read_to_string(base.path.join("testing/logs/json/app.log")).unwrap();
    assert!(
        json_log.contains("\"mirror\":true"),
        "mirrored copies carry X-Understudy-Mirror"
    );

    u.stop();
}

#[test]
fn hung_testing_does_not_hold_users_up() {
    let base = Base::new("hung-testing");
    base.write_env("MIRROR_TIMEOUT=60s\nMIRROR_CONCURRENCY=4\nMIRROR_QUEUE=8");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    // A testing instance that answers after 30 s: every copy to it hangs.
    base.drop_fixture("1.1.0", "--slow-ms 30000");
    base.wait_testing();
    // Far more requests than the mirror's slots and queue hold; none may wait for testing.
    // (How much a hung testing costs users in latency is measured in benches/proxy.sh.)
    for i in 0..200 {
        let started = std::time::Instant::now();
        let (status, body) = u.get(&format!("/a/{i}"));
        assert!(status == 200 && body.contains("1.0.0"), "{status} {body}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "request {i} took {:?}: it waited for the hung testing",
            started.elapsed()
        );
    }
    let stats = base.fixture_stats("testing").unwrap();
    assert!(
        stats["requests"].as_u64().unwrap() > 0,
        "testing did receive copies: {stats}"
    );
    u.stop();
}

#[test]
fn half_written_build_waits_until_complete() {
    let base = Base::new("half-written");
    base.write_env("");
    let mut u = Understudy::start(&base);
    let script = Base::fixture_script("1.0.0", "");
    let (first, rest) = script.split_at(script.len() / 2);
    let path = base.path.join("app-1.0.0");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(first.as_bytes()).unwrap();
    f.flush().unwrap();
    // Held open for 2 s, well past SETTLE_TIME: it must not be picked up.
    let until = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < until {
        assert!(path.is_file(), "the half-written build stays where it is");
        assert!(!base.path.join("app-1.0.0").is_dir());
        assert_eq!(u.get("/").0, 503);
        std::thread::sleep(Duration::from_millis(100));
    }
    f.write_all(rest.as_bytes()).unwrap();
    drop(f);
    let body = wait_until(
        "the completed build to serve",
        Duration::from_secs(10),
        || match u.get("/") {
            (200, b) => Some(b),
            _ => None,
        },
    );
    assert!(body.contains("1.0.0"));
    u.stop();
}

#[test]
fn zip_bundle_is_unpacked_and_started() {
    let base = Base::new("zip-bundle");
    base.write_env("");
    let mut u = Understudy::start(&base);
    let tmp = base.path.join(".bundle.tmp");
    {
        let mut z = zip::ZipWriter::new(std::fs::File::create(&tmp).unwrap());
        let opts = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
        z.start_file("app", opts).unwrap();
        z.write_all(Base::fixture_script("2.0.0", "").as_bytes())
            .unwrap();
        z.start_file("README.txt", opts).unwrap();
        z.write_all(b"docs").unwrap();
        z.finish().unwrap();
    }
    std::fs::rename(&tmp, base.path.join("app-2.0.0.zip")).unwrap();
    let body = wait_until("the bundle to serve", Duration::from_secs(10), || {
        match u.get("/") {
            (200, b) => Some(b),
            _ => None,
        }
    });
    assert!(body.contains("2.0.0"), "{body}");
    assert!(
        base.path.join("app-2.0.0/app-2.0.0.zip").is_file(),
        "the bundle itself is kept"
    );
    u.stop();
}

#[test]
fn jar_builds_run_with_properties_or_system_property() {
    if std::process::Command::new("javac")
        .arg("-version")
        .output()
        .is_err()
    {
        panic!(
            "javac is needed for the jar test (Java 17 is on every machine this project targets)"
        );
    }
    let work = Base::new("java-build");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/java/Hello.java");
    let classes = work.path.join("classes");
    let ok = std::process::Command::new("javac")
        .arg("-d")
        .arg(&classes)
        .arg(&src)
        .status()
        .unwrap();
    assert!(ok.success(), "javac failed");
    let jar = work.path.join("hello.jar");
    let ok = std::process::Command::new("jar")
        .arg("cfe")
        .arg(&jar)
        .arg("Hello")
        .arg("-C")
        .arg(&classes)
        .arg(".")
        .status()
        .unwrap();
    assert!(ok.success(), "jar failed");

    // Without a properties file the port arrives as -Dserver.port, as Vili does it.
    let base = Base::new("jar-sysprop");
    base.write_env("READY_TIMEOUT=30s");
    let mut u = Understudy::start(&base);
    std::fs::copy(&jar, base.path.join(".app.tmp")).unwrap();
    std::fs::rename(base.path.join(".app.tmp"), base.path.join("app-1.0.0.jar")).unwrap();
    let body = wait_until("the jar to serve", Duration::from_secs(30), || {
        match u.get("/x") {
            (200, b) => Some(b),
            _ => None,
        }
    });
    assert!(
        body.contains("hello from java, port from system-property"),
        "{body}"
    );
    u.stop();

    // With one, the instance gets a copy with the port key rewritten.
    let base = Base::new("jar-properties");
    base.write_env(
        "READY_TIMEOUT=30s\nPROPERTIES_FILE_NAME=application.properties\nPORT_KEY=server.port",
    );
    std::fs::write(
        base.path.join("application.properties"),
        "greeting=hi\nserver.port=1\n",
    )
    .unwrap();
    let mut u = Understudy::start(&base);
    std::fs::copy(&jar, base.path.join("app-1.0.0.jar")).unwrap();
    let body = wait_until("the jar to serve", Duration::from_secs(30), || {
        match u.get("/x") {
            (200, b) => Some(b),
            _ => None,
        }
    });
    assert!(body.contains("port from properties"), "{body}");
    let (port, _) = base.wait_instance_info("running");
    let props = std::fs::read_to_string(base.path.join("running/application.properties")).unwrap();
    assert!(
        props.contains(&format!("server.port={port}")) && props.contains("greeting=hi"),
        "{props}"
    );
    u.stop();
}

#[test]
fn large_answers_stream_through_unchanged() {
    let (_base, mut u) = start_with_testing("large-body", "");
    let n = 20 * 1024 * 1024;
    let (status, body) = u.get(&format!("/__fixture/bytes/{n}"));
    assert_eq!(status, 200);
    assert_eq!(body.len(), n);
    assert!(
        body.bytes()
            .enumerate()
            .all(|(i, b)| b == b'a' + (i % 26) as u8),
        "body unchanged"
    );
    u.stop();
}

#[test]
fn a_build_serves_within_five_seconds_and_other_names_are_logged_once() {
    let base = Base::new("timely");
    base.write_env("SETTLE_TIME=500ms"); // the default
    let mut u = Understudy::start(&base);
    std::fs::write(base.path.join("notes.txt"), "not a build").unwrap();
    std::fs::write(base.path.join("app-1.0.jar"), "not semver").unwrap();
    let dropped = std::time::Instant::now();
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    let took = dropped.elapsed();
    // SETTLE_TIME (500 ms) and a fixture's start take well under 2 s on an idle machine; 5 s
    // leaves a loaded one room, and still fails a build found only on a slow rescan or held.
    assert!(
        took < Duration::from_secs(5),
        "served {took:?} after the drop"
    );
    // Many rescans later, each stray name was logged exactly once.
    let later = took + Duration::from_secs(2);
    wait_until("a few more rescans", Duration::from_secs(5), || {
        (dropped.elapsed() > later).then_some(())
    });
    let log = u.log_text();
    let ignoring: Vec<&str> = log.lines().filter(|l| l.contains("ignoring")).collect();
    assert_eq!(ignoring.len(), 2, "one line per stray name: {ignoring:?}");
    assert!(
        ignoring
            .iter()
            .any(|l| l.contains("notes.txt") && l.contains("is not named app-<version>")),
        "{ignoring:?}"
    );
    assert!(
        ignoring
            .iter()
            .any(|l| l.contains("\"1.0\" is not a semantic version")),
        "{ignoring:?}"
    );
    u.stop();
}

#[test]
fn opted_in_posts_are_mirrored_up_to_the_body_limit() {
    let (base, mut u) = start_with_testing(
        "mirror-posts",
        "MIRROR_METHODS=GET,POST\nMIRROR_MAX_BODY=16",
    );
    let (status, body) = http_with_body(u.addr, "POST", "/orders", "small=1").unwrap();
    assert!(status == 200 && body.contains("1.0.0 POST"), "{body}");
    let big = "x".repeat(100);
    let (status, body) = http_with_body(u.addr, "POST", "/orders", &big).unwrap();
    assert!(
        status == 200 && body.contains("1.0.0 POST"),
        "a large body still reaches running: {body}"
    );
    u.get("/barrier");
    let stats = wait_until(
        "the small POST and the GET mirrored",
        Duration::from_secs(10),
        || base.fixture_stats("testing").filter(|s| s["mirrored"] == 2),
    );
    assert_eq!(
        stats["requests"], 2,
        "the POST over MIRROR_MAX_BODY was not copied: {stats}"
    );
    u.stop();
}

/// Java's `HttpClient` (and `curl --http2`) offers an upgrade to h2c on every plain request:
/// `Connection: Upgrade, HTTP2-Settings` and `Upgrade: h2c`. Taken as a protocol upgrade, such
/// requests went to running only and were never mirrored, so a service called by JVM clients got
/// no pairs. They are ordinary requests: answered, mirrored, and the offer goes no further.
#[test]
fn requests_offering_h2c_are_mirrored_as_ordinary_requests() {
    let (base, mut u) = start_with_testing("mirror-h2c", "");
    let offer = [
        ("Connection", "Upgrade, HTTP2-Settings"),
        ("HTTP2-Settings", "AAEAAEAAAAIAAAABAAMAAABkAAQBAAAAAAUAAEAA"),
        ("Upgrade", "h2c"),
        ("User-Agent", "Java-http-client/17.0.9"),
    ];
    for i in 0..10 {
        let (status, body) =
            http_request(u.addr, "GET", &format!("/items/{i}"), &offer, "").unwrap();
        assert!(
            status == 200 && body.contains("hello from 1.0.0"),
            "{status} {body}"
        );
    }
    let stats = wait_for("10 copies at testing", Duration::from_secs(10), || {
        let s = base.fixture_stats("testing").ok_or("no stats yet")?;
        (s["mirrored"] == 10)
            .then_some(s.clone())
            .ok_or(s.to_string())
    });
    assert_eq!(stats["requests"], 10, "{stats}");
    u.stop();
}
