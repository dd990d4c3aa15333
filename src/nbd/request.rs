//! Request validation: every check on a request, done once, before the
//! device is touched (nbdkit's `validate_request`, Firecracker's
//! `Request::parse`). Sans I/O.
//!
//! A request that fails gets an [`Rejection`] with the spec's errno and a
//! message naming the offending values; the connection stays up. The
//! device then only ever sees ranges inside the export.

use super::proto::{
    Command, Errno, RequestHeader, CMD_FLAG_DF, CMD_FLAG_FUA, CMD_FLAG_NO_HOLE, CMD_FLAG_REQ_ONE,
};
use super::MAX_PAYLOAD;

/// What the connection negotiated, as far as validation cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// Export size in bytes, read once when transmission starts.
    pub size: u64,
    pub read_only: bool,
    /// `NBD_OPT_STRUCTURED_REPLY` was acknowledged.
    pub structured: bool,
    /// `base:allocation` was selected for this export.
    pub base_allocation: bool,
}

/// A request that passed validation: its range lies inside the export and
/// its flags are ones we advertised for its command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Read {
        offset: u64,
        len: u32,
    },
    Write {
        offset: u64,
        len: u32,
        fua: bool,
    },
    Flush,
    Trim {
        offset: u64,
        len: u32,
        fua: bool,
    },
    WriteZeroes {
        offset: u64,
        len: u32,
        may_trim: bool,
        fua: bool,
    },
    Cache {
        offset: u64,
        len: u32,
    },
    BlockStatus {
        offset: u64,
        len: u32,
        req_one: bool,
    },
    Disc,
}

/// Why a request is refused, ready to go on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({errno:?})")]
pub struct Rejection {
    pub errno: Errno,
    /// For the client (structured error chunk) and the debug log.
    pub message: String,
}

fn reject(errno: Errno, message: String) -> Rejection {
    Rejection { errno, message }
}

/// Flags each command may carry (§ "Command flags"). FUA is valid on every
/// command because we always advertise `NBD_FLAG_SEND_FUA`. `DF` needs
/// structured replies (checked separately); `FAST_ZERO` is never valid
/// because we do not advertise `NBD_FLAG_SEND_FAST_ZERO`.
fn allowed_flags(cmd: Command) -> u16 {
    match cmd {
        Command::Read => CMD_FLAG_FUA | CMD_FLAG_DF,
        Command::WriteZeroes => CMD_FLAG_FUA | CMD_FLAG_NO_HOLE,
        Command::BlockStatus => CMD_FLAG_FUA | CMD_FLAG_REQ_ONE,
        _ => CMD_FLAG_FUA,
    }
}

