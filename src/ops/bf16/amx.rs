//! The AMX-BF16 micro-kernel: a 32×32 f32 block from four 16×16 tile
//! accumulators (two A tiles × two B tiles), all eight tile registers in use.
//!
//! Rust has no stable AMX intrinsics, so the instructions are inline
//! assembly; the tile registers are not visible to the compiler, which never
//! uses them, and every use configures them first on the calling thread.

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::asm;
    use std::arch::x86_64::__cpuid_count;
    use std::sync::OnceLock;

    /// `arch_prctl` (x86-64 syscall number) and its request for permission
    /// to use an extended state component (Linux ≥ 5.16).
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    /// The XSAVE component of the tile data (`XFEATURE_XTILEDATA`).
    const XFEATURE_XTILEDATA: i64 = 18;

    pub fn available() -> bool {
        static OK: OnceLock<bool> = OnceLock::new();
        // The packing rounds with AVX512-BF16, which every AMX CPU also has.
        *OK.get_or_init(|| {
            cpu_has_amx_bf16()
                && super::super::avx512::available()
                && os_enables_tiles()
                && request_tile_data()
        })
    }

    fn cpu_has_amx_bf16() -> bool {
        let leaf7 = __cpuid_count(7, 0);
        let amx_bf16 = leaf7.edx & (1 << 22) != 0;
        let amx_tile = leaf7.edx & (1 << 24) != 0;
        amx_bf16 && amx_tile
    }

    /// XCR0 bits 17 (tile config) and 18 (tile data): the OS saves tiles.
    fn os_enables_tiles() -> bool {
        // xgetbv is only run with OSXSAVE (CPUID leaf 1).
        let osxsave = __cpuid_count(1, 0).ecx & (1 << 27) != 0;
        if !osxsave {
            return false;
        }
        let (lo, _hi): (u32, u32);
        // SAFETY: xgetbv with ecx = 0 reads XCR0, which OSXSAVE makes readable.
        unsafe {
            asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") _hi,
                 options(nomem, nostack, preserves_flags));
        }
        lo & (0b11 << 17) == (0b11 << 17)
    }

    /// Linux hands the (8 KiB) tile state to a process only on request.
    fn request_tile_data() -> bool {
        if !cfg!(target_os = "linux") {
            return false;
        }
        let ret: i64;
        // SAFETY: arch_prctl with this request only changes the process's
        // permitted XSAVE features; it reads and writes no memory of ours.
        unsafe {
            asm!("syscall",
                 inlateout("rax") SYS_ARCH_PRCTL => ret,
                 in("rdi") ARCH_REQ_XCOMP_PERM,
                 in("rsi") XFEATURE_XTILEDATA,
                 lateout("rcx") _, lateout("r11") _,
                 options(nostack));
        }
        ret == 0
    }

    /// The tile palette: eight 16-row × 64-byte tiles (tmm0–3 the C
    /// accumulators, tmm4–5 A, tmm6–7 B).
    #[repr(C, align(64))]
    struct TileConfig([u8; 64]);

    const TILE_CONFIG: TileConfig = {
        let mut c = [0u8; 64];
        c[0] = 1; // palette 1
        let mut t = 0;
        while t < 8 {
            c[16 + 2 * t] = 64; // bytes per row (little-endian u16)
            c[48 + t] = 16; // rows
            t += 1;
        }
        TileConfig(c)
    };

    /// Loads the tile configuration on this thread; [`release`] frees it.
    ///
    /// # Safety
    /// Only after [`available`] returned true.
    pub unsafe fn configure() {
        asm!("ldtilecfg [{}]", in(reg) TILE_CONFIG.0.as_ptr(), options(nostack, readonly));
    }

    /// Returns the tile state to its initial (unused) state, so that the OS
    /// need not save it on context switches.
    ///
    /// # Safety
    /// Only after [`available`] returned true.
    pub unsafe fn release() {
        asm!("tilerelease", options(nostack, nomem));
    }

    /// `c ← a·b` (`c ← c + a·b` if `accumulate`) for a 32×32 f32 block `c`
    /// with row stride `c_rs` elements: `a` is 32 rows × `kc` bf16
    /// (row-major, row stride `kc`), `b` is `kc/2` rows of 32 column pairs
    /// (`b[p][j] = (B[2p][j], B[2p+1][j])`) with row stride `b_rs`
    /// elements; `kc` a positive multiple of 32.
    /// The accumulators are loaded from and stored to `c` directly.
    ///
    /// # Safety
    /// [`configure`] ran on this thread; the buffers have those sizes.
    #[inline]
    pub unsafe fn block_32x32(
        a: *const u16,
        b: *const u16,
        b_rs: usize,
        kc: usize,
        c: *mut f32,
        c_rs: usize,
        accumulate: bool,
    ) {
        debug_assert!(kc > 0 && kc.is_multiple_of(32));
        let cs = c_rs * 4; // bytes per C row
        let c1 = c.add(16 * c_rs);
        if accumulate {
            asm!(
                "tileloadd tmm0, [{c} + {cs}*1]",
                "tileloadd tmm1, [{c} + {cs}*1 + 64]",
                "tileloadd tmm2, [{c1} + {cs}*1]",
                "tileloadd tmm3, [{c1} + {cs}*1 + 64]",
                c = in(reg) c, c1 = in(reg) c1, cs = in(reg) cs,
                options(nostack, readonly),
            );
        } else {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem),
            );
        }
        asm!(
            "2:",
            "tileloadd tmm4, [{a0} + {as_}*1]",
            "tileloadd tmm6, [{b} + {bs}*1]",
            "tileloadd tmm7, [{b} + {bs}*1 + 64]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tileloadd tmm5, [{a1} + {as_}*1]",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "add {a0}, 64",
            "add {a1}, 64",
            "add {b}, {b_step}",
            "dec {steps}",
            "jnz 2b",
            "tilestored [{c} + {cs}*1], tmm0",
            "tilestored [{c} + {cs}*1 + 64], tmm1",
            "tilestored [{c1} + {cs}*1], tmm2",
            "tilestored [{c1} + {cs}*1 + 64], tmm3",
            a0 = inout(reg) a => _,
            a1 = inout(reg) a.add(16 * kc) => _,
            b = inout(reg) b => _,
            steps = inout(reg) kc / 32 => _,
            as_ = in(reg) kc * 2,
            bs = in(reg) b_rs * 2,
            b_step = in(reg) b_rs * 32,
            c = in(reg) c,
            c1 = in(reg) c1,
            cs = in(reg) cs,
            options(nostack),
        );
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    pub fn available() -> bool {
        false
    }
    pub unsafe fn configure() {}
    pub unsafe fn release() {}
    pub unsafe fn block_32x32(
        _: *const u16,
        _: *const u16,
        _: usize,
        _: usize,
        _: *mut f32,
        _: usize,
        _: bool,
    ) {
        unreachable!("AMX is x86-64 only")
    }
}

pub use imp::*;
