//! Safetensors files: our checkpoints (configuration as JSON in the header
//! metadata), diffusers' weight files, latent caches. The header is read on
//! its own, so a file's shapes and metadata are checked before its data.

use crate::{bail, Context, Result};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// Tensor shapes by name.
pub type Shapes = HashMap<String, Vec<usize>>;

pub struct Header {
    pub shapes: Shapes,
    pub metadata: HashMap<String, String>,
}

/// Reads only the JSON header: shapes and metadata, without the data.
pub fn read_header(path: &Path) -> Result<Header> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let file_len = file.metadata()?.len();
    let corrupt = |why: &str| {
        crate::err!(
            "{} is not a readable safetensors file ({why})",
            path.display()
        )
    };
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|_| corrupt("shorter than its 8-byte header length"))?;
    let header_len = u64::from_le_bytes(len);
    if header_len > 100_000_000 || 8 + header_len > file_len {
        return Err(corrupt(
            "header length exceeds the file: truncated or not safetensors",
        ));
    }
    let mut json = vec![0u8; header_len as usize];
    file.read_exact(&mut json)
        .map_err(|_| corrupt("truncated header"))?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&json).map_err(|e| corrupt(&format!("header is not JSON: {e}")))?;
    let mut shapes = Shapes::new();
    let mut metadata = HashMap::new();
    let mut data_end = 0u64;
    for (name, entry) in header {
        if name == "__metadata__" {
            metadata = serde_json::from_value(entry)
                .map_err(|_| corrupt("metadata is not a string map"))?;
            continue;
        }
        let shape: Vec<usize> = serde_json::from_value(entry["shape"].clone())
            .map_err(|_| corrupt(&format!("entry '{name}' has no shape")))?;
        let offsets: [u64; 2] = serde_json::from_value(entry["data_offsets"].clone())
            .map_err(|_| corrupt(&format!("entry '{name}' has no data offsets")))?;
        data_end = data_end.max(offsets[1]);
        shapes.insert(name, shape);
    }
    if 8 + header_len + data_end > file_len {
        return Err(corrupt(&format!(
            "truncated: the header describes {} bytes of data, the file holds {}",
            data_end,
            file_len - 8 - header_len
        )));
    }
    Ok(Header { shapes, metadata })
}

/// Loads every tensor (in its stored dtype).
pub fn read_tensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| crate::err!("{} is not a readable safetensors file: {e}", path.display()))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let t = candle_core::safetensors::Load::load(&view, device)
            .with_context(|| format!("{}: tensor '{name}'", path.display()))?;
        out.insert(name, t);
    }
    Ok(out)
}

/// Writes tensors with string metadata (contiguous copies, sorted keys).
/// The same tensors and metadata always give the same bytes: the metadata
/// keys are put in sorted order (see [`sort_metadata`]).
pub fn write(
    path: &Path,
    tensors: &HashMap<String, Tensor>,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let mut data = Vec::with_capacity(names.len());
    for name in names {
        data.push((name.as_str(), tensors[name].contiguous()?));
    }
    if data.is_empty() {
        bail!("refusing to write an empty safetensors file");
    }
    safetensors::tensor::serialize_to_file(data, Some(metadata), path)
        .with_context(|| format!("writing {}", path.display()))?;
    sort_metadata(path).with_context(|| format!("writing {}", path.display()))
}

/// Rewrites a safetensors header with its metadata keys in sorted order.
///
/// The `safetensors` crate takes metadata as a `HashMap` and writes it in the
/// map's iteration order, which is seeded per process: two runs writing the
/// same checkpoint would differ in their header bytes. Reordering keys keeps
/// the compact JSON's length, so the header is rewritten in place, padded
/// with spaces to its original length as the format allows.
fn sort_metadata(path: &Path) -> Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| crate::Error::file(path, e))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len)?;
    let mut header = vec![0u8; u64::from_le_bytes(len) as usize];
    file.read_exact(&mut header)?;
    let mut parsed: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)?;
    let Some(metadata) = parsed.remove("__metadata__") else {
        return Ok(());
    };
    let sorted: std::collections::BTreeMap<String, String> = serde_json::from_value(metadata)?;
    // Tensor entries come back in a fixed order too; readers locate the data
    // by their offsets, not by their place in the header.
    let tensors_json = serde_json::to_string(&parsed)?;
    let mut rebuilt = format!(
        "{{\"__metadata__\":{}{}",
        serde_json::to_string(&sorted)?,
        match tensors_json.strip_prefix('{') {
            Some(rest) if rest != "}" => format!(",{rest}"),
            _ => "}".to_string(),
        }
    );
    if rebuilt.len() > header.len() {
        bail!("the sorted safetensors header is longer than the original");
    }
    rebuilt.push_str(&" ".repeat(header.len() - rebuilt.len()));
    file.seek(SeekFrom::Start(8))?;
    file.write_all(rebuilt.as_bytes())?;
    Ok(())
}
