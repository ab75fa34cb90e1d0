//! NumPy `.npy`/`.npz` reading and writing for the arrays evaluation exchanges
//! with other tools: uint8 image batches (`arr_0` in ADM sample and reference
//! batches) and float statistics (`mu`, `sigma`).
//!
//! Written here rather than using candle's `npy` module because statistics
//! files from pytorch-fid are written with `np.savez_compressed` (deflate),
//! which candle's zip build cannot read, and because image batches can be far
//! larger than memory wants: [`for_each_row`] streams them.

use anyhow::{anyhow, bail, Context, Result};
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;

/// Element types understood here (little-endian only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    U8,
    F32,
    F64,
}

impl DType {
    fn size(self) -> usize {
        match self {
            DType::U8 => 1,
            DType::F32 => 4,
            DType::F64 => 8,
        }
    }

    fn descr(self) -> &'static str {
        match self {
            DType::U8 => "|u1",
            DType::F32 => "<f4",
            DType::F64 => "<f8",
        }
    }
}

/// The header of one `.npy` array: element type (when supported) and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The raw numpy type string, e.g. `<f8` or `|u1`.
    pub descr: String,
    pub dtype: Option<DType>,
    pub shape: Vec<usize>,
    pub fortran_order: bool,
}

impl Header {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `(2048, 2048) <f8`-style description for error messages.
    pub fn describe(&self) -> String {
        let dims: Vec<String> = self.shape.iter().map(|d| d.to_string()).collect();
        format!("({}) {}", dims.join(", "), self.descr)
    }
}

/// An in-memory array.
#[derive(Debug, Clone, PartialEq)]
pub enum Array {
    U8 { shape: Vec<usize>, data: Vec<u8> },
    F32 { shape: Vec<usize>, data: Vec<f32> },
    F64 { shape: Vec<usize>, data: Vec<f64> },
}

impl Array {
    pub fn shape(&self) -> &[usize] {
        match self {
            Array::U8 { shape, .. } | Array::F32 { shape, .. } | Array::F64 { shape, .. } => shape,
        }
    }

    /// The values widened to f64 (statistics are kept in f64 whatever the file holds).
    pub fn to_f64(&self) -> Vec<f64> {
        match self {
            Array::U8 { data, .. } => data.iter().map(|&v| v as f64).collect(),
            Array::F32 { data, .. } => data.iter().map(|&v| v as f64).collect(),
            Array::F64 { data, .. } => data.clone(),
        }
    }

    /// The values as f32 (features), narrowing f64.
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Array::U8 { data, .. } => data.iter().map(|&v| v as f32).collect(),
            Array::F32 { data, .. } => data.clone(),
            Array::F64 { data, .. } => data.iter().map(|&v| v as f32).collect(),
        }
    }

    fn dtype(&self) -> DType {
        match self {
            Array::U8 { .. } => DType::U8,
            Array::F32 { .. } => DType::F32,
            Array::F64 { .. } => DType::F64,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match self {
            Array::U8 { data, .. } => data.clone(),
            Array::F32 { data, .. } => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Array::F64 { data, .. } => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

/// Reads a `.npy` header and leaves `r` at the first data byte.
pub fn read_header<R: Read>(r: &mut R) -> Result<Header> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).context("reading the .npy magic")?;
    if &magic[..6] != b"\x93NUMPY" {
        bail!("not a .npy array (bad magic bytes)");
    }
    let header_len = match magic[6] {
        1 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)?;
            u16::from_le_bytes(b) as usize
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b)?;
            u32::from_le_bytes(b) as usize
        }
        v => bail!("unsupported .npy format version {v}"),
    };
    let mut text = vec![0u8; header_len];
    r.read_exact(&mut text)?;
    let text = String::from_utf8_lossy(&text);
    parse_header_dict(&text)
}

/// Parses the Python dict literal of a `.npy` header, e.g.
/// `{'descr': '<f8', 'fortran_order': False, 'shape': (2048, 2048), }`.
fn parse_header_dict(text: &str) -> Result<Header> {
    let value_after = |key: &str| -> Result<&str> {
        let pat = format!("'{key}':");
        let at = text
            .find(&pat)
            .ok_or_else(|| anyhow!("no '{key}' in .npy header {text:?}"))?;
        Ok(text[at + pat.len()..].trim_start())
    };
    let descr_rest = value_after("descr")?;
    let descr = descr_rest
        .strip_prefix('\'')
        .and_then(|s| s.split('\'').next())
        .ok_or_else(|| anyhow!("malformed descr in .npy header {text:?}"))?
        .to_string();
    let fortran_order = value_after("fortran_order")?.starts_with("True");
    let shape_rest = value_after("shape")?;
    let inside = shape_rest
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| anyhow!("malformed shape in .npy header {text:?}"))?;
    let shape = inside
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| anyhow!("malformed shape in .npy header {text:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let dtype = match descr.as_str() {
        "|u1" | "<u1" | "u1" | "|b1" => Some(DType::U8),
        "<f4" => Some(DType::F32),
        "<f8" => Some(DType::F64),
        _ => None,
    };
    Ok(Header {
        descr,
        dtype,
        shape,
        fortran_order,
    })
}

