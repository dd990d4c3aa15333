//! NBD wire types for the transmission phase, sans I/O.
//!
//! Every constant cites the section of the NBD protocol specification
//! (`doc/proto.md` in the NetworkBlockDevice/nbd repository) that defines
//! it. All integers on the wire are big-endian ("network byte order").
//!
//! ```text
//! request (28 bytes, client -> server), § "Request message"
//!  0        4        6        8                16               24       28
//!  +--------+--------+--------+----------------+----------------+--------+
//!  | magic  | flags  | type   | cookie         | offset         | length |
//!  +--------+--------+--------+----------------+----------------+--------+
//!  followed by `length` bytes of payload for NBD_CMD_WRITE only
//!
//! simple reply (16 bytes), § "Simple reply message"
//!  | magic 0x67446698 (4) | error (4) | cookie (8) | [read data]
//!
//! structured reply chunk (20 bytes + payload), § "Structured reply chunk message"
//!  | magic 0x668e33ef (4) | flags (2) | type (2) | cookie (8) | length (4) | payload
//! ```
//!
//! Handshake-phase types live in [`super::option`].

/// `NBDMAGIC`, first 8 bytes the server sends (§ "Newstyle negotiation").
pub const NBD_MAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`, sent by the server after `NBDMAGIC` and by the client before
/// every option (§ "Newstyle negotiation").
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Magic of every option reply (§ "Fixed newstyle negotiation").
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// `NBD_REQUEST_MAGIC` (§ "Request message").
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// `NBD_EXTENDED_REQUEST_MAGIC`, only valid after `NBD_OPT_EXTENDED_HEADERS`,
/// which this server does not support (§ "Reserved Magic values").
pub const EXTENDED_REQUEST_MAGIC: u32 = 0x21e4_1c71;
/// `NBD_SIMPLE_REPLY_MAGIC` (§ "Simple reply message").
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// `NBD_STRUCTURED_REPLY_MAGIC` (§ "Structured reply chunk message").
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

/// Size of a request header on the wire.
pub const REQUEST_HEADER_LEN: usize = 28;
/// Size of a simple reply header on the wire.
pub const SIMPLE_REPLY_LEN: usize = 16;
/// Size of a structured reply chunk header on the wire.
pub const STRUCTURED_HEADER_LEN: usize = 20;
/// Structured chunk header plus the 64-bit offset of `NBD_REPLY_TYPE_OFFSET_DATA`:
/// the bytes that precede read data in a structured read reply.
pub const OFFSET_DATA_HEADER_LEN: usize = STRUCTURED_HEADER_LEN + 8;

// --- Handshake flags (16 bits, server -> client), § "Handshake flags".
/// `NBD_FLAG_FIXED_NEWSTYLE`: we speak fixed newstyle.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
/// `NBD_FLAG_NO_ZEROES`: we can skip the 124 zero bytes after `NBD_OPT_EXPORT_NAME`.
pub const FLAG_NO_ZEROES: u16 = 1 << 1;

// --- Client flags (32 bits, client -> server), § "Client flags".
/// `NBD_FLAG_C_FIXED_NEWSTYLE`.
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
/// `NBD_FLAG_C_NO_ZEROES`.
pub const FLAG_C_NO_ZEROES: u32 = 1 << 1;

// --- Transmission flags (16 bits), § "Transmission flags".
/// `NBD_FLAG_HAS_FLAGS`: MUST always be set.
pub const TFLAG_HAS_FLAGS: u16 = 1 << 0;
/// `NBD_FLAG_READ_ONLY`.
pub const TFLAG_READ_ONLY: u16 = 1 << 1;
/// `NBD_FLAG_SEND_FLUSH`.
pub const TFLAG_SEND_FLUSH: u16 = 1 << 2;
/// `NBD_FLAG_SEND_FUA`.
pub const TFLAG_SEND_FUA: u16 = 1 << 3;
/// `NBD_FLAG_ROTATIONAL` (never set: our backing store is a file).
pub const TFLAG_ROTATIONAL: u16 = 1 << 4;
/// `NBD_FLAG_SEND_TRIM`.
pub const TFLAG_SEND_TRIM: u16 = 1 << 5;
/// `NBD_FLAG_SEND_WRITE_ZEROES` (also exposes `NBD_CMD_FLAG_NO_HOLE`).
pub const TFLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
/// `NBD_FLAG_SEND_DF`: MUST be clear unless structured replies were negotiated.
pub const TFLAG_SEND_DF: u16 = 1 << 7;
/// `NBD_FLAG_CAN_MULTI_CONN`: flush/FUA effects are visible on all connections.
pub const TFLAG_CAN_MULTI_CONN: u16 = 1 << 8;
/// `NBD_FLAG_SEND_CACHE`.
pub const TFLAG_SEND_CACHE: u16 = 1 << 10;
/// `NBD_FLAG_SEND_FAST_ZERO` (not advertised: we cannot promise a fast zero).
pub const TFLAG_SEND_FAST_ZERO: u16 = 1 << 11;

// --- Command types, § "Request types".
pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_FLUSH: u16 = 3;
pub const CMD_TRIM: u16 = 4;
pub const CMD_CACHE: u16 = 5;
pub const CMD_WRITE_ZEROES: u16 = 6;
pub const CMD_BLOCK_STATUS: u16 = 7;

// --- Command flags, § "Command flags".
/// `NBD_CMD_FLAG_FUA`: valid on every command once `NBD_FLAG_SEND_FUA` is set.
pub const CMD_FLAG_FUA: u16 = 1 << 0;
/// `NBD_CMD_FLAG_NO_HOLE`: `NBD_CMD_WRITE_ZEROES` only.
pub const CMD_FLAG_NO_HOLE: u16 = 1 << 1;
/// `NBD_CMD_FLAG_DF`: `NBD_CMD_READ` only, needs `NBD_FLAG_SEND_DF`.
pub const CMD_FLAG_DF: u16 = 1 << 2;
/// `NBD_CMD_FLAG_REQ_ONE`: `NBD_CMD_BLOCK_STATUS` only.
pub const CMD_FLAG_REQ_ONE: u16 = 1 << 3;
/// `NBD_CMD_FLAG_FAST_ZERO`: `NBD_CMD_WRITE_ZEROES` only, needs `NBD_FLAG_SEND_FAST_ZERO`.
pub const CMD_FLAG_FAST_ZERO: u16 = 1 << 4;
/// `NBD_CMD_FLAG_PAYLOAD_LEN`: extended headers only.
pub const CMD_FLAG_PAYLOAD_LEN: u16 = 1 << 5;

// --- Structured reply flags and types, § "Structured reply flags/types".
/// `NBD_REPLY_FLAG_DONE`: this is the final chunk of the reply.
pub const REPLY_FLAG_DONE: u16 = 1 << 0;
pub const REPLY_TYPE_NONE: u16 = 0;
pub const REPLY_TYPE_OFFSET_DATA: u16 = 1;
pub const REPLY_TYPE_OFFSET_HOLE: u16 = 2;
pub const REPLY_TYPE_BLOCK_STATUS: u16 = 5;
/// `NBD_REPLY_TYPE_ERROR` (2^15 + 1).
pub const REPLY_TYPE_ERROR: u16 = (1 << 15) + 1;
/// `NBD_REPLY_TYPE_ERROR_OFFSET` (2^15 + 2).
pub const REPLY_TYPE_ERROR_OFFSET: u16 = (1 << 15) + 2;

// --- `base:allocation` flags, § "`base:allocation` metadata context".
/// `NBD_STATE_HOLE`: not allocated in the backing store.
pub const STATE_HOLE: u32 = 1 << 0;
/// `NBD_STATE_ZERO`: reads as zeros.
pub const STATE_ZERO: u32 = 1 << 1;

/// Longest string the spec allows anywhere (export names, messages):
/// § "Conventions": "MUST be no longer than 4096 bytes".
pub const MAX_STRING_LEN: usize = 4096;

/// Error values, § "Error values". Only these may appear on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Errno {
    /// `NBD_EPERM`: write to a read-only export.
    Perm = 1,
    /// `NBD_EIO`.
    Io = 5,
    /// `NBD_ENOMEM`: the spec asks servers to avoid it; we never send it.
    NoMem = 12,
    /// `NBD_EINVAL`: bad range, flags or command.
    Inval = 22,
    /// `NBD_ENOSPC`: backing store full, or a write past the end.
    NoSpc = 28,
    /// `NBD_EOVERFLOW`: a `DF` read too large to send unfragmented.
    Overflow = 75,
    /// `NBD_ENOTSUP`: only for `NBD_CMD_FLAG_FAST_ZERO`, which we do not advertise.
    NotSup = 95,
    /// `NBD_ESHUTDOWN`: the server is shutting down.
    Shutdown = 108,
}

impl Errno {
    pub fn code(self) -> u32 {
        self as u32
    }
}

/// What can be wrong with bytes that should be a request header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// The stream is out of sync or was never NBD: nothing after this can be
    /// trusted, so the connection must be closed.
    #[error(
        "bad request magic {0:#010x} (expected {REQUEST_MAGIC:#010x}); the stream is out of sync"
    )]
    BadRequestMagic(u32),
}

/// A transmission-phase command, decoded but not yet validated. Unknown
/// types are kept, not rejected here, so they can be answered with `EINVAL`
/// without dropping the connection (Firecracker's `RequestType::Unsupported`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Read,
    Write,
    Disc,
    Flush,
    Trim,
    Cache,
    WriteZeroes,
    BlockStatus,
    Unknown(u16),
}

impl Command {
    pub fn from_wire(t: u16) -> Self {
        match t {
            CMD_READ => Command::Read,
            CMD_WRITE => Command::Write,
            CMD_DISC => Command::Disc,
            CMD_FLUSH => Command::Flush,
            CMD_TRIM => Command::Trim,
            CMD_CACHE => Command::Cache,
            CMD_WRITE_ZEROES => Command::WriteZeroes,
            CMD_BLOCK_STATUS => Command::BlockStatus,
            other => Command::Unknown(other),
        }
    }

    pub fn to_wire(self) -> u16 {
        match self {
            Command::Read => CMD_READ,
            Command::Write => CMD_WRITE,
            Command::Disc => CMD_DISC,
            Command::Flush => CMD_FLUSH,
            Command::Trim => CMD_TRIM,
            Command::Cache => CMD_CACHE,
            Command::WriteZeroes => CMD_WRITE_ZEROES,
            Command::BlockStatus => CMD_BLOCK_STATUS,
            Command::Unknown(t) => t,
        }
    }

    /// The spec's name, for logs and error messages.
    pub fn name(self) -> &'static str {
        match self {
            Command::Read => "NBD_CMD_READ",
            Command::Write => "NBD_CMD_WRITE",
            Command::Disc => "NBD_CMD_DISC",
            Command::Flush => "NBD_CMD_FLUSH",
            Command::Trim => "NBD_CMD_TRIM",
            Command::Cache => "NBD_CMD_CACHE",
            Command::WriteZeroes => "NBD_CMD_WRITE_ZEROES",
            Command::BlockStatus => "NBD_CMD_BLOCK_STATUS",
            Command::Unknown(_) => "unknown command",
        }
    }
}

/// A request header as it arrived (§ "Request message").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    pub flags: u16,
    pub command: Command,
    /// Opaque to the server; echoed in every reply chunk.
    pub cookie: u64,
    pub offset: u64,
    pub length: u32,
}

impl RequestHeader {
    /// Decodes a header. Only the magic can make this fail: every other
    /// field is checked by `request::validate`, which can answer with an
    /// error and keep the connection.
    pub fn decode(b: &[u8; REQUEST_HEADER_LEN]) -> Result<Self, ProtoError> {
        let magic = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if magic != REQUEST_MAGIC {
            return Err(ProtoError::BadRequestMagic(magic));
        }
        Ok(RequestHeader {
            flags: u16::from_be_bytes([b[4], b[5]]),
            command: Command::from_wire(u16::from_be_bytes([b[6], b[7]])),
            cookie: u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
            offset: u64::from_be_bytes([b[16], b[17], b[18], b[19], b[20], b[21], b[22], b[23]]),
            length: u32::from_be_bytes([b[24], b[25], b[26], b[27]]),
        })
    }

    /// Encodes a header; the server never sends one, but tests and clients do.
    pub fn encode(&self) -> [u8; REQUEST_HEADER_LEN] {
        let mut b = [0u8; REQUEST_HEADER_LEN];
        b[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&self.flags.to_be_bytes());
        b[6..8].copy_from_slice(&self.command.to_wire().to_be_bytes());
        b[8..16].copy_from_slice(&self.cookie.to_be_bytes());
        b[16..24].copy_from_slice(&self.offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.length.to_be_bytes());
        b
    }
}

/// A simple reply header (§ "Simple reply message"); for a successful read
/// the data follows it.
pub fn simple_reply(cookie: u64, error: Option<Errno>) -> [u8; SIMPLE_REPLY_LEN] {
    let mut b = [0u8; SIMPLE_REPLY_LEN];
    b[0..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    b[4..8].copy_from_slice(&error.map_or(0, Errno::code).to_be_bytes());
    b[8..16].copy_from_slice(&cookie.to_be_bytes());
    b
}

/// A structured reply chunk header (§ "Structured reply chunk message").
pub fn structured_header(
    flags: u16,
    reply_type: u16,
    cookie: u64,
    length: u32,
) -> [u8; STRUCTURED_HEADER_LEN] {
    let mut b = [0u8; STRUCTURED_HEADER_LEN];
    b[0..4].copy_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
    b[4..6].copy_from_slice(&flags.to_be_bytes());
    b[6..8].copy_from_slice(&reply_type.to_be_bytes());
    b[8..16].copy_from_slice(&cookie.to_be_bytes());
    b[16..20].copy_from_slice(&length.to_be_bytes());
    b
}

/// The bytes before `data_len` bytes of read data in a final
/// `NBD_REPLY_TYPE_OFFSET_DATA` chunk. The caller guarantees
/// `data_len + 8` fits in 32 bits (reads are capped at 32 MiB).
pub fn offset_data_header(cookie: u64, offset: u64, data_len: u32) -> [u8; OFFSET_DATA_HEADER_LEN] {
    let mut b = [0u8; OFFSET_DATA_HEADER_LEN];
    let len = data_len.saturating_add(8);
    b[..STRUCTURED_HEADER_LEN].copy_from_slice(&structured_header(
        REPLY_FLAG_DONE,
        REPLY_TYPE_OFFSET_DATA,
        cookie,
        len,
    ));
    b[STRUCTURED_HEADER_LEN..].copy_from_slice(&offset.to_be_bytes());
    b
}

/// A final `NBD_REPLY_TYPE_NONE` chunk: success with nothing to say.
pub fn encode_none_chunk(out: &mut Vec<u8>, cookie: u64) {
    out.extend_from_slice(&structured_header(
        REPLY_FLAG_DONE,
        REPLY_TYPE_NONE,
        cookie,
        0,
    ));
}

/// Cuts `msg` to at most `max` bytes on a character boundary.
pub fn truncate_str(msg: &str, max: usize) -> &str {
    if msg.len() <= max {
        return msg;
    }
    let mut end = max;
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    &msg[..end]
}

/// A final `NBD_REPLY_TYPE_ERROR` chunk carrying a human-readable message
/// (truncated to the spec's 4096-byte string limit).
pub fn encode_error_chunk(out: &mut Vec<u8>, cookie: u64, error: Errno, message: &str) {
    let msg = truncate_str(message, MAX_STRING_LEN);
    // 4 (error) + 2 (message length) + message; msg.len() <= 4096 so no overflow.
    let len = 6 + msg.len() as u32;
    out.extend_from_slice(&structured_header(
        REPLY_FLAG_DONE,
        REPLY_TYPE_ERROR,
        cookie,
        len,
    ));
    out.extend_from_slice(&error.code().to_be_bytes());
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(msg.as_bytes());
}

/// One `NBD_REPLY_TYPE_BLOCK_STATUS` descriptor: `(length, status flags)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockDescriptor {
    pub length: u32,
    pub flags: u32,
}

