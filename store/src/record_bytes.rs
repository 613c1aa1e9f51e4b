//! Byte helpers shared by the record layouts (`inbox_record`, `timeline::record`): big-endian
//! words and length-prefixed blocks.

/// The first 8 bytes of `bytes` as an array (the caller has checked the length).
pub(crate) fn word(bytes: &[u8]) -> [u8; 8] {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[..8]);
    word
}

/// Appends `block` with its length (u32, big-endian) in front.
pub(crate) fn put_block(body: &mut Vec<u8>, block: &[u8]) {
    // Blocks are small JSON objects, far below 4 GiB.
    body.extend_from_slice(&(block.len() as u32).to_be_bytes());
    body.extend_from_slice(block);
}

/// Reads the length-prefixed block at `*at` and moves `*at` past it; `what` names the
/// record in the error.
pub(crate) fn read_block<'a>(
    body: &'a [u8],
    at: &mut usize,
    what: &str,
) -> Result<&'a [u8], String> {
    let length = body
        .get(*at..*at + 4)
        .map(|bytes| u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize)
        .ok_or_else(|| format!("{what} shorter than its block's length"))?;
    let block = body
        .get(*at + 4..*at + 4 + length)
        .ok_or_else(|| format!("{what} shorter than its block"))?;
    *at += 4 + length;
    Ok(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_and_truncation_is_an_error() {
        let mut body = vec![9];
        put_block(&mut body, b"{}");
        body.push(7);
        let mut at = 1;
        assert_eq!(read_block(&body, &mut at, "x"), Ok(&b"{}"[..]));
        assert_eq!(at, 7);
        assert!(read_block(&body[..4], &mut 1, "x").is_err());
        assert!(read_block(&body[..6], &mut 1, "x").is_err());
    }
}
