//! Integration tests: the real binary, real child processes on real loopback ports, real files.
//! One test binary (a `mod` per area) keeps link time down.

mod support;

mod admin;
mod admin_side;
mod build_bytes;
mod builds;
mod canary;
mod config;
mod conformance;
mod core;
mod dashboard;
mod faults;
mod fleet;
mod hostile;
mod hostile_clients;
mod installed_cli;
mod instance_faults;
mod judging;
mod metrics;
mod promotion;
mod proxy_faults;
mod replay;
mod seeing;
mod self_upgrade;
mod shutdown;
mod slow_readers;
mod soak;
mod steering;
mod systemd;
mod upgrades;
mod webhooks_tls;
