//! Executing one validated request against the device and encoding its
//! reply, sans I/O: the caller (`transmission`) picks the thread and sends
//! the bytes. `DeviceError`s become wire errnos here, at the protocol edge.

use super::pool::BufferPool;
use super::proto::{self, BlockDescriptor, Command, Errno};
use super::request::Request;
use super::BASE_ALLOCATION_ID;
use crate::blockdev::{BlockDevice, DeviceError, Extent};

/// Most bytes one `NBD_CMD_BLOCK_STATUS` asks the device about. The spec
/// lets us answer less than asked; clients continue where we stopped.
const BLOCK_STATUS_MAX_QUERY: u32 = 256 << 20;
/// Most descriptors in one block status reply (512 KiB on the wire); the
/// spec asks for no more than 2^20.
pub(crate) const MAX_DESCRIPTORS: usize = 1 << 16;

/// A device that panics must not leave the client waiting forever.
pub(crate) fn panicked(cookie: u64, req: Request, structured: bool, what: &str) -> Vec<u8> {
    tracing::error!(cookie, ?req, "request failed: {what}");
    error_reply(cookie, structured, Errno::Io, "internal server error")
}

fn command_of(req: &Request) -> Command {
    match req {
        Request::Read { .. } => Command::Read,
        Request::Write { .. } => Command::Write,
        Request::Flush => Command::Flush,
        Request::Trim { .. } => Command::Trim,
        Request::WriteZeroes { .. } => Command::WriteZeroes,
        Request::Cache { .. } => Command::Cache,
        Request::BlockStatus { .. } => Command::BlockStatus,
        Request::Disc => Command::Disc,
    }
}

/// `DeviceError` to wire errno: the protocol edge is the only place this happens.
fn errno_of(e: &DeviceError) -> Errno {
    match e {
        DeviceError::OutOfRange { .. } => Errno::Inval,
        DeviceError::ReadOnly => Errno::Perm,
        DeviceError::NoSpace(_) => Errno::NoSpc,
        DeviceError::Io(_) => Errno::Io,
    }
}

/// An error reply in the form the connection negotiated. With structured
/// replies errors always go as `NBD_REPLY_TYPE_ERROR` with a message (and a
/// read must not get a simple reply at all, § "Structured reply chunk message").
pub(crate) fn error_reply(cookie: u64, structured: bool, errno: Errno, message: &str) -> Vec<u8> {
    if structured {
        let mut out = Vec::with_capacity(proto::STRUCTURED_HEADER_LEN + 6 + message.len());
        proto::encode_error_chunk(&mut out, cookie, errno, message);
        out
    } else {
        proto::simple_reply(cookie, Some(errno)).to_vec()
    }
}

fn ok_reply(cookie: u64) -> Vec<u8> {
    proto::simple_reply(cookie, None).to_vec()
}

/// Runs one validated request against the device and encodes its reply.
/// Synchronous: the caller decides which thread it blocks.
pub(crate) fn execute(
    dev: &dyn BlockDevice,
    pool: &BufferPool,
    structured: bool,
    cookie: u64,
    req: Request,
    payload: &mut [u8],
) -> Vec<u8> {
    let result = match req {
        Request::Read { offset, len } => {
            return read_reply(dev, pool, structured, cookie, offset, len)
        }
        Request::BlockStatus {
            offset,
            len,
            req_one,
        } => return block_status_reply(dev, structured, cookie, offset, len, req_one),
        Request::Write { len: 0, .. }
        | Request::Trim { len: 0, .. }
        | Request::WriteZeroes { len: 0, .. } => Ok(()),
        Request::Write { offset, fua, .. } => dev.write_at(offset, payload, fua),
        Request::Flush => dev.flush(),
        Request::Trim { offset, len, fua } => dev.trim(offset, u64::from(len), fua),
        Request::WriteZeroes {
            offset,
            len,
            may_trim,
            fua,
        } => dev.write_zeroes(offset, u64::from(len), may_trim, fua),
        // A hint we may ignore (§ NBD_CMD_CACHE); reads come from the page cache anyway.
        Request::Cache { .. } | Request::Disc => Ok(()),
    };
    match result {
        Ok(()) => ok_reply(cookie),
        Err(e) => device_error_reply(command_of(&req), cookie, structured, &e),
    }
}

fn device_error_reply(cmd: Command, cookie: u64, structured: bool, e: &DeviceError) -> Vec<u8> {
    let message = format!("{}: {e}", cmd.name());
    tracing::debug!(cookie, "request failed: {message}");
    error_reply(cookie, structured, errno_of(e), &message)
}

