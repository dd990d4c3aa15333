//! AES-256-XTS sector cipher, compatible with dm-crypt `aes-xts-plain64`.
//!
//! IEEE 1619-2007 XTS with a 64-byte key (`K1 || K2`: data key, tweak key).
//! The tweak of sector `n` is `n` as a 128-bit little-endian integer
//! (`plain64`), counted in units of the volume's sector size (dm-crypt's
//! `iv_large_sectors`, as LUKS2 uses with 4096-byte sectors).
//!
//! Speed, and why the kernel is hand-written: no crate offers a fused XTS
//! on AES-NI. `xts-mode` encrypts one block at a time (~1 GB/s), and the
//! `aes` crate's parallel `encrypt_blocks` keeps its round keys private, so
//! the tweak can only be XORed in and out in passes of their own around it
//! (the [`XtsEngine::Portable`] engine), which cost as long as the AES. The
//! x86-64 engines (`xts_x86.rs`) do what OpenSSL's `aesni_xts_encrypt`
//! does: their own key schedule, the tweak folded into the first and last
//! round keys, 8 (AES-NI) or 16 (VAES) blocks in flight, the rounds pinned
//! in order with `asm!`. [`SectorCipher::new`] picks the fastest engine the
//! CPU has, once; every engine passes the same tests.
//!
//! Measured with `cryptvol-xts-speed 2 SECTOR all` and, in the same run,
//! `openssl speed -evp aes-256-xts -bytes SECTOR -seconds 2 [-decrypt]`
//! (OpenSSL 3.0.19, whose XTS runs on 128-bit AES-NI), both per CPU
//! second, on a 2-vCPU AMD EPYC (AES-NI, VAES, no AVX-512) busy with
//! other builds; GB/s, encrypt and decrypt alike:
//!
//! | sector | portable | aes-ni  | vaes    | openssl |
//! |--------|----------|---------|---------|---------|
//! | 4096   | 1.5–1.9  | 4.0–4.7 | 7.5–9.0 | 4.1–5.2 |
//! | 512    | 0.9–1.4  | 4.2–4.8 | 5.9–7.7 | 2.9–3.8 |
//!
//! XTS gives confidentiality only: it does not detect tampering, and equal
//! plaintext in the same sector under the same key gives equal ciphertext.
//! That is the accepted trade-off of every disk encryption format that must
//! keep a sector the size of a sector.

use aes::cipher::{inout::InOutBuf, BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes256;

use super::secret::DataKey;
#[cfg(target_arch = "x86_64")]
use super::xts_x86;
use crate::secmem::Locked;

/// AES block size in bytes.
const BLOCK: usize = 16;
/// Sector sizes this cipher accepts: the two dm-crypt/LUKS2 use.
pub const SECTOR_SIZES: [u32; 2] = [512, 4096];

/// Multiplies a tweak by the primitive element α of GF(2^128), in the
/// little-endian bit order IEEE 1619 uses (section 5.2).
#[inline(always)]
fn mul_alpha(t: u128) -> u128 {
    // The reduction polynomial x^128 + x^7 + x^2 + x + 1 folds the carry
    // out of bit 127 back in as 0x87.
    let carry = (t >> 127) as u8;
    (t << 1) ^ (0x87u128 & (carry as u128).wrapping_neg())
}

/// Multiplies a tweak by α^8: one byte shift, folding the eight bits shifted
/// out back in through the reduction polynomial (carry-less `c * 0x87`).
#[inline(always)]
fn mul_alpha8(t: u128) -> u128 {
    let c = t >> 120;
    (t << 8) ^ c ^ (c << 1) ^ (c << 2) ^ (c << 7)
}

/// Most blocks in a sector: 4096 / 16.
const MAX_BLOCKS: usize = 4096 / BLOCK;
/// Independent tweak lanes. Computing α·t block after block is one long
/// dependency chain (a few cycles per block, which would cost more than the
/// AES itself); eight lanes each stepping by α^8 run in parallel.
const LANES: usize = 8;

/// The tweak sequence of one sector, computed once and used on both sides
/// of the block cipher.
struct Tweaks {
    t: [u128; MAX_BLOCKS],
    n: usize,
}

impl Tweaks {
    #[inline(always)]
    fn new(t0: u128, blocks: usize) -> Self {
        debug_assert!(blocks.is_multiple_of(LANES) && blocks <= MAX_BLOCKS);
        let mut t = [0u128; MAX_BLOCKS];
        let mut cur = t0;
        for slot in t.iter_mut().take(LANES) {
            *slot = cur;
            cur = mul_alpha(cur);
        }
        for i in LANES..blocks {
            t[i] = mul_alpha8(t[i - LANES]);
        }
        Tweaks { t, n: blocks }
    }

    /// XORs the tweaks into every block of `sector`.
    #[inline(always)]
    fn xor_into(&self, sector: &mut [u8]) {
        for (block, t) in sector.chunks_exact_mut(BLOCK).zip(&self.t[..self.n]) {
            let b: &mut [u8; BLOCK] = block.try_into().expect("BUG: chunks_exact yields 16 bytes");
            *b = (u128::from_le_bytes(*b) ^ t).to_le_bytes();
        }
    }
}

/// Errors from misuse of the cipher: a bad geometry (a caller bug or a
/// corrupt header) or an engine this CPU cannot run, reported instead of
/// panicking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum XtsError {
    #[error("unsupported sector size {0}: cryptvol supports 512 and 4096")]
    SectorSize(u32),
    #[error("buffer of {len} bytes is not a whole number of {sector_size}-byte sectors")]
    Misaligned { len: usize, sector_size: u32 },
    #[error(
        "XTS engine {0} is not available on this machine (CPU features or architecture); \
         SectorCipher::new picks one that is"
    )]
    EngineUnavailable(XtsEngine),
}

