//! The strict `boot.img` reader: lists and extracts the files of a FAT12,
//! FAT16 or FAT32 volume without a partition table, and refuses a volume
//! whose structures disagree with each other or with the image (a FAT
//! that "lies"), naming what is wrong.
//!
//! Sans IO: it reads a byte slice, allocates at most a few bytes per
//! cluster, never panics on any input (`fuzz/fuzz_targets/piboot_fat_read.rs`).
//!
//! # Boot sector (BPB) fields read, byte offsets from the start of the image
//!
//! | offset | size | field | rule enforced |
//! |---|---|---|---|
//! | 0 | 3 | jump | `EB ?? 90` or `E9 ?? ??` |
//! | 11 | 2 | bytes per sector (LE) | 512, 1024, 2048 or 4096 |
//! | 13 | 1 | sectors per cluster | power of two; cluster ≤ 64 KiB |
//! | 14 | 2 | reserved sectors | ≥ 1 |
//! | 16 | 1 | number of FATs | 1 or 2 (two must be identical) |
//! | 17 | 2 | root entries | FAT12/16: ≥ 1, a whole number of sectors; FAT32: 0 |
//! | 19 | 2 | total sectors (16-bit) | if 0, offset 32 holds them |
//! | 22 | 2 | sectors per FAT (16-bit) | FAT12/16: ≥ 1; FAT32: 0 |
//! | 32 | 4 | total sectors (32-bit) | volume must fit in the image |
//! | 36 | 4 | FAT32: sectors per FAT | ≥ 1 |
//! | 40 | 2 | FAT32: flags | bit 7 (one active FAT) refused |
//! | 44 | 4 | FAT32: root directory cluster | a valid cluster |
//! | 510 | 2 | signature | `55 AA` |
//!
//! The FAT type follows from the cluster count, as Microsoft's FAT
//! specification says: < 4085 FAT12, < 65525 FAT16, else FAT32. Each FAT
//! must hold an entry for every cluster.
//!
//! # Directory entries (32 bytes)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 11 | 8.3 name; `00` ends the directory, `E5` is a deleted entry, `05` stands for `E5` |
//! | 11 | 1 | attributes: `0F` long-name part, `08` volume label, `10` directory |
//! | 12 | 1 | case flags: `08` base in lower case, `10` extension in lower case |
//! | 20 | 2 | first cluster, high 16 bits (FAT32) |
//! | 26 | 2 | first cluster, low 16 bits |
//! | 28 | 4 | file size |
//!
//! Long-name parts (VFAT) carry 13 UTF-16 units at offsets 1, 14 and 28, a
//! sequence number at 0 (`0x40` on the last part) and the 8.3 name's
//! checksum at 13; a sequence that is broken, or that does not end on a
//! matching 8.3 entry, is refused.
//!
//! # What "the FAT lies" means here — each refused with a [`FatProblem`]
//!
//! a cluster chain that points past the last cluster, into a free, bad or
//! reserved entry, or back into itself (a loop); two files or directories
//! sharing a cluster; a file size larger (or smaller) than its chain; a
//! volume larger than the image; two FAT copies that differ.

use std::collections::HashSet;

use crate::error::{Error, Result};

mod entries;
use entries::parse_directory;

/// Deepest directory nesting read.
pub const MAX_DIR_DEPTH: usize = 16;
/// Most files (and directories) read from one image.
pub const MAX_ENTRIES: usize = 4096;

/// The kind of FAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatType {
    /// 12-bit entries, fewer than 4085 clusters.
    Fat12,
    /// 16-bit entries, fewer than 65525 clusters.
    Fat16,
    /// 28-bit entries.
    Fat32,
}

