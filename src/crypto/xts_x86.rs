//! x86-64 kernels for [`super::xts`]: AES-256-XTS with the tweak fused into
//! the AES pipeline, the way OpenSSL's `aesni_xts_encrypt` does it.
//!
//! Per block `P_i` with tweak `T_i` the kernels compute
//! `aesenclast(aesenc…(P_i ^ T_i ^ rk0), rk14 ^ T_i)`: both tweak XORs ride
//! on the first and last round key, so a block costs the AES rounds and
//! little else. Many blocks are in flight at once to hide the AES latency:
//!
//! - [`AesNi`]: 128-bit AES-NI, 8 blocks per step; the step's tweaks come
//!   one after the other, two cycles apart ([`tweaks8`]).
//! - [`Vaes`]: 256-bit VAES, 16 blocks (two per register) per step; eight
//!   tweak lanes each advance by α^16 (two byte shifts and one carry-less
//!   multiply), so no dependency chain forms.
//!
//! The AES rounds themselves are `asm!` (`round8!`), because LLVM
//! reorders the intrinsics into one block after another. The first tweak
//! of each sector, `E_K2(index)`, is computed for eight sectors at a time.
//!
//! Everything unsafe in the sector cipher is in this file. An engine value
//! can only be built after `is_x86_feature_detected!` confirmed the CPU
//! features its kernels are compiled for, which is what makes calling them
//! sound.

// Why: `core::arch` loads and stores take raw pointers, the AES rounds are
// inline assembly, and calling a `#[target_feature]` function is unsafe
// unless the caller proves the CPU has the features. Each `unsafe` block
// below says why it holds.
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::secmem::Locked;

/// AES-256 rounds; a schedule has `ROUNDS + 1` round keys.
const ROUNDS: usize = 14;
/// Sectors whose first tweaks are computed together.
const TWEAK_BATCH: usize = 8;
/// The reduction polynomial of GF(2^128), x^128 = x^7 + x^2 + x + 1,
/// as the carry-less multiplier that folds bits shifted out of the top.
const POLY: i64 = 0x87;

type Schedule = [__m128i; ROUNDS + 1];

/// The expanded keys of one volume. Kept on locked, never-dumped pages
/// ([`Locked`]) and expanded there in place, so neither moving a cipher nor
/// building one leaves copies of the round keys behind.
///
/// XXX: the kernels load round keys into registers, and the compiler
/// spills some to the stack (the VAES kernel all of them, broadcast to 256
/// bits), where nothing zeroizes them; the `aes` crate has the same gap.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct Keys {
    /// K1 encryption round keys.
    enc: Schedule,
    /// K1 round keys for the equivalent inverse cipher (FIPS 197, 5.3.5).
    dec: Schedule,
    /// K2 encryption round keys (the tweak key).
    tweak: Schedule,
}

impl Keys {
    /// Expands both halves of an XTS key. Calling it from code not itself
    /// compiled for AES-NI is `unsafe`: the CPU must have been checked.
    #[target_feature(enable = "aes")]
    fn new(k1: &[u8; 32], k2: &[u8; 32]) -> Locked<Self> {
        let zero = _mm_setzero_si128();
        let mut keys = Locked::new(Keys {
            enc: [zero; ROUNDS + 1],
            dec: [zero; ROUNDS + 1],
            tweak: [zero; ROUNDS + 1],
        });
        expand_key(k1, &mut keys.enc);
        expand_key(k2, &mut keys.tweak);
        keys.dec[0] = keys.enc[ROUNDS];
        for r in 1..ROUNDS {
            keys.dec[r] = _mm_aesimc_si128(keys.enc[ROUNDS - r]);
        }
        keys.dec[ROUNDS] = keys.enc[0];
        keys
    }
}

/// A block as a 128-bit little-endian integer, as `loadu` reads it.
#[inline(always)]
fn load(b: &[u8; 16]) -> __m128i {
    // SAFETY: `b` is 16 readable bytes; `loadu` has no alignment requirement.
    // SSE2 is part of the x86-64 baseline.
    unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
}

