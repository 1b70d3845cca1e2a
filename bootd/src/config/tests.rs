//! The configuration's tests: the example file, every refusal by field and line.

use super::*;

pub(crate) const EXAMPLE: &str = include_str!("../../bootd.example.yaml");

#[test]
fn example_config_is_valid_and_defaults_apply() {
    let c = Config::parse(EXAMPLE, Path::new("/etc/bootd"), None).unwrap();
    assert_eq!(c.https, vec!["0.0.0.0:8443".parse::<SocketAddr>().unwrap()]);
    assert!(c.plain_http.is_empty(), "plain HTTP must be off by default");
    assert_eq!(c.limits, Limits::default());
    assert!(c.pki.ca_key.is_absolute());
}

#[test]
fn reference_rack_config_is_valid() {
    let text = include_str!("../../../hardware/bootd.yaml");
    let c = Config::parse(text, Path::new("/repo/hardware"), None).unwrap();
    assert_eq!(c.rack_file, Path::new("/repo/hardware/rack.yaml"));
    assert!(c.plain_http.is_empty());
}

#[test]
fn unknown_field_names_field_and_line() {
    let text = EXAMPLE.replace("limits:\n", "limits:\n  max_conections: 5\n");
    assert_ne!(text, EXAMPLE);
    let err = Config::parse(&text, Path::new("/"), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_conections"), "{err}");
    assert!(err.contains("line"), "{err}");
}

#[test]
fn invalid_values_name_field_and_line() {
    for (from, to, field) in [
        (
            "max_connections: 4096",
            "max_connections: 0",
            "limits.max_connections",
        ),
        ("- \"0.0.0.0:8443\"", "- \"0.0.0.0\"", "listen.https[0]"),
        (
            "idle_timeout_ms: 60000",
            "idle_timeout_ms: 0",
            "limits.idle_timeout_ms",
        ),
    ] {
        let text = EXAMPLE.replace(from, to);
        assert_ne!(text, EXAMPLE, "{from} not in the example");
        let err = Config::parse(&text, Path::new("/"), None).unwrap_err();
        let Error::ConfigInvalid { field: f, line, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(f, field);
        let line = line.unwrap_or_else(|| panic!("no line for {field}"));
        let at = text.lines().nth(line - 1).unwrap();
        assert!(
            at.contains(to.split(':').next().unwrap().trim_start_matches("- ")),
            "{field}: line {line} is `{at}`"
        );
    }
}

#[test]
fn first_stage_is_one_entry_or_a_list() {
    let c = Config::parse(EXAMPLE, Path::new("/etc/bootd"), None).unwrap();
    let paths: Vec<(&str, FirstStageTransport)> = c
        .first_stage
        .iter()
        .map(|f| (f.path.as_str(), f.transport))
        .collect();
    assert_eq!(
        paths,
        [
            ("rpi4", FirstStageTransport::Http),
            ("rpi5", FirstStageTransport::Https)
        ]
    );
    assert_eq!(c.first_stage[0].file_for("rpi4/boot.sig"), Some("boot.sig"));
    assert_eq!(c.first_stage[0].file_for("rpi5/boot.sig"), None);
    assert_eq!(c.first_stage[0].file_for("rpi4/other"), None);
    // The single mapping of earlier configs still reads, as transport http.
    let one = EXAMPLE.replace(
        &EXAMPLE[EXAMPLE.find("first_stage:\n").unwrap()..EXAMPLE.find("\n# proxyDHCP").unwrap()],
        "first_stage:\n  path: net_install\n  files:\n    boot.img: rpi4-stage1.img\n  \
         pi_public_key: k.bin\n",
    );
    let err = Config::parse(&one, Path::new("/etc/bootd"), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("map both names"), "{err}");
    let one = one.replace("  pi_public_key: k.bin\n", "");
    let c = Config::parse(&one, Path::new("/etc/bootd"), None).unwrap();
    assert_eq!(c.first_stage.len(), 1);
    assert_eq!(c.first_stage[0].transport, FirstStageTransport::Http);

    let two = |a: &str, b: &str, extra: &str| {
        EXAMPLE
            .replace("  - path: rpi4\n", &format!("  - path: {a}\n{extra}"))
            .replace("  - path: rpi5\n", &format!("  - path: {b}\n"))
    };
    for (text, field, why) in [
        (
            two("pi", "pi", ""),
            "first_stage[1].path",
            "another entry too",
        ),
        (two("pi", "pi/five", ""), "first_stage[1].path", "overlaps"),
        (two("\"\"", "rpi5", ""), "first_stage[1].path", "overlaps"),
        (
            EXAMPLE.replacen(
                "files: { boot.img: rpi4-stage1.img, boot.sig: rpi4-stage1.sig }",
                "files: {}",
                1,
            ),
            "first_stage[0].files",
            "at least one file",
        ),
        (
            EXAMPLE.replacen("transport: http\n", "transport: tftp\n", 1),
            "first_stage[0].transport",
            "tftp",
        ),
        (
            EXAMPLE.replace(
                &EXAMPLE[EXAMPLE.find("first_stage:\n").unwrap()
                    ..EXAMPLE.find("\n# proxyDHCP").unwrap()],
                "first_stage: []\n",
            ),
            "first_stage",
            "empty list",
        ),
    ] {
        let err = Config::parse(&text, Path::new("/"), None).unwrap_err();
        let msg = err.to_string();
        match &err {
            Error::ConfigInvalid { field: f, .. } if f == field => {}
            Error::ConfigParse { .. } if field == "first_stage" => {}
            _ => panic!("want {field}: {msg}"),
        }
        assert!(msg.contains(why), "{field}: {msg}");
    }
    // pi5 and pi/five differ: a path is inside another only at a `/`.
    Config::parse(&two("pi", "pie", ""), Path::new("/"), None).unwrap();
    // Plain HTTP with only HTTPS-only entries serves nothing: refused.
    let text = EXAMPLE
        .replace("  plain_http: []", "  plain_http: [\"0.0.0.0:8080\"]")
        .replace("transport: http\n", "transport: https\n");
    let err = Config::parse(&text, Path::new("/"), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("transport: http"), "{err}");
}

#[test]
fn plain_http_needs_first_stage_and_mirror_needs_https() {
    let text = EXAMPLE.replace("  plain_http: []", "  plain_http: [\"0.0.0.0:8080\"]");
    assert_ne!(text, EXAMPLE);
    let text = text.replace("first_stage:", "unused_first_stage:");
    let err = Config::parse(&text, Path::new("/"), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("first_stage") || err.contains("unused_first_stage"),
        "{err}"
    );

    let text = EXAMPLE.replace(
        "  local: /srv/racklet/repo",
        "  mirror: { url: \"http://origin.example/repo\", ca_cert: o.pem }",
    );
    assert_ne!(text, EXAMPLE);
    let err = Config::parse(&text, Path::new("/"), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("repository.mirror.url"), "{err}");
}

#[test]
fn full_dhcp_pools_are_checked() {
    let proxy = "proxy_dhcp:\n  interface: br0\n  server_ip: 10.0.0.1\n  boot_urls:\n    \
                 x86_64: http://10.0.0.1:8080/s.efi\n  full_dhcp:\n    first: 10.0.0.100\n    \
                 last: 10.0.0.120\n    prefix_len: 24\n    router: 10.0.0.1\n";
    let text = format!("{EXAMPLE}{proxy}");
    let c = Config::parse(&text, Path::new("/"), None).unwrap();
    let pool = c.proxy_dhcp.unwrap().full_dhcp.unwrap();
    assert_eq!(pool.lease_s, 3600, "the default lease time");
    assert_eq!(
        pool.netmask(),
        "255.255.255.0".parse::<std::net::Ipv4Addr>().unwrap()
    );

    for (from, to, field, why) in [
        (
            "first: 10.0.0.100",
            "first: 10.0.0",
            "first",
            "not an IPv4 address",
        ),
        (
            "last: 10.0.0.120",
            "last: 10.0.0.90",
            "last",
            "comes before first",
        ),
        (
            "last: 10.0.0.120",
            "last: 10.0.1.120",
            "last",
            "not on the server's network",
        ),
        (
            "first: 10.0.0.100",
            "first: 10.0.0.1",
            "full_dhcp",
            "server's own address",
        ),
        ("last: 10.0.0.120", "last: 10.0.0.255", "last", "broadcast"),
        (
            "prefix_len: 24",
            "prefix_len: 31",
            "prefix_len",
            "prefix length",
        ),
        (
            "router: 10.0.0.1",
            "router: 10.9.0.1",
            "router",
            "not on the server's network",
        ),
        (
            "router: 10.0.0.1",
            "router: 10.0.0.110",
            "router",
            "inside the pool",
        ),
        (
            "router: 10.0.0.1",
            "router: 10.0.0.1\n    lease_s: 5",
            "lease_s",
            "want 60",
        ),
        ("prefix_len: 24", "prefix_len: 16", "last", "4096"),
    ] {
        let bad = text.replace(from, to);
        assert_ne!(bad, text, "{from}");
        let bad = if field == "last" && why == "4096" {
            bad.replace("last: 10.0.0.120", "last: 10.0.32.0")
        } else {
            bad
        };
        let err = Config::parse(&bad, Path::new("/"), None).unwrap_err();
        let Error::ConfigInvalid {
            field: f, reason, ..
        } = &err
        else {
            panic!("{err}")
        };
        let want = if field == "full_dhcp" {
            "proxy_dhcp.full_dhcp".to_owned()
        } else {
            format!("proxy_dhcp.full_dhcp.{field}")
        };
        assert_eq!(f, &want, "{err}");
        assert!(reason.contains(why), "{field}: {err}");
    }
}

const MIRROR: &str = "  mirror: { url: \"https://origin.example/repo\", ca_cert: o.pem }";

#[test]
fn a_mirror_has_deadlines_with_defaults_and_each_can_be_set() {
    let text = EXAMPLE.replace("  local: /srv/racklet/repo", MIRROR);
    assert_ne!(text, EXAMPLE);
    let c = Config::parse(&text, Path::new("/"), None).unwrap();
    let Source::Mirror { timeouts, .. } = c.repository.source else {
        panic!("not a mirror")
    };
    assert_eq!(timeouts, MirrorTimeouts::default());
    assert_eq!(
        timeouts.net_config().total_timeout,
        Duration::from_secs(600)
    );
    let set = MIRROR.replace(
        "ca_cert: o.pem }",
        "ca_cert: o.pem, connect_timeout_ms: 1000, handshake_timeout_ms: 2000, \
         read_timeout_ms: 3000, total_timeout_ms: 4000 }",
    );
    let text = EXAMPLE.replace("  local: /srv/racklet/repo", &set);
    let c = Config::parse(&text, Path::new("/"), None).unwrap();
    let Source::Mirror { timeouts, .. } = c.repository.source else {
        panic!("not a mirror")
    };
    let net = timeouts.net_config();
    assert_eq!(
        (
            net.connect_timeout,
            net.handshake_timeout,
            net.read_timeout,
            net.total_timeout
        ),
        (
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::from_secs(3),
            Duration::from_secs(4)
        )
    );
    let zero = set.replace("read_timeout_ms: 3000", "read_timeout_ms: 0");
    let text = EXAMPLE.replace("  local: /srv/racklet/repo", &zero);
    let err = Config::parse(&text, Path::new("/"), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("repository.mirror.read_timeout_ms"), "{err}");
}

#[test]
fn a_timestamp_role_on_a_mirror_is_refused_not_ignored() {
    let text = EXAMPLE
        .replace("  local: /srv/racklet/repo", MIRROR)
        .replace(
            "  # timestamp: { key: timestamp.key",
            "  timestamp: { key: timestamp.key",
        );
    assert!(text.contains("\n  timestamp: {"), "example changed");
    let err = Config::parse(&text, Path::new("/"), None).unwrap_err();
    let Error::ConfigInvalid {
        field,
        line,
        reason,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(field, "repository.timestamp");
    assert!(line.is_some(), "{err}");
    assert!(reason.contains("mirror"), "{reason}");
}

#[test]
fn a_pkcs11_timestamp_key_is_kept_as_written_and_a_file_is_resolved() {
    let uri = "pkcs11:token=racklet;object=timestamp?pin-source=pin.txt";
    let text = EXAMPLE.replace(
        "  # timestamp: { key: timestamp.key",
        &format!("  timestamp: {{ key: \"{uri}\""),
    );
    let c = Config::parse(&text, Path::new("/etc/bootd"), None).unwrap();
    assert_eq!(c.repository.timestamp.unwrap().key, Path::new(uri));
    let text = EXAMPLE.replace(
        "  # timestamp: { key: timestamp.key",
        "  timestamp: { key: timestamp.key",
    );
    let c = Config::parse(&text, Path::new("/etc/bootd"), None).unwrap();
    assert_eq!(
        c.repository.timestamp.unwrap().key,
        Path::new("/etc/bootd/timestamp.key")
    );
}
