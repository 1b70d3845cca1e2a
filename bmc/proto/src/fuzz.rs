//! Properties the frame decoders must keep on *any* input. The fuzz targets
//! in `fuzz/` and the bounded property tests call these; each panics when a
//! property is broken.

use crate::{
    decode_request, decode_response, encode_request, encode_response, Error, SmbusAddr,
    StreamReader, MAX_FRAME,
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
            let n = encode_request(addr, &req, &mut out).expect("accepted request re-encodes");
            assert_eq!(&out[..n], data, "re-encoding differs");
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