/// A final `NBD_REPLY_TYPE_BLOCK_STATUS` chunk for one metadata context.
/// `descriptors` must be non-empty (the spec requires at least one); the
/// caller caps its length so the payload fits in 32 bits.
pub fn encode_block_status_chunk(
    out: &mut Vec<u8>,
    cookie: u64,
    context_id: u32,
    descriptors: &[BlockDescriptor],
) {
    let len = 4 + 8 * descriptors.len();
    let len32 = u32::try_from(len).unwrap_or(u32::MAX);
    out.reserve(STRUCTURED_HEADER_LEN + len);
    out.extend_from_slice(&structured_header(
        REPLY_FLAG_DONE,
        REPLY_TYPE_BLOCK_STATUS,
        cookie,
        len32,
    ));
    out.extend_from_slice(&context_id.to_be_bytes());
    for d in descriptors {
        out.extend_from_slice(&d.length.to_be_bytes());
        out.extend_from_slice(&d.flags.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn request_header_golden_bytes_decode() {
        // A 4 KiB read at offset 1 MiB with FUA, cookie 0x0102030405060708.
        let wire: [u8; 28] = [
            0x25, 0x60, 0x95, 0x13, // magic
            0x00, 0x01, // flags: FUA
            0x00, 0x00, // type: READ
            0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // cookie
            0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, // offset
            0x00, 0x00, 0x10, 0x00, // length
        ];
        let h = RequestHeader::decode(&wire).expect("valid header");
        assert_eq!(
            h,
            RequestHeader {
                flags: CMD_FLAG_FUA,
                command: Command::Read,
                cookie: 0x0102_0304_0506_0708,
                offset: 1 << 20,
                length: 4096
            }
        );
        assert_eq!(h.encode(), wire);
    }

    #[test]
    fn request_header_bad_magic_is_an_error_naming_the_magic() {
        let mut wire = [0u8; 28];
        wire[..4].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        let err = RequestHeader::decode(&wire).expect_err("bad magic");
        assert_eq!(err, ProtoError::BadRequestMagic(0xdead_beef));
        assert!(err.to_string().contains("0xdeadbeef"));
    }

    #[test]
    fn unknown_command_is_kept_not_rejected() {
        let h = RequestHeader {
            flags: 0,
            command: Command::Unknown(42),
            cookie: 1,
            offset: 0,
            length: 0,
        };
        let back = RequestHeader::decode(&h.encode()).expect("valid magic");
        assert_eq!(back.command, Command::Unknown(42));
    }

    #[test]
    fn simple_reply_golden_bytes() {
        assert_eq!(
            simple_reply(0x1122_3344_5566_7788, Some(Errno::Inval)),
            [0x67, 0x44, 0x66, 0x98, 0, 0, 0, 22, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]
        );
        assert_eq!(&simple_reply(7, None)[4..8], &[0, 0, 0, 0]);
    }

    #[test]
    fn offset_data_header_golden_bytes() {
        let h = offset_data_header(9, 0x200, 512);
        assert_eq!(
            h,
            [
                0x66, 0x8e, 0x33, 0xef, // magic
                0x00, 0x01, // flags: DONE
                0x00, 0x01, // type: OFFSET_DATA
                0, 0, 0, 0, 0, 0, 0, 9, // cookie
                0x00, 0x00, 0x02, 0x08, // length: 512 + 8
                0, 0, 0, 0, 0, 0, 0x02, 0x00, // offset
            ]
        );
    }

    #[test]
    fn error_chunk_golden_bytes() {
        let mut out = Vec::new();
        encode_error_chunk(&mut out, 3, Errno::Perm, "ro");
        assert_eq!(
            out,
            [
                0x66, 0x8e, 0x33, 0xef, 0x00, 0x01, 0x80, 0x01, // magic, DONE, ERROR
                0, 0, 0, 0, 0, 0, 0, 3, // cookie
                0, 0, 0, 8, // length 6 + 2
                0, 0, 0, 1, // EPERM
                0, 2, b'r', b'o',
            ]
        );
    }

    #[test]
    fn error_chunk_message_is_capped_at_4096_bytes_on_a_char_boundary() {
        let long = "é".repeat(3000); // 6000 bytes, 2 bytes per char
        let mut out = Vec::new();
        encode_error_chunk(&mut out, 1, Errno::Io, &long);
        let msg_len = u16::from_be_bytes([out[24], out[25]]) as usize;
        assert_eq!(msg_len, 4096);
        assert!(std::str::from_utf8(&out[26..]).is_ok());
        assert_eq!(out.len(), 26 + 4096);
    }

    #[test]
    fn block_status_chunk_golden_bytes() {
        let mut out = Vec::new();
        let d = [
            BlockDescriptor {
                length: 4096,
                flags: 0,
            },
            BlockDescriptor {
                length: 8192,
                flags: STATE_HOLE | STATE_ZERO,
            },
        ];
        encode_block_status_chunk(&mut out, 5, 1, &d);
        assert_eq!(
            out,
            [
                0x66, 0x8e, 0x33, 0xef, 0x00, 0x01, 0x00, 0x05, // magic, DONE, BLOCK_STATUS
                0, 0, 0, 0, 0, 0, 0, 5, // cookie
                0, 0, 0, 20, // length 4 + 2*8
                0, 0, 0, 1, // context id
                0, 0, 0x10, 0, 0, 0, 0, 0, // 4096, allocated data
                0, 0, 0x20, 0, 0, 0, 0, 3, // 8192, hole|zero
            ]
        );
    }

    proptest! {
        /// No 28 bytes make the decoder panic; every valid one round-trips.
        #[test]
        fn request_decoder_never_panics_and_round_trips(bytes in proptest::array::uniform28(any::<u8>())) {
            match RequestHeader::decode(&bytes) {
                Ok(h) => prop_assert_eq!(h.encode(), bytes),
                Err(ProtoError::BadRequestMagic(m)) => prop_assert_ne!(m, REQUEST_MAGIC),
            }
        }

        #[test]
        fn request_header_round_trips(flags: u16, t: u16, cookie: u64, offset: u64, length: u32) {
            let h = RequestHeader { flags, command: Command::from_wire(t), cookie, offset, length };
            prop_assert_eq!(RequestHeader::decode(&h.encode()), Ok(h));
        }
    }
}