/// What is wrong with an image, in [`Error::ReadBootImg`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FatProblem {
    /// The boot sector breaks a rule of the table in this module's docs.
    #[error("boot sector: {0}")]
    BootSector(&'static str),
    /// The boot sector claims more bytes than the image has.
    #[error("the volume claims {claimed} bytes, the image has {actual}")]
    VolumeBeyondImage {
        /// Bytes the BPB claims.
        claimed: u64,
        /// Bytes in the image.
        actual: u64,
    },
    /// The FAT type implied by the cluster count disagrees with the BPB.
    #[error("{clusters} clusters make a {implied:?} volume, but the boot sector is laid out for another type")]
    TypeMismatch {
        /// Cluster count.
        clusters: u32,
        /// Type the count implies.
        implied: FatType,
    },
    /// The FATs are too small for the cluster count.
    #[error("the FAT has room for {room} clusters, the volume has {clusters}")]
    FatTooSmall {
        /// Entries the FAT can hold.
        room: u64,
        /// Clusters in the volume.
        clusters: u32,
    },
    /// The two copies of the FAT differ.
    #[error("the two FAT copies differ")]
    FatCopiesDiffer,
    /// A chain points past the last cluster (or at cluster 0/1).
    #[error("cluster chain reaches cluster {cluster}, past the last one ({last})")]
    ChainPastEnd {
        /// The bad cluster number.
        cluster: u32,
        /// The last valid cluster.
        last: u32,
    },
    /// A chain runs into a free FAT entry.
    #[error("cluster chain runs into free cluster {cluster}")]
    ChainIntoFree {
        /// The free cluster.
        cluster: u32,
    },
    /// A chain runs into a cluster marked bad or reserved.
    #[error("cluster chain runs into cluster {cluster}, marked bad or reserved")]
    ChainIntoBad {
        /// The cluster.
        cluster: u32,
    },
    /// A chain comes back to a cluster it already used.
    #[error("cluster chain loops back to cluster {cluster}")]
    Loop {
        /// Where the loop closes.
        cluster: u32,
    },
    /// Two entries share a cluster.
    #[error("cluster {cluster} also belongs to {other:?}")]
    CrossLinked {
        /// The shared cluster.
        cluster: u32,
        /// The other owner.
        other: String,
    },
    /// A file claims more bytes than its clusters hold.
    #[error("the file claims {size} bytes, its clusters hold {chain_bytes}")]
    SizeBeyondChain {
        /// Size in the directory entry.
        size: u64,
        /// Bytes its chain holds.
        chain_bytes: u64,
    },
    /// A file's chain is longer than its size needs.
    #[error("the file claims {size} bytes but its chain has {clusters} clusters")]
    ChainBeyondSize {
        /// Size in the directory entry.
        size: u64,
        /// Clusters in its chain.
        clusters: u64,
    },
    /// A directory entry that breaks a rule (name, long-name sequence, attributes).
    #[error("directory entry: {0}")]
    Entry(&'static str),
    /// Two entries of one directory with the same name (ignoring case).
    #[error("the name is used twice in its directory")]
    DuplicateName,
    /// More nesting or more entries than this reader accepts.
    #[error("more than {MAX_ENTRIES} entries or {MAX_DIR_DEPTH} levels of directories")]
    TooMany,
}

/// A file found in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FatFile {
    path: String,
    size: u64,
    clusters: Vec<u32>,
}

impl FatFile {
    /// Its path, `/`-separated, as the directory entries spell it.
    pub fn path(&self) -> &str {
        &self.path
    }
    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// A `boot.img` that passed every check; its files can be read.
#[derive(Debug)]
pub struct BootImg<'a> {
    image: &'a [u8],
    fat_type: FatType,
    cluster_bytes: u64,
    data_offset: u64,
    files: Vec<FatFile>,
}

