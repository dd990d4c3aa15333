//! NBD over TLS (`serve --tls off|on|require --tls-certificates DIR`)
//! against real clients: libnbd's nbdinfo/nbdcopy (GnuTLS) and qemu-img,
//! with certificates made by the `openssl` CLI, plus a hand-driven client
//! (rustls) for what real clients never send.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use cryptvol::nbd::option::{self as opt, InfoRequest, MetaContextRequest, OptionHeader};
use cryptvol::nbd::proto;
use tokio_rustls::rustls;

/// A private PKI in a temporary directory, laid out as qemu and libnbd
/// expect (`ca-cert.pem`, `server-cert.pem`/`server-key.pem`,
/// `client-cert.pem`/`client-key.pem`):
///
/// - `server/`: server certificate for localhost and 127.0.0.1, signed by the CA;
/// - `client/`: the CA and a client certificate signed by it;
/// - `anon/`: the CA only (no client certificate);
/// - `rogue-client/`: the CA, and a client certificate signed by another CA;
/// - `wrong-ca/`: only the other CA, which did not sign the server.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// None (after a loud SKIPPED line) without the openssl CLI.
    fn new() -> Option<Pki> {
        if !have("openssl", "openssl") {
            return None;
        }
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
        };
        let d = pki.dir.path();
        for sub in ["server", "client", "anon", "rogue-client", "wrong-ca"] {
            std::fs::create_dir(d.join(sub)).unwrap();
        }
        pki.ca("ca");
        pki.ca("rogue");
        pki.leaf(
            "server/server",
            "ca",
            "localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        );
        pki.leaf(
            "client/client",
            "ca",
            "client",
            "extendedKeyUsage=clientAuth\n",
        );
        pki.leaf(
            "rogue-client/client",
            "rogue",
            "rogue",
            "extendedKeyUsage=clientAuth\n",
        );
        for sub in ["server", "client", "anon", "rogue-client"] {
            std::fs::copy(d.join("ca-cert.pem"), d.join(sub).join("ca-cert.pem")).unwrap();
        }
        std::fs::copy(d.join("rogue-cert.pem"), d.join("wrong-ca/ca-cert.pem")).unwrap();
        Some(pki)
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    fn openssl(&self, args: &[&str]) {
        run_ok(
            Command::new("openssl")
                .current_dir(self.dir.path())
                .args(args),
        );
    }

    /// `NAME-key.pem` and a self-signed `NAME-cert.pem`. P-256 keys: quick
    /// to make, and every TLS stack here speaks them.
    fn ca(&self, name: &str) {
        let (key, cert) = (format!("{name}-key.pem"), format!("{name}-cert.pem"));
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} test CA"),
            "-keyout",
            &key,
            "-out",
            &cert,
        ]);
    }

    /// `PREFIX-key.pem` and `PREFIX-cert.pem` signed by CA `ca`.
    fn leaf(&self, prefix: &str, ca: &str, cn: &str, ext: &str) {
        let (key, cert, csr) = (
            format!("{prefix}-key.pem"),
            format!("{prefix}-cert.pem"),
            format!("{prefix}.csr"),
        );
        let ext_file = format!("{prefix}.ext");
        std::fs::write(
            self.path(&ext_file),
            format!("basicConstraints=CA:FALSE\n{ext}"),
        )
        .unwrap();
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &key,
            "-out",
            &csr,
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}-cert.pem"),
            "-CAkey",
            &format!("{ca}-key.pem"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext_file,
            "-out",
            &cert,
        ]);
    }
}

/// Real clients present? (Each prints its own SKIPPED line.)
fn have_clients() -> bool {
    have("nbdinfo", "libnbd-bin") & have("nbdcopy", "libnbd-bin") & have("qemu-img", "qemu-utils")
}

