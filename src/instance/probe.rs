//! Whether a child answers: readiness while it starts (the port accepts, the ready path answers
//! a whole 2xx) and heartbeats once ready, telling a child that stopped answering from
//! understudy's own shortage of descriptors or memory.

use std::io;
use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// How often readiness is probed while an instance starts.
const READY_POLL: Duration = Duration::from_millis(50);
/// The longest one readiness attempt may take, so a hung attempt cannot eat the whole timeout.
const PROBE_ATTEMPT: Duration = Duration::from_secs(2);
/// How much of a ready path's body is read: enough to prove a whole answer, bounded for safety.
const PROBE_BODY_MAX: usize = 64 * 1024;

/// How readiness is probed: the port accepts connections, and `path` (if any) answers 2xx.
#[derive(Debug, Clone)]
pub struct ProbeSpec {
    /// Where the child listens: IPv4, IPv6 without brackets, or a host name.
    pub host: String,
    /// Path that must answer 2xx; `None` means accepting a connection is enough.
    pub path: Option<String>,
    /// How long the child may take to become ready.
    pub timeout: Duration,
    /// Path a ready child must answer 2xx on each heartbeat; `None` means the port accepting.
    pub health_path: Option<String>,
    /// Time between heartbeats once ready; zero means none.
    pub heartbeat_every: Duration,
    /// Misses in a row reported as [`Unresponsive`](super::InstanceEventKind::Unresponsive).
    pub heartbeat_misses: u32,
}

/// Why one readiness attempt failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ProbeError {
    /// Nothing accepts connections on the port yet.
    #[error("connecting to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    /// The attempt (connect, or request and answer) took too long.
    #[error("{what} on {addr} took longer than {limit:?}")]
    Timeout {
        what: String,
        addr: String,
        limit: Duration,
    },
    /// The ready path's URI cannot be formed from the host and path.
    #[error("http://{addr}{path} is not a valid URI for the ready check: {source}")]
    Uri {
        addr: String,
        path: String,
        source: http::uri::InvalidUri,
    },
    /// The request failed before a whole response head arrived.
    #[error("GET {path} on {addr} failed: {}", chain(source))]
    Request {
        path: String,
        addr: String,
        source: hyper_util::client::legacy::Error,
    },
    /// The response body broke off.
    #[error("GET {path} on {addr}: reading the answer failed: {source}")]
    Body {
        path: String,
        addr: String,
        source: hyper::Error,
    },
    /// A whole response arrived, but not 2xx.
    #[error("{path} answered {status} on {addr}")]
    Status {
        path: String,
        addr: String,
        status: http::StatusCode,
    },
    /// understudy itself ran out of descriptors or memory: the probe was never made, which says
    /// nothing about the child.
    #[error("could not probe {addr}: understudy is out of {what}; raise `ulimit -n` (LimitNOFILE=) or lower MAX_CONNECTIONS / MAX_ADMIN_CONNECTIONS")]
    Unmade { addr: String, what: &'static str },
}

impl ProbeError {
    /// `Connect`, unless the failure was understudy's own resources.
    fn connect(addr: &str, source: io::Error) -> ProbeError {
        match own_shortage(&source) {
            Some(what) => ProbeError::Unmade {
                addr: addr.to_string(),
                what,
            },
            None => ProbeError::Connect {
                addr: addr.to_string(),
                source,
            },
        }
    }
}

/// Which of understudy's own resources an error (or one of its causes) says ran out: a socket
/// that could not be made is not a child that stopped answering.
fn own_shortage(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        let io = err.downcast_ref::<io::Error>();
        // A wrapping io::Error's `source()` skips what it wraps: look inside it too.
        let inner = io.and_then(io::Error::get_ref);
        let inner = inner.and_then(|i| i.downcast_ref::<io::Error>());
        let code = io.and_then(io::Error::raw_os_error);
        if let Some(code) = code.or_else(|| inner.and_then(io::Error::raw_os_error)) {
            match code {
                libc::EMFILE | libc::ENFILE => return Some("file descriptors"),
                libc::ENOBUFS | libc::ENOMEM => return Some("memory"),
                _ => {}
            }
        }
        cur = err.source();
    }
    None
}

/// The instance never became ready; says what the last attempt got.
#[derive(Debug, thiserror::Error)]
#[error(
    "not ready on {addr} within {timeout:?} (last attempt: {last}); if it only needs longer to \
     start, raise READY_TIMEOUT"
)]
pub(super) struct NotReady {
    addr: String,
    timeout: Duration,
    last: ProbeError,
}