/// Checks a request against the session. Order: command, flags, read-only,
/// negotiation prerequisites, payload size, range.
pub fn validate(h: &RequestHeader, s: &Session) -> Result<Request, Rejection> {
    let cmd = h.command;
    let name = cmd.name();
    if let Command::Unknown(t) = cmd {
        return Err(reject(Errno::Inval, format!("unknown command type {t}")));
    }
    if cmd == Command::Disc {
        // The spec gives no reply to DISC, so there is nobody to tell about
        // stray flags or offsets: just disconnect.
        return Ok(Request::Disc);
    }

    let bad = h.flags & !allowed_flags(cmd);
    if bad != 0 {
        return Err(reject(
            Errno::Inval,
            format!("{name}: command flags {bad:#06x} are not valid for this command"),
        ));
    }
    let fua = h.flags & CMD_FLAG_FUA != 0;
    let df = h.flags & CMD_FLAG_DF != 0;
    if df && !s.structured {
        return Err(reject(
            Errno::Inval,
            format!("{name}: NBD_CMD_FLAG_DF needs structured replies, which were not negotiated"),
        ));
    }

    let writes = matches!(cmd, Command::Write | Command::Trim | Command::WriteZeroes);
    if writes && s.read_only {
        return Err(reject(
            Errno::Perm,
            format!("{name}: the export is read-only"),
        ));
    }

    if cmd == Command::BlockStatus && !(s.structured && s.base_allocation) {
        return Err(reject(
            Errno::Inval,
            format!("{name}: no metadata context was negotiated; select {} with NBD_OPT_SET_META_CONTEXT after NBD_OPT_STRUCTURED_REPLY", super::BASE_ALLOCATION),
        ));
    }

    if matches!(cmd, Command::Read | Command::Write) && h.length > MAX_PAYLOAD {
        // A DF read too large to send in one chunk gets the spec's EOVERFLOW.
        let errno = if df { Errno::Overflow } else { Errno::Inval };
        return Err(reject(
            errno,
            format!(
                "{name}: length {} exceeds the maximum payload of {MAX_PAYLOAD} bytes",
                h.length
            ),
        ));
    }

    if cmd == Command::Flush {
        if h.offset != 0 || h.length != 0 {
            return Err(reject(
                Errno::Inval,
                format!(
                    "{name}: offset {} and length {} must both be zero",
                    h.offset, h.length
                ),
            ));
        }
        return Ok(Request::Flush);
    }

    check_range(h, s)?;
    let (offset, len) = (h.offset, h.length);
    Ok(match cmd {
        Command::Read => Request::Read { offset, len },
        Command::Write => Request::Write { offset, len, fua },
        Command::Trim => Request::Trim { offset, len, fua },
        Command::WriteZeroes => Request::WriteZeroes {
            offset,
            len,
            may_trim: h.flags & CMD_FLAG_NO_HOLE == 0,
            fua,
        },
        Command::Cache => Request::Cache { offset, len },
        Command::BlockStatus => Request::BlockStatus {
            offset,
            len,
            req_one: h.flags & CMD_FLAG_REQ_ONE != 0,
        },
        // Handled above; listed so a new command cannot slip through unchecked.
        Command::Flush | Command::Disc | Command::Unknown(_) => {
            return Err(reject(Errno::Inval, format!("{name}: unexpected command")))
        }
    })
}

