//! Properties the frame decoders must keep on *any* input. The fuzz targets
//! in `fuzz/` and the bounded property tests call these; each panics when a
//! property is broken.

use crate::auth::{Epoch, UnitKey, TRAILER_LEN};
use crate::session::Session;
use crate::{
    decode_request, decode_response, encode_authenticated, encode_request,
    encode_request_with_trailer, encode_response, Error, ImageKind, RefusalReason, Request,
    SecurityVersion, Slot, SmbusAddr, StreamReader, TufRole, UnixTime, MAX_FRAME,
};

/// BMC side: decoding never panics; an accepted request re-encodes to the
/// very same bytes; a refused one maps to a status code the BMC can send.
pub fn request_frame(data: &[u8]) {
    let Ok(addr) = SmbusAddr::new(0x20) else {
        return;
    };
    let incoming = decode_request(addr, data);
    match incoming.request {
        Ok(req) => {
            let mut out = [0u8; MAX_FRAME];
            assert_eq!(
                req.is_authenticated(),
                incoming.auth.is_some(),
                "a state-changing request decodes with its trailer, a read without"
            );
            let n = match &incoming.auth {
                Some(t) => encode_request_with_trailer(addr, &req, t, &mut out),
                None => encode_request(addr, &req, &mut out),
            }
            .expect("accepted request re-encodes");
            assert_eq!(&out[..n], data, "re-encoding differs");
            // Without the key nobody forges a tag: a fixed test key never
            // verifies an arbitrary frame unless it is exactly the frame
            // that key encodes.
            if let Some(t) = incoming.auth {
                let key = UnitKey::from_bytes([0x5A; 32]).session(Epoch(1));
                let mut want = [0u8; MAX_FRAME];
                let m = encode_authenticated(addr, &req, &key, Epoch(1), t.counter, &mut want)
                    .expect("re-encodes");
                assert_eq!(
                    incoming.verify(addr, &key, Epoch(1)),
                    &want[..m] == data,
                    "verify disagrees with encode"
                );
            }
        }
        Err(e) => {
            let code = e.code();
            assert_ne!(code.to_byte(), 0, "an error must not encode as success");
            let mut out = [0u8; MAX_FRAME];
            let n = encode_response(addr, incoming.command, Err(code), &mut out);
            assert!(matches!(
                decode_response(addr, incoming.command, &out[..n]),
                Err(Error::Refused(c)) if c == code
            ));
        }
    }
}

/// Client side: decoding any response to any command never panics, and an
/// accepted response re-encodes to the same bytes.
pub fn response_frame(data: &[u8]) {
    let Some((&command, frame)) = data.split_first() else {
        return;
    };
    let Ok(addr) = SmbusAddr::new(0x20) else {
        return;
    };
    if let Ok(resp) = decode_response(addr, command, frame) {
        let mut out = [0u8; MAX_FRAME];
        let n = encode_response(addr, command, Ok(&resp), &mut out);
        assert_eq!(&out[..n], frame, "re-encoding differs");
    }
}

/// The stream splitter never panics, never yields a frame over
/// [`MAX_FRAME`], and every frame it yields has a consistent count byte.
pub fn stream(data: &[u8]) {
    let mut r = StreamReader::requests();
    for &b in data {
        if let Some(Ok(frame)) = r.push(b) {
            assert!(frame.len() <= MAX_FRAME);
            assert_eq!(usize::from(frame[2]) + 4, frame.len());
        }
    }
    let mut r = StreamReader::responses();
    for &b in data {
        if let Some(Ok(frame)) = r.push(b) {
            assert_eq!(usize::from(frame[1]) + 3, frame.len());
        }
    }
}

/// The MAC: a valid authenticated frame built from `data` verifies in its
/// own epoch and no other; flipping any one bit of it (at a place `data`
/// chooses) makes it fail the PEC or the tag, or decode as another request
/// that does not verify either. Never panics.
pub fn authenticated_frame(data: &[u8]) {
    let Ok(addr) = SmbusAddr::new(0x20) else {
        return;
    };
    let byte = |i: usize| data.get(i).copied().unwrap_or(0);
    let word = |i: usize| u32::from_le_bytes([byte(i), byte(i + 1), byte(i + 2), byte(i + 3)]);
    let slot = if byte(1) & 1 == 0 { Slot::A } else { Slot::B };
    let kind = if byte(1) & 2 == 0 {
        ImageKind::BootImage
    } else {
        ImageKind::Stage1
    };
    let req = match byte(0) % 6 {
        0 => Request::ConfirmBoot { slot },
        1 => Request::RaiseRollbackMin {
            kind,
            version: SecurityVersion(word(2)),
        },
        2 => Request::SetTime {
            time: UnixTime(u64::from(word(2)) << 8),
        },
        3 => Request::ReportInstalled {
            slot,
            kind,
            version: SecurityVersion(word(2)),
        },
        4 => Request::ReportRefusal {
            reason: RefusalReason::ALL[usize::from(byte(1)) % RefusalReason::COUNT],
        },
        _ => Request::RaiseTufFloor {
            role: TufRole::ALL[usize::from(byte(1)) % TufRole::COUNT],
            version: word(2),
        },
    };
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = byte(6 + i);
    }
    let epoch = Epoch(word(38));
    let key = UnitKey::from_bytes(k).session(epoch);
    let mut session = Session::new(key, epoch, word(42) % 1_000_000);
    let mut frame = [0u8; MAX_FRAME];
    let n = session.encode(addr, &req, &mut frame).expect("encodes");
    let f = &frame[..n];
    let inc = decode_request(addr, f);
    assert_eq!(inc.request, Ok(req));
    assert!(inc
        .auth
        .is_some_and(|t| t.counter == session.next_counter() - 1));
    assert!(inc.verify(addr, &key, epoch), "own frame must verify");
    let other = Epoch(epoch.0.wrapping_add(1 + u32::from(byte(46))));
    assert!(!inc.verify(addr, &key, other), "verified in another epoch");
    assert!(
        !inc.verify(addr, &UnitKey::from_bytes(k).session(other), other),
        "verified under another epoch's key"
    );
    // One flipped bit anywhere but the address byte (which makes the frame
    // someone else's), with the PEC fixed up as anyone can, must not verify.
    let at = 1 + usize::from(byte(47)) % (n - 2);
    let mut bad = [0u8; MAX_FRAME];
    bad[..n].copy_from_slice(f);
    bad[at] ^= 1 << (byte(48) % 8);
    bad[n - 1] = crate::pec::pec(&bad[..n - 1]);
    let inc = decode_request(addr, &bad[..n]);
    if let (Ok(_), Some(_)) = (inc.request, inc.auth) {
        assert!(
            !inc.verify(addr, &key, epoch),
            "a frame with bit {} of byte {at} flipped verifies",
            byte(48) % 8
        );
    }
    assert!(n >= 4 + TRAILER_LEN);
}