/// An error and its sources, on one line (hyper's errors say little at the top level).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The readiness check of one instance.
pub(super) struct Probe {
    host: String,
    port: u16,
    /// `host:port`, with brackets around an IPv6 address.
    addr: String,
    path: Option<String>,
    timeout: Duration,
    health_path: Option<String>,
    /// Time between heartbeats once ready; zero means none.
    pub(super) heartbeat_every: Duration,
    /// Misses in a row reported as unresponsive (at least 1).
    pub(super) heartbeat_misses: u32,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Probe {
    /// The check of the child on `port`, as `spec` says.
    pub(super) fn new(spec: ProbeSpec, port: u16) -> Probe {
        let addr = match spec.host.parse::<Ipv6Addr>() {
            Ok(v6) => SocketAddr::from((v6, port)).to_string(),
            Err(_) => format!("{}:{port}", spec.host),
        };
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(PROBE_ATTEMPT));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        Probe {
            host: spec.host,
            port,
            addr,
            path: spec.path.map(|p| {
                if p.starts_with('/') {
                    p
                } else {
                    format!("/{p}")
                }
            }),
            timeout: spec.timeout,
            health_path: spec.health_path.map(|p| {
                if p.starts_with('/') {
                    p
                } else {
                    format!("/{p}")
                }
            }),
            heartbeat_every: spec.heartbeat_every,
            heartbeat_misses: spec.heartbeat_misses.max(1),
            client,
        }
    }

    /// One heartbeat, bounded by the period: `HEALTH_PATH` answers 2xx, or the port accepts.
    pub(super) async fn beat(&self) -> Result<(), ProbeError> {
        let limit = self.heartbeat_every.clamp(READY_POLL, PROBE_ATTEMPT);
        match &self.health_path {
            Some(path) => tokio::time::timeout(limit, self.get(path))
                .await
                .map_err(|_| ProbeError::Timeout {
                    what: format!("GET {path}"),
                    addr: self.addr.clone(),
                    limit,
                })?,
            None => {
                tokio::time::timeout(
                    limit,
                    tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
                )
                .await
                .map_err(|_| ProbeError::Timeout {
                    what: "connecting".to_string(),
                    addr: self.addr.clone(),
                    limit,
                })?
                .map_err(|source| ProbeError::connect(&self.addr, source))?;
                Ok(())
            }
        }
    }

    /// [`Probe::wait_ready_until`] the end of a whole READY_TIMEOUT from now.
    #[cfg(test)]
    pub(super) async fn wait_ready(&self) -> Result<(), NotReady> {
        self.wait_ready_until(tokio::time::Instant::now() + self.timeout)
            .await
    }

    /// How long a child may take to become ready (READY_TIMEOUT).
    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Poll until an attempt succeeds or `deadline` (the end of the child's READY_TIMEOUT)
    /// passes; at least one attempt is made.
    pub(super) async fn wait_ready_until(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<(), NotReady> {
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let limit = PROBE_ATTEMPT.min(left).max(READY_POLL);
            let last = match self.check(limit).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(NotReady {
                    addr: self.addr.clone(),
                    timeout: self.timeout,
                    last,
                });
            }
            tokio::time::sleep(READY_POLL.min(deadline - now)).await;
        }
    }

    /// One attempt, bounded by `limit`.
    async fn check(&self, limit: Duration) -> Result<(), ProbeError> {
        let timeout = |what: &str| ProbeError::Timeout {
            what: what.to_string(),
            addr: self.addr.clone(),
            limit,
        };
        let Some(path) = &self.path else {
            tokio::time::timeout(
                limit,
                tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
            )
            .await
            .map_err(|_| timeout("connecting"))?
            .map_err(|source| ProbeError::connect(&self.addr, source))?;
            return Ok(());
        };
        tokio::time::timeout(limit, self.get(path))
            .await
            .map_err(|_| timeout(&format!("GET {path}")))?
    }