/// `offset + length` must not overflow and must lie within the export.
///
/// Past the end, writes get `ENOSPC` and everything else `EINVAL`, as § "Error
/// values" asks ("SHOULD return NBD_ENOSPC if it receives a write request
/// including one or more sectors beyond the size of the device"); qemu-nbd
/// and nbdkit do the same.
///
/// Zero lengths are unspecified by the spec ("SHOULD NOT disconnect"). We
/// treat them as successful no-ops for data commands, and as `EINVAL` for
/// block status, whose reply must describe at least one nonzero extent.
fn check_range(h: &RequestHeader, s: &Session) -> Result<(), Rejection> {
    let name = h.command.name();
    let len = u64::from(h.length);
    let Some(end) = h.offset.checked_add(len) else {
        return Err(reject(
            Errno::Inval,
            format!(
                "{name}: offset {} + length {} overflows 64 bits",
                h.offset, h.length
            ),
        ));
    };
    if end > s.size {
        let errno = match h.command {
            Command::Write | Command::WriteZeroes => Errno::NoSpc,
            _ => Errno::Inval,
        };
        return Err(reject(
            errno,
            format!(
                "{name}: offset {} + length {} is past the end of the export ({} bytes)",
                h.offset, h.length, s.size
            ),
        ));
    }
    if len == 0 && h.command == Command::BlockStatus {
        return Err(reject(
            Errno::Inval,
            format!("{name}: length must not be zero"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nbd::proto::{CMD_FLAG_FAST_ZERO, CMD_FLAG_PAYLOAD_LEN};
    use proptest::prelude::*;

    const S: Session = Session {
        size: 1 << 20,
        read_only: false,
        structured: true,
        base_allocation: true,
    };

    fn h(command: Command, flags: u16, offset: u64, length: u32) -> RequestHeader {
        RequestHeader {
            flags,
            command,
            cookie: 1,
            offset,
            length,
        }
    }

    fn errno(r: Result<Request, Rejection>) -> Errno {
        r.expect_err("expected a rejection").errno
    }

    #[test]
    fn valid_requests_pass() {
        assert_eq!(
            validate(&h(Command::Read, 0, 0, 4096), &S),
            Ok(Request::Read {
                offset: 0,
                len: 4096
            })
        );
        assert_eq!(
            validate(&h(Command::Write, CMD_FLAG_FUA, 4096, 512), &S),
            Ok(Request::Write {
                offset: 4096,
                len: 512,
                fua: true
            })
        );
        assert_eq!(
            validate(&h(Command::WriteZeroes, CMD_FLAG_NO_HOLE, 0, 1 << 20), &S),
            Ok(Request::WriteZeroes {
                offset: 0,
                len: 1 << 20,
                may_trim: false,
                fua: false
            })
        );
        assert_eq!(
            validate(&h(Command::WriteZeroes, 0, 0, 1), &S),
            Ok(Request::WriteZeroes {
                offset: 0,
                len: 1,
                may_trim: true,
                fua: false
            })
        );
        assert_eq!(
            validate(&h(Command::BlockStatus, CMD_FLAG_REQ_ONE, 0, 1 << 20), &S),
            Ok(Request::BlockStatus {
                offset: 0,
                len: 1 << 20,
                req_one: true
            })
        );
        assert_eq!(
            validate(&h(Command::Flush, CMD_FLAG_FUA, 0, 0), &S),
            Ok(Request::Flush)
        );
        assert_eq!(
            validate(&h(Command::Disc, 0xffff, 9, 9), &S),
            Ok(Request::Disc)
        );
    }

    #[test]
    fn range_past_end_names_the_values() {
        let r = validate(&h(Command::Read, 0, (1 << 20) - 512, 1024), &S).expect_err("rejected");
        assert_eq!(r.errno, Errno::Inval);
        assert!(
            r.message.contains("1048064")
                && r.message.contains("1024")
                && r.message.contains("1048576"),
            "{}",
            r.message
        );
        assert_eq!(
            errno(validate(&h(Command::Trim, 0, 1 << 20, 1), &S)),
            Errno::Inval
        );
        assert_eq!(
            errno(validate(&h(Command::Write, 0, 1 << 20, 1), &S)),
            Errno::NoSpc
        );
        assert_eq!(
            errno(validate(&h(Command::WriteZeroes, 0, u64::MAX / 2, 1), &S)),
            Errno::NoSpc
        );
    }

    #[test]
    fn offset_plus_length_overflow_is_einval() {
        let r = validate(&h(Command::Read, 0, u64::MAX, 2), &S).expect_err("rejected");
        assert_eq!(r.errno, Errno::Inval);
        assert!(r.message.contains("overflows"));
    }

    #[test]
    fn zero_length_is_a_no_op_except_block_status() {
        assert_eq!(
            validate(&h(Command::Read, 0, 1 << 20, 0), &S),
            Ok(Request::Read {
                offset: 1 << 20,
                len: 0
            })
        );
        assert_eq!(
            errno(validate(&h(Command::Read, 0, (1 << 20) + 1, 0), &S)),
            Errno::Inval
        );
        assert_eq!(
            errno(validate(&h(Command::BlockStatus, 0, 0, 0), &S)),
            Errno::Inval
        );
    }

    #[test]
    fn unknown_commands_and_flags_are_einval() {
        assert_eq!(
            errno(validate(&h(Command::Unknown(99), 0, 0, 0), &S)),
            Errno::Inval
        );
        assert_eq!(
            errno(validate(&h(Command::Read, 0x8000, 0, 1), &S)),
            Errno::Inval
        );
        assert_eq!(
            errno(validate(&h(Command::Write, CMD_FLAG_NO_HOLE, 0, 1), &S)),
            Errno::Inval
        );
        assert_eq!(
            errno(validate(&h(Command::Read, CMD_FLAG_REQ_ONE, 0, 1), &S)),
            Errno::Inval
        );
        assert_eq!(
            errno(validate(
                &h(Command::WriteZeroes, CMD_FLAG_FAST_ZERO, 0, 1),
                &S
            )),
            Errno::Inval
        );
        assert_eq!(
            errno(validate(&h(Command::Write, CMD_FLAG_PAYLOAD_LEN, 0, 1), &S)),
            Errno::Inval
        );
        assert_eq!(
            errno(validate(&h(Command::Flush, 0, 0, 1), &S)),
            Errno::Inval
        );
    }

    #[test]
    fn df_needs_structured_replies_and_oversize_df_read_is_eoverflow() {
        let simple = Session {
            structured: false,
            base_allocation: false,
            ..S
        };
        assert_eq!(
            errno(validate(&h(Command::Read, CMD_FLAG_DF, 0, 1), &simple)),
            Errno::Inval
        );
        assert_eq!(
            validate(&h(Command::Read, CMD_FLAG_DF, 0, 1), &S),
            Ok(Request::Read { offset: 0, len: 1 })
        );
        let big = Session {
            size: u64::MAX,
            ..S
        };
        assert_eq!(
            errno(validate(
                &h(Command::Read, CMD_FLAG_DF, 0, MAX_PAYLOAD + 1),
                &big
            )),
            Errno::Overflow
        );
        assert_eq!(
            errno(validate(&h(Command::Read, 0, 0, MAX_PAYLOAD + 1), &big)),
            Errno::Inval
        );
        assert_eq!(
            errno(validate(&h(Command::Write, 0, 0, MAX_PAYLOAD + 1), &big)),
            Errno::Inval
        );
        // Commands without payload may exceed it.
        assert!(validate(&h(Command::Trim, 0, 0, u32::MAX), &big).is_ok());
    }

    #[test]
    fn writes_to_read_only_export_are_eperm() {
        let ro = Session {
            read_only: true,
            ..S
        };
        for cmd in [Command::Write, Command::Trim, Command::WriteZeroes] {
            assert_eq!(
                errno(validate(&h(cmd, 0, 0, 512), &ro)),
                Errno::Perm,
                "{cmd:?}"
            );
        }
        assert!(validate(&h(Command::Read, 0, 0, 512), &ro).is_ok());
        assert!(validate(&h(Command::Flush, 0, 0, 0), &ro).is_ok());
    }

    #[test]
    fn block_status_needs_a_negotiated_context() {
        let none = Session {
            base_allocation: false,
            ..S
        };
        assert_eq!(
            errno(validate(&h(Command::BlockStatus, 0, 0, 512), &none)),
            Errno::Inval
        );
    }

    proptest! {
        /// Whatever the header, a request that validates lies inside the
        /// export and carries no payload larger than the cap.
        #[test]
        fn validated_requests_lie_inside_the_export(
            flags: u16, t in 0u16..10, offset: u64, length: u32, size in 0u64..(1 << 40),
            ro: bool, structured: bool, meta: bool,
        ) {
            let s = Session { size, read_only: ro, structured, base_allocation: meta };
            let hdr = h(Command::from_wire(t), flags, offset, length);
            match validate(&hdr, &s) {
                Ok(Request::Read { offset, len } | Request::Write { offset, len, .. }) => {
                    prop_assert!(len <= MAX_PAYLOAD);
                    prop_assert!(offset + u64::from(len) <= size);
                }
                Ok(Request::Trim { offset, len, .. } | Request::WriteZeroes { offset, len, .. }
                    | Request::Cache { offset, len } | Request::BlockStatus { offset, len, .. }) => {
                    prop_assert!(offset + u64::from(len) <= size);
                }
                Ok(Request::Flush | Request::Disc) | Err(_) => {}
            }
        }
    }
}
