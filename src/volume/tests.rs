//! Volume tests against the real embedded KMS and real files.

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::*;
use crate::blockdev::BlockDevice;
use crate::kms::local::LocalKms;

struct Fixture {
    _dir: tempfile::TempDir,
    kms: LocalKms,
    store: VolumeStore,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let kms = LocalKms::open(dir.path(), "us-east-1").unwrap();
    let store = VolumeStore::new(dir.path(), "us-east-1");
    Fixture {
        _dir: dir,
        kms,
        store,
    }
}

fn opts(size: u64, sector_size: u32) -> CreateOptions {
    CreateOptions {
        size,
        sector_size,
        kms_key_id: None,
        encrypted: true,
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

#[test]
fn create_uses_default_key_and_binds_volume_id() {
    let f = fixture();
    let caller = f.kms.root_caller();
    let info = f
        .store
        .create(&f.kms, &caller, "demo", &opts(1 << 20, 4096))
        .unwrap();
    assert!(header::is_volume_id(&info.volume_id));
    assert!(info.encrypted);
    assert_eq!(info.cipher, "aes-xts-plain64");
    assert_eq!(info.data_offset, DATA_OFFSET);
    assert_eq!(
        info.encryption_context.get(CONTEXT_KEY),
        Some(&info.volume_id)
    );
    let alias = f
        .kms
        .list_aliases(&caller)
        .unwrap()
        .into_iter()
        .find(|a| a.alias_name == DEFAULT_KEY_ALIAS)
        .unwrap();
    assert!(info
        .kms_key_arn
        .as_deref()
        .unwrap()
        .ends_with(alias.target_key_id.as_deref().unwrap()));
    // The file is sparse: only the header area is allocated.
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(&info.path).unwrap();
    assert_eq!(md.len(), DATA_OFFSET + (1 << 20));
    assert!(
        md.blocks() * 512 <= 256 * 1024,
        "data area should be sparse"
    );
    assert_eq!(md.mode() & 0o077, 0, "volume file must be private");
    // Names are unique; ids and names both find it.
    assert!(matches!(
        f.store
            .create(&f.kms, &caller, "demo", &opts(1 << 20, 4096)),
        Err(Error::AlreadyExists(..))
    ));
    assert_eq!(f.store.find(&info.volume_id).unwrap().name, "demo");
    assert!(matches!(f.store.find("nope"), Err(Error::NotFound(..))));
}

#[test]
fn rejects_bad_names_and_sizes() {
    let f = fixture();
    let c = f.kms.root_caller();
    for bad in ["", "vol-123", "a/b", "-x", &"x".repeat(65)] {
        assert!(
            matches!(
                f.store.create(&f.kms, &c, bad, &opts(4096, 4096)),
                Err(Error::InvalidName(_))
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        f.store.create(&f.kms, &c, "a", &opts(4097, 4096)),
        Err(Error::InvalidSize { .. })
    ));
    assert!(matches!(
        f.store.create(&f.kms, &c, "a", &opts(0, 512)),
        Err(Error::InvalidSize { .. })
    ));
    assert!(matches!(
        f.store.create(&f.kms, &c, "a", &opts(4096, 1024)),
        Err(Error::InvalidSectorSize(1024))
    ));
}

#[test]
fn aligned_and_unaligned_io_round_trip_for_both_sector_sizes() {
    for ss in [512u32, 4096] {
        let f = fixture();
        let c = f.kms.root_caller();
        let name = format!("v{ss}");
        f.store
            .create(&f.kms, &c, &name, &opts(1 << 20, ss))
            .unwrap();
        let v = f.store.attach(&f.kms, &c, &name, false).unwrap();
        let mut model = vec![0u8; 1 << 20];
        let writes: [(u64, usize); 6] = [
            (0, 8192),
            (100, 3),
            (4095, 2),
            (5000, 10000),
            (1048576 - 7, 7),
            (777, 1),
        ];
        for (i, &(off, len)) in writes.iter().enumerate() {
            let data = pattern(len, i as u8);
            model[off as usize..off as usize + len].copy_from_slice(&data);
            let mut scratch = data.clone();
            v.write_at(off, &mut scratch, false).unwrap();
        }
        let mut all = vec![0u8; 1 << 20];
        v.read_at(0, &mut all).unwrap();
        assert!(all == model, "sector size {ss}");
        let mut part = vec![0u8; 12345];
        v.read_at(333, &mut part).unwrap();
        assert_eq!(part, model[333..333 + 12345]);
        assert!(matches!(
            v.read_at((1 << 20) - 1, &mut [0u8; 2]),
            Err(crate::blockdev::DeviceError::OutOfRange { .. })
        ));
    }
}

/// The data area is plain dm-crypt `aes-xts-plain64` with 4096-byte sectors
/// and large IVs: decrypting the raw file with the independent `xts-mode`
/// crate and the KMS-unwrapped key gives back what was written.
#[test]
fn data_area_is_dm_crypt_compatible_and_holds_no_plaintext() {
    let f = fixture();
    let c = f.kms.root_caller();
    let info = f
        .store
        .create(&f.kms, &c, "d", &opts(1 << 20, 4096))
        .unwrap();
    let v = f.store.attach(&f.kms, &c, "d", false).unwrap();
    let plain = b"attack at dawn -- ".repeat(3 * 4096 / 18 + 1)[..4096 * 3].to_vec();
    v.write_at(4096 * 5, &mut plain.clone(), true).unwrap();
    drop(v);

    let raw = std::fs::read(&info.path).unwrap();
    assert!(
        !raw.windows(14).any(|w| w == b"attack at dawn"),
        "plaintext found in the volume file"
    );

    let h = VolumeStore::read_header_at(&info.path).unwrap();
    let key = f
        .kms
        .decrypt(&c, &h.wrapped_data_key, &h.encryption_context, None)
        .unwrap()
        .plaintext;
    use aes::cipher::KeyInit;
    let (k1, k2) = key.expose().split_at(32);
    let xts = xts_mode::Xts128::new(
        aes::Aes256::new_from_slice(k1).unwrap(),
        aes::Aes256::new_from_slice(k2).unwrap(),
    );
    let start = (DATA_OFFSET + 4096 * 5) as usize;
    let mut area = raw[start..start + 4096 * 3].to_vec();
    xts.decrypt_area(&mut area, 4096, 5, xts_mode::get_tweak_default);
    assert_eq!(area, plain);
}

#[test]
fn trim_and_write_zeroes_read_back_zeros_and_report_holes() {
    let f = fixture();
    let c = f.kms.root_caller();
    f.store
        .create(&f.kms, &c, "z", &opts(1 << 20, 4096))
        .unwrap();
    let v = f.store.attach(&f.kms, &c, "z", false).unwrap();
    v.write_at(0, &mut vec![0xAA; 1 << 20], false).unwrap();
    v.write_zeroes(4096 + 100, 3 * 4096, true, false).unwrap();
    let mut buf = vec![0u8; 5 * 4096];
    v.read_at(0, &mut buf).unwrap();
    assert!(buf[..4196].iter().all(|&b| b == 0xAA));
    assert!(buf[4196..4196 + 3 * 4096].iter().all(|&b| b == 0));
    assert!(buf[4196 + 3 * 4096..].iter().all(|&b| b == 0xAA));

    v.trim(65536, 65536, false).unwrap();
    let mut t = vec![1u8; 65536];
    v.read_at(65536, &mut t).unwrap();
    assert!(t.iter().all(|&b| b == 0));
    let map = v.block_status(65536, 65536).unwrap();
    assert!(map[0].hole && map[0].zero, "{map:?}");
    let map = v.block_status(0, 4096).unwrap();
    assert!(!map[0].hole, "{map:?}");
}

#[test]
fn concurrent_partial_writes_to_one_sector_lose_nothing() {
    let f = fixture();
    let c = f.kms.root_caller();
    f.store
        .create(&f.kms, &c, "c", &opts(1 << 20, 4096))
        .unwrap();
    let v = Arc::new(f.store.attach(&f.kms, &c, "c", false).unwrap());
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let v = v.clone();
            std::thread::spawn(move || {
                for round in 0..50u8 {
                    // Each thread owns bytes t*512 .. t*512+512 of sector 3.
                    let mut d = vec![t.wrapping_mul(16).wrapping_add(round) | 1; 512];
                    v.write_at(3 * 4096 + t as u64 * 512, &mut d, false)
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut s = vec![0u8; 4096];
    v.read_at(3 * 4096, &mut s).unwrap();
    for t in 0..8u8 {
        let want = t.wrapping_mul(16).wrapping_add(49) | 1;
        assert!(
            s[t as usize * 512..(t as usize + 1) * 512]
                .iter()
                .all(|&b| b == want),
            "thread {t}'s bytes were lost"
        );
    }
}

#[test]
fn second_writable_attach_is_refused_and_read_only_is_enforced() {
    let f = fixture();
    let c = f.kms.root_caller();
    f.store
        .create(&f.kms, &c, "b", &opts(1 << 20, 4096))
        .unwrap();
    let v = f.store.attach(&f.kms, &c, "b", false).unwrap();
    assert!(matches!(
        f.store.attach(&f.kms, &c, "b", false),
        Err(Error::Busy(_))
    ));
    assert!(matches!(f.store.delete("b"), Err(Error::Busy(_))));
    let ro = f.store.attach(&f.kms, &c, "b", true).unwrap();
    assert!(matches!(
        ro.write_at(0, &mut [1u8; 4096], false),
        Err(crate::blockdev::DeviceError::ReadOnly)
    ));
    drop(v);
    drop(ro);
    f.store.delete("b").unwrap();
    assert!(f.store.list().unwrap().is_empty());
}

#[test]
fn torn_header_write_falls_back_to_the_other_copy() {
    let f = fixture();
    let c = f.kms.root_caller();
    let info = f
        .store
        .create(&f.kms, &c, "h", &opts(1 << 20, 4096))
        .unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&info.path)
        .unwrap();
    let cur = file::read_header(&file).unwrap().unwrap();
    // An update that tears half-way through: slot for the next sequence gets garbage.
    let mut next = cur.clone();
    next.name = "renamed".into();
    file::write_header(&file, &cur, &mut next).unwrap();
    let at = if next.sequence.is_multiple_of(2) {
        0
    } else {
        header::SLOT_SIZE as u64
    };
    file.write_all_at(&[0x55; 100], at + 40).unwrap();
    let got = file::read_header(&file).unwrap().unwrap();
    assert_eq!(got, cur, "the intact older copy wins over a torn newer one");
    drop(file);
    // And the volume still attaches and decrypts.
    let v = f.store.attach(&f.kms, &c, "h", false).unwrap();
    v.write_at(0, &mut vec![7u8; 4096], false).unwrap();
}

#[test]
fn tampered_wrapped_key_is_refused_by_the_kms() {
    let f = fixture();
    let c = f.kms.root_caller();
    let info = f
        .store
        .create(&f.kms, &c, "t", &opts(1 << 20, 4096))
        .unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&info.path)
        .unwrap();
    let cur = file::read_header(&file).unwrap().unwrap();
    let mut bad = cur.clone();
    bad.encryption_context
        .insert(CONTEXT_KEY.into(), "vol-00000000000000000".into());
    file::write_header(&file, &cur, &mut bad).unwrap();
    drop(file);
    let err = f.store.attach(&f.kms, &c, "t", false).unwrap_err();
    assert!(matches!(err, Error::Kms { .. }), "{err}");
    assert!(err.to_string().contains("unwrap the data key"), "{err}");
}

#[test]
fn unencrypted_volume_stores_plaintext() {
    let f = fixture();
    let c = f.kms.root_caller();
    let o = CreateOptions {
        size: 1 << 20,
        sector_size: 4096,
        kms_key_id: None,
        encrypted: false,
    };
    let info = f.store.create(&f.kms, &c, "p", &o).unwrap();
    assert!(!info.encrypted && info.kms_key_arn.is_none() && info.wrapped_data_key.is_none());
    let v = f.store.attach(&f.kms, &c, "p", false).unwrap();
    v.write_at(0, &mut b"plain text here!".repeat(256), true)
        .unwrap();
    drop(v);
    let raw = std::fs::read(&info.path).unwrap();
    assert_eq!(
        &raw[DATA_OFFSET as usize..DATA_OFFSET as usize + 16],
        b"plain text here!"
    );
}
