//! A TUF repository on disk, as imgsign writes it, and the trusted state read
//! back from it.
//!
//! ```text
//! REPO/metadata/1.root.json, 2.root.json, …   every root version, kept forever
//! REPO/metadata/N.targets.json                  consistent snapshots: versioned names
//! REPO/metadata/N.snapshot.json
//! REPO/metadata/timestamp.json                  the only file ever replaced: the commit point
//! REPO/targets/<sha256-hex>.<target-name>       images, named by their hash
//! ```
//!
//! Publishing writes new files only, each atomically (temp, fsync, rename),
//! and replaces `timestamp.json` last. A client that read the old timestamp
//! still finds every file it names; one that reads the new timestamp finds
//! every new file already in place. A crash before the last rename leaves
//! the previous release published and intact.
//!
//! Module map (each uses only those above it; the names are re-exported
//! here):
//! - `layout`: paths, the writer lock, reading and writing metadata bytes.
//! - `roles`: signing roles and counting their valid signatures.
//! - `published`: the published state, read back and checked.
//! - `write`: lifetimes, [`SignContext`], publishing snapshot and timestamp.

mod layout;
mod published;
mod roles;
mod write;

pub use layout::{
    create_dirs, read_metadata, read_signed, to_bytes, Layout, RepoLock, LOCK_FILE, MAX_METADATA,
    SPEC_VERSION,
};
pub use published::Published;
pub use roles::{
    add_signatures, check_root_keys, check_threshold, count_valid, metafile, role_key_ids,
    sign_role, trusts_example_keys,
};
pub use write::{
    expires_at, next, parse_duration, publish_snapshot_and_timestamp, write_timestamp, Expiries,
    SignContext,
};