/// The implementations of the cipher: a closed set, chosen once per
/// [`SectorCipher`] (by [`XtsEngine::detect`] unless the caller names one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum XtsEngine {
    /// Safe Rust on the `aes` crate, tweaks in separate passes; any CPU.
    Portable,
    /// Fused kernel on 128-bit AES-NI, 8 blocks in flight (x86-64).
    AesNi,
    /// Fused kernel on 256-bit VAES, 16 blocks in flight (x86-64 with AVX2,
    /// VAES and VPCLMULQDQ: Zen 3, Ice Lake and later).
    Vaes,
}

impl XtsEngine {
    /// Every engine, slowest first.
    pub const ALL: [XtsEngine; 3] = [XtsEngine::Portable, XtsEngine::AesNi, XtsEngine::Vaes];

    /// Whether this CPU can run the engine.
    pub fn is_available(self) -> bool {
        match self {
            XtsEngine::Portable => true,
            #[cfg(target_arch = "x86_64")]
            XtsEngine::AesNi => xts_x86::AesNi::detected(),
            #[cfg(target_arch = "x86_64")]
            XtsEngine::Vaes => xts_x86::Vaes::detected(),
            #[cfg(not(target_arch = "x86_64"))]
            XtsEngine::AesNi | XtsEngine::Vaes => false,
        }
    }

    /// The fastest engine this CPU can run.
    pub fn detect() -> Self {
        Self::ALL
            .into_iter()
            .rev()
            .find(|e| e.is_available())
            .unwrap_or(XtsEngine::Portable)
    }
}

impl std::fmt::Display for XtsEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            XtsEngine::Portable => "portable",
            XtsEngine::AesNi => "aes-ni",
            XtsEngine::Vaes => "vaes",
        })
    }
}

/// The portable engine. Each sector is processed in passes over L1-resident
/// data: compute the sector's tweak sequence (in eight independent lanes,
/// see [`LANES`]), XOR it in, hand every block to `aes`'s parallel
/// `encrypt_blocks` (8 blocks in flight when the `aes` crate finds AES-NI),
/// XOR it out again. Round keys are zeroized on drop (`aes`'s `zeroize`
/// feature).
#[derive(Clone)]
struct Portable {
    data: Aes256,
    tweak: Aes256,
}

impl Portable {
    fn new(k1: &[u8; 32], k2: &[u8; 32]) -> Self {
        Portable {
            data: Aes256::new(k1.into()),
            tweak: Aes256::new(k2.into()),
        }
    }