/// `cryptvol serve disk --create --size 16M --tls MODE --tls-certificates DIR EXTRA…`.
fn serve(data: &Path, pki: &Pki, mode: &str, extra: &[&str]) -> (Server, u16) {
    let server_dir = pki.path("server");
    let mut args = vec!["disk", "--create", "--size", "16M", "--tls", mode];
    args.extend(["--tls-certificates", server_dir.to_str().unwrap()]);
    args.extend(extra);
    let srv = Server::start(data, &args);
    let port = port_of(srv.uri());
    (srv, port)
}

/// The port of an announced URI (`nbds://127.0.0.1:PORT/disk`).
fn port_of(uri: &str) -> u16 {
    let hostport = uri.split("://").nth(1).unwrap().split('/').next().unwrap();
    hostport.rsplit(':').next().unwrap().parse().unwrap()
}

/// libnbd's TLS URI for `export` with the client directory `dir`.
fn nbds(port: u16, dir: &Path) -> String {
    format!(
        "nbds://localhost:{port}/disk?tls-certificates={}",
        dir.display()
    )
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// qemu's client-side TLS object and the image options of the export.
fn qemu_tls(port: u16, dir: &Path) -> (String, String) {
    (
        format!(
            "tls-creds-x509,id=tls0,dir={},endpoint=client",
            dir.display()
        ),
        format!("driver=raw,file.driver=nbd,file.host=localhost,file.port={port},file.export=disk,file.tls-creds=tls0"),
    )
}

fn qemu_img(args: &[&str]) -> Output {
    Command::new("qemu-img").args(args).output().unwrap()
}

#[test]
fn require_serves_libnbd_and_qemu_over_tls_and_refuses_plaintext() {
    let Some(pki) = Pki::new() else { return };
    if !have_clients() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let (srv, port) = serve(data.path(), &pki, "require", &[]);
    assert!(srv.uri().starts_with("nbds://"), "{}", srv.uri());
    let client = pki.path("client");

    // nbdinfo over TLS.
    let out = run_ok(Command::new("nbdinfo").args(["--json", &nbds(port, &client)]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["TLS"], true, "{v}");
    assert_eq!(v["exports"][0]["export-size"], 16 << 20);

    // nbdcopy in and out through TLS.
    let src = data.path().join("src.bin");
    let back = data.path().join("back.bin");
    std::fs::write(&src, random_bytes(16 << 20, 7)).unwrap();
    run_ok(Command::new("nbdcopy").arg(&src).arg(nbds(port, &client)));
    run_ok(Command::new("nbdcopy").arg(nbds(port, &client)).arg(&back));
    assert!(
        std::fs::read(&src).unwrap() == std::fs::read(&back).unwrap(),
        "nbdcopy round trip differs"
    );

    // qemu-img writes through TLS, nbdcopy reads back, qemu-img compares.
    let qsrc = data.path().join("q.bin");
    std::fs::write(&qsrc, random_bytes(16 << 20, 8)).unwrap();
    let (object, image) = qemu_tls(port, &client);
    let out = qemu_img(&[
        "convert",
        "-n",
        "-f",
        "raw",
        qsrc.to_str().unwrap(),
        "--object",
        &object,
        "--target-image-opts",
        &image,
    ]);
    assert!(out.status.success(), "qemu-img convert: {}", text(&out));
    run_ok(Command::new("nbdcopy").arg(nbds(port, &client)).arg(&back));
    let got = std::fs::read(&back).unwrap();
    assert!(
        got == std::fs::read(&qsrc).unwrap(),
        "qemu-img's write differs"
    );
    let local = format!(
        "driver=raw,file.driver=file,file.filename={}",
        qsrc.display()
    );
    let out = qemu_img(&[
        "compare",
        "--object",
        &object,
        "--image-opts",
        &local,
        &image,
    ]);
    assert!(out.status.success(), "qemu-img compare: {}", text(&out));
    assert!(text(&out).contains("identical"), "{}", text(&out));

    // Plaintext clients are refused, and told why. libnbd 1.14 shows the
    // server's message only in its debug output.
    let out = Command::new("nbdinfo")
        .env("LIBNBD_DEBUG", "1")
        .arg(format!("nbd://localhost:{port}/disk"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "plaintext nbdinfo succeeded");
    assert!(text(&out).contains("requires TLS"), "{}", text(&out));
    let out = qemu_img(&["info", &format!("nbd://localhost:{port}/disk")]);
    assert!(!out.status.success());
    assert!(text(&out).contains("requires TLS"), "{}", text(&out));
}

#[test]
fn on_serves_plaintext_and_tls_clients_and_wire_shows_no_plaintext_under_tls() {
    let Some(pki) = Pki::new() else { return };
    if !have_clients() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let (_srv, port) = serve(data.path(), &pki, "on", &[]);
    let client = pki.path("client");
    let relay = Relay::start(port);

    // A megabyte of a recognisable pattern, written and read over TLS.
    let marker = b"PLAINTEXT-MARKER-0123456789abcdef";
    let pattern: Vec<u8> = marker.iter().copied().cycle().take(1 << 20).collect();
    let src = data.path().join("src.bin");
    let back = data.path().join("back.bin");
    std::fs::write(&src, &pattern).unwrap();
    run_ok(
        Command::new("nbdcopy")
            .arg(&src)
            .arg(nbds(relay.port, &client)),
    );
    run_ok(
        Command::new("nbdcopy")
            .arg(nbds(relay.port, &client))
            .arg(&back),
    );
    assert!(std::fs::read(&back).unwrap()[..1 << 20] == pattern[..]);
    let wire = relay.take();
    assert!(
        wire.len() > 2 << 20,
        "relay saw both directions ({} bytes)",
        wire.len()
    );
    assert!(
        !contains(&wire, &marker[..16]),
        "plaintext data on the wire under TLS"
    );

    // The same through plaintext NBD (allowed with --tls on): the relay
    // does see the pattern, so the check above can fail.
    let uri = format!("nbd://localhost:{}/disk", relay.port);
    let out = run_ok(Command::new("nbdinfo").arg("--json").arg(&uri));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["TLS"], false, "{v}");
    run_ok(Command::new("nbdcopy").arg(&uri).arg(&back));
    assert!(
        contains(&relay.take(), &marker[..16]),
        "relay captured nothing"
    );

    // qemu over TLS with --tls on.
    let (object, image) = qemu_tls(port, &client);
    let out = qemu_img(&["info", "--object", &object, "--image-opts", &image]);
    assert!(out.status.success(), "qemu-img info: {}", text(&out));
}

#[test]
fn clients_refuse_a_server_their_ca_did_not_sign() {
    let Some(pki) = Pki::new() else { return };
    if !have_clients() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let (_srv, port) = serve(data.path(), &pki, "require", &[]);
    let wrong = pki.path("wrong-ca");
    let out = Command::new("nbdinfo")
        .arg(nbds(port, &wrong))
        .output()
        .unwrap();
    assert!(!out.status.success(), "nbdinfo trusted a foreign CA");
    assert!(
        text(&out).to_lowercase().contains("certificate"),
        "{}",
        text(&out)
    );
    let (object, image) = qemu_tls(port, &wrong);
    let out = qemu_img(&["info", "--object", &object, "--image-opts", &image]);
    assert!(!out.status.success(), "qemu-img trusted a foreign CA");
    // The server is unharmed.
    run_ok(Command::new("nbdinfo").arg(nbds(port, &pki.path("client"))));
}

#[test]
fn verify_peer_needs_a_client_certificate_signed_by_the_ca() {
    let Some(pki) = Pki::new() else { return };
    if !have_clients() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let (_srv, port) = serve(data.path(), &pki, "require", &["--tls-verify-peer"]);
    for refused in ["anon", "rogue-client"] {
        let out = Command::new("nbdinfo")
            .arg(nbds(port, &pki.path(refused)))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{refused}: accepted: {}", text(&out));
        let (object, image) = qemu_tls(port, &pki.path(refused));
        let out = qemu_img(&["info", "--object", &object, "--image-opts", &image]);
        assert!(
            !out.status.success(),
            "{refused}: qemu accepted: {}",
            text(&out)
        );
    }
    let client = pki.path("client");
    let out = run_ok(Command::new("nbdinfo").args(["--json", &nbds(port, &client)]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["TLS"], true);
    let (object, image) = qemu_tls(port, &client);
    let out = qemu_img(&["info", "--object", &object, "--image-opts", &image]);
    assert!(
        out.status.success(),
        "qemu-img with a client cert: {}",
        text(&out)
    );
}

#[test]
fn tls_flags_are_checked_before_serving() {
    let Some(pki) = Pki::new() else { return };
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let server = pki.path("server");
    let server = server.to_str().unwrap();
    let empty = tempfile::tempdir().unwrap();
    for (args, expect) in [
        (vec!["--tls", "require"], "--tls-certificates DIR"),
        (vec!["--tls", "on"], "--tls-certificates DIR"),
        (vec!["--tls-certificates", server], "TLS is off"),
        (vec!["--tls-verify-peer"], "add --tls on"),
        (
            vec![
                "--tls",
                "on",
                "--tls-certificates",
                empty.path().to_str().unwrap(),
            ],
            "server-cert.pem",
        ),
        (vec!["--tls", "maybe"], "possible values"),
        (vec!["--handshake-timeout", "0s"], "more than zero"),
        (vec!["--max-connections", "0"], "at least 1"),
    ] {
        let mut all = vec![
            "serve",
            "disk",
            "--create",
            "--size",
            "1M",
            "--listen",
            "127.0.0.1:0",
        ];
        all.extend(&args);
        let out = cryptvol(d, &all);
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{args:?}: {err}");
    }
}

// --- The wire by hand: what the spec says the server must answer.

/// One option reply: (option, reply type, data).
fn option_reply(s: &mut impl Read) -> (u32, u32, Vec<u8>) {
    let mut h = [0u8; 20];
    s.read_exact(&mut h).unwrap();
    assert_eq!(&h[..8], &proto::OPTION_REPLY_MAGIC.to_be_bytes());
    let word = |i: usize| u32::from_be_bytes(h[i..i + 4].try_into().unwrap());
    let mut data = vec![0u8; word(16) as usize];
    s.read_exact(&mut data).unwrap();
    (word(8), word(12), data)
}

fn send_option(s: &mut impl Write, option: u32, data: &[u8]) {
    let h = OptionHeader {
        option,
        length: data.len() as u32,
    };
    s.write_all(&h.encode()).unwrap();
    s.write_all(data).unwrap();
    s.flush().unwrap();
}

/// Connects and greets; returns the plaintext socket.
fn greet(port: u16, flags: u32) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut g = [0u8; 18];
    s.read_exact(&mut g).unwrap();
    assert_eq!(&g[..16], b"NBDMAGICIHAVEOPT");
    s.write_all(&flags.to_be_bytes()).unwrap();
    s
}

const FIXED: u32 = proto::FLAG_C_FIXED_NEWSTYLE | proto::FLAG_C_NO_ZEROES;

/// True if the server closes the connection (rather than answering).
fn closed(s: &mut impl Read) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

/// `NBD_OPT_STARTTLS`, `NBD_REP_ACK`, then a rustls client handshake that
/// trusts the test CA.
fn start_tls(
    mut s: TcpStream,
    pki: &Pki,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    send_option(&mut s, opt::OPT_STARTTLS, &[]);
    let (o, kind, d) = option_reply(&mut s);
    assert_eq!((o, kind, d.len()), (opt::OPT_STARTTLS, opt::REP_ACK, 0));
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(pki.path("ca-cert.pem")).unwrap();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, s);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls
}

fn info_data(name: &str) -> Vec<u8> {
    let mut d = Vec::new();
    InfoRequest {
        name: name.into(),
        requests: vec![],
    }
    .encode(&mut d);
    d
}

/// `NBD_OPT_GO` on `disk`: returns the transmission flags.
fn go(s: &mut (impl Read + Write)) -> u16 {
    send_option(s, opt::OPT_GO, &info_data("disk"));
    let mut flags = None;
    loop {
        let (_, kind, d) = option_reply(s);
        match kind {
            opt::REP_INFO if d[..2] == [0, 0] => flags = Some(u16::from_be_bytes([d[10], d[11]])),
            opt::REP_INFO => {}
            opt::REP_ACK => return flags.unwrap(),
            other => panic!("GO failed: {other:#x} {}", String::from_utf8_lossy(&d)),
        }
    }
}

#[test]
fn forced_tls_answers_tls_reqd_per_option_and_upgrades_per_the_spec() {
    let Some(pki) = Pki::new() else { return };
    let data = tempfile::tempdir().unwrap();
    let (_srv, port) = serve(data.path(), &pki, "require", &["--handshake-timeout", "2s"]);

    // Every option but STARTTLS and ABORT: NBD_REP_ERR_TLS_REQD, with a message.
    let mut meta = Vec::new();
    MetaContextRequest {
        name: "disk".into(),
        queries: vec!["base:allocation".into()],
    }
    .encode(&mut meta);
    let mut s = greet(port, FIXED);
    let cases: Vec<(u32, Vec<u8>)> = vec![
        (opt::OPT_LIST, vec![]),
        (opt::OPT_PEEK_EXPORT, vec![]),
        (opt::OPT_INFO, info_data("disk")),
        (opt::OPT_GO, info_data("disk")),
        (opt::OPT_STRUCTURED_REPLY, vec![]),
        (opt::OPT_LIST_META_CONTEXT, meta.clone()),
        (opt::OPT_SET_META_CONTEXT, meta),
        (opt::OPT_EXTENDED_HEADERS, vec![]),
        (4242, b"unknown".to_vec()),
        // Too long to read: skipped, still TLS_REQD.
        (opt::OPT_INFO, vec![0; 100 << 10]),
    ];
    for (option, data) in cases {
        send_option(&mut s, option, &data);
        let (o, kind, msg) = option_reply(&mut s);
        assert_eq!(
            (o, kind),
            (option, opt::REP_ERR_TLS_REQD),
            "option {option}"
        );
        assert!(String::from_utf8_lossy(&msg).contains("requires TLS"));
    }
    // STARTTLS with data is invalid; ABORT is honoured.
    send_option(&mut s, opt::OPT_STARTTLS, b"x");
    assert_eq!(option_reply(&mut s).1, opt::REP_ERR_INVALID);
    send_option(&mut s, opt::OPT_ABORT, &[]);
    assert_eq!(option_reply(&mut s).1, opt::REP_ACK);
    assert!(closed(&mut s));

    // EXPORT_NAME before TLS cannot be refused: the server closes.
    let mut s = greet(port, FIXED);
    send_option(&mut s, opt::OPT_EXPORT_NAME, b"disk");
    assert!(closed(&mut s), "EXPORT_NAME before TLS was served");
    // A client without fixed newstyle cannot do TLS at all.
    let mut s = greet(port, 0);
    assert!(closed(&mut s));

    // STARTTLS: ACK, TLS, then haggling and transmission inside TLS.
    let s = greet(port, FIXED);
    let mut t = start_tls(s, &pki);
    send_option(&mut t, opt::OPT_STARTTLS, &[]);
    let (_, kind, msg) = option_reply(&mut t);
    assert_eq!(kind, opt::REP_ERR_INVALID, "second STARTTLS");
    assert!(String::from_utf8_lossy(&msg).contains("already"));
    send_option(&mut t, opt::OPT_LIST, &[]);
    let (_, kind, d) = option_reply(&mut t);
    assert_eq!((kind, &d[4..8]), (opt::REP_SERVER, &b"disk"[..]));
    assert_eq!(option_reply(&mut t).1, opt::REP_ACK);
    go(&mut t);
    let payload = random_bytes(4096, 3);
    let mut req = proto::RequestHeader {
        flags: proto::CMD_FLAG_FUA,
        command: proto::Command::Write,
        cookie: 1,
        offset: 8192,
        length: 4096,
    }
    .encode()
    .to_vec();
    req.extend_from_slice(&payload);
    t.write_all(&req).unwrap();
    t.flush().unwrap();
    let mut reply = [0u8; 16];
    t.read_exact(&mut reply).unwrap();
    assert_eq!(
        &reply[4..],
        &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        "write reply"
    );
    let read = proto::RequestHeader {
        flags: 0,
        command: proto::Command::Read,
        cookie: 2,
        offset: 8192,
        length: 4096,
    };
    t.write_all(&read.encode()).unwrap();
    t.flush().unwrap();
    t.read_exact(&mut reply).unwrap();
    assert_eq!(
        &reply[4..],
        &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
        "read reply"
    );
    let mut back = vec![0u8; 4096];
    t.read_exact(&mut back).unwrap();
    assert_eq!(back, payload);
    t.write_all(
        &proto::RequestHeader {
            flags: 0,
            command: proto::Command::Disc,
            cookie: 3,
            offset: 0,
            length: 0,
        }
        .encode(),
    )
    .unwrap();
    t.flush().unwrap();
    // The server says goodbye with close_notify: a clean end of stream.
    let mut rest = Vec::new();
    t.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());

    // A client that stalls after the ACK is cut off by the handshake timeout.
    let mut s = greet(port, FIXED);
    send_option(&mut s, opt::OPT_STARTTLS, &[]);
    assert_eq!(option_reply(&mut s).1, opt::REP_ACK);
    let t0 = Instant::now();
    assert!(closed(&mut s));
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // One that sends garbage instead of a TLS ClientHello is closed.
    let mut s = greet(port, FIXED);
    send_option(&mut s, opt::OPT_STARTTLS, &[]);
    assert_eq!(option_reply(&mut s).1, opt::REP_ACK);
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    // At most a TLS alert record (content type 21) before the close.
    assert!(rest.is_empty() || rest[0] == 21, "{rest:?}");

    // After all that, a real client is served.
    if have("nbdinfo", "libnbd-bin") {
        run_ok(Command::new("nbdinfo").arg(nbds(port, &pki.path("client"))));
    }
}

