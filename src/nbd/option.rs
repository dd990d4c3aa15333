//! NBD wire types for the handshake phase (option haggling), sans I/O.
//!
//! ```text
//! option request (16 bytes + data), § "Newstyle negotiation"
//!  | IHAVEOPT (8) | option (4) | length (4) | data (length bytes)
//!
//! option reply (20 bytes + data), § "Fixed newstyle negotiation"
//!  | 0x3e889045565a9 (8) | option (4) | reply type (4) | length (4) | data
//!
//! NBD_OPT_INFO / NBD_OPT_GO data, § "Option types"
//!  | name length (4) | name | number of info requests (2) | info type (2) x n
//!
//! NBD_OPT_{LIST,SET}_META_CONTEXT data, § "Option types"
//!  | name length (4) | name | number of queries (4) | (query length (4) | query) x n
//! ```
//!
//! Parsers check every length against the bytes actually present and
//! reject trailing bytes; nothing a client sends can make them allocate
//! more than the option data they were given.

use super::proto::{IHAVEOPT, MAX_STRING_LEN, OPTION_REPLY_MAGIC};

// --- Option types, § "Option types".
pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
pub const OPT_PEEK_EXPORT: u32 = 4;
pub const OPT_STARTTLS: u32 = 5;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;
pub const OPT_STRUCTURED_REPLY: u32 = 8;
pub const OPT_LIST_META_CONTEXT: u32 = 9;
pub const OPT_SET_META_CONTEXT: u32 = 10;
pub const OPT_EXTENDED_HEADERS: u32 = 11;

// --- Option reply types, § "Option reply types". Errors have bit 31 set.
pub const REP_ACK: u32 = 1;
pub const REP_SERVER: u32 = 2;
pub const REP_INFO: u32 = 3;
pub const REP_META_CONTEXT: u32 = 4;
const REP_ERR: u32 = 1 << 31;
pub const REP_ERR_UNSUP: u32 = REP_ERR + 1;
pub const REP_ERR_POLICY: u32 = REP_ERR + 2;
pub const REP_ERR_INVALID: u32 = REP_ERR + 3;
pub const REP_ERR_PLATFORM: u32 = REP_ERR + 4;
pub const REP_ERR_TLS_REQD: u32 = REP_ERR + 5;
pub const REP_ERR_UNKNOWN: u32 = REP_ERR + 6;
pub const REP_ERR_SHUTDOWN: u32 = REP_ERR + 7;
pub const REP_ERR_BLOCK_SIZE_REQD: u32 = REP_ERR + 8;
pub const REP_ERR_TOO_BIG: u32 = REP_ERR + 9;

// --- Information types for NBD_REP_INFO, § "Option reply types".
pub const INFO_EXPORT: u16 = 0;
pub const INFO_NAME: u16 = 1;
pub const INFO_DESCRIPTION: u16 = 2;
pub const INFO_BLOCK_SIZE: u16 = 3;

/// Size of an option request header on the wire.
pub const OPTION_HEADER_LEN: usize = 16;

/// The spec's name of an option, for logs.
pub fn option_name(option: u32) -> &'static str {
    match option {
        OPT_EXPORT_NAME => "NBD_OPT_EXPORT_NAME",
        OPT_ABORT => "NBD_OPT_ABORT",
        OPT_LIST => "NBD_OPT_LIST",
        OPT_PEEK_EXPORT => "NBD_OPT_PEEK_EXPORT",
        OPT_STARTTLS => "NBD_OPT_STARTTLS",
        OPT_INFO => "NBD_OPT_INFO",
        OPT_GO => "NBD_OPT_GO",
        OPT_STRUCTURED_REPLY => "NBD_OPT_STRUCTURED_REPLY",
        OPT_LIST_META_CONTEXT => "NBD_OPT_LIST_META_CONTEXT",
        OPT_SET_META_CONTEXT => "NBD_OPT_SET_META_CONTEXT",
        OPT_EXTENDED_HEADERS => "NBD_OPT_EXTENDED_HEADERS",
        _ => "unknown option",
    }
}

