//! bf16 arithmetic on the CPU: rounding to bf16, and matrix products of
//! bf16-rounded operands accumulated in f32 ([`matmul`]), the arithmetic of
//! `--precision bf16`.
//!
//! The product runs on the fastest of three kernels the CPU allows, chosen
//! once at run time ([`kernel`]):
//!
//! * [`Bf16Kernel::Amx`]: Intel's AMX tiles (`tdpbf16ps`, 16×16×32 per
//!   instruction), where the CPU has AMX-BF16 and the OS grants the tile
//!   state to the process;
//! * [`Bf16Kernel::Avx512Bf16`]: `vdpbf16ps` (AVX512-BF16: AMD Zen 4 and
//!   later, Intel Cooper Lake and later);
//! * [`Bf16Kernel::Convert`]: any other CPU: the operands are rounded to
//!   bf16, kept as f32, and multiplied by the f32 product, which gives the
//!   same values up to the order of the f32 additions.
//!
//! All three read f32 or bf16 operands, round them to bf16 once while
//! packing them, and accumulate in f32: the inputs of a product are what
//! PyTorch's bf16 autocast gives it, the accumulation is f32 as in its
//! kernels.

mod amx;
mod avx512;
mod convert;
mod gemm;
mod pack;

pub use convert::{round_to_bf16, to_bf16_bits, Bf16Input};
pub use gemm::{
    matmul, matmul_packed, matmul_packed_with, matmul_pairs, matmul_prepacked, matmul_with,
    pair_rows, PackedLhs, PackedRhs,
};

use std::sync::OnceLock;

/// Which instructions compute a bf16 product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bf16Kernel {
    /// AMX tiles.
    Amx,
    /// AVX512-BF16 dot products.
    Avx512Bf16,
    /// Operands rounded to bf16, multiplied by the f32 product.
    Convert,
}

/// The environment variable that overrides the detected kernel (`amx`,
/// `avx512bf16` or `convert`): to measure or test a slower kernel on a CPU
/// that has a faster one. A kernel the CPU lacks is refused at start-up.
pub const KERNEL_ENV: &str = "DIT_BF16_KERNEL";

impl Bf16Kernel {
    pub fn name(self) -> &'static str {
        match self {
            Bf16Kernel::Amx => "amx",
            Bf16Kernel::Avx512Bf16 => "avx512bf16",
            Bf16Kernel::Convert => "convert",
        }
    }

    /// Whether this CPU (and OS) can run the kernel.
    pub fn available(self) -> bool {
        match self {
            Bf16Kernel::Amx => amx::available(),
            Bf16Kernel::Avx512Bf16 => avx512::available(),
            Bf16Kernel::Convert => true,
        }
    }

    /// The kernels this CPU can run, fastest first.
    pub fn all_available() -> Vec<Bf16Kernel> {
        [Bf16Kernel::Amx, Bf16Kernel::Avx512Bf16, Bf16Kernel::Convert]
            .into_iter()
            .filter(|k| k.available())
            .collect()
    }

    fn parse(name: &str) -> Option<Self> {
        [Bf16Kernel::Amx, Bf16Kernel::Avx512Bf16, Bf16Kernel::Convert]
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name.trim()))
    }
}

/// The kernel bf16 products run on in this process, or the one
/// [`KERNEL_ENV`] names: AMX where available; else AVX512-BF16 on AMD CPUs
/// (Zen 4 issues `vdpbf16ps` at the rate of an f32 FMA, twice the flops);
/// else rounding and the f32 product. On Intel CPUs `vdpbf16ps` measured
/// at half the f32 product's rate (88 against 165 GFLOP per CPU-second on
/// a Sapphire Rapids core), so there the f32 product is the better one.
///
/// # Panics
/// If [`KERNEL_ENV`] names an unknown kernel or one this CPU cannot run (a
/// benchmark or test would otherwise measure something else than it says).
pub fn kernel() -> Bf16Kernel {
    static KERNEL: OnceLock<Bf16Kernel> = OnceLock::new();
    *KERNEL.get_or_init(|| match std::env::var(KERNEL_ENV) {
        Ok(name) => match Bf16Kernel::parse(&name) {
            Some(k) if k.available() => k,
            Some(k) => panic!(
                "{KERNEL_ENV}={name}: this CPU cannot run the {} kernel",
                k.name()
            ),
            None => panic!("{KERNEL_ENV}={name}: use amx, avx512bf16 or convert"),
        },
        Err(_) => {
            if Bf16Kernel::Amx.available() {
                Bf16Kernel::Amx
            } else if Bf16Kernel::Avx512Bf16.available() && cpu_is_amd() {
                Bf16Kernel::Avx512Bf16
            } else {
                Bf16Kernel::Convert
            }
        }
    })
}

fn cpu_is_amd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let leaf0 = std::arch::x86_64::__cpuid(0);
        let vendor = [leaf0.ebx, leaf0.edx, leaf0.ecx].map(u32::to_le_bytes);
        vendor.concat() == b"AuthenticAMD"
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `t` rounded to bf16, in its own dtype: how a composition rounds a
/// product's operand. Differentiable (candle passes the gradient straight
/// through a cast), so the compositions keep their backward.
pub fn round_operand(t: &candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> {
    t.to_dtype(candle_core::DType::BF16)?.to_dtype(t.dtype())
}
