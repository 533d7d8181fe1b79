//! A protocol upgrade (`Connection: upgrade`, as a WebSocket handshake): the handshake goes to
//! running only, never mirrored; on `101` both connections are spliced both ways until either side
//! closes. The splice holds running's in-flight count, so a promotion drains it up to
//! `SHUTDOWN_GRACE`; then the old instance's `closed` token ends it (clients reconnect, to the new
//! version).

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::answer::Answer;
use super::bufs::{Bufs, Next};
use super::InflightGuard;

/// Relay the `101` (its head in `bufs.out`), hand over what each side already sent past its head,
/// then copy bytes both ways until either side closes or running is drained away.
pub(super) async fn splice(
    client: &mut TcpStream,
    mut conn: TcpStream,
    a: Answer,
    running: InflightGuard,
    bufs: &mut Bufs,
) -> Next {
    bufs.out.extend_from_slice(&bufs.answer[a.len..]);
    let handed = async {
        client.write_all(&bufs.out).await?;
        conn.write_all(&bufs.buf).await
    };
    if handed.await.is_err() {
        return Next::Close;
    }
    bufs.buf.clear();
    let closed = running.upstream().closed.clone();
    tokio::select! {
        _ = tokio::io::copy_bidirectional(client, &mut conn) => {}
        () = closed.cancelled() => {}
    }
    drop(running);
    Next::Close
}
