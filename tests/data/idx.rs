//! IDX (MNIST format) reading and writing.

use dit::data::{DataError, IdxFile};

fn sample() -> IdxFile {
    let dims = vec![3, 4, 5];
    let data: Vec<u8> = (0..60u32).map(|i| (i * 37 % 256) as u8).collect();
    IdxFile::new(dims, data).unwrap()
}

#[test]
fn round_trip_raw_and_gzipped() {
    let dir = tempfile::tempdir().unwrap();
    let original = sample();
    for gzip in [false, true] {
        let path = dir.path().join(format!("a-{gzip}.idx"));
        original.write(&path, gzip).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            bytes.starts_with(&[0x1f, 0x8b]),
            gzip,
            "gzip magic iff gzipped"
        );
        let back = IdxFile::read(&path).unwrap();
        assert_eq!(back, original);
        assert_eq!(back.len(), 3);
        assert_eq!(back.item(1), &original.data[20..40]);
    }
}

#[test]
fn header_layout_is_big_endian_mnist() {
    let bytes = IdxFile::new(vec![2, 258], vec![7; 516]).unwrap().to_bytes();
    assert_eq!(&bytes[..12], &[0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 1, 2]);
    assert_eq!(bytes.len(), 12 + 516);
    // One-dimensional label files parse too.
    let labels = IdxFile::parse(&[0, 0, 8, 1, 0, 0, 0, 3, 9, 8, 7], "labels").unwrap();
    assert_eq!(
        (labels.dims.clone(), labels.data.clone()),
        (vec![3], vec![9, 8, 7])
    );
}

fn parse_error(bytes: &[u8]) -> String {
    match IdxFile::parse(bytes, "test.idx") {
        Err(e @ DataError::Idx { .. }) => e.to_string(),
        other => panic!("expected an IDX error, got {other:?}"),
    }
}

#[test]
fn malformed_files_are_refused_with_reasons() {
    let good = sample().to_bytes();
    assert!(parse_error(&good[..2]).contains("shorter than"));
    let mut bad_magic = good.clone();
    bad_magic[0] = 1;
    assert!(parse_error(&bad_magic).contains("bad magic"));
    let mut float = good.clone();
    float[2] = 0x0d;
    assert!(parse_error(&float).contains("unsupported"));
    assert!(parse_error(&good[..8]).contains("truncated"));
    assert!(parse_error(&good[..good.len() - 1]).contains("needs 60 bytes"));
    let mut longer = good.clone();
    longer.push(0);
    assert!(parse_error(&longer).contains("found 61"));
    assert!(parse_error(&[0x1f, 0x8b, 1, 2, 3]).contains("gzip"));
    assert!(parse_error(&good[..8]).starts_with("IDX data test.idx"));
    assert!(IdxFile::new(vec![2, 2], vec![0; 3]).is_err());
}

#[test]
fn missing_file_names_its_path() {
    let err = IdxFile::read("/nonexistent/train-images.gz").unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/train-images.gz"),
        "{err}"
    );
}