    /// The first tweak of sector `index`: E_K2(index as 128-bit LE).
    #[inline]
    fn initial_tweak(&self, index: u64) -> u128 {
        let mut block = (index as u128).to_le_bytes().into();
        self.tweak.encrypt_block(&mut block);
        u128::from_le_bytes(block.into())
    }

    fn encrypt(&self, first: u64, sector_size: usize, buf: &mut [u8]) {
        for (i, sector) in buf.chunks_exact_mut(sector_size).enumerate() {
            let tweaks = Tweaks::new(
                self.initial_tweak(first.wrapping_add(i as u64)),
                sector_size / BLOCK,
            );
            tweaks.xor_into(sector);
            let (blocks, _) = InOutBuf::from(&mut *sector).into_chunks();
            self.data.encrypt_blocks_inout(blocks);
            tweaks.xor_into(sector);
        }
    }

    fn decrypt(&self, first: u64, sector_size: usize, buf: &mut [u8]) {
        for (i, sector) in buf.chunks_exact_mut(sector_size).enumerate() {
            let tweaks = Tweaks::new(
                self.initial_tweak(first.wrapping_add(i as u64)),
                sector_size / BLOCK,
            );
            tweaks.xor_into(sector);
            let (blocks, _) = InOutBuf::from(&mut *sector).into_chunks();
            self.data.decrypt_blocks_inout(blocks);
            tweaks.xor_into(sector);
        }
    }
}

/// An engine with its expanded keys, on locked, never-dumped pages
/// ([`Locked`]), zeroized on drop.
#[derive(Clone)]
enum Engine {
    Portable(Locked<Portable>),
    #[cfg(target_arch = "x86_64")]
    AesNi(xts_x86::AesNi),
    #[cfg(target_arch = "x86_64")]
    Vaes(xts_x86::Vaes),
}

/// An AES-256-XTS cipher for one volume: the expanded data and tweak keys,
/// the engine that uses them, and the sector size.
#[derive(Clone)]
pub struct SectorCipher {
    engine: Engine,
    sector_size: usize,
}

impl std::fmt::Debug for SectorCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SectorCipher")
            .field("keys", &"[redacted]")
            .field("engine", &self.engine())
            .field("sector_size", &self.sector_size)
            .finish()
    }
}

impl SectorCipher {
    /// A cipher on the fastest engine this CPU runs ([`XtsEngine::detect`]).
    pub fn new(key: &DataKey, sector_size: u32) -> Result<Self, XtsError> {
        Self::with_engine(key, sector_size, XtsEngine::detect())
    }

    /// A cipher on a named engine (tests and benchmarks compare them);
    /// [`XtsError::EngineUnavailable`] if this CPU cannot run it.
    pub fn with_engine(
        key: &DataKey,
        sector_size: u32,
        engine: XtsEngine,
    ) -> Result<Self, XtsError> {
        if !SECTOR_SIZES.contains(&sector_size) {
            return Err(XtsError::SectorSize(sector_size));
        }
        let (k1, k2) = key.expose().split_at(32);
        let k1: &[u8; 32] = k1
            .try_into()
            .expect("BUG: half of a 64-byte key is 32 bytes");
        let k2: &[u8; 32] = k2
            .try_into()
            .expect("BUG: half of a 64-byte key is 32 bytes");
        let ss = sector_size as usize;
        let engine = match engine {
            XtsEngine::Portable => Some(Engine::Portable(Locked::new(Portable::new(k1, k2)))),
            #[cfg(target_arch = "x86_64")]
            XtsEngine::AesNi => xts_x86::AesNi::new(k1, k2, ss).map(Engine::AesNi),
            #[cfg(target_arch = "x86_64")]
            XtsEngine::Vaes => xts_x86::Vaes::new(k1, k2, ss).map(Engine::Vaes),
            #[cfg(not(target_arch = "x86_64"))]
            XtsEngine::AesNi | XtsEngine::Vaes => None,
        }
        .ok_or(XtsError::EngineUnavailable(engine))?;
        Ok(SectorCipher {
            engine,
            sector_size: ss,
        })
    }