/// The data is read straight into the reply buffer, after room left for the
/// header, so a read costs no copy (and, with a pooled buffer, no allocation).
fn read_reply(
    dev: &dyn BlockDevice,
    pool: &BufferPool,
    structured: bool,
    cookie: u64,
    offset: u64,
    len: u32,
) -> Vec<u8> {
    let hdr = if structured {
        proto::OFFSET_DATA_HEADER_LEN
    } else {
        proto::SIMPLE_REPLY_LEN
    };
    if len == 0 {
        // Nothing to describe: a structured reply must not carry an empty
        // data chunk, so it is a lone NONE chunk.
        let mut out = Vec::new();
        if structured {
            proto::encode_none_chunk(&mut out, cookie);
        } else {
            out.extend_from_slice(&proto::simple_reply(cookie, None));
        }
        return out;
    }
    let mut buf = pool.take(hdr + len as usize);
    if let Err(e) = dev.read_at(offset, &mut buf[hdr..]) {
        pool.give(buf);
        return device_error_reply(Command::Read, cookie, structured, &e);
    }
    if structured {
        buf[..hdr].copy_from_slice(&proto::offset_data_header(cookie, offset, len));
    } else {
        buf[..hdr].copy_from_slice(&proto::simple_reply(cookie, None));
    }
    buf
}

fn block_status_reply(
    dev: &dyn BlockDevice,
    structured: bool,
    cookie: u64,
    offset: u64,
    len: u32,
    req_one: bool,
) -> Vec<u8> {
    let query = len.min(BLOCK_STATUS_MAX_QUERY);
    match dev.block_status(offset, u64::from(query)) {
        Ok(extents) => {
            let d = descriptors(&extents, query, req_one);
            let mut out = Vec::new();
            proto::encode_block_status_chunk(&mut out, cookie, BASE_ALLOCATION_ID, &d);
            out
        }
        Err(e) => device_error_reply(Command::BlockStatus, cookie, structured, &e),
    }
}

/// Turns the device's extents into `base:allocation` descriptors for a
/// query of `len` bytes: consecutive, nonzero, merged when their flags
/// match, never beyond `len`, at most [`MAX_DESCRIPTORS`], exactly one with
/// `REQ_ONE`. A device that reports nothing usable gets one extent of
/// status 0, which the spec says is always safe (§ NBD_CMD_BLOCK_STATUS).
fn descriptors(extents: &[Extent], len: u32, req_one: bool) -> Vec<BlockDescriptor> {
    let mut out: Vec<BlockDescriptor> = Vec::new();
    let mut left = len;
    for e in extents {
        if left == 0 || out.len() >= MAX_DESCRIPTORS {
            break;
        }
        // Within `left`, so within u32.
        let length = e.length.min(u64::from(left)) as u32;
        if length == 0 {
            continue;
        }
        let flags =
            if e.hole { proto::STATE_HOLE } else { 0 } | if e.zero { proto::STATE_ZERO } else { 0 };
        left -= length;
        match out.last_mut() {
            Some(last) if last.flags == flags => last.length += length,
            _ => out.push(BlockDescriptor { length, flags }),
        }
    }
    if out.is_empty() {
        out.push(BlockDescriptor {
            length: len,
            flags: 0,
        });
    }
    if req_one {
        out.truncate(1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(length: u64, hole: bool) -> Extent {
        Extent {
            length,
            hole,
            zero: hole,
        }
    }

    #[test]
    fn descriptors_merge_clip_and_honour_req_one() {
        let e = [
            ext(4096, false),
            ext(4096, false),
            ext(8192, true),
            ext(1 << 20, false),
        ];
        let d = descriptors(&e, 10_000, false);
        assert_eq!(
            d,
            [
                BlockDescriptor {
                    length: 8192,
                    flags: 0
                },
                BlockDescriptor {
                    length: 1808,
                    flags: 3
                }
            ]
        );
        assert_eq!(
            descriptors(&e, 10_000, true),
            [BlockDescriptor {
                length: 8192,
                flags: 0
            }]
        );
        assert_eq!(
            descriptors(&e, 100, true),
            [BlockDescriptor {
                length: 100,
                flags: 0
            }]
        );
    }

    #[test]
    fn descriptors_fall_back_to_status_zero_when_device_reports_nothing() {
        assert_eq!(
            descriptors(&[], 512, false),
            [BlockDescriptor {
                length: 512,
                flags: 0
            }]
        );
        assert_eq!(
            descriptors(&[ext(0, true)], 512, true),
            [BlockDescriptor {
                length: 512,
                flags: 0
            }]
        );
    }
}
