//! Hostile and broken clients (issue 7): garbage, lies about lengths,
//! truncation, clients that stop reading or vanish, floods of connections,
//! handshakes that never end. Each test checks that the server answers per
//! the spec or closes only that connection, frees what the connection held,
//! and then still serves a well-behaved client (a raw one always, and
//! `nbdinfo` when installed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::clients::{have, run_ok};
use super::{Raw, TestServer};
use crate::blockdev::{BlockDevice, DeviceError, Extent, MemDevice};
use crate::nbd::option::{self as opt, OptionHeader};
use crate::nbd::proto::{self, Command, Errno, RequestHeader};
use crate::nbd::{
    Export, ServerConfig, IN_FLIGHT_BUDGET, OPTION_DISCARD_LIMIT, WRITE_DISCARD_LIMIT,
};

const MIB: usize = 1 << 20;

/// A well-behaved client gets served: a raw write + read round trip on
/// `disk`, and `nbdinfo` when it is installed.
async fn still_serves(srv: &TestServer) {
    let (mut c, _, _) = Raw::open(srv.addr, "disk", false, false).await;
    c.request(Command::Write, 0, 1, 0, 4, b"okay").await;
    assert_eq!(c.simple_reply().await, (0, 1));
    c.request(Command::Read, 0, 2, 0, 4, &[]).await;
    assert_eq!(c.simple_reply().await, (0, 2));
    let mut b = [0u8; 4];
    c.s.read_exact(&mut b).await.expect("read data");
    assert_eq!(&b, b"okay");
    c.request(Command::Disc, 0, 3, 0, 0, &[]).await;
    if have("nbdinfo") {
        let out = run_ok("nbdinfo", &["--size", &srv.uri("disk")]).await;
        assert_eq!(out.trim().parse::<usize>().ok(), Some(srv_size(srv)));
    }
}

fn srv_size(srv: &TestServer) -> usize {
    srv.devices.first().map_or(0, |d| d.size() as usize)
}