    pub fn sector_size(&self) -> u32 {
        self.sector_size as u32
    }

    /// Where the expanded keys live (tests check their pages' flags).
    #[cfg(test)]
    fn key_addr(&self) -> usize {
        match &self.engine {
            Engine::Portable(e) => e.addr(),
            #[cfg(target_arch = "x86_64")]
            Engine::AesNi(e) => e.key_addr(),
            #[cfg(target_arch = "x86_64")]
            Engine::Vaes(e) => e.key_addr(),
        }
    }

    /// The engine this cipher runs on.
    pub fn engine(&self) -> XtsEngine {
        match self.engine {
            Engine::Portable(_) => XtsEngine::Portable,
            #[cfg(target_arch = "x86_64")]
            Engine::AesNi(_) => XtsEngine::AesNi,
            #[cfg(target_arch = "x86_64")]
            Engine::Vaes(_) => XtsEngine::Vaes,
        }
    }

    fn check(&self, buf: &[u8]) -> Result<(), XtsError> {
        if !buf.len().is_multiple_of(self.sector_size) {
            return Err(XtsError::Misaligned {
                len: buf.len(),
                sector_size: self.sector_size as u32,
            });
        }
        Ok(())
    }

    /// Encrypts whole sectors in place; `buf[0..sector_size]` is sector
    /// `first_sector`, the next sector follows, and so on.
    pub fn encrypt_sectors(&self, first_sector: u64, buf: &mut [u8]) -> Result<(), XtsError> {
        self.check(buf)?;
        match &self.engine {
            Engine::Portable(e) => e.encrypt(first_sector, self.sector_size, buf),
            #[cfg(target_arch = "x86_64")]
            Engine::AesNi(e) => e.encrypt(first_sector, buf),
            #[cfg(target_arch = "x86_64")]
            Engine::Vaes(e) => e.encrypt(first_sector, buf),
        }
        Ok(())
    }

    /// Decrypts whole sectors in place (the inverse of [`Self::encrypt_sectors`]).
    pub fn decrypt_sectors(&self, first_sector: u64, buf: &mut [u8]) -> Result<(), XtsError> {
        self.check(buf)?;
        self.decrypt_whole(first_sector, buf);
        Ok(())
    }

    /// Decrypts one sector in place. `sector.len()` must equal the sector
    /// size; a shorter slice is left unchanged.
    #[inline]
    pub fn decrypt_one(&self, index: u64, sector: &mut [u8]) {
        debug_assert_eq!(sector.len(), self.sector_size);
        self.decrypt_whole(index, sector);
    }

