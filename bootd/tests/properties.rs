//! Properties of the request-facing parsers, over arbitrary input.

use bootd::files::{parse_range, Range};
use bootd::repo::is_flat_name;
use proptest::prelude::*;

proptest! {
    /// A satisfiable range always lies inside the file, start <= end.
    #[test]
    fn ranges_stay_inside_the_file(
        header in prop_oneof!["\\PC{0,40}", "bytes=[0-9,\\- ]{0,24}"],
        len in 0u64..1_000_000,
    ) {
        match parse_range(&header, len) {
            Range::Part(s, e) => prop_assert!(s <= e && e < len),
            Range::Full | Range::Unsatisfiable => {}
        }
    }

    #[test]
    fn byte_ranges_parse_exactly(a in 0u64..2000, b in 0u64..2000, len in 1u64..2000) {
        let r = parse_range(&format!("bytes={a}-{b}"), len);
        if a >= len {
            prop_assert_eq!(r, Range::Unsatisfiable);
        } else if b < a {
            prop_assert_eq!(r, Range::Full);
        } else {
            prop_assert_eq!(r, Range::Part(a, b.min(len - 1)));
        }
    }

    /// A name that passes can never climb out of, or hide in, a directory.
    #[test]
    fn flat_names_cannot_traverse(name in "\\PC{0,30}") {
        if is_flat_name(&name) {
            prop_assert!(!name.contains('/') && !name.contains('\\') && !name.contains('%'));
            prop_assert!(!name.starts_with('.'));
            prop_assert!(name != ".." && name != ".");
            prop_assert!(!name.contains('\0'));
        }
    }

    /// Config text of any shape gives a config or an error, never a panic.
    #[test]
    fn config_parsing_never_panics(text in "\\PC{0,300}") {
        let _ = bootd::Config::parse(&text, std::path::Path::new("/"), None);
    }

    /// Mangling a valid config anywhere still never panics, and an error
    /// that names a line names one that exists.
    #[test]
    fn mangled_configs_name_real_lines(cut in 0usize..1800, junk in "[a-z:\\- \\[\\]{}0-9\"]{0,12}") {
        let base = include_str!("../bootd.example.yaml");
        let cut = cut.min(base.len());
        let cut = (0..=cut).rev().find(|i| base.is_char_boundary(*i)).unwrap_or(0);
        let text = format!("{}{}{}", &base[..cut], junk, &base[cut..]);
        if let Err(bootd::Error::ConfigInvalid { line: Some(l), .. }) =
            bootd::Config::parse(&text, std::path::Path::new("/"), None)
        {
            prop_assert!(l >= 1 && l <= text.lines().count());
        }
    }
}