/// What is wrong with an option the client sent. The handshake answers
/// these with `NBD_REP_ERR_INVALID` and the message, except a bad magic,
/// which desynchronises the stream and ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error("bad option magic {0:#018x} (expected IHAVEOPT {IHAVEOPT:#018x})")]
    BadMagic(u64),
    #[error("option data is {got} bytes; {what} needs at least {need}")]
    Short {
        what: &'static str,
        need: usize,
        got: usize,
    },
    #[error("{what} claims {claimed} bytes but only {left} remain in the option data")]
    LengthPastEnd {
        what: &'static str,
        claimed: u64,
        left: usize,
    },
    #[error("{0} trailing bytes after the option data")]
    Trailing(usize),
    #[error("{what} is {len} bytes; strings may be at most {MAX_STRING_LEN}")]
    StringTooLong { what: &'static str, len: usize },
    #[error("{0} is not valid UTF-8")]
    NotUtf8(&'static str),
    #[error("{0} contains a NUL byte")]
    ContainsNul(&'static str),
}

/// An option request header (§ "Newstyle negotiation").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionHeader {
    pub option: u32,
    pub length: u32,
}

impl OptionHeader {
    pub fn decode(b: &[u8; OPTION_HEADER_LEN]) -> Result<Self, OptionError> {
        let magic = u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        if magic != IHAVEOPT {
            return Err(OptionError::BadMagic(magic));
        }
        Ok(OptionHeader {
            option: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            length: u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
        })
    }

    pub fn encode(&self) -> [u8; OPTION_HEADER_LEN] {
        let mut b = [0u8; OPTION_HEADER_LEN];
        b[..8].copy_from_slice(&IHAVEOPT.to_be_bytes());
        b[8..12].copy_from_slice(&self.option.to_be_bytes());
        b[12..].copy_from_slice(&self.length.to_be_bytes());
        b
    }
}

/// A cursor over option data that checks every length it is told.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], OptionError> {
        if n > self.buf.len() {
            return Err(OptionError::LengthPastEnd {
                what,
                claimed: n as u64,
                left: self.buf.len(),
            });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, OptionError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, OptionError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A string preceded by a 32-bit length.
    fn string32(&mut self, what: &'static str) -> Result<String, OptionError> {
        let len = self.u32(what)?;
        if len as usize > self.buf.len() {
            return Err(OptionError::LengthPastEnd {
                what,
                claimed: u64::from(len),
                left: self.buf.len(),
            });
        }
        let b = self.take(len as usize, what)?;
        parse_string(b, what)
    }
    fn finish(self) -> Result<(), OptionError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(OptionError::Trailing(n)),
        }
    }
}

/// A spec string (§ "Conventions"): UTF-8, no NUL, at most 4096 bytes.
pub fn parse_string(b: &[u8], what: &'static str) -> Result<String, OptionError> {
    if b.len() > MAX_STRING_LEN {
        return Err(OptionError::StringTooLong { what, len: b.len() });
    }
    if b.contains(&0) {
        return Err(OptionError::ContainsNul(what));
    }
    std::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|_| OptionError::NotUtf8(what))
}

/// `NBD_OPT_INFO` / `NBD_OPT_GO` data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoRequest {
    pub name: String,
    /// Requested `NBD_INFO_*` types, in the client's order.
    pub requests: Vec<u16>,
}

impl InfoRequest {
    pub fn decode(data: &[u8]) -> Result<Self, OptionError> {
        if data.len() < 6 {
            return Err(OptionError::Short {
                what: "NBD_OPT_INFO/GO",
                need: 6,
                got: data.len(),
            });
        }
        let mut r = Reader { buf: data };
        let name = r.string32("export name")?;
        let n = r.u16("number of information requests")?;
        let mut requests = Vec::with_capacity(usize::from(n).min(r.buf.len() / 2));
        for _ in 0..n {
            requests.push(r.u16("information request")?);
        }
        r.finish()?;
        Ok(InfoRequest { name, requests })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.name.len() as u32).to_be_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(&(self.requests.len() as u16).to_be_bytes());
        for r in &self.requests {
            out.extend_from_slice(&r.to_be_bytes());
        }
    }
}

/// `NBD_OPT_LIST_META_CONTEXT` / `NBD_OPT_SET_META_CONTEXT` data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaContextRequest {
    pub name: String,
    pub queries: Vec<String>,
}