#[inline(always)]
fn store(b: &mut [u8; 16], v: __m128i) {
    // SAFETY: `b` is 16 writable bytes; `storeu` has no alignment requirement.
    unsafe { _mm_storeu_si128(b.as_mut_ptr().cast(), v) }
}

#[inline]
#[target_feature(enable = "avx")]
fn load2(b: &[u8; 32]) -> __m256i {
    // SAFETY: `b` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx")]
fn store2(b: &mut [u8; 32], v: __m256i) {
    // SAFETY: `b` is 32 writable bytes; `storeu` has no alignment requirement.
    unsafe { _mm256_storeu_si256(b.as_mut_ptr().cast(), v) }
}

/// `x ^ x << 32 ^ x << 64 ^ x << 96`: the running XOR of a key schedule row.
#[inline]
#[target_feature(enable = "sse2")]
fn spread(x: __m128i) -> __m128i {
    let x = _mm_xor_si128(x, _mm_slli_si128::<4>(x));
    _mm_xor_si128(x, _mm_slli_si128::<8>(x))
}

/// AES-256 key expansion with `aeskeygenassist` (Intel's AES-NI white
/// paper, figure 28).
#[target_feature(enable = "aes")]
fn expand_key(key: &[u8; 32], out: &mut Schedule) {
    let (lo, hi) = key.split_at(16);
    let mut a = load(lo.try_into().expect("BUG: half of 32 bytes is 16"));
    let mut b = load(hi.try_into().expect("BUG: half of 32 bytes is 16"));
    out[0] = a;
    out[1] = b;
    // Even round keys: SubWord(RotWord(last word of the odd key)) ^ rcon.
    macro_rules! even {
        ($i:literal, $rcon:literal) => {
            let t = _mm_shuffle_epi32::<0xff>(_mm_aeskeygenassist_si128::<$rcon>(b));
            a = _mm_xor_si128(spread(a), t);
            out[$i] = a;
        };
    }
    // Odd round keys: SubWord(last word of the even key), no rotation.
    macro_rules! odd {
        ($i:literal) => {
            let t = _mm_shuffle_epi32::<0xaa>(_mm_aeskeygenassist_si128::<0>(a));
            b = _mm_xor_si128(spread(b), t);
            out[$i] = b;
        };
    }
    even!(2, 0x01);
    odd!(3);
    even!(4, 0x02);
    odd!(5);
    even!(6, 0x04);
    odd!(7);
    even!(8, 0x08);
    odd!(9);
    even!(10, 0x10);
    odd!(11);
    even!(12, 0x20);
    odd!(13);
    even!(14, 0x40);
}

/// The tweaks `t·α^0 … t·α^7` of one AES-NI step, and `t·α^8`, the next
/// step's first. `carry` must be `_mm_set_epi32(0, 1, 0, 0x87)`.
///
/// `t·α` (IEEE 1619 bit order) shifts each 64-bit half left by one; bit 63
/// carries into bit 64 and bit 127 folds back in as 0x87. The masks for
/// those two carries come, as in OpenSSL, from a copy of dwords 3 and 1
/// (`signs`) that is doubled alongside: after `i` doublings its sign bits
/// are bits 127 − i and 63 − i of `t`, which are bits 127 and 63 of
/// `t·α^i` for `i < 56` (the folded-in bits have not climbed that far). So
/// each tweak costs a 2-cycle chain (add, xor), not 4 (shuffle, shift, and,
/// xor).
#[inline]
#[target_feature(enable = "sse2")]
fn tweaks8(t: __m128i, carry: __m128i) -> ([__m128i; 8], __m128i) {
    let mut signs = _mm_shuffle_epi32::<0x13>(t);
    let mut tw = [t; 8];
    let mut cur = t;
    for tw in tw.iter_mut() {
        *tw = cur;
        let mask = _mm_and_si128(_mm_srai_epi32::<31>(signs), carry);
        signs = _mm_add_epi32(signs, signs);
        cur = _mm_xor_si128(_mm_add_epi64(cur, cur), mask);
    }
    (tw, cur)
}

/// One AES round (`$op`: `aesenc`, `vaesdec`, …) on the eight registers of
/// `$x` with round key `$k`, as one `asm!` statement; `sse` takes the
/// two-operand legacy form on `xmm` registers, `vex` the three-operand form
/// on `ymm` registers.
///
/// Why not the intrinsics: with them LLVM's scheduler (generic x86-64
/// model) reorders the rounds block by block, one 14-deep chain of
/// 4-cycle instructions after another, and the CPU's scheduler then holds
/// only a few chains at once: the AES-NI kernel ran at 2.6 GB/s, the VAES
/// one at 5.6, against 4.6 and 9 this way. An `asm!` statement that takes
/// all eight blocks pins the order to round by round, as OpenSSL's
/// hand-written kernels have it. The statement touches registers only.
macro_rules! round8 {
    (sse $op:literal, $x:expr, $k:expr) => {
        round8!(@emit xmm_reg, [
            concat!($op, " {0}, {k}"), concat!($op, " {1}, {k}"), concat!($op, " {2}, {k}"),
            concat!($op, " {3}, {k}"), concat!($op, " {4}, {k}"), concat!($op, " {5}, {k}"),
            concat!($op, " {6}, {k}"), concat!($op, " {7}, {k}"),
        ], $x, $k)
    };
    (vex $op:literal, $x:expr, $k:expr) => {
        round8!(@emit ymm_reg, [
            concat!($op, " {0}, {0}, {k}"), concat!($op, " {1}, {1}, {k}"),
            concat!($op, " {2}, {2}, {k}"), concat!($op, " {3}, {3}, {k}"),
            concat!($op, " {4}, {4}, {k}"), concat!($op, " {5}, {5}, {k}"),
            concat!($op, " {6}, {6}, {k}"), concat!($op, " {7}, {7}, {k}"),
        ], $x, $k)
    };
    (@emit $class:ident, [$($line:expr),+ $(,)?], $x:expr, $k:expr) => {{
        let [a, b, c, d, e, f, g, h] = &mut $x;
        // SAFETY: register operands only; no memory, stack or flags are
        // touched. The instruction exists on this CPU: the macro is used
        // only inside kernels whose engine checked the CPU's features.
        unsafe {
            core::arch::asm!(
                $($line),+,
                inout($class) *a, inout($class) *b, inout($class) *c, inout($class) *d,
                inout($class) *e, inout($class) *f, inout($class) *g, inout($class) *h,
                k = in($class) $k,
                options(pure, nomem, nostack, preserves_flags),
            )
        }
    }};
}

/// The first tweak of sector `index`: `E_K2(index as 128-bit LE)`.
#[inline]
#[target_feature(enable = "aes")]
fn first_tweak(k: &Schedule, index: u64) -> __m128i {
    let mut t = _mm_xor_si128(_mm_set_epi64x(0, index as i64), k[0]);
    for rk in &k[1..ROUNDS] {
        t = _mm_aesenc_si128(t, *rk);
    }
    _mm_aesenclast_si128(t, k[ROUNDS])
}

/// The first tweaks of the `n <= TWEAK_BATCH` sectors from `first` on; a
/// full batch is computed in parallel, a partial one sector by sector (a
/// single-sector request should not pay for eight).
#[inline]
#[target_feature(enable = "aes")]
fn sector_tweaks(k: &Schedule, first: u64, n: usize) -> [__m128i; TWEAK_BATCH] {
    let mut t = [_mm_setzero_si128(); TWEAK_BATCH];
    if n < TWEAK_BATCH {
        for (i, t) in t.iter_mut().enumerate().take(n) {
            *t = first_tweak(k, first.wrapping_add(i as u64));
        }
        return t;
    }
    for (i, t) in t.iter_mut().enumerate() {
        let index = first.wrapping_add(i as u64);
        *t = _mm_xor_si128(_mm_set_epi64x(0, index as i64), k[0]);
    }
    for rk in &k[1..ROUNDS] {
        for t in t.iter_mut() {
            *t = _mm_aesenc_si128(*t, *rk);
        }
    }
    for t in t.iter_mut() {
        *t = _mm_aesenclast_si128(*t, k[ROUNDS]);
    }
    t
}

/// Runs `$sector(rk, first_tweak, bytes)` on each whole sector of `$buf`.
macro_rules! for_each_sector {
    ($keys:expr, $first:expr, $sector_size:expr, $buf:expr, $sector:expr, $rk:expr) => {{
        let sector_size: usize = $sector_size;
        let mut index: u64 = $first;
        for group in $buf.chunks_mut(sector_size * TWEAK_BATCH) {
            let t0 = sector_tweaks(&$keys.tweak, index, group.len() / sector_size);
            for (s, t) in group.chunks_exact_mut(sector_size).zip(t0) {
                $sector($rk, t, s);
            }
            index = index.wrapping_add(TWEAK_BATCH as u64);
        }
    }};
}

/// One sector on AES-NI, 8 blocks in flight per step.
#[inline]
#[target_feature(enable = "aes")]
fn aesni_sector<const DECRYPT: bool>(rk: &Schedule, t0: __m128i, sector: &mut [u8]) {
    let carry = _mm_set_epi32(0, 1, 0, POLY as i32);
    let mut t = t0;
    let (blocks, _) = sector.as_chunks_mut::<16>();
    for step in blocks.chunks_exact_mut(8) {
        let (tw, next) = tweaks8(t, carry);
        t = next;
        let mut x = [_mm_setzero_si128(); 8];
        for i in 0..8 {
            x[i] = _mm_xor_si128(load(&step[i]), _mm_xor_si128(tw[i], rk[0]));
        }
        for k in &rk[1..ROUNDS] {
            if DECRYPT {
                round8!(sse "aesdec", x, *k);
            } else {
                round8!(sse "aesenc", x, *k);
            }
        }
        for i in 0..8 {
            let last = _mm_xor_si128(rk[ROUNDS], tw[i]);
            let y = if DECRYPT {
                _mm_aesdeclast_si128(x[i], last)
            } else {
                _mm_aesenclast_si128(x[i], last)
            };
            store(&mut step[i], y);
        }
    }
}

/// AES-NI kernel over whole sectors of `buf` (a partial tail is left alone).
#[target_feature(enable = "aes")]
fn xts_aesni<const DECRYPT: bool>(keys: &Keys, first: u64, sector_size: usize, buf: &mut [u8]) {
    let rk = if DECRYPT { &keys.dec } else { &keys.enc };
    for_each_sector!(keys, first, sector_size, buf, aesni_sector::<DECRYPT>, rk);
}

/// `t·α^k` in each 128-bit lane, with `k` (`0 <= k <= 56`) given per
/// 64-bit half and equal in both halves of a lane. `poly` holds [`POLY`] in
/// the low half of each lane.
#[inline]
#[target_feature(enable = "avx2,vpclmulqdq")]
fn mul_alpha_var(t: __m256i, k: __m256i, poly: __m256i) -> __m256i {
    // Shift counts of 64 give 0 in `sllv`/`srlv`, which makes k = 0 work.
    let r = _mm256_sub_epi64(_mm256_set1_epi64x(64), k);
    let up = _mm256_or_si256(
        _mm256_sllv_epi64(t, k),
        _mm256_srlv_epi64(_mm256_bslli_epi128::<8>(t), r),
    );
    let out = _mm256_srlv_epi64(_mm256_bsrli_epi128::<8>(t), r);
    _mm256_xor_si256(up, _mm256_clmulepi64_epi128::<0x00>(out, poly))
}

/// `t·α^(8·B)` in each 128-bit lane, for `1 <= B <= 7`; `R` must be
/// `16 - B`. A byte shift, and the `8·B` bits shifted out carry-less
/// multiplied by [`POLY`] (at most `8·B + 7` bits, so no second fold).
#[inline]
#[target_feature(enable = "avx2,vpclmulqdq")]
fn mul_alpha_bytes<const B: i32, const R: i32>(t: __m256i, poly: __m256i) -> __m256i {
    let out = _mm256_bsrli_epi128::<R>(t);
    _mm256_xor_si256(
        _mm256_bslli_epi128::<B>(t),
        _mm256_clmulepi64_epi128::<0x00>(out, poly),
    )
}

/// Registers per VAES step (two blocks each).
const VAES_LANES: usize = 8;

/// One sector on VAES: 16 blocks in flight per step, in eight tweak lanes
/// that each advance by α^16.
#[inline]
#[target_feature(enable = "aes,avx2,vaes,vpclmulqdq")]
fn vaes_sector<const DECRYPT: bool>(rk: &Schedule, t0: __m128i, sector: &mut [u8]) {
    let poly = _mm256_set_epi64x(0, POLY, 0, POLY);
    // Lane j holds (T_2j, T_2j+1), low block first as in memory; each is
    // computed from T_0 directly, so they do not wait on each other.
    let t = _mm256_broadcastsi128_si256(t0);
    let mut tw = [t; VAES_LANES];
    for (j, tw) in tw.iter_mut().enumerate() {
        let k = 2 * j as i64;
        *tw = mul_alpha_var(t, _mm256_set_epi64x(k + 1, k + 1, k, k), poly);
    }
    let first = _mm256_broadcastsi128_si256(rk[0]);
    let last = _mm256_broadcastsi128_si256(rk[ROUNDS]);
    let (pairs, _) = sector.as_chunks_mut::<32>();
    for step in pairs.chunks_exact_mut(VAES_LANES) {
        let mut x = [_mm256_setzero_si256(); VAES_LANES];
        for j in 0..VAES_LANES {
            x[j] = _mm256_xor_si256(load2(&step[j]), _mm256_xor_si256(tw[j], first));
        }
        for k in &rk[1..ROUNDS] {
            let k = _mm256_broadcastsi128_si256(*k);
            if DECRYPT {
                round8!(vex "vaesdec", x, k);
            } else {
                round8!(vex "vaesenc", x, k);
            }
        }
        for j in 0..VAES_LANES {
            let l = _mm256_xor_si256(last, tw[j]);
            let y = if DECRYPT {
                _mm256_aesdeclast_epi128(x[j], l)
            } else {
                _mm256_aesenclast_epi128(x[j], l)
            };
            store2(&mut step[j], y);
            tw[j] = mul_alpha_bytes::<2, 14>(tw[j], poly);
        }
    }
}

/// VAES kernel over whole sectors of `buf` (a partial tail is left alone).
#[target_feature(enable = "aes,avx2,vaes,vpclmulqdq")]
fn xts_vaes<const DECRYPT: bool>(keys: &Keys, first: u64, sector_size: usize, buf: &mut [u8]) {
    let rk = if DECRYPT { &keys.dec } else { &keys.enc };
    for_each_sector!(keys, first, sector_size, buf, vaes_sector::<DECRYPT>, rk);
}

/// Bytes per VAES step, the larger of the two kernels' steps (AES-NI: 128);
/// a sector must be a whole number of steps.
const STEP_BYTES: usize = 16 * 2 * VAES_LANES;

/// Expanded keys and the sector size they serve, checked to fit the kernels.
#[derive(Clone)]
struct Keyed {
    keys: Locked<Keys>,
    sector_size: usize,
}

impl Keyed {
    /// # Safety
    /// The CPU must support AES-NI.
    unsafe fn new(k1: &[u8; 32], k2: &[u8; 32], sector_size: usize) -> Option<Self> {
        if sector_size == 0 || !sector_size.is_multiple_of(STEP_BYTES) {
            return None;
        }
        // SAFETY: the caller promises AES-NI.
        let keys = unsafe { Keys::new(k1, k2) };
        Some(Keyed { keys, sector_size })
    }
}

/// The AES-NI engine. A value exists only on CPUs with AES-NI.
#[derive(Clone)]
pub(super) struct AesNi(Keyed);

impl AesNi {
    /// Where the round keys live (tests check their pages' flags).
    #[cfg(test)]
    pub(super) fn key_addr(&self) -> usize {
        self.0.keys.addr()
    }

    /// Whether this CPU can run the engine.
    pub(super) fn detected() -> bool {
        is_x86_feature_detected!("aes")
    }

    /// `None` if the CPU lacks AES-NI or `sector_size` is not a multiple
    /// of 256 bytes.
    pub(super) fn new(k1: &[u8; 32], k2: &[u8; 32], sector_size: usize) -> Option<Self> {
        if !Self::detected() {
            return None;
        }
        // SAFETY: AES-NI was detected just above.
        unsafe { Keyed::new(k1, k2, sector_size) }.map(AesNi)
    }

    /// Encrypts the whole sectors of `buf` in place, the first being `first`.
    pub(super) fn encrypt(&self, first: u64, buf: &mut [u8]) {
        // SAFETY: `self` exists, so `new` saw AES-NI on this CPU.
        unsafe { xts_aesni::<false>(&self.0.keys, first, self.0.sector_size, buf) }
    }

    /// Decrypts the whole sectors of `buf` in place, the first being `first`.
    pub(super) fn decrypt(&self, first: u64, buf: &mut [u8]) {
        // SAFETY: `self` exists, so `new` saw AES-NI on this CPU.
        unsafe { xts_aesni::<true>(&self.0.keys, first, self.0.sector_size, buf) }
    }
}

/// The VAES engine. A value exists only on CPUs with AES-NI, AVX2, VAES and
/// VPCLMULQDQ.
#[derive(Clone)]
pub(super) struct Vaes(Keyed);

impl Vaes {
    /// Where the round keys live (tests check their pages' flags).
    #[cfg(test)]
    pub(super) fn key_addr(&self) -> usize {
        self.0.keys.addr()
    }

    /// Whether this CPU can run the engine.
    pub(super) fn detected() -> bool {
        is_x86_feature_detected!("aes")
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("vaes")
            && is_x86_feature_detected!("vpclmulqdq")
    }

    /// `None` if the CPU lacks a needed feature or `sector_size` is not a
    /// multiple of 256 bytes.
    pub(super) fn new(k1: &[u8; 32], k2: &[u8; 32], sector_size: usize) -> Option<Self> {
        if !Self::detected() {
            return None;
        }
        // SAFETY: AES-NI was detected just above.
        unsafe { Keyed::new(k1, k2, sector_size) }.map(Vaes)
    }

    /// Encrypts the whole sectors of `buf` in place, the first being `first`.
    pub(super) fn encrypt(&self, first: u64, buf: &mut [u8]) {
        // SAFETY: `self` exists, so `new` saw every feature `xts_vaes` enables.
        unsafe { xts_vaes::<false>(&self.0.keys, first, self.0.sector_size, buf) }
    }

    /// Decrypts the whole sectors of `buf` in place, the first being `first`.
    pub(super) fn decrypt(&self, first: u64, buf: &mut [u8]) {
        // SAFETY: `self` exists, so `new` saw every feature `xts_vaes` enables.
        unsafe { xts_vaes::<true>(&self.0.keys, first, self.0.sector_size, buf) }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// FIPS 197 appendix C.3: the key schedules encrypt the AES-256
    /// example block and decrypt it back.
    #[test]
    fn key_schedule_matches_fips197_c3() {
        if !AesNi::detected() {
            eprintln!("SKIPPED key_schedule_matches_fips197_c3: no AES-NI on this CPU");
            return;
        }
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let pt: [u8; 16] = hex::decode("00112233445566778899aabbccddeeff")
            .unwrap()
            .try_into()
            .unwrap();
        // SAFETY: AES-NI detected above.
        let keys = unsafe { Keys::new(&key, &key) };
        // SAFETY: AES-NI detected above.
        let ct = unsafe { one_block::<false>(&keys.enc, &pt) };
        assert_eq!(hex::encode(ct), "8ea2b7ca516745bfeafc49904b496089");
        // SAFETY: AES-NI detected above.
        assert_eq!(unsafe { one_block::<true>(&keys.dec, &ct) }, pt);
    }

    #[target_feature(enable = "aes")]
    fn one_block<const DECRYPT: bool>(k: &Schedule, b: &[u8; 16]) -> [u8; 16] {
        let mut x = _mm_xor_si128(load(b), k[0]);
        for k in &k[1..ROUNDS] {
            x = if DECRYPT {
                _mm_aesdec_si128(x, *k)
            } else {
                _mm_aesenc_si128(x, *k)
            };
        }
        x = if DECRYPT {
            _mm_aesdeclast_si128(x, k[ROUNDS])
        } else {
            _mm_aesenclast_si128(x, k[ROUNDS])
        };
        let mut out = [0u8; 16];
        store(&mut out, x);
        out
    }
}