    /// Decrypts the whole sectors of `buf`; a partial tail is left alone.
    fn decrypt_whole(&self, first_sector: u64, buf: &mut [u8]) {
        match &self.engine {
            Engine::Portable(e) => e.decrypt(first_sector, self.sector_size, buf),
            #[cfg(target_arch = "x86_64")]
            Engine::AesNi(e) => e.decrypt(first_sector, buf),
            #[cfg(target_arch = "x86_64")]
            Engine::Vaes(e) => e.decrypt(first_sector, buf),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::crypto::SecretBytes;

    fn key_from_hex(k1: &str, k2: &str) -> DataKey {
        let mut k = hex::decode(k1).unwrap();
        k.extend(hex::decode(k2).unwrap());
        DataKey::from_secret(&SecretBytes::new(k)).unwrap()
    }

    /// A cipher on every engine this CPU runs; says loudly which it skips.
    fn every_engine(key: &DataKey, sector_size: u32) -> Vec<SectorCipher> {
        XtsEngine::ALL
            .into_iter()
            .filter_map(|e| match SectorCipher::with_engine(key, sector_size, e) {
                Ok(c) => {
                    assert_eq!(c.engine(), e);
                    Some(c)
                }
                Err(XtsError::EngineUnavailable(_)) => {
                    eprintln!("SKIPPED engine {e}: not available on this machine");
                    None
                }
                Err(err) => panic!("engine {e}: {err}"),
            })
            .collect()
    }

    /// Runs an IEEE 1619 vector (512-byte data units) through every engine,
    /// through both the batch and the single-sector entry points.
    fn check_vector(key: &DataKey, unit: u64, pt: &str, ct: &str) {
        for c in every_engine(key, 512) {
            let e = c.engine();
            let mut buf = hex::decode(pt).unwrap();
            assert_eq!(buf.len(), 512);
            c.encrypt_sectors(unit, &mut buf).unwrap();
            assert_eq!(hex::encode(&buf), ct, "engine {e}");
            c.decrypt_sectors(unit, &mut buf).unwrap();
            assert_eq!(hex::encode(&buf), pt, "engine {e}");
            let mut buf = hex::decode(ct).unwrap();
            c.decrypt_one(unit, &mut buf);
            assert_eq!(hex::encode(&buf), pt, "engine {e}, decrypt_one");
        }
    }

    fn seq_512() -> String {
        (0..512).map(|i| format!("{:02x}", i % 256)).collect()
    }

    /// IEEE 1619-2007 Annex B, vector 10: 256-bit keys, data unit 0xff.
    #[test]
    fn ieee1619_vector_10() {
        let key = key_from_hex(
            "2718281828459045235360287471352662497757247093699959574966967627",
            "3141592653589793238462643383279502884197169399375105820974944592",
        );
        let ct = "1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b5d31e276f8fe4a8d66b317f9ac683f44680a86ac35adfc3345befecb4bb188fd5776926c49a3095eb108fd1098baec70aaa66999a72a82f27d848b21d4a741b0c5cd4d5fff9dac89aeba122961d03a757123e9870f8acf1000020887891429ca2a3e7a7d7df7b10355165c8b9a6d0a7de8b062c4500dc4cd120c0f7418dae3d0b5781c34803fa75421c790dfe1de1834f280d7667b327f6c8cd7557e12ac3a0f93ec05c52e0493ef31a12d3d9260f79a289d6a379bc70c50841473d1a8cc81ec583e9645e07b8d9670655ba5bbcfecc6dc3966380ad8fecb17b6ba02469a020a84e18e8f84252070c13e9f1f289be54fbc481457778f616015e1327a02b140f1505eb309326d68378f8374595c849d84f4c333ec4423885143cb47bd71c5edae9be69a2ffeceb1bec9de244fbe15992b11b77c040f12bd8f6a975a44a0f90c29a9abc3d4d893927284c58754cce294529f8614dcd2aba991925fedc4ae74ffac6e333b93eb4aff0479da9a410e4450e0dd7ae4c6e2910900575da401fc07059f645e8b7e9bfdef33943054ff84011493c27b3429eaedb4ed5376441a77ed43851ad77f16f541dfd269d50d6a5f14fb0aab1cbb4c1550be97f7ab4066193c4caa773dad38014bd2092fa755c824bb5e54c4f36ffda9fcea70b9c6e693e148c151";
        check_vector(&key, 0xff, &seq_512(), ct);
    }

    /// IEEE 1619-2007 Annex B, vector 11: data unit 0xffff.
    #[test]
    fn ieee1619_vector_11() {
        let key = key_from_hex(
            "2718281828459045235360287471352662497757247093699959574966967627",
            "3141592653589793238462643383279502884197169399375105820974944592",
        );
        let ct = "77a31251618a15e6b92d1d66dffe7b50b50bad552305ba0217a610688eff7e11e1d0225438e093242d6db274fde801d4cae06f2092c728b2478559df58e837c2469ee4a4fa794e4bbc7f39bc026e3cb72c33b0888f25b4acf56a2a9804f1ce6d3d6e1dc6ca181d4b546179d55544aa7760c40d06741539c7e3cd9d2f6650b2013fd0eeb8c2b8e3d8d240ccae2d4c98320a7442e1c8d75a42d6e6cfa4c2eca1798d158c7aecdf82490f24bb9b38e108bcda12c3faf9a21141c3613b58367f922aaa26cd22f23d708dae699ad7cb40a8ad0b6e2784973dcb605684c08b8d6998c69aac049921871ebb65301a4619ca80ecb485a31d744223ce8ddc2394828d6a80470c092f5ba413c3378fa6054255c6f9df4495862bbb3287681f931b687c888abf844dfc8fc28331e579928cd12bd2390ae123cf03818d14dedde5c0c24c8ab018bfca75ca096f2d531f3d1619e785f1ada437cab92e980558b3dce1474afb75bfedbf8ff54cb2618e0244c9ac0d3c66fb51598cd2db11f9be39791abe447c63094f7c453b7ff87cb5bb36b7c79efb0872d17058b83b15ab0866ad8a58656c5a7e20dbdf308b2461d97c0ec0024a2715055249cf3b478ddd4740de654f75ca686e0d7345c69ed50cdc2a8b332b1f8824108ac937eb050585608ee734097fc09054fbff89eeaeea791f4a7ab1f9868294a4f9e27b42af8100cb9d59cef9645803";
        check_vector(&key, 0xffff, &seq_512(), ct);
    }

    /// IEEE 1619-2007 Annex B, vector 14: data unit 0xffffffffff (tests
    /// that the full 64-bit index reaches the tweak).
    #[test]
    fn ieee1619_vector_14() {
        let key = key_from_hex(
            "2718281828459045235360287471352662497757247093699959574966967627",
            "3141592653589793238462643383279502884197169399375105820974944592",
        );
        let ct = "64497e5a831e4a932c09be3e5393376daa599548b816031d224bbf50a818ed2350eae7e96087c8a0db51ad290bd00c1ac1620857635bf246c176ab463be30b808da548081ac847b158e1264be25bb0910bbc92647108089415d45fab1b3d2604e8a8eff1ae4020cfa39936b66827b23f371b92200be90251e6d73c5f86de5fd4a950781933d79a28272b782a2ec313efdfcc0628f43d744c2dc2ff3dcb66999b50c7ca895b0c64791eeaa5f29499fb1c026f84ce5b5c72ba1083cddb5ce45434631665c333b60b11593fb253c5179a2c8db813782a004856a1653011e93fb6d876c18366dd8683f53412c0c180f9c848592d593f8609ca736317d356e13e2bff3a9f59cd9aeb19cd482593d8c46128bb32423b37a9adfb482b99453fbe25a41bf6feb4aa0bef5ed24bf73c762978025482c13115e4015aac992e5613a3b5c2f685b84795cb6e9b2656d8c88157e52c42f978d8634c43d06fea928f2822e465aa6576e9bf419384506cc3ce3c54ac1a6f67dc66f3b30191e698380bc999b05abce19dc0c6dcc2dd001ec535ba18deb2df1a101023108318c75dc98611a09dc48a0acdec676fabdf222f07e026f059b672b56e5cbc8e1d21bbd867dd927212054681d70ea737134cdfce93b6f82ae22423274e58a0821cc5502e2d0ab4585e94de6975be5e0b4efce51cd3e70c25a1fbbbd609d273ad5b0d59631c531f6a0a57b9";
        check_vector(&key, 0xffffffffff, &seq_512(), ct);
    }

    /// Every engine agrees with the independent `xts-mode` crate on random
    /// keys, data and sector numbers, for both sector sizes. Up to 19
    /// sectors per call covers a full batch of first tweaks (8), a partial
    /// one, and sector numbers that wrap past `u64::MAX`.
    #[test]
    fn matches_xts_mode_crate_on_random_data() {
        use rand::{Rng, RngCore};
        let mut rng = rand::thread_rng();
        for &ss in &SECTOR_SIZES {
            for round in 0..24 {
                let key = DataKey::random();
                let first: u64 = match round {
                    0 => u64::MAX - 3,
                    _ => rng.gen::<u64>() >> rng.gen_range(0..64),
                };
                let nsec = rng.gen_range(1..20usize);
                let mut data = vec![0u8; ss as usize * nsec];
                rng.fill_bytes(&mut data);

                let (k1, k2) = key.expose().split_at(32);
                let theirs = xts_mode::Xts128::new(
                    Aes256::new_from_slice(k1).unwrap(),
                    Aes256::new_from_slice(k2).unwrap(),
                );
                let mut expected = data.clone();
                for (i, sector) in expected.chunks_exact_mut(ss as usize).enumerate() {
                    let index = first.wrapping_add(i as u64);
                    theirs.encrypt_sector(sector, xts_mode::get_tweak_default(index as u128));
                }

                for ours in every_engine(&key, ss) {
                    let e = ours.engine();
                    let mut a = data.clone();
                    ours.encrypt_sectors(first, &mut a).unwrap();
                    assert_eq!(
                        a, expected,
                        "engine {e}, sector size {ss}, first {first}, {nsec} sectors"
                    );
                    ours.decrypt_sectors(first, &mut a).unwrap();
                    assert_eq!(
                        a, data,
                        "engine {e}, sector size {ss}, first {first}, {nsec} sectors"
                    );
                }
            }
        }
    }

    /// What one engine encrypts, every other decrypts, sector by sector and
    /// in batches.
    #[test]
    fn engines_interoperate() {
        use rand::RngCore;
        let key = DataKey::random();
        for &ss in &SECTOR_SIZES {
            let mut data = vec![0u8; ss as usize * 11];
            rand::thread_rng().fill_bytes(&mut data);
            let engines = every_engine(&key, ss);
            for enc in &engines {
                let mut ct = data.clone();
                enc.encrypt_sectors(1000, &mut ct).unwrap();
                assert_ne!(ct, data);
                for dec in &engines {
                    let what = format!("{} -> {}, sector size {ss}", enc.engine(), dec.engine());
                    let mut pt = ct.clone();
                    dec.decrypt_sectors(1000, &mut pt).unwrap();
                    assert_eq!(pt, data, "{what}");
                    let mut pt = ct.clone();
                    for (i, sector) in pt.chunks_exact_mut(ss as usize).enumerate() {
                        dec.decrypt_one(1000 + i as u64, sector);
                    }
                    assert_eq!(pt, data, "{what}, decrypt_one");
                }
            }
        }
    }

    #[test]
    fn new_picks_the_fastest_available_engine() {
        let c = SectorCipher::new(&DataKey::random(), 4096).unwrap();
        assert_eq!(c.engine(), XtsEngine::detect());
        assert!(c.engine().is_available());
        assert!(XtsEngine::Portable.is_available());
    }

    #[test]
    fn cipher_is_send_sync_clone_and_debug_hides_keys() {
        fn assert_traits<T: Send + Sync + Clone + std::fmt::Debug>() {}
        assert_traits::<SectorCipher>();
        let key = key_from_hex(&"ab".repeat(32), &"cd".repeat(32));
        for c in every_engine(&key, 4096) {
            let shown = format!("{:?}", c.clone());
            assert!(shown.contains("[redacted]"), "{shown}");
            assert!(!shown.contains("171") && !shown.contains("205"), "{shown}");
        }
    }

    #[test]
    fn rejects_bad_geometry() {
        let key = DataKey::random();
        assert_eq!(
            SectorCipher::new(&key, 1024).unwrap_err(),
            XtsError::SectorSize(1024)
        );
        for c in every_engine(&key, 4096) {
            assert!(matches!(
                c.encrypt_sectors(0, &mut [0u8; 512]),
                Err(XtsError::Misaligned { .. })
            ));
            assert!(matches!(
                c.decrypt_sectors(0, &mut [0u8; 4608]),
                Err(XtsError::Misaligned { .. })
            ));
        }
    }

    #[test]
    fn different_sectors_give_different_ciphertext() {
        for c in every_engine(&DataKey::random(), 4096) {
            let mut a = vec![0u8; 4096];
            let mut b = vec![0u8; 4096];
            c.encrypt_sectors(1, &mut a).unwrap();
            c.encrypt_sectors(2, &mut b).unwrap();
            assert_ne!(a, b, "engine {}", c.engine());
        }
    }

    #[test]
    fn every_engine_keeps_its_round_keys_on_locked_undumped_pages() {
        for c in every_engine(&DataKey::random(), 4096) {
            crate::secmem::tests::assert_protected(c.key_addr(), &format!("{} keys", c.engine()));
            let copy = c.clone();
            crate::secmem::tests::assert_protected(copy.key_addr(), "cloned keys");
        }
    }
}
