//! Integration tests: the real binary, real child processes on real loopback ports, real files.
//! One test binary (a `mod` per area) keeps link time down.
//!
//! libtest (as it behaves, not as it promises) starts tests in the order of their names, 6 at a
//! time (`.cargo/config.toml`), so the module whose tests mostly wait on the clock is named to come
//! early: `at_low_traffic`'s two replay tests take 35-38 s each (a request every 2 s, a 15 s
//! window) and now start within the first second, after the short `admin` ones. Named `replay`,
//! they started 45 s in and ran alone for the suite's last 15 s.

mod support;

mod admin;
mod admin_side;
mod at_low_traffic;
mod budget;
mod build_bytes;
mod builds;
mod canary;
mod config;
mod conformance;
mod core;
mod dashboard;
mod drops;
mod faults;
mod fleet;
mod hostile;
mod hostile_clients;
mod installed_cli;
mod instance_faults;
mod judging;
mod judging_sizes;
mod metrics;
mod promotion;
mod proxy_faults;
mod secrets;
mod seeing;
mod self_upgrade;
mod shutdown;
mod slow_readers;
mod soak;
mod steering;
mod systemd;
mod upgrades;
mod webhooks_tls;