impl<'a> BootImg<'a> {
    /// Reads and checks the whole volume in `image`.
    pub fn read(image: &'a [u8]) -> Result<Self> {
        let geo = Geometry::parse(image)?;
        let mut walk = Walk {
            geo: &geo,
            image,
            owner: vec![0; geo.clusters as usize + 2],
            names: vec![String::from("/")],
            files: Vec::new(),
        };
        walk.directory(Where::Root, "", 0)?;
        let mut files = walk.files;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Self {
            image,
            fat_type: geo.fat_type,
            cluster_bytes: geo.cluster_bytes,
            data_offset: geo.data_offset,
            files,
        })
    }

    /// The FAT type of the volume.
    pub fn fat_type(&self) -> FatType {
        self.fat_type
    }

    /// Every file, sorted by path.
    pub fn files(&self) -> &[FatFile] {
        &self.files
    }

    /// The file at `path`, compared as FAT does (ignoring ASCII case).
    pub fn file(&self, path: &str) -> Option<&FatFile> {
        self.files
            .iter()
            .find(|f| f.path.eq_ignore_ascii_case(path))
    }

    /// The contents of `file` (one of [`Self::files`]).
    pub fn contents(&self, file: &FatFile) -> Vec<u8> {
        let mut out = Vec::with_capacity(file.size as usize);
        for &c in &file.clusters {
            let start = (self.data_offset + u64::from(c - 2) * self.cluster_bytes) as usize;
            let want = (file.size - out.len() as u64).min(self.cluster_bytes) as usize;
            out.extend_from_slice(&self.image[start..start + want]);
        }
        out
    }
}

/// The layout the boot sector describes, checked against the image.
struct Geometry {
    fat_type: FatType,
    cluster_bytes: u64,
    clusters: u32,
    fat_offset: u64,
    root_offset: u64,
    root_entries: u64,
    root_cluster: u32,
    data_offset: u64,
}

