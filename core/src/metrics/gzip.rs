//! gzip (RFC 1952) bodies: inflated with a size limit, so a small
//! compressed body cannot expand without bound.

/// CRC-32 (IEEE), as gzip's trailer carries it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

const FTEXT_MASK: u8 = 0b1110_0000;
const FHCRC: u8 = 0b0000_0010;
const FEXTRA: u8 = 0b0000_0100;
const FNAME: u8 = 0b0000_1000;
const FCOMMENT: u8 = 0b0001_0000;

/// The refusal of a body that inflates beyond the limit.
pub const TOO_LARGE: &str = "the body inflates beyond the limit";

/// The uncompressed bytes of a single-member gzip body of at most `limit`
/// bytes; `Err` says what is wrong.
pub fn decode(body: &[u8], limit: usize) -> Result<Vec<u8>, &'static str> {
    let header = body.get(..10).ok_or("the gzip body is truncated")?;
    if header[..3] != [0x1f, 0x8b, 8] {
        return Err("the body is not gzip (deflate)");
    }
    let flags = header[3];
    if flags & FTEXT_MASK != 0 {
        return Err("the gzip header has reserved flags set");
    }
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let len = body.get(at..at + 2).ok_or("the gzip body is truncated")?;
        at += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let end = body
                .get(at..)
                .and_then(|rest| rest.iter().position(|b| *b == 0))
                .ok_or("the gzip body is truncated")?;
            at += end + 1;
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    let trailer_at = body
        .len()
        .checked_sub(8)
        .ok_or("the gzip body is truncated")?;
    let deflated = body
        .get(at..trailer_at)
        .ok_or("the gzip body is truncated")?;
    let data =
        miniz_oxide::inflate::decompress_to_vec_with_limit(deflated, limit).map_err(|e| match e
            .status
        {
            miniz_oxide::inflate::TINFLStatus::HasMoreOutput => TOO_LARGE,
            _ => "the gzip body is corrupt",
        })?;
    let trailer = &body[trailer_at..];
    let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let size = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
    #[allow(clippy::cast_possible_truncation)] // ISIZE is the size modulo 2^32
    if crc != crc32(&data) || size != data.len() as u32 {
        return Err("the gzip checksum does not match");
    }
    Ok(data)
}

/// A gzip body of `data` (tests; kept out of the Wasm builds).
#[cfg(test)]
pub fn encode(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.extend(miniz_oxide::deflate::compress_to_vec(data, 6));
    out.extend(crc32(data).to_le_bytes());
    #[allow(clippy::cast_possible_truncation)]
    out.extend((data.len() as u32).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn bodies_round_trip_and_damage_is_refused() {
        let text = b"# TYPE x counter\nx 1\n".repeat(50);
        let gz = encode(&text);
        assert!(gz.len() < text.len(), "compressed");
        assert_eq!(decode(&gz, 10_000).unwrap(), text);
        let mut flipped = gz.clone();
        let last = flipped.len() - 5;
        flipped[last] ^= 1;
        assert_eq!(
            decode(&flipped, 10_000),
            Err("the gzip checksum does not match")
        );
        assert_eq!(decode(&gz, 100), Err("the body inflates beyond the limit"));
        assert!(decode(b"plain text, not gzip", 100).is_err());
        assert!(decode(&gz[..12], 10_000).is_err(), "truncated");
    }
}