#[test]
fn selective_tls_resets_negotiation_state_at_the_upgrade() {
    let Some(pki) = Pki::new() else { return };
    let data = tempfile::tempdir().unwrap();
    let (_srv, port) = serve(data.path(), &pki, "on", &[]);
    // Plaintext haggling works with --tls on.
    let mut s = greet(port, FIXED);
    send_option(&mut s, opt::OPT_STRUCTURED_REPLY, &[]);
    assert_eq!(option_reply(&mut s).1, opt::REP_ACK);
    assert_ne!(
        go(&mut s) & proto::TFLAG_SEND_DF,
        0,
        "structured before TLS"
    );
    drop(s);
    // Structured replies asked for before STARTTLS do not survive it
    // (§ NBD_OPT_STARTTLS), so the export comes without DF.
    let mut s = greet(port, FIXED);
    send_option(&mut s, opt::OPT_STRUCTURED_REPLY, &[]);
    assert_eq!(option_reply(&mut s).1, opt::REP_ACK);
    let mut t = start_tls(s, &pki);
    assert_eq!(
        go(&mut t) & proto::TFLAG_SEND_DF,
        0,
        "state survived STARTTLS"
    );
}

/// A TCP relay to 127.0.0.1:`upstream` that records every byte in both
/// directions, to see what a network observer sees.
struct Relay {
    port: u16,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Relay {
    fn start(upstream: u16) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            for down in l.incoming() {
                let Ok(down) = down else { return };
                let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    return;
                };
                for (from, to) in [
                    (down.try_clone().unwrap(), up.try_clone().unwrap()),
                    (up, down),
                ] {
                    let seen = seen2.clone();
                    std::thread::spawn(move || pump(from, to, &seen));
                }
            }
        });
        Relay { port, seen }
    }

    /// Everything seen so far; clears the record.
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, seen: &Mutex<Vec<u8>>) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
