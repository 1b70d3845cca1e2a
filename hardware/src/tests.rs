use super::*;

const REF: &str = include_str!("../rack.yaml");

#[test]
fn reference_rack_parses() {
    let rack = Rack::from_yaml_str(REF).unwrap();
    assert_eq!(rack.id.as_str(), "racklet-ref");
    assert_eq!(rack.nodes.len(), 5);
    let n = rack
        .node_by_mac("02:72:6b:00:00:03".parse().unwrap())
        .unwrap();
    assert_eq!(n.name.as_str(), "unit-3");
    assert_eq!(n.smbus_address, 0x22);
    assert!(rack
        .node_by_name("unit-5")
        .unwrap()
        .groups
        .contains("canary"));
    assert_eq!(rack.boot.watchdog, Duration::from_secs(120));
}

#[test]
fn unknown_field_names_field_and_line() {
    let text = REF.replace("  stagger_ms: 250", "  stagger_ms: 250\n  stagger_msec: 1");
    let err = Rack::from_yaml_str(&text).unwrap_err().to_string();
    assert!(err.contains("stagger_msec"), "{err}");
    assert!(err.contains("line"), "{err}");
}

#[test]
fn duplicate_mac_is_refused() {
    let text = REF.replace("02:72:6b:00:00:02", "02:72:6b:00:00:01");
    let err = Rack::from_yaml_str(&text).unwrap_err().to_string();
    assert!(err.contains("nodes[1].mac"), "{err}");
    assert!(err.contains("appears twice"), "{err}");
}

#[test]
fn bad_values_name_the_field() {
    for (from, to, field) in [
        (
            "mac: \"02:72:6b:00:00:04\"",
            "mac: \"02:72:6b:00:04\"",
            "line",
        ),
        (
            "smbus_address: 0x24",
            "smbus_address: 0x02",
            "nodes[4].bmc.smbus_address",
        ),
        ("max_tries: 3", "max_tries: 0", "boot.max_tries"),
        (
            "arch: x86_64\n    firmware: uefi\n    groups: [control]",
            "arch: mips\n    firmware: uefi\n    groups: [control]",
            "line",
        ),
        (
            "arch: x86_64\n    firmware: uefi\n    groups: [control]",
            "arch: x86_64\n    firmware: pi4-eeprom\n    groups: [control]",
            "nodes[0].firmware",
        ),
        (
            "firmware: uefi\n    groups: [control]",
            "firmware: pi6-eeprom\n    groups: [control]",
            "line",
        ),
        ("name: unit-2", "name: Unit_2", "line"),
        (
            "groups: [workers, canary]",
            "groups: [Workers]",
            "nodes[4].groups",
        ),
    ] {
        let text = REF.replace(from, to);
        assert_ne!(text, REF, "replacement {from} did not apply");
        let err = Rack::from_yaml_str(&text).unwrap_err().to_string();
        assert!(err.contains(field), "{field}: {err}");
    }
}

#[test]
fn mac_round_trips() {
    let m: MacAddr = "02:72:6B:00:00:0a".parse().unwrap();
    assert_eq!(m.to_string(), "02:72:6b:00:00:0a");
    assert!("02:72:6b:00:00".parse::<MacAddr>().is_err());
    assert!("02:72:6b:00:00:zz".parse::<MacAddr>().is_err());
}
