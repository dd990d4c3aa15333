//! Wire-level tests: what real clients never send, and what the server
//! must survive anyway.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Raw, TestServer};
use crate::blockdev::BlockDevice;
use crate::nbd::option::{self as opt, InfoRequest, MetaContextRequest};
use crate::nbd::proto::{self, Command, Errno};
use crate::nbd::{MAX_OPTION_LEN, MAX_PAYLOAD};

const MIB: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greeting_and_handshake_flags() {
    let srv = TestServer::start(&[("disk", MIB, false)], |_| {}).await;
    let mut c = Raw::connect(srv.addr).await;
    assert_eq!(
        c.greet(proto::FLAG_C_FIXED_NEWSTYLE).await,
        proto::FLAG_FIXED_NEWSTYLE | proto::FLAG_NO_ZEROES
    );
    drop(c);
    // Unknown client flags: the spec says close.
    let mut c = Raw::connect(srv.addr).await;
    c.greet(1 << 7).await;
    assert!(c.closed_by_server().await);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_name_sends_size_flags_and_honours_no_zeroes() {
    let srv = TestServer::start(&[("disk", MIB, false), ("ro", 4096, true)], |_| {}).await;
    for (no_zeroes, name, size, ro) in [
        (true, "disk", MIB, false),
        (false, "", MIB, false),
        (true, "ro", 4096, true),
    ] {
        let mut c = Raw::connect(srv.addr).await;
        let flags = proto::FLAG_C_FIXED_NEWSTYLE
            | if no_zeroes {
                proto::FLAG_C_NO_ZEROES
            } else {
                0
            };
        c.greet(flags).await;
        c.send_option(opt::OPT_EXPORT_NAME, name.as_bytes()).await;
        let mut b = vec![0u8; if no_zeroes { 10 } else { 134 }];
        c.s.read_exact(&mut b).await.expect("export reply");
        assert_eq!(
            u64::from_be_bytes(b[..8].try_into().expect("8")),
            size as u64
        );
        let tflags = u16::from_be_bytes([b[8], b[9]]);
        assert_eq!(tflags & proto::TFLAG_READ_ONLY != 0, ro);
        assert!(b[10..].iter().all(|&z| z == 0));
        // Transmission works straight away: a simple-reply read.
        c.request(Command::Read, 0, 1, 0, 512, &[]).await;
        assert_eq!(c.simple_reply().await, (0, 1));
        let mut data = [1u8; 512];
        c.s.read_exact(&mut data).await.expect("data");
        assert_eq!(data, [0u8; 512]);
    }
    // Unknown name: EXPORT_NAME cannot fail gracefully, so the server closes.
    let mut c = Raw::connect(srv.addr).await;
    c.greet(proto::FLAG_C_FIXED_NEWSTYLE).await;
    c.send_option(opt::OPT_EXPORT_NAME, b"nope").await;
    assert!(c.closed_by_server().await);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn option_errors_keep_the_handshake_going() {
    let srv = TestServer::start(&[("a", MIB, false), ("b", MIB, false)], |_| {}).await;
    let mut c = Raw::connect(srv.addr).await;
    c.greet(proto::FLAG_C_FIXED_NEWSTYLE | proto::FLAG_C_NO_ZEROES)
        .await;

    c.send_option(99, b"whatever").await;
    assert_eq!(c.option_reply().await.1, opt::REP_ERR_UNSUP);
    c.send_option(opt::OPT_EXTENDED_HEADERS, &[]).await;
    assert_eq!(c.option_reply().await.1, opt::REP_ERR_UNSUP);
    c.send_option(opt::OPT_STARTTLS, &[]).await;
    assert_eq!(c.option_reply().await.1, opt::REP_ERR_POLICY);
    c.send_option(opt::OPT_LIST, b"x").await;
    assert_eq!(c.option_reply().await.1, opt::REP_ERR_INVALID);
    // SET_META_CONTEXT before structured replies.
    let mut meta = Vec::new();
    MetaContextRequest {
        name: "a".into(),
        queries: vec!["base:allocation".into()],
    }
    .encode(&mut meta);
    c.send_option(opt::OPT_SET_META_CONTEXT, &meta).await;
    assert_eq!(c.option_reply().await.1, opt::REP_ERR_INVALID);
    // LIST_META_CONTEXT with the namespace wildcard, and with a foreign namespace.
    let mut list = Vec::new();
    MetaContextRequest {
        name: "a".into(),
        queries: vec!["base:".into()],
    }
    .encode(&mut list);
    c.send_option(opt::OPT_LIST_META_CONTEXT, &list).await;
    let (_, kind, d) = c.option_reply().await;
    assert_eq!(
        (kind, &d[4..]),
        (opt::REP_META_CONTEXT, &b"base:allocation"[..])
    );
    assert_eq!(c.option_reply().await.1, opt::REP_ACK);
    list.clear();
    MetaContextRequest {
        name: "a".into(),
        queries: vec!["qemu:dirty-bitmap:x".into()],
    }
    .encode(&mut list);
    c.send_option(opt::OPT_LIST_META_CONTEXT, &list).await;
    assert_eq!(c.option_reply().await.1, opt::REP_ACK);
    // Malformed INFO data.
    c.send_option(opt::OPT_INFO, &[0, 0, 0, 50, 0, 0]).await;
    assert_eq!(c.option_reply().await.1, opt::REP_ERR_INVALID);
    // Unknown export: the message lists what exists.
    let mut info = Vec::new();
    InfoRequest {
        name: "zzz".into(),
        requests: vec![],
    }
    .encode(&mut info);
    c.send_option(opt::OPT_INFO, &info).await;
    let (_, kind, msg) = c.option_reply().await;
    assert_eq!(kind, opt::REP_ERR_UNKNOWN);
    let msg = String::from_utf8(msg).expect("utf8");
    assert!(msg.contains("zzz") && msg.contains("a, b"), "{msg}");
    // Too long to read, short enough to skip: ERR_TOO_BIG, still in sync.
    c.send_option(opt::OPT_INFO, &vec![0u8; MAX_OPTION_LEN as usize + 1])
        .await;
    assert_eq!(c.option_reply().await.1, opt::REP_ERR_TOO_BIG);
    // LIST still works after all that.
    c.send_option(opt::OPT_LIST, &[]).await;
    for name in ["a", "b"] {
        let (_, kind, d) = c.option_reply().await;
        assert_eq!(kind, opt::REP_SERVER);
        let n = u32::from_be_bytes(d[..4].try_into().expect("4")) as usize;
        assert_eq!(&d[4..4 + n], name.as_bytes());
    }
    assert_eq!(c.option_reply().await.1, opt::REP_ACK);
    c.send_option(opt::OPT_ABORT, &[]).await;
    assert_eq!(c.option_reply().await.1, opt::REP_ACK);
    assert!(c.closed_by_server().await);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_option_length_closes_without_allocating() {
    let srv = TestServer::start(&[("a", MIB, false)], |_| {}).await;
    let mut c = Raw::connect(srv.addr).await;
    c.greet(proto::FLAG_C_FIXED_NEWSTYLE).await;
    let h = opt::OptionHeader {
        option: opt::OPT_GO,
        length: u32::MAX,
    };
    c.s.write_all(&h.encode()).await.expect("write");
    assert!(c.closed_by_server().await);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_request_magic_closes_only_that_connection() {
    let srv = TestServer::start(&[("disk", MIB, false)], |_| {}).await;
    let (mut bad, _, _) = Raw::open(srv.addr, "disk", true, false).await;
    let (mut good, _, _) = Raw::open(srv.addr, "disk", true, false).await;
    bad.s.write_all(&[0x55u8; 28]).await.expect("garbage");
    assert!(bad.closed_by_server().await);
    good.request(Command::Write, 0, 7, 0, 4, b"abcd").await;
    assert_eq!(good.simple_reply().await, (0, 7));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_errors_and_the_connection_stays_usable_simple() {
    let srv = TestServer::start(&[("disk", MIB, false)], |_| {}).await;
    let (mut c, size, flags) = Raw::open(srv.addr, "disk", false, false).await;
    assert_eq!(size, MIB as u64);
    assert_eq!(
        flags & proto::TFLAG_SEND_DF,
        0,
        "DF needs structured replies"
    );
    let inval = Errno::Inval.code();
    c.request(Command::Read, 0, 1, MIB as u64, 512, &[]).await;
    assert_eq!(c.simple_reply().await, (inval, 1));
    c.request(Command::Read, 0, 2, u64::MAX - 10, 512, &[])
        .await;
    assert_eq!(c.simple_reply().await, (inval, 2));
    c.request(Command::Unknown(77), 0, 3, 0, 0, &[]).await;
    assert_eq!(c.simple_reply().await, (inval, 3));
    c.request(Command::Read, 1 << 9, 4, 0, 512, &[]).await;
    assert_eq!(c.simple_reply().await, (inval, 4));
    c.request(Command::BlockStatus, 0, 5, 0, 512, &[]).await;
    assert_eq!(c.simple_reply().await, (inval, 5));
    // Write past the end: payload skipped, ENOSPC per the spec.
    c.request(Command::Write, 0, 6, MIB as u64 - 2, 4, b"wxyz")
        .await;
    assert_eq!(c.simple_reply().await, (Errno::NoSpc.code(), 6));
    // Oversized write: its payload is read and dropped, the stream stays in sync.
    let big = vec![0xeeu8; MAX_PAYLOAD as usize + 1];
    c.request(Command::Write, 0, 8, 0, big.len() as u32, &big)
        .await;
    assert_eq!(c.simple_reply().await, (inval, 8));
    c.request(Command::Read, 0, 9, 0, 4, &[]).await;
    assert_eq!(c.simple_reply().await, (0, 9));
    let mut d = [1u8; 4];
    c.s.read_exact(&mut d).await.expect("data");
    assert_eq!(
        d, [0; 4],
        "nothing of the refused writes reached the device"
    );
    c.request(Command::Disc, 0, 10, 0, 0, &[]).await;
    assert!(c.closed_by_server().await);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_error_chunks_with_messages_structured() {
    let srv = TestServer::start(&[("disk", MIB, false), ("ro", MIB, true)], |_| {}).await;
    let (mut c, _, flags) = Raw::open(srv.addr, "disk", true, true).await;
    assert_ne!(flags & proto::TFLAG_SEND_DF, 0);
    c.request(Command::Read, 0, 1, MIB as u64 - 512, 1024, &[])
        .await;
    let ch = c.chunk().await;
    assert_eq!((ch.cookie, ch.flags), (1, proto::REPLY_FLAG_DONE));
    let (errno, msg) = ch.error();
    assert_eq!(errno, Errno::Inval.code());
    assert!(
        msg.contains("1048064") && msg.contains("1024") && msg.contains("1048576"),
        "{msg}"
    );
    // DF read larger than the maximum payload.
    c.request(
        Command::Read,
        proto::CMD_FLAG_DF,
        2,
        0,
        MAX_PAYLOAD + 1,
        &[],
    )
    .await;
    assert_eq!(c.chunk().await.error().0, Errno::Overflow.code());
    c.request(Command::BlockStatus, 0, 3, 0, 0, &[]).await;
    assert_eq!(c.chunk().await.error().0, Errno::Inval.code());
    // Still usable.
    c.request(Command::Read, proto::CMD_FLAG_DF, 4, 512, 512, &[])
        .await;
    let ch = c.chunk().await;
    assert_eq!(
        (ch.kind, ch.cookie, ch.payload.len()),
        (proto::REPLY_TYPE_OFFSET_DATA, 4, 520)
    );
    assert_eq!(
        u64::from_be_bytes(ch.payload[..8].try_into().expect("8")),
        512
    );
    // Zero-length read: a lone NONE chunk.
    c.request(Command::Read, 0, 5, 0, 0, &[]).await;
    let ch = c.chunk().await;
    assert_eq!(
        (ch.kind, ch.flags, ch.payload.len()),
        (proto::REPLY_TYPE_NONE, proto::REPLY_FLAG_DONE, 0)
    );

    let (mut ro, _, rflags) = Raw::open(srv.addr, "ro", true, false).await;
    assert_ne!(rflags & proto::TFLAG_READ_ONLY, 0);
    for (cookie, cmd) in [
        (1, Command::Write),
        (2, Command::Trim),
        (3, Command::WriteZeroes),
    ] {
        let payload: &[u8] = if cmd == Command::Write { b"data" } else { &[] };
        ro.request(cmd, 0, cookie, 0, 4, payload).await;
        let ch = ro.chunk().await;
        assert_eq!(
            (ch.cookie, ch.error().0),
            (cookie, Errno::Perm.code()),
            "{cmd:?}"
        );
    }
    ro.request(Command::Flush, 0, 4, 0, 0, &[]).await;
    assert_eq!(ro.simple_reply().await, (0, 4));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unaligned_writes_trim_zeroes_and_block_status() {
    let srv = TestServer::start(&[("disk", MIB, false)], |_| {}).await;
    let dev = srv.devices[0].clone();
    let (mut c, _, _) = Raw::open(srv.addr, "disk", true, true).await;
    c.request(Command::Write, proto::CMD_FLAG_FUA, 1, 4095, 3, b"xyz")
        .await;
    assert_eq!(c.simple_reply().await, (0, 1));
    let mut b = [0u8; 5];
    dev.read_at(4094, &mut b).expect("read");
    assert_eq!(&b, b"\0xyz\0");

    c.request(Command::BlockStatus, 0, 2, 0, 16384, &[]).await;
    let ch = c.chunk().await;
    assert_eq!((ch.kind, ch.cookie), (proto::REPLY_TYPE_BLOCK_STATUS, 2));
    let words: Vec<u32> = ch
        .payload
        .chunks(4)
        .map(|w| u32::from_be_bytes(w.try_into().expect("4")))
        .collect();
    assert_eq!(
        words,
        [1, 8192, 0, 8192, 3],
        "context 1: 8 KiB data, then 8 KiB hole+zero"
    );
    c.request(
        Command::BlockStatus,
        proto::CMD_FLAG_REQ_ONE,
        3,
        8192,
        100,
        &[],
    )
    .await;
    let ch = c.chunk().await;
    assert_eq!(ch.payload, [0, 0, 0, 1, 0, 0, 0, 100, 0, 0, 0, 3]);

    c.request(
        Command::WriteZeroes,
        proto::CMD_FLAG_NO_HOLE,
        4,
        4096,
        4096,
        &[],
    )
    .await;
    assert_eq!(c.simple_reply().await, (0, 4));
    c.request(Command::Trim, 0, 5, 0, 4096, &[]).await;
    assert_eq!(c.simple_reply().await, (0, 5));
    dev.read_at(4094, &mut b).expect("read");
    assert_eq!(b, [0; 5]);
    c.request(Command::Cache, 0, 6, 0, 4096, &[]).await;
    assert_eq!(c.simple_reply().await, (0, 6));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_all_get_answered() {
    let srv = TestServer::start(&[("disk", 8 * MIB, false)], |_| {}).await;
    let (c, _, _) = Raw::open(srv.addr, "disk", true, false).await;
    let (mut r, mut w) = c.s.into_split();
    const N: u64 = 256;
    // Writes of 64 KiB each, pattern = cookie, sent without waiting.
    let sender = tokio::spawn(async move {
        for i in 0..N {
            let h = proto::RequestHeader {
                flags: 0,
                command: Command::Write,
                cookie: i,
                offset: i * 32768,
                length: 32768,
            };
            w.write_all(&h.encode()).await.expect("hdr");
            w.write_all(&vec![i as u8; 32768]).await.expect("payload");
        }
        w
    });
    let mut seen = vec![false; N as usize];
    for _ in 0..N {
        let mut h = [0u8; 16];
        r.read_exact(&mut h).await.expect("reply");
        assert_eq!(&h[4..8], &[0, 0, 0, 0]);
        let cookie = u64::from_be_bytes(h[8..].try_into().expect("8"));
        assert!(
            !std::mem::replace(&mut seen[cookie as usize], true),
            "cookie {cookie} answered twice"
        );
    }
    let _w = sender.await.expect("sender");
    let mut buf = vec![0u8; 32768];
    for i in 0..N {
        srv.devices[0].read_at(i * 32768, &mut buf).expect("read");
        assert!(buf.iter().all(|&b| b == i as u8), "block {i}");
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_handshake_times_out() {
    let srv = TestServer::start(&[("disk", MIB, false)], |cfg| {
        cfg.handshake_timeout = Duration::from_millis(300)
    })
    .await;
    let mut c = Raw::connect(srv.addr).await;
    c.greet(proto::FLAG_C_FIXED_NEWSTYLE).await;
    let t = std::time::Instant::now();
    assert!(c.closed_by_server().await);
    assert!(t.elapsed() < Duration::from_secs(3));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed_promptly() {
    let srv = TestServer::start(&[("disk", MIB, false)], |cfg| cfg.max_connections = 2).await;
    let (mut a, _, _) = Raw::open(srv.addr, "disk", false, false).await;
    let (_b, _, _) = Raw::open(srv.addr, "disk", false, false).await;
    let mut c = Raw::connect(srv.addr).await;
    assert!(c.closed_by_server().await, "third connection refused");
    a.request(Command::Disc, 0, 0, 0, 0, &[]).await;
    assert!(a.closed_by_server().await);
    // The slot is free again (the server notices a's end asynchronously).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mut d, _, _) = Raw::open(srv.addr, "disk", false, false).await;
    d.request(Command::Flush, 0, 1, 0, 0, &[]).await;
    assert_eq!(d.simple_reply().await, (0, 1));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_connections_and_returns() {
    let srv = TestServer::start(&[("disk", MIB, false)], |_| {}).await;
    let (mut t, _, _) = Raw::open(srv.addr, "disk", true, false).await;
    let mut h = Raw::connect(srv.addr).await;
    h.greet(proto::FLAG_C_FIXED_NEWSTYLE).await;
    srv.stop().await;
    assert!(t.closed_by_server().await);
    assert!(h.closed_by_server().await);
}
