//! The writer: a [`DeviceTree`] back into a packed version-17 blob.

use std::collections::HashMap;

use super::{
    name_ok, pad4, DeviceTree, Error, Node, Reservation, BEGIN_NODE, END, END_NODE, HEADER_LEN,
    MAGIC, PROP,
};

impl DeviceTree {
    /// Writes the tree as a packed version-17 blob: header, reservations,
    /// structure, strings (each name once, in first-use order).
    pub fn to_blob(&self) -> Result<Vec<u8>, Error> {
        let mut strings = Strings::default();
        let mut st: Vec<u8> = Vec::new();
        write_node(&self.root, true, &mut st, &mut strings)?;
        let strings = strings.block;
        st.extend_from_slice(&END.to_be_bytes());
        let rsv_len = (self.reservations.len() + 1) * 16;
        let off_rsv = HEADER_LEN; // 0x28, 8-aligned
        let off_struct = off_rsv + rsv_len;
        let off_strings = off_struct + st.len();
        let total = off_strings + strings.len();
        let u = |n: usize| u32::try_from(n).map_err(|_| Error::TooBig);
        let mut out = Vec::with_capacity(total);
        for v in [
            MAGIC,
            u(total)?,
            u(off_struct)?,
            u(off_strings)?,
            u(off_rsv)?,
            17,
            16,
            self.boot_cpuid_phys,
            u(strings.len())?,
            u(st.len())?,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        for r in self.reservations.iter().chain([&Reservation {
            address: 0,
            size: 0,
        }]) {
            out.extend_from_slice(&r.address.to_be_bytes());
            out.extend_from_slice(&r.size.to_be_bytes());
        }
        out.extend_from_slice(&st);
        out.extend_from_slice(&strings);
        Ok(out)
    }
}

/// Writes `node` and its subtree. Names are checked as the reader checks
/// them, so that what is written always reads back; depth is the caller's
/// (a parsed tree is at most [`MAX_DEPTH`] deep).
fn write_node(
    node: &Node,
    root: bool,
    st: &mut Vec<u8>,
    strings: &mut Strings,
) -> Result<(), Error> {
    let bad = |name: &str| Error::BadName {
        offset: st.len(),
        name: name.to_owned(),
    };
    if root != node.name.is_empty() || (!root && !name_ok(node.name.as_bytes(), true)) {
        return Err(bad(&node.name));
    }
    if let Some(p) = node
        .properties
        .iter()
        .find(|p| !name_ok(p.name.as_bytes(), false))
    {
        return Err(bad(&p.name));
    }
    st.extend_from_slice(&BEGIN_NODE.to_be_bytes());
    st.extend_from_slice(node.name.as_bytes());
    st.push(0);
    st.resize(pad4(st.len()).ok_or(Error::TooBig)?, 0);
    for p in &node.properties {
        let nameoff = strings.offset(&p.name);
        st.extend_from_slice(&PROP.to_be_bytes());
        st.extend_from_slice(
            &u32::try_from(p.value.len())
                .map_err(|_| Error::TooBig)?
                .to_be_bytes(),
        );
        st.extend_from_slice(
            &u32::try_from(nameoff)
                .map_err(|_| Error::TooBig)?
                .to_be_bytes(),
        );
        st.extend_from_slice(&p.value);
        st.resize(pad4(st.len()).ok_or(Error::TooBig)?, 0);
    }
    for c in &node.children {
        write_node(c, false, st, strings)?;
    }
    st.extend_from_slice(&END_NODE.to_be_bytes());
    Ok(())
}

/// The strings block being written: each name once, in first-use order.
#[derive(Default)]
struct Strings {
    block: Vec<u8>,
    seen: HashMap<String, usize>,
}

impl Strings {
    /// Offset of `name`, appending it the first time.
    fn offset(&mut self, name: &str) -> usize {
        if let Some(&at) = self.seen.get(name) {
            return at;
        }
        let at = self.block.len();
        self.block.extend_from_slice(name.as_bytes());
        self.block.push(0);
        self.seen.insert(name.to_owned(), at);
        at
    }
}
