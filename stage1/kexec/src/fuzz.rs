//! Property functions for the fuzz targets (`fuzz/fuzz_targets/kexec_*.rs`)
//! and this crate's bounded proptests. Each panics only when a property
//! fails.

use crate::fdt::DeviceTree;

/// Any bytes: [`DeviceTree::parse`] returns, never panics; a tree it
/// accepts writes out, reads back equal, and writes out the same bytes
/// again (the writer is a fixed point after one pass).
pub fn device_tree(data: &[u8]) {
    let Ok(tree) = DeviceTree::parse(data) else {
        return;
    };
    let blob = tree.to_blob().expect("a parsed tree writes");
    let again = DeviceTree::parse(&blob).expect("a written tree parses");
    assert_eq!(again, tree, "round trip changed the tree");
    assert_eq!(
        again.to_blob().expect("writes"),
        blob,
        "second write differs"
    );
}
