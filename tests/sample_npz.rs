//! The `.npz` files: what numpy's reader would see, byte for byte.

use dit::sample::npz::{concatenate, npy_header, parse_npy_header, read_npz, write_npz, U8Array};
use std::io::Read;

/// Checks the header as `numpy.lib.format.read_array_header_1_0` would.
fn numpy_view(bytes: &[u8]) -> (String, usize) {
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    assert_eq!((bytes[6], bytes[7]), (1, 0), "format 1.0");
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + len) % 64, 0, "data must start 64-byte aligned");
    let dict = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    assert!(dict.ends_with('\n'));
    (dict.trim_end().to_string(), 10 + len)
}

#[test]
fn npz_holds_arr_0_as_numpy_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("samples.npz");
    let data: Vec<u8> = (0..2 * 4 * 5 * 3).map(|i| (i * 7 % 256) as u8).collect();
    write_npz(
        &path,
        &U8Array::new(vec![2, 4, 5, 3], data.clone()).unwrap(),
    )
    .unwrap();

    let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
    assert_eq!(zip.len(), 1);
    let mut member = zip.by_name("arr_0.npy").unwrap();
    assert_eq!(member.compression(), zip::CompressionMethod::Stored);
    let mut bytes = Vec::new();
    member.read_to_end(&mut bytes).unwrap();
    let (dict, offset) = numpy_view(&bytes);
    assert_eq!(
        dict,
        "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 4, 5, 3), }"
    );
    assert_eq!(&bytes[offset..], data.as_slice());

    let back = read_npz(&path).unwrap();
    assert_eq!((back.shape, back.data), (vec![2, 4, 5, 3], data));
}

#[test]
fn one_dimensional_shapes_keep_the_tuple_comma() {
    let header = npy_header(&[7]);
    let (dict, _) = numpy_view(&header);
    assert!(dict.contains("'shape': (7,)"), "{dict}");
    assert_eq!(parse_npy_header(&header).unwrap(), (vec![7], header.len()));
}

#[test]
fn concatenation_checks_image_shapes() {
    let a = U8Array::new(vec![1, 2, 2, 3], vec![1; 12]).unwrap();
    let b = U8Array::new(vec![2, 2, 2, 3], vec![2; 24]).unwrap();
    let joined = concatenate(&[a.clone(), b]).unwrap();
    assert_eq!(joined.shape, vec![3, 2, 2, 3]);
    assert_eq!(&joined.data[..12], &[1; 12]);
    assert_eq!(&joined.data[12..], &[2; 24]);
    let c = U8Array::new(vec![1, 4, 1, 3], vec![0; 12]).unwrap();
    let err = concatenate(&[a, c]).unwrap_err().to_string();
    assert!(err.contains("[1, 4, 1, 3]"), "{err}");
}

#[test]
fn non_uint8_arrays_are_refused() {
    let mut header = npy_header(&[2]);
    let text = String::from_utf8(header[10..].to_vec())
        .unwrap()
        .replace("|u1", "<f4");
    header.truncate(10);
    header.extend(text.bytes());
    assert!(parse_npy_header(&header)
        .unwrap_err()
        .to_string()
        .contains("uint8"));
}
