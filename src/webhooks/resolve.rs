//! Webhook hosts' addresses, looked up by getaddrinfo on a thread of its own per lookup, not on
//! tokio's blocking pool as hyper-util's `GaiResolver` does: a lookup that hangs (a DNS server
//! that never answers takes ~20 s) would hold one of the few blocking threads that installs,
//! archives and state writes queue for, and shutdown would wait for it. A timed-out delivery drops
//! its wait, not the lookup, so at most one lookup per host is under way: later callers wait on it.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;
use tokio::sync::watch;

/// A blocking lookup of a host's addresses (their ports are 0: the connector sets them).
pub type Lookup = Arc<dyn Fn(&str) -> io::Result<Vec<SocketAddr>> + Send + Sync>;

/// One lookup's answer, for every caller that waits on it; `None` while under way.
type Answer = Option<Result<Vec<SocketAddr>, String>>;

/// The lookups under way, by host.
type InFlight = Arc<Mutex<HashMap<Box<str>, watch::Receiver<Answer>>>>;

/// The resolver every webhook connection uses (hyper-util's `Resolve`, a `Service<Name>`).
#[derive(Clone)]
pub struct ThreadResolver {
    lookup: Lookup,
    in_flight: InFlight,
}

impl fmt::Debug for ThreadResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("ThreadResolver")
    }
}

impl Default for ThreadResolver {
    fn default() -> Self {
        ThreadResolver::with_lookup(Arc::new(getaddrinfo))
    }
}

/// The system's resolver (getaddrinfo, as `GaiResolver` calls it), blocking.
fn getaddrinfo(host: &str) -> io::Result<Vec<SocketAddr>> {
    Ok((host, 0).to_socket_addrs()?.collect())
}

/// The map of lookups under way, even if a thread panicked holding it (it only ever inserts or
/// removes whole entries).
fn locked(in_flight: &InFlight) -> MutexGuard<'_, HashMap<Box<str>, watch::Receiver<Answer>>> {
    in_flight.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ThreadResolver {
    /// A resolver that looks hosts up with `lookup`: tests stand in one that hangs.
    pub fn with_lookup(lookup: Lookup) -> ThreadResolver {
        ThreadResolver {
            lookup,
            in_flight: InFlight::default(),
        }
    }

    /// The answer-to-be of the lookup of `host` under way, or of a new one on a thread of its own;
    /// an error if no thread can be started.
    fn lookup_of(&self, host: &str) -> io::Result<watch::Receiver<Answer>> {
        let mut in_flight = locked(&self.in_flight);
        if let Some(under_way) = in_flight.get(host) {
            return Ok(under_way.clone());
        }
        let (tx, rx) = watch::channel(None);
        let (lookup, map, name) = (self.lookup.clone(), self.in_flight.clone(), Box::from(host));
        std::thread::Builder::new()
            .name("webhook-dns".to_string())
            .spawn(move || {
                let answer = catch_unwind(AssertUnwindSafe(|| lookup(&name)))
                    .unwrap_or_else(|_| Err(io::Error::other("the lookup panicked")))
                    .map_err(|e| e.to_string());
                // Out of the map first: a caller from now on starts a lookup of its own.
                locked(&map).remove(&name);
                // Every caller may have given up already; then nobody needs the answer.
                let _ = tx.send(Some(answer));
            })
            .map_err(|e| {
                io::Error::other(format!("cannot start a thread to look {host} up: {e}"))
            })?;
        // Still locked: the thread removes the entry only after this.
        in_flight.insert(Box::from(host), rx.clone());
        Ok(rx)
    }
}

impl tower_service::Service<Name> for ThreadResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Each call starts or joins a lookup on its own.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let under_way = self.lookup_of(name.as_str());
        Box::pin(async move {
            let mut rx = under_way?;
            let answer = rx
                .wait_for(Option::is_some)
                .await
                .map(|answer| answer.clone())
                .map_err(|_| io::Error::other(format!("the lookup of {name} ended unanswered")))?;
            match answer {
                Some(Ok(addrs)) => Ok(addrs.into_iter()),
                Some(Err(why)) => Err(io::Error::other(why)),
                None => Err(io::Error::other(format!(
                    "the lookup of {name} ended unanswered"
                ))),
            }
        })
    }
}

#[cfg(test)]
mod tests;