fn le16(b: &[u8], at: usize) -> u32 {
    u32::from(u16::from_le_bytes([b[at], b[at + 1]]))
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn problem(path: Option<&str>, problem: FatProblem) -> Error {
    Error::ReadBootImg {
        path: path.map(str::to_owned),
        problem,
    }
}

impl Geometry {
    fn parse(image: &[u8]) -> Result<Self> {
        let bad = |why| problem(None, FatProblem::BootSector(why));
        if image.len() < 512 {
            return Err(bad("shorter than one 512-byte sector"));
        }
        let b = &image[..512];
        if !(b[0] == 0xEB && b[2] == 0x90 || b[0] == 0xE9) {
            return Err(bad(
                "no x86 jump at offset 0 (a partition table is not accepted)",
            ));
        }
        if b[510..512] != [0x55, 0xAA] {
            return Err(bad("no 55 AA signature at offset 510"));
        }
        let bps = u64::from(le16(b, 11));
        if !matches!(bps, 512 | 1024 | 2048 | 4096) {
            return Err(bad("bytes per sector is not 512, 1024, 2048 or 4096"));
        }
        let spc = u64::from(b[13]);
        if spc == 0 || !spc.is_power_of_two() || spc * bps > 65536 {
            return Err(bad(
                "sectors per cluster is not a power of two up to 64 KiB",
            ));
        }
        let reserved = u64::from(le16(b, 14));
        let fats = u64::from(b[16]);
        let root_entries = u64::from(le16(b, 17));
        let total = match le16(b, 19) {
            0 => u64::from(le32(b, 32)),
            n => u64::from(n),
        };
        let fat16_size = u64::from(le16(b, 22));
        if reserved == 0 {
            return Err(bad("no reserved sectors"));
        }
        if !matches!(fats, 1 | 2) {
            return Err(bad("number of FATs is not 1 or 2"));
        }
        let fat32 = fat16_size == 0;
        let fat_sectors = if fat32 {
            u64::from(le32(b, 36))
        } else {
            fat16_size
        };
        if fat_sectors == 0 {
            return Err(bad("zero sectors per FAT"));
        }
        if fat32 && root_entries != 0 {
            return Err(bad("a FAT32 boot sector with a fixed root directory"));
        }
        if !fat32 && (root_entries == 0 || (root_entries * 32) % bps != 0) {
            return Err(bad(
                "root directory is empty or not a whole number of sectors",
            ));
        }
        if fat32 && le16(b, 40) & 0x80 != 0 {
            return Err(bad(
                "FAT32 with mirroring off (one active FAT) is not accepted",
            ));
        }
        let claimed = total * bps;
        if claimed > image.len() as u64 {
            return Err(problem(
                None,
                FatProblem::VolumeBeyondImage {
                    claimed,
                    actual: image.len() as u64,
                },
            ));
        }
        let root_sectors = root_entries * 32 / bps;
        let meta = reserved + fats * fat_sectors + root_sectors;
        if meta >= total {
            return Err(bad("no room for data after the FATs and root directory"));
        }
        let clusters64 = (total - meta) / spc;
        let clusters = u32::try_from(clusters64)
            .ok()
            .filter(|c| *c >= 1 && *c <= 0x0FFF_FFF4)
            .ok_or_else(|| bad("cluster count out of range"))?;
        let implied = match clusters {
            0..=4084 => FatType::Fat12,
            4085..=65524 => FatType::Fat16,
            _ => FatType::Fat32,
        };
        if (implied == FatType::Fat32) != fat32 {
            return Err(problem(
                None,
                FatProblem::TypeMismatch { clusters, implied },
            ));
        }
        let bits = match implied {
            FatType::Fat12 => 12,
            FatType::Fat16 => 16,
            FatType::Fat32 => 32,
        };
        let room = fat_sectors * bps * 8 / bits;
        if room < u64::from(clusters) + 2 {
            return Err(problem(None, FatProblem::FatTooSmall { room, clusters }));
        }
        let fat_offset = reserved * bps;
        let fat_bytes = (fat_sectors * bps) as usize;
        if fats == 2 {
            let first = &image[fat_offset as usize..][..fat_bytes];
            let second = &image[fat_offset as usize + fat_bytes..][..fat_bytes];
            if first != second {
                return Err(problem(None, FatProblem::FatCopiesDiffer));
            }
        }
        let root_cluster = if fat32 { le32(b, 44) } else { 0 };
        Ok(Self {
            fat_type: implied,
            cluster_bytes: spc * bps,
            clusters,
            fat_offset,
            root_offset: (reserved + fats * fat_sectors) * bps,
            root_entries,
            root_cluster,
            data_offset: meta * bps,
        })
    }

    fn last_cluster(&self) -> u32 {
        self.clusters + 1
    }

    /// The raw FAT entry of cluster `c` (2 ≤ c ≤ last), from the first FAT.
    fn entry(&self, image: &[u8], c: u32) -> u32 {
        let fat = &image[self.fat_offset as usize..];
        let c = c as usize;
        match self.fat_type {
            FatType::Fat12 => {
                let v = le16(fat, c + c / 2);
                if c.is_multiple_of(2) {
                    v & 0xFFF
                } else {
                    v >> 4
                }
            }
            FatType::Fat16 => le16(fat, 2 * c),
            FatType::Fat32 => le32(fat, 4 * c) & 0x0FFF_FFFF,
        }
    }

    /// FAT entry values from which on the entry is "bad" (then end-of-chain).
    fn bad_mark(&self) -> u32 {
        match self.fat_type {
            FatType::Fat12 => 0xFF7,
            FatType::Fat16 => 0xFFF7,
            FatType::Fat32 => 0x0FFF_FFF7,
        }
    }
}

enum Where {
    Root,
    Cluster(u32),
}

/// One pass over the directory tree, recording who owns which cluster.
struct Walk<'g, 'i> {
    geo: &'g Geometry,
    image: &'i [u8],
    /// `owner[c]` is 1 + the index in `names` of the entry owning cluster `c`.
    owner: Vec<u32>,
    names: Vec<String>,
    files: Vec<FatFile>,
}

impl Walk<'_, '_> {
    /// Follows the chain from `first`, claiming each cluster for `path`.
    fn chain(&mut self, path: &str, first: u32) -> Result<Vec<u32>> {
        let fail = |p| problem(Some(path), p);
        if self.names.len() > MAX_ENTRIES {
            return Err(fail(FatProblem::TooMany));
        }
        self.names.push(path.to_owned());
        let me = self.names.len() as u32;
        let last = self.geo.last_cluster();
        let mut chain = Vec::new();
        let mut c = first;
        loop {
            if c < 2 || c > last {
                return Err(fail(FatProblem::ChainPastEnd { cluster: c, last }));
            }
            match self.owner[c as usize] {
                0 => self.owner[c as usize] = me,
                o if o == me => return Err(fail(FatProblem::Loop { cluster: c })),
                o => {
                    let other = self.names[o as usize - 1].clone();
                    return Err(fail(FatProblem::CrossLinked { cluster: c, other }));
                }
            }
            chain.push(c);
            let next = self.geo.entry(self.image, c);
            match next {
                0 => return Err(fail(FatProblem::ChainIntoFree { cluster: c })),
                1 => return Err(fail(FatProblem::ChainIntoBad { cluster: c })),
                n if n == self.geo.bad_mark() => {
                    return Err(fail(FatProblem::ChainIntoBad { cluster: c }))
                }
                n if n > self.geo.bad_mark() => return Ok(chain),
                n => c = n,
            }
        }
    }

    fn directory(&mut self, at: Where, path: &str, depth: usize) -> Result<()> {
        if depth > MAX_DIR_DEPTH {
            return Err(problem(Some(path), FatProblem::TooMany));
        }
        let bytes: Vec<u8> = match at {
            Where::Root if self.geo.fat_type != FatType::Fat32 => {
                let start = self.geo.root_offset as usize;
                self.image[start..start + self.geo.root_entries as usize * 32].to_vec()
            }
            Where::Root => {
                let chain = self.chain("/", self.geo.root_cluster)?;
                self.gather(&chain)
            }
            Where::Cluster(first) => {
                let chain = self.chain(path, first)?;
                self.gather(&chain)
            }
        };
        let fat32 = self.geo.fat_type == FatType::Fat32;
        let entries =
            parse_directory(&bytes, depth > 0, fat32).map_err(|p| problem(Some(path), p))?;
        let mut seen = HashSet::new();
        for e in entries {
            if self.files.len() >= MAX_ENTRIES {
                return Err(problem(Some(path), FatProblem::TooMany));
            }
            let child = if path.is_empty() {
                e.name.clone()
            } else {
                format!("{path}/{}", e.name)
            };
            if !seen.insert(e.name.to_ascii_lowercase()) {
                return Err(problem(Some(&child), FatProblem::DuplicateName));
            }
            if e.is_dir {
                if e.size != 0 || e.first_cluster == 0 {
                    return Err(problem(
                        Some(&child),
                        FatProblem::Entry("a directory with a size or without a cluster"),
                    ));
                }
                self.directory(Where::Cluster(e.first_cluster), &child, depth + 1)?;
            } else {
                let file = self.file(&child, e.first_cluster, e.size)?;
                self.files.push(file);
            }
        }
        Ok(())
    }

    fn file(&mut self, path: &str, first: u32, size: u64) -> Result<FatFile> {
        let cb = self.geo.cluster_bytes;
        let clusters = if first == 0 {
            Vec::new()
        } else {
            self.chain(path, first)?
        };
        let have = clusters.len() as u64;
        let need = size.div_ceil(cb);
        if have < need {
            let p = FatProblem::SizeBeyondChain {
                size,
                chain_bytes: have * cb,
            };
            return Err(problem(Some(path), p));
        }
        if have > need {
            let p = FatProblem::ChainBeyondSize {
                size,
                clusters: have,
            };
            return Err(problem(Some(path), p));
        }
        Ok(FatFile {
            path: path.to_owned(),
            size,
            clusters,
        })
    }

    fn gather(&self, chain: &[u32]) -> Vec<u8> {
        let cb = self.geo.cluster_bytes as usize;
        let mut out = Vec::with_capacity(chain.len() * cb);
        for &c in chain {
            let start = self.geo.data_offset as usize + (c as usize - 2) * cb;
            out.extend_from_slice(&self.image[start..start + cb]);
        }
        out
    }
}