/// Reads the greeting only (no client flags sent).
async fn connect_greeted(srv: &TestServer) -> Raw {
    let mut c = Raw::connect(srv.addr).await;
    let mut g = [0u8; 18];
    c.s.read_exact(&mut g).await.expect("greeting");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_greetings_close_only_their_connection() {
    let srv = TestServer::start(&[("disk", MIB, false)], |_| {}).await;
    let garbage: [&[u8]; 5] = [
        b"GET / HTTP/1.1\r\nHost: nbd\r\n\r\n",
        // A TLS ClientHello record header, as from a client that assumes TLS
        // from the first byte.
        &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc],
        &[0xff; 4096],
        // Valid client flags, then an option with a bad magic.
        b"\x00\x00\x00\x01NOTMAGIC\x00\x00\x00\x07\x00\x00\x00\x00",
        // An option magic off by one byte.
        b"\x00\x00\x00\x03IHAVEOPX\x00\x00\x00\x03\x00\x00\x00\x00",
    ];
    for g in garbage {
        let mut c = connect_greeted(&srv).await;
        c.s.write_all(g).await.expect("garbage");
        assert!(c.closed_by_server().await, "not closed after {g:?}");
    }
    // Connect and leave at once, in every phase.
    drop(Raw::connect(srv.addr).await);
    let mut c = connect_greeted(&srv).await;
    c.s.write_all(&[0, 0]).await.expect("half the flags");
    drop(c);
    still_serves(&srv).await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_option_lengths_close_or_skip_without_allocating() {
    let srv = TestServer::start(&[("disk", MIB, false)], |_| {}).await;
    let flags = proto::FLAG_C_FIXED_NEWSTYLE | proto::FLAG_C_NO_ZEROES;
    // Beyond the discard limit: closed at once, whatever the option.
    for (option, length) in [
        (opt::OPT_INFO, OPTION_DISCARD_LIMIT + 1),
        (4242, u32::MAX),
        // EXPORT_NAME cannot be answered with an error at any length past the cap.
        (opt::OPT_EXPORT_NAME, crate::nbd::MAX_OPTION_LEN + 1),
    ] {
        let mut c = Raw::connect(srv.addr).await;
        c.greet(flags).await;
        c.s.write_all(&OptionHeader { option, length }.encode())
            .await
            .expect("header");
        assert!(c.closed_by_server().await, "{option} with {length} bytes");
    }
    // Claims 100 bytes, sends 10, hangs up: the server sees EOF and lets go.
    let mut c = Raw::connect(srv.addr).await;
    c.greet(flags).await;
    c.s.write_all(
        &OptionHeader {
            option: opt::OPT_GO,
            length: 100,
        }
        .encode(),
    )
    .await
    .expect("header");
    c.s.write_all(&[0u8; 10]).await.expect("part");
    c.s.shutdown().await.expect("shutdown");
    assert!(c.closed_by_server().await);
    // An INFO whose inner name length lies is an ordinary error reply.
    let mut c = Raw::connect(srv.addr).await;
    c.greet(flags).await;
    c.send_option(opt::OPT_INFO, &[0xff, 0xff, 0xff, 0xff, b'x', 0, 0])
        .await;
    let (_, kind, msg) = c.option_reply().await;
    assert_eq!(kind, opt::REP_ERR_INVALID);
    assert!(String::from_utf8_lossy(&msg).contains("claims"), "{msg:?}");
    still_serves(&srv).await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_truncated_payloads() {
    let srv = TestServer::start(&[("disk", MIB, false)], |_| {}).await;
    let dev = srv.devices[0].clone();
    // A write too large even to skip: closed, nothing written.
    let (mut c, _, _) = Raw::open(srv.addr, "disk", true, false).await;
    let huge = u32::try_from(WRITE_DISCARD_LIMIT + 1).unwrap_or(u32::MAX);
    c.request(Command::Write, 0, 1, 0, huge, &[0xaa; 4096])
        .await;
    assert!(
        c.closed_by_server().await,
        "write of {huge} bytes kept open"
    );
    // A write whose payload stops short: the server waits for the rest,
    // then sees EOF and drops the request without touching the device.
    let (mut c, _, _) = Raw::open(srv.addr, "disk", true, false).await;
    c.request(Command::Write, 0, 2, 8192, 65536, &[0xbb; 1000])
        .await;
    c.s.shutdown().await.expect("shutdown");
    assert!(c.closed_by_server().await);
    // Half a request header, then EOF.
    let (mut c, _, _) = Raw::open(srv.addr, "disk", true, false).await;
    let h = RequestHeader {
        flags: 0,
        command: Command::Read,
        cookie: 3,
        offset: 0,
        length: 512,
    };
    c.s.write_all(&h.encode()[..13]).await.expect("half header");
    c.s.shutdown().await.expect("shutdown");
    assert!(c.closed_by_server().await);
    let mut b = vec![1u8; 2 * 65536];
    dev.read_at(0, &mut b).expect("read");
    assert!(
        b.iter().all(|&x| x == 0),
        "a partial write reached the device"
    );
    still_serves(&srv).await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_commands_and_flags_and_ranges_past_the_end_get_errors_in_sync() {
    let srv = TestServer::start(&[("disk", MIB, false)], |_| {}).await;
    let (mut c, _, _) = Raw::open(srv.addr, "disk", true, false).await;
    let inval = Errno::Inval.code();
    let end = MIB as u64;
    // (command, flags, offset, length, payload sent, expected errno)
    let cases: Vec<(Command, u16, u64, u32, usize, u32)> = vec![
        (Command::Unknown(12345), 0, 0, 4096, 0, inval),
        (
            Command::Unknown(0xffff),
            0xffff,
            u64::MAX,
            u32::MAX,
            0,
            inval,
        ),
        // Unknown flag on a write: its payload is skipped, the stream stays in sync.
        (Command::Write, 1 << 15, 0, 4096, 4096, inval),
        (Command::Read, 1 << 12, 0, 512, 0, inval),
        (Command::Flush, 0, 4096, 0, 0, inval),
        (Command::Write, 0, end, 1, 1, Errno::NoSpc.code()),
        // offset + length overflows: malformed, not merely out of space.
        (Command::Write, 0, u64::MAX - 1, 4096, 4096, inval),
        (Command::Trim, 0, end - 4096, 8192, 0, inval),
        (Command::WriteZeroes, 0, end, 1, 0, Errno::NoSpc.code()),
        (Command::Cache, 0, u64::MAX, 1, 0, inval),
        (Command::BlockStatus, 0, end, 1, 0, inval),
    ];
    for (i, &(cmd, flags, offset, len, sent, errno)) in cases.iter().enumerate() {
        let cookie = 100 + i as u64;
        c.request(cmd, flags, cookie, offset, len, &vec![0xcc; sent])
            .await;
        let ch = c.chunk().await;
        assert_eq!(ch.cookie, cookie, "{cmd:?}");
        let (got, msg) = ch.error();
        // Read/write/trim/zero past the end: EINVAL or ENOSPC both per spec;
        // pin what we send so a change is noticed.
        assert_eq!(
            got, errno,
            "{cmd:?} flags {flags:#x} at {offset}+{len}: {msg}"
        );
        assert!(!msg.is_empty());
    }
    // Still in sync: a normal read after all that.
    c.request(Command::Read, 0, 1, 0, 512, &[]).await;
    let ch = c.chunk().await;
    assert_eq!((ch.cookie, ch.kind), (1, proto::REPLY_TYPE_OFFSET_DATA));
    let mut b = vec![1u8; MIB];
    srv.devices[0].read_at(0, &mut b).expect("read");
    assert!(
        b.iter().all(|&x| x == 0),
        "a refused write reached the device"
    );
    still_serves(&srv).await;
    srv.stop().await;
}

/// A device that counts reads and can be slowed down.
struct Counting {
    inner: MemDevice,
    reads: AtomicU64,
    delay: Duration,
}

impl BlockDevice for Counting {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn sector_size(&self) -> u32 {
        self.inner.sector_size()
    }
    fn is_read_only(&self) -> bool {
        false
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &mut [u8], fua: bool) -> Result<(), DeviceError> {
        self.inner.write_at(offset, data, fua)
    }
    fn flush(&self) -> Result<(), DeviceError> {
        self.inner.flush()
    }
    fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<(), DeviceError> {
        self.inner.trim(offset, len, fua)
    }
    fn write_zeroes(&self, o: u64, l: u64, may_trim: bool, fua: bool) -> Result<(), DeviceError> {
        self.inner.write_zeroes(o, l, may_trim, fua)
    }
    fn block_status(&self, offset: u64, len: u64) -> Result<Vec<Extent>, DeviceError> {
        self.inner.block_status(offset, len)
    }
}

/// A server whose `slow` export counts reads; `disk` is an ordinary one.
async fn counting_server(
    delay: Duration,
    f: impl FnOnce(&mut ServerConfig),
) -> (TestServer, Arc<Counting>) {
    let counting = Arc::new(Counting {
        inner: MemDevice::new(4 * MIB, false),
        reads: AtomicU64::new(0),
        delay,
    });
    let disk = Arc::new(MemDevice::new(MIB, false));
    let mut cfg = ServerConfig::new(vec![
        Export::new("disk", disk.clone()),
        Export::new("slow", counting.clone()),
    ]);
    f(&mut cfg);
    (TestServer::serve(cfg, vec![disk]).await, counting)
}

/// A client socket with a small receive buffer, so that "stops reading"
/// fills up quickly and the kernel cannot hide much.
async fn small_buffer_connect(srv: &TestServer) -> TcpStream {
    let sock = TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(64 << 10).expect("SO_RCVBUF");
    sock.connect(srv.addr).await.expect("connect")
}

/// Handshake on an existing socket (`NBD_OPT_GO` on `name`, simple replies).
async fn open_on(s: TcpStream, name: &str) -> Raw {
    let mut c = Raw { s };
    c.greet(proto::FLAG_C_FIXED_NEWSTYLE | proto::FLAG_C_NO_ZEROES)
        .await;
    let mut data = Vec::new();
    opt::InfoRequest {
        name: name.into(),
        requests: vec![],
    }
    .encode(&mut data);
    c.send_option(opt::OPT_GO, &data).await;
    while c.option_reply().await.1 != opt::REP_ACK {}
    c
}

/// Waits until `n` stops changing for `quiet`; returns its value.
async fn settle(n: &AtomicU64, quiet: Duration) -> u64 {
    let mut last = n.load(Ordering::SeqCst);
    loop {
        tokio::time::sleep(quiet).await;
        let now = n.load(Ordering::SeqCst);
        if now == last {
            return now;
        }
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_held_to_the_in_flight_budget() {
    let (srv, dev) = counting_server(Duration::ZERO, |cfg| cfg.max_connections = 3).await;
    let mut c = open_on(small_buffer_connect(&srv).await, "slow").await;
    // 1000 reads of 1 MiB, replies never read: 1 GiB if the server
    // buffered them. 28-byte requests fit in the socket buffers, so all of
    // them reach the server.
    const N: u64 = 1000;
    let mut reqs = Vec::new();
    for i in 0..N {
        let h = RequestHeader {
            flags: 0,
            command: Command::Read,
            cookie: i,
            offset: 0,
            length: MIB as u32,
        };
        reqs.extend_from_slice(&h.encode());
    }
    c.s.write_all(&reqs).await.expect("requests");
    let served = settle(&dev.reads, Duration::from_millis(500)).await;
    eprintln!("client that stops reading: {served} of {N} 1 MiB reads executed");
    // The budget holds ~63 MiB of 1 MiB replies; the kernel's socket
    // buffers (server send, client receive) a few MiB more.
    let budget_reads = (IN_FLIGHT_BUDGET / MIB) as u64;
    assert!(
        served <= budget_reads + 32,
        "{served} MiB of replies produced for a client that reads nothing (budget {budget_reads} MiB)"
    );
    assert!(
        served >= budget_reads / 2,
        "only {served} reads: the test did not fill the budget"
    );
    // Everyone else is served meanwhile.
    still_serves(&srv).await;
    // Now it vanishes with ~1000 requests queued: its slot comes back.
    drop(c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let (c, _, _) = Raw::open(srv.addr, "disk", false, false).await;
        held.push(c);
    }
    let after = settle(&dev.reads, Duration::from_millis(300)).await;
    eprintln!("after it vanished: {after} reads in all");
    assert!(
        after <= served + 2,
        "the server kept executing a gone client's requests ({served} -> {after})"
    );
    drop(held);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_vanish_mid_request_free_their_connection() {
    let (srv, dev) =
        counting_server(Duration::from_millis(50), |cfg| cfg.max_connections = 2).await;
    for round in 0..4 {
        // Each round must get a slot back from the round before, or with a
        // cap of 2 the third round could never be admitted. (The slot frees
        // asynchronously after the close, so admission is retried.)
        let admitted = Raw::admitted(srv.addr, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("round {round}: connection slot never freed"));
        // Pipelined slow reads, then gone before any reply.
        let (mut c, _, _) = admitted.go("slow", false, false).await;
        for i in 0..16 {
            c.request(Command::Read, 0, i, 0, 65536, &[]).await;
        }
        // And a write whose payload never arrives.
        c.request(Command::Write, 0, 99, 0, 65536, &[7; 100]).await;
        drop(c);
    }
    assert!(dev.reads.load(Ordering::SeqCst) > 0);
    still_serves(&srv).await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_connections_at_once_are_capped_and_served() {
    const CAP: usize = 150;
    const CLIENTS: usize = 250;
    let srv = TestServer::start(&[("disk", MIB, false)], |cfg| cfg.max_connections = CAP).await;
    let addr = srv.addr;
    // All connect at once and hold on; each one admitted does a full
    // handshake and a read.
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            let mut g = [0u8; 18];
            match tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut g)).await {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return (None, false),
                Err(_) => panic!("client {i}: neither greeted nor refused"),
            }
            // Greeted: finish the handshake, read a block.
            let mut c = Raw { s };
            c.s.write_all(&(proto::FLAG_C_FIXED_NEWSTYLE | proto::FLAG_C_NO_ZEROES).to_be_bytes())
                .await
                .expect("flags");
            c.send_option(opt::OPT_EXPORT_NAME, b"disk").await;
            let mut info = [0u8; 10];
            c.s.read_exact(&mut info).await.expect("export info");
            c.request(Command::Read, 0, i as u64, 0, 4096, &[]).await;
            let ok = c.simple_reply().await == (0, i as u64);
            (Some(c), ok)
        }));
    }
    let mut held = Vec::new();
    let (mut served, mut refused) = (0, 0);
    for t in tasks {
        match t.await.expect("client task") {
            (Some(c), ok) => {
                assert!(ok, "an admitted client's read failed");
                served += 1;
                held.push(c);
            }
            (None, _) => refused += 1,
        }
    }
    assert_eq!((served, refused), (CAP, CLIENTS - CAP));
    drop(held);
    // All slots come back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    still_serves(&srv).await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_handshakes_time_out_and_free_their_slot() {
    let timeout = Duration::from_millis(600);
    let srv = TestServer::start(&[("disk", MIB, false)], |cfg| {
        cfg.handshake_timeout = timeout;
        cfg.max_connections = 2;
    })
    .await;
    let t0 = Instant::now();
    // One never sends its flags; one trickles a valid option a byte at a
    // time, each byte well within the timeout, the whole far beyond it.
    let mut silent = connect_greeted(&srv).await;
    let mut slow = Raw::connect(srv.addr).await;
    slow.greet(proto::FLAG_C_FIXED_NEWSTYLE).await;
    let trickle = tokio::spawn(async move {
        let mut opt_bytes = OptionHeader {
            option: opt::OPT_INFO,
            length: 64,
        }
        .encode()
        .to_vec();
        opt_bytes.extend(std::iter::repeat_n(0u8, 64));
        for b in opt_bytes {
            if slow.s.write_all(&[b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        slow
    });
    // Both slots are taken: a third client is refused for now.
    let mut third = Raw::connect(srv.addr).await;
    assert!(third.closed_by_server().await);
    assert!(silent.closed_by_server().await);
    let mut slow = trickle.await.expect("trickle");
    assert!(slow.closed_by_server().await);
    let took = t0.elapsed();
    assert!(took < timeout * 5, "handshakes lasted {took:?}");
    still_serves(&srv).await;
    srv.stop().await;
}
