//! Raw HTTP/2 frames for tests that speak to a server byte by byte (stalled clients, header bombs,
//! oversized frames): the connection preface, frame types and flags, and one frame's encoding.

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const SETTINGS: u8 = 0x4;
pub const CONTINUATION: u8 = 0x9;
pub const END_STREAM: u8 = 0x1;
/// SETTINGS' acknowledgement flag.
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
/// SETTINGS_MAX_FRAME_SIZE's initial value: no frame we send may be larger unless the peer allows it.
pub const MAX_FRAME: usize = 16_384;

/// One frame: 24-bit length, type, flags, stream id, payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend(&(payload.len() as u32).to_be_bytes()[1..]);
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_frame_is_its_nine_byte_header_and_payload() {
        let f = super::frame(super::HEADERS, super::END_HEADERS, 3, b"ab");
        assert_eq!(f, vec![0, 0, 2, 1, 4, 0, 0, 0, 3, b'a', b'b']);
    }
}
