//! hardware/README.md stays true: its example rack parses, and its schema
//! table names exactly the fields the reference rack uses.

use std::collections::BTreeSet;

const README: &str = include_str!("../README.md");
const RACK: &str = include_str!("../rack.yaml");

/// The first fenced block after the "A minimal rack" heading.
fn example() -> &'static str {
    let at = README
        .find("## A minimal rack")
        .expect("README has the example");
    let rest = &README[at..];
    let start = rest.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let len = rest[start..].find("```").expect("the block ends");
    &rest[start..start + len]
}

/// Field paths (`nodes[].bmc.smbus_address`) in a YAML value.
fn paths(v: &serde_norway::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        serde_norway::Value::Mapping(m) => {
            for (k, v) in m {
                let k = k.as_str().expect("string keys");
                let p = if prefix.is_empty() {
                    k.to_owned()
                } else {
                    format!("{prefix}.{k}")
                };
                match v {
                    serde_norway::Value::Mapping(_) => paths(v, &p, out),
                    serde_norway::Value::Sequence(s)
                        if s.iter()
                            .any(|e| matches!(e, serde_norway::Value::Mapping(_))) =>
                    {
                        for e in s {
                            paths(e, &format!("{p}[]"), out);
                        }
                    }
                    _ => {
                        out.insert(p);
                    }
                }
            }
        }
        _ => unreachable!("the rack is a mapping"),
    }
}

#[test]
fn the_example_rack_parses() {
    let rack = racklet_hardware::Rack::from_yaml_str(example()).unwrap();
    assert_eq!(rack.nodes.len(), 1);
    assert_eq!(rack.nodes[0].arch, racklet_hardware::Arch::Aarch64);
}

#[test]
fn the_schema_table_names_exactly_the_fields_of_rack_yaml() {
    let at = README.find("## The schema").unwrap();
    let table: BTreeSet<String> = README[at..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.split('|')
                .nth(1)
                .unwrap()
                .trim()
                .trim_matches('`')
                .to_owned()
        })
        .collect();
    let mut used = BTreeSet::new();
    paths(&serde_norway::from_str(RACK).unwrap(), "", &mut used);
    assert_eq!(table, used, "README schema table vs hardware/rack.yaml");
}
