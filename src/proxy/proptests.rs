//! Property tests of the engine's three parsers of outside bytes: `head` (users' request heads),
//! `answer` (instances' answer heads) and `framing` (bodies both ways).
//!
//! Unit tests (in each module) pin the cases docs/http1.md names; these check what must hold for
//! every input, since a user or an app may send any bytes and split them anywhere: no input makes
//! a parser panic, where a read boundary falls changes nothing, and what the engine writes is the
//! message it read, less only what the contract says it drops, in a form it would read the same
//! way again, and that its peer frames as the engine relays. Bounded for `cargo test` (256 cases
//! each, a few seconds in all); `benches/proptest-long.sh` runs the same properties far longer.
//!
//! A property that found a bug in the engine is `#[ignore]`d with the reason, and the smallest
//! input it found is a test of its own in [`found`], ignored too: fixing the engine is its
//! author's, and the suite stays green meanwhile.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};

use super::answer::{self, Asker};
use super::fields;
use super::framing::{BadChunk, Chunk, Framing};
use super::head::{self, Parsed};

mod bodies;
mod expect;
mod found;
mod properties;
mod readback;
mod valid;
mod wild;

use bodies::*;
use expect::*;
use readback::*;
use valid::*;
use wild::*;

/// Cases per property: `PROPTEST_CASES` when set (the long run), else 256. No failure file:
/// a counterexample is written down as a named test instead, so a work tree's hidden file never
/// changes what `cargo test` runs.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The user's address the tests forward for, and another for a second pass.
const PEER: &[u8] = b"192.0.2.1";
const PEER2: &[u8] = b"198.51.100.2";

/// Names the engine treats specially (framing, hop-by-hop, `Host`, `X-Forwarded-For`): the
/// generators of ordinary headers leave them out, so that what is expected of an ordinary header
/// holds for every one generated. `close` too: to the engine it is a `Connection` option, not a
/// name, so a header called `Close` tests nothing of hop-by-hop naming.
const SPECIAL: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
    "transfer-encoding",
    "content-length",
    "host",
    "x-forwarded-for",
    "close",
];