/// Reads the data of an array whose header was just read.
fn read_data<R: Read>(header: &Header, r: &mut R) -> Result<Array> {
    let dtype = header
        .dtype
        .ok_or_else(|| anyhow!("unsupported element type {}", header.descr))?;
    if header.fortran_order {
        bail!("Fortran-ordered arrays are not supported");
    }
    let shape = header.shape.clone();
    let mut bytes = vec![0u8; header.len() * dtype.size()];
    r.read_exact(&mut bytes)
        .context("array data is truncated")?;
    Ok(match dtype {
        DType::U8 => Array::U8 { shape, data: bytes },
        DType::F32 => Array::F32 {
            shape,
            data: bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        },
        DType::F64 => Array::F64 {
            shape,
            data: bytes
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        },
    })
}

fn open_archive(path: &Path) -> Result<zip::ZipArchive<BufReader<File>>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    zip::ZipArchive::new(BufReader::new(file))
        .with_context(|| format!("{} is not an .npz file (not a zip archive)", path.display()))
}

/// Names and headers of every array in an `.npz` file, in archive order.
pub fn list(path: &Path) -> Result<Vec<(String, Header)>> {
    let mut zip = open_archive(path)?;
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i)?;
        let Some(name) = entry.name().strip_suffix(".npy").map(str::to_string) else {
            continue;
        };
        let header = read_header(&mut entry)
            .with_context(|| format!("reading array '{name}' of {}", path.display()))?;
        out.push((name, header));
    }
    Ok(out)
}

/// Reads one array of an `.npz` file; the error names the file and the keys it has.
pub fn read(path: &Path, name: &str) -> Result<Array> {
    let mut zip = open_archive(path)?;
    let entry_name = format!("{name}.npy");
    if zip.index_for_name(&entry_name).is_none() {
        let keys: Vec<String> = zip
            .file_names()
            .filter_map(|n| n.strip_suffix(".npy"))
            .map(str::to_string)
            .collect();
        bail!(
            "{} has no array '{name}' (it has: {})",
            path.display(),
            keys.join(", ")
        );
    }
    let mut entry = zip.by_name(&entry_name)?;
    let header = read_header(&mut entry)
        .with_context(|| format!("reading array '{name}' of {}", path.display()))?;
    read_data(&header, &mut entry)
        .with_context(|| format!("reading array '{name}' of {}", path.display()))
}

/// Streams the rows (first-axis slices) of a uint8 array of an `.npz` file in
/// chunks of at most `rows_per_chunk`, so that 50k-image batches need not fit
/// in memory. `f` gets the header and the bytes of whole rows.
pub fn for_each_row_chunk(
    path: &Path,
    name: &str,
    rows_per_chunk: usize,
    mut f: impl FnMut(&Header, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut zip = open_archive(path)?;
    let mut entry = zip
        .by_name(&format!("{name}.npy"))
        .with_context(|| format!("{} has no array '{name}'", path.display()))?;
    let header = read_header(&mut entry)
        .with_context(|| format!("reading array '{name}' of {}", path.display()))?;
    if header.dtype != Some(DType::U8) || header.fortran_order || header.shape.is_empty() {
        bail!(
            "array '{name}' of {} is {}, expected C-ordered uint8",
            path.display(),
            header.describe()
        );
    }
    let row_bytes: usize = header.shape[1..].iter().product();
    let mut remaining = header.shape[0];
    let mut buf = Vec::new();
    while remaining > 0 {
        let rows = remaining.min(rows_per_chunk.max(1));
        buf.resize(rows * row_bytes, 0);
        entry
            .read_exact(&mut buf)
            .with_context(|| format!("array '{name}' of {} is truncated", path.display()))?;
        f(&header, &buf)?;
        remaining -= rows;
    }
    Ok(())
}

/// Writes arrays to an uncompressed `.npz` (what `np.savez` writes; both numpy
/// and the ADM evaluator read it).
pub fn write(path: &Path, arrays: &[(&str, &Array)]) -> Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    for (name, array) in arrays {
        zip.start_file(format!("{name}.npy"), options)?;
        let dims: Vec<String> = array.shape().iter().map(|d| d.to_string()).collect();
        let shape = match dims.len() {
            1 => format!("({},)", dims[0]),
            _ => format!("({})", dims.join(", ")),
        };
        let mut dict = format!(
            "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
            array.dtype().descr()
        );
        // Data starts on a 64-byte boundary: 10 bytes of preamble, the dict, a newline.
        while (10 + dict.len() + 1) % 64 != 0 {
            dict.push(' ');
        }
        dict.push('\n');
        zip.write_all(b"\x93NUMPY\x01\x00")?;
        zip.write_all(&(dict.len() as u16).to_le_bytes())?;
        zip.write_all(dict.as_bytes())?;
        zip.write_all(&array.bytes())?;
    }
    zip.finish()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