impl MetaContextRequest {
    pub fn decode(data: &[u8]) -> Result<Self, OptionError> {
        if data.len() < 8 {
            return Err(OptionError::Short {
                what: "NBD_OPT_*_META_CONTEXT",
                need: 8,
                got: data.len(),
            });
        }
        let mut r = Reader { buf: data };
        let name = r.string32("export name")?;
        let n = r.u32("number of queries")?;
        // Each query takes at least its 4-byte length: never reserve more
        // than the data could hold, whatever count the client claims.
        let mut queries = Vec::with_capacity((n as usize).min(r.buf.len() / 4));
        for _ in 0..n {
            queries.push(r.string32("metadata context query")?);
        }
        r.finish()?;
        Ok(MetaContextRequest { name, queries })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.name.len() as u32).to_be_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(&(self.queries.len() as u32).to_be_bytes());
        for q in &self.queries {
            out.extend_from_slice(&(q.len() as u32).to_be_bytes());
            out.extend_from_slice(q.as_bytes());
        }
    }
}

/// Appends one option reply (§ "Fixed newstyle negotiation"). Every payload
/// the server builds is far below 4 GiB.
pub fn encode_reply(out: &mut Vec<u8>, option: u32, reply_type: u32, payload: &[u8]) {
    out.extend_from_slice(&OPTION_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&reply_type.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// An error reply whose payload is a message for the user (capped at 4096 bytes).
pub fn encode_error_reply(out: &mut Vec<u8>, option: u32, reply_type: u32, message: &str) {
    let msg = super::proto::truncate_str(message, MAX_STRING_LEN);
    encode_reply(out, option, reply_type, msg.as_bytes());
}

/// `NBD_REP_SERVER`: an export name, then its description for humans.
pub fn encode_rep_server(out: &mut Vec<u8>, option: u32, name: &str, description: &str) {
    let mut p = Vec::with_capacity(4 + name.len() + description.len());
    p.extend_from_slice(&(name.len() as u32).to_be_bytes());
    p.extend_from_slice(name.as_bytes());
    p.extend_from_slice(super::proto::truncate_str(description, MAX_STRING_LEN).as_bytes());
    encode_reply(out, option, REP_SERVER, &p);
}

/// `NBD_REP_INFO` with `NBD_INFO_EXPORT`: size and transmission flags (length 12).
pub fn encode_info_export(out: &mut Vec<u8>, option: u32, size: u64, flags: u16) {
    let mut p = [0u8; 12];
    p[..2].copy_from_slice(&INFO_EXPORT.to_be_bytes());
    p[2..10].copy_from_slice(&size.to_be_bytes());
    p[10..].copy_from_slice(&flags.to_be_bytes());
    encode_reply(out, option, REP_INFO, &p);
}

/// `NBD_REP_INFO` with `NBD_INFO_NAME` or `NBD_INFO_DESCRIPTION`.
pub fn encode_info_string(out: &mut Vec<u8>, option: u32, info: u16, s: &str) {
    let s = super::proto::truncate_str(s, MAX_STRING_LEN);
    let mut p = Vec::with_capacity(2 + s.len());
    p.extend_from_slice(&info.to_be_bytes());
    p.extend_from_slice(s.as_bytes());
    encode_reply(out, option, REP_INFO, &p);
}

/// `NBD_REP_INFO` with `NBD_INFO_BLOCK_SIZE` (length 14).
pub fn encode_info_block_size(
    out: &mut Vec<u8>,
    option: u32,
    minimum: u32,
    preferred: u32,
    maximum: u32,
) {
    let mut p = [0u8; 14];
    p[..2].copy_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    p[2..6].copy_from_slice(&minimum.to_be_bytes());
    p[6..10].copy_from_slice(&preferred.to_be_bytes());
    p[10..].copy_from_slice(&maximum.to_be_bytes());
    encode_reply(out, option, REP_INFO, &p);
}

/// `NBD_REP_META_CONTEXT`: a context id and its name.
pub fn encode_meta_context(out: &mut Vec<u8>, option: u32, id: u32, name: &str) {
    let mut p = Vec::with_capacity(4 + name.len());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(name.as_bytes());
    encode_reply(out, option, REP_META_CONTEXT, &p);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn option_header_golden_bytes() {
        let wire = *b"IHAVEOPT\x00\x00\x00\x07\x00\x00\x00\x0a";
        let h = OptionHeader::decode(&wire).expect("valid");
        assert_eq!(
            h,
            OptionHeader {
                option: OPT_GO,
                length: 10
            }
        );
        assert_eq!(h.encode(), wire);
        let bad = *b"IHAVEOPX\x00\x00\x00\x07\x00\x00\x00\x0a";
        assert!(matches!(
            OptionHeader::decode(&bad),
            Err(OptionError::BadMagic(_))
        ));
    }

    #[test]
    fn info_request_golden_bytes() {
        // name "disk", two requests: NAME and BLOCK_SIZE.
        let data = [0, 0, 0, 4, b'd', b'i', b's', b'k', 0, 2, 0, 1, 0, 3];
        let r = InfoRequest::decode(&data).expect("valid");
        assert_eq!(
            r,
            InfoRequest {
                name: "disk".into(),
                requests: vec![INFO_NAME, INFO_BLOCK_SIZE]
            }
        );
        let mut back = Vec::new();
        r.encode(&mut back);
        assert_eq!(back, data);
    }

    #[test]
    fn info_request_rejects_bad_lengths_and_trailing_bytes() {
        assert!(matches!(
            InfoRequest::decode(&[0, 0, 0]),
            Err(OptionError::Short { .. })
        ));
        // Name length past the end.
        assert!(matches!(
            InfoRequest::decode(&[0, 0, 0, 9, b'a', 0, 0]),
            Err(OptionError::LengthPastEnd {
                what: "export name",
                claimed: 9,
                ..
            })
        ));
        // Claims 2 info requests, carries 1.
        assert!(InfoRequest::decode(&[0, 0, 0, 0, 0, 2, 0, 1]).is_err());
        // Trailing byte.
        assert_eq!(
            InfoRequest::decode(&[0, 0, 0, 0, 0, 0, 9]),
            Err(OptionError::Trailing(1))
        );
        // NUL in the name.
        assert_eq!(
            InfoRequest::decode(&[0, 0, 0, 1, 0, 0, 0]),
            Err(OptionError::ContainsNul("export name"))
        );
        // Not UTF-8.
        assert_eq!(
            InfoRequest::decode(&[0, 0, 0, 1, 0xff, 0, 0]),
            Err(OptionError::NotUtf8("export name"))
        );
    }

    #[test]
    fn meta_context_request_golden_bytes() {
        let mut data = vec![0, 0, 0, 0, 0, 0, 0, 2];
        for q in ["base:allocation", "qemu:dirty-bitmap:x"] {
            data.extend_from_slice(&(q.len() as u32).to_be_bytes());
            data.extend_from_slice(q.as_bytes());
        }
        let r = MetaContextRequest::decode(&data).expect("valid");
        assert_eq!(r.name, "");
        assert_eq!(r.queries, ["base:allocation", "qemu:dirty-bitmap:x"]);
        let mut back = Vec::new();
        r.encode(&mut back);
        assert_eq!(back, data);
    }

    #[test]
    fn meta_context_huge_query_count_does_not_allocate() {
        // 4 billion queries claimed, none present: an error, not an OOM.
        let data = [0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            MetaContextRequest::decode(&data),
            Err(OptionError::LengthPastEnd { .. })
        ));
    }

    #[test]
    fn reply_golden_bytes() {
        let mut out = Vec::new();
        encode_info_block_size(&mut out, OPT_GO, 512, 4096, 32 << 20);
        assert_eq!(
            out,
            [
                0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9, // reply magic
                0, 0, 0, 7, // NBD_OPT_GO
                0, 0, 0, 3, // NBD_REP_INFO
                0, 0, 0, 14, // length
                0, 3, // NBD_INFO_BLOCK_SIZE
                0, 0, 2, 0, 0, 0, 0x10, 0, 0x02, 0, 0, 0,
            ]
        );
        out.clear();
        encode_error_reply(&mut out, 42, REP_ERR_UNSUP, "no");
        assert_eq!(&out[8..20], &[0, 0, 0, 42, 0x80, 0, 0, 1, 0, 0, 0, 2]);
        assert_eq!(&out[20..], b"no");
    }

    proptest! {
        #[test]
        fn option_parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = InfoRequest::decode(&data);
            let _ = MetaContextRequest::decode(&data);
            let _ = parse_string(&data, "s");
        }

        #[test]
        fn meta_context_request_round_trips(name in "[a-z]{0,10}", queries in proptest::collection::vec("[a-z:]{0,20}", 0..5)) {
            let r = MetaContextRequest { name, queries };
            let mut wire = Vec::new();
            r.encode(&mut wire);
            prop_assert_eq!(MetaContextRequest::decode(&wire), Ok(r));
        }
    }
}
