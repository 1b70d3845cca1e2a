//! Guarding dhcproto against the wire, shared by bootd's proxyDHCP and
//! stage1's DHCP client (both read untrusted packets from the LAN).
//!
//! dhcproto 0.15 debug-asserts on some option lengths (found by our fuzz
//! target: option 81 shorter than 3 bytes asserts in its decoder). So the
//! options are walked first — every option must fit, satisfy the caller's
//! length rule, and an END must come — and the decoder still runs under
//! `catch_unwind`: a packet must never take a service or PID 1 down.
#![forbid(unsafe_code)]

use dhcproto::v4::Message;
use dhcproto::{Decodable, Decoder};

/// Walks the options area (after the 236-byte header and the magic cookie):
/// every option must fit, `len_ok(code, len)` must hold, and an END option
/// must come. A truncated packet, or one whose option lengths run past the
/// end, is malformed — even where a lenient decoder would accept the prefix.
pub fn check_options(bytes: &[u8], len_ok: impl Fn(u8, usize) -> bool) -> Result<(), String> {
    if bytes.len() < 240 {
        return Err(format!("{} bytes: shorter than a DHCP header", bytes.len()));
    }
    if bytes[236..240] != [99, 130, 83, 99] {
        return Err("no DHCP magic cookie".into());
    }
    let mut i = 240;
    while i < bytes.len() {
        match bytes[i] {
            0 => i += 1,
            255 => return Ok(()),
            code => {
                let Some(&len) = bytes.get(i + 1) else {
                    return Err(format!("option {code} has no length"));
                };
                if !len_ok(code, usize::from(len)) {
                    return Err(format!("option {code} cannot be {len} bytes long"));
                }
                i += 2 + usize::from(len);
                if i > bytes.len() {
                    return Err(format!("option {code} claims {len} bytes past the end"));
                }
            }
        }
    }
    Err("no END option (truncated?)".into())
}

/// dhcproto's decoder, with a panic turned into an error.
pub fn decode(bytes: &[u8]) -> Result<Message, String> {
    // libFuzzer's panic hook aborts on any panic, caught or not: under the
    // fuzzer, silence it for the decoder alone (single-threaded there), so
    // that the fuzzer still catches every panic in *our* code.
    #[cfg(fuzzing)]
    let hook = std::panic::take_hook();
    #[cfg(fuzzing)]
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(|| Message::decode(&mut Decoder::new(bytes)));
    #[cfg(fuzzing)]
    std::panic::set_hook(hook);
    match result {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the DHCP decoder panicked on it".into()),
    }
}
