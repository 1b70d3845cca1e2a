//! Property functions for the fuzz targets (`fuzz/fuzz_targets/piboot_*`)
//! and the crate's bounded proptests. Each panics only when a property
//! fails.

use crate::{BootImg, BootSig};

/// `boot.sig` parser: never panics; what it accepts re-encodes to the same
/// bytes (the grammar has one spelling per value).
pub fn boot_sig_parse(data: &[u8]) {
    if let Ok(sig) = BootSig::parse(data) {
        assert_eq!(
            sig.encode().as_bytes(),
            data,
            "accepted boot.sig must re-encode exactly"
        );
    }
}

/// FAT reader: never panics; every file it lists is extractable at its
/// size, and the files' clusters fit inside the image.
pub fn fat_read(data: &[u8]) {
    if let Ok(img) = BootImg::read(data) {
        let mut total = 0u64;
        for f in img.files() {
            let bytes = img.contents(f);
            assert_eq!(bytes.len() as u64, f.size());
            total += f.size();
        }
        assert!(
            total <= data.len() as u64,
            "files cannot share or exceed the image"
        );
    }
}