    /// GET the ready path and read the whole answer (the body up to a bound): 2xx is ready.
    async fn get(&self, path: &str) -> Result<(), ProbeError> {
        let uri: http::Uri = format!("http://{}{path}", self.addr)
            .parse()
            .map_err(|source| ProbeError::Uri {
                addr: self.addr.clone(),
                path: path.to_string(),
                source,
            })?;
        let resp = self
            .client
            .get(uri)
            .await
            .map_err(|source| match source.is_connect() {
                _ if own_shortage(&source).is_some() => ProbeError::Unmade {
                    addr: self.addr.clone(),
                    what: own_shortage(&source).unwrap_or("resources"),
                },
                true => ProbeError::Connect {
                    addr: self.addr.clone(),
                    source: io::Error::new(io::ErrorKind::ConnectionRefused, chain(&source)),
                },
                false => ProbeError::Request {
                    path: path.to_string(),
                    addr: self.addr.clone(),
                    source,
                },
            })?;
        let status = resp.status();
        let mut body = resp.into_body();
        let mut read = 0;
        while read < PROBE_BODY_MAX {
            match body.frame().await {
                None => break,
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
                Some(Err(source)) => {
                    return Err(ProbeError::Body {
                        path: path.to_string(),
                        addr: self.addr.clone(),
                        source,
                    })
                }
            }
        }
        if status.is_success() {
            Ok(())
        } else {
            Err(ProbeError::Status {
                path: path.to_string(),
                addr: self.addr.clone(),
                status,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;
    use crate::instance::test_support::free_port;

    /// Answer every connection on `listener` with `status`, as a whole HTTP/1.1 response.
    fn canned_server(listener: TcpListener, status: &'static str) {
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
            }
        });
    }

    #[test]
    fn a_probe_understudy_could_not_make_is_not_the_childs_fault() {
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        assert!(matches!(
            ProbeError::connect("127.0.0.1:1", emfile),
            ProbeError::Unmade {
                what: "file descriptors",
                ..
            }
        ));
        let wrapped = io::Error::other(io::Error::from_raw_os_error(libc::ENFILE));
        assert_eq!(own_shortage(&wrapped), Some("file descriptors"));
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert!(matches!(
            ProbeError::connect("127.0.0.1:1", refused),
            ProbeError::Connect { .. }
        ));
    }

    fn probe(host: &str, port: u16, path: Option<&str>) -> Probe {
        Probe::new(
            ProbeSpec {
                host: host.into(),
                path: path.map(String::from),
                // Long enough for a loaded machine to answer a local GET.
                timeout: Duration::from_secs(1),
                health_path: None,
                heartbeat_every: Duration::ZERO,
                heartbeat_misses: 3,
            },
            port,
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readiness_needs_a_whole_2xx_answer_on_the_path() {
        let ok = TcpListener::bind("127.0.0.1:0").unwrap();
        let okp = ok.local_addr().unwrap().port();
        canned_server(ok, "200 OK");
        let nf = TcpListener::bind("127.0.0.1:0").unwrap();
        let nfp = nf.local_addr().unwrap().port();
        canned_server(nf, "404 Not Found");

        probe("127.0.0.1", okp, Some("/health"))
            .wait_ready()
            .await
            .unwrap();
        probe("localhost", okp, Some("health"))
            .wait_ready()
            .await
            .unwrap();
        let e = probe("127.0.0.1", nfp, Some("/health"))
            .wait_ready()
            .await
            .unwrap_err();
        assert!(e.to_string().contains("/health answered 404"), "{e}");
        probe("127.0.0.1", nfp, None).wait_ready().await.unwrap();

        let closed = free_port();
        let e = probe("127.0.0.1", closed, None)
            .wait_ready()
            .await
            .unwrap_err();
        assert!(matches!(e.last, ProbeError::Connect { .. }), "{e}");
        assert!(
            e.to_string().contains(&format!("127.0.0.1:{closed}"))
                && e.to_string().contains("raise READY_TIMEOUT"),
            "{e}"
        );
        let e = probe("127.0.0.1", closed, Some("/health"))
            .wait_ready()
            .await
            .unwrap_err();
        assert!(matches!(e.last, ProbeError::Connect { .. }), "{e}");

        if let Ok(v6) = TcpListener::bind("[::1]:0") {
            let p = v6.local_addr().unwrap().port();
            canned_server(v6, "204 No Content");
            probe("::1", p, Some("/health")).wait_ready().await.unwrap();
            probe("::1", p, None).wait_ready().await.unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_half_answer_is_not_ready() {
        // Accepts and sends a status line but never finishes the head.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for mut s in l.incoming().flatten() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\n");
                held.push(s);
            }
        });
        let e = probe("127.0.0.1", p, Some("/"))
            .wait_ready()
            .await
            .unwrap_err();
        assert!(matches!(e.last, ProbeError::Timeout { .. }), "{e}");
    }
}
