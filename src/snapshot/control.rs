//! The control socket: how `cryptvol snapshot create` reaches the process
//! that is serving a volume, so the snapshot is taken by the one process
//! that sees every write (and can fix a point in time among them).
//!
//! One Unix socket per attached volume, `<volumes dir>/<vol-id>.sock`,
//! private to the user (0600 in a 0700 directory). Protocol: the client
//! sends one JSON line `{"op":"snapshot","description":"…"}`; the server
//! answers one JSON line `{"ok":true,"snapshot":{…}}` or
//! `{"ok":false,"error":"…"}`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use super::{Error, SnapshotInfo, SnapshotStore};
use crate::volume::Volume;

/// Longest request line accepted.
const MAX_REQUEST: usize = 64 * 1024;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Request {
    Snapshot { description: String },
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Response {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    snapshot: Option<SnapshotInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Serves the control socket of `volume` until `shutdown`.
pub async fn serve(
    listener: tokio::net::UnixListener,
    volume: Arc<Volume>,
    store: SnapshotStore,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = shutdown.wait_for(|&s| s) => return,
        };
        let Ok((stream, _)) = conn else { continue };
        let (volume, store) = (volume.clone(), store.clone());
        tokio::spawn(async move {
            let (rd, mut wr) = stream.into_split();
            let mut line = String::new();
            let mut rd = tokio::io::BufReader::new(rd).take(MAX_REQUEST as u64);
            let resp = match rd.read_line(&mut line).await {
                Ok(_) => match serde_json::from_str::<Request>(&line) {
                    Ok(Request::Snapshot { description }) => {
                        let r = tokio::task::spawn_blocking(move || {
                            super::create::create(
                                &store,
                                &volume,
                                &description,
                                &crate::progress::Silent,
                            )
                        })
                        .await;
                        match r {
                            Ok(Ok(s)) => Response {
                                ok: true,
                                snapshot: Some(s),
                                error: None,
                            },
                            Ok(Err(e)) => Response {
                                ok: false,
                                snapshot: None,
                                error: Some(e.to_string()),
                            },
                            Err(e) => Response {
                                ok: false,
                                snapshot: None,
                                error: Some(format!("snapshot task failed: {e}")),
                            },
                        }
                    }
                    Err(e) => Response {
                        ok: false,
                        snapshot: None,
                        error: Some(format!("bad request: {e}")),
                    },
                },
                Err(e) => Response {
                    ok: false,
                    snapshot: None,
                    error: Some(format!("reading request: {e}")),
                },
            };
            let mut out = serde_json::to_vec(&resp).unwrap_or_default();
            out.push(b'\n');
            let _ = wr.write_all(&out).await;
        });
    }
}

/// Binds a volume's control socket, replacing a stale one.
pub fn bind(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    let l = crate::fsutil::bind_private_socket(path)?;
    l.set_nonblocking(true)?;
    tokio::net::UnixListener::from_std(l)
}

/// Asks the process serving a volume to snapshot it. `Ok(None)` when no
/// process answers at `path` (the volume is not being served).
pub fn request_snapshot(
    path: &Path,
    volume: &str,
    description: &str,
) -> Result<Option<SnapshotInfo>, Error> {
    let mut s = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(_) => return Ok(None),
    };
    let ctl = |reason: String| Error::Control {
        volume: volume.to_string(),
        reason,
    };
    let mut req = serde_json::to_vec(&Request::Snapshot {
        description: description.to_string(),
    })
    .unwrap_or_default();
    req.push(b'\n');
    s.write_all(&req).map_err(|e| ctl(e.to_string()))?;
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .map_err(|e| ctl(e.to_string()))?;
    let resp: Response =
        serde_json::from_str(&line).map_err(|e| ctl(format!("bad answer: {e}")))?;
    match (resp.ok, resp.snapshot, resp.error) {
        (true, Some(s), _) => Ok(Some(s)),
        (_, _, Some(e)) => Err(Error::Capture {
            volume: volume.to_string(),
            reason: e,
        }),
        _ => Err(ctl("empty answer".into())),
    }
}
