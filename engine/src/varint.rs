//! LEB128 varints, as every compressed structure uses them (sequence lists, `Remove` record
//! payloads, the checkpoint's timers section).

/// Appends `v`.
pub(crate) fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads the varint at `*at` and moves past it; `None` when the bytes end first or it does not
/// fit 64 bits (damaged input).
pub(crate) fn get(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let x = *b.get(*at)?;
        *at += 1;
        v |= u64::from(x & 0x7f).checked_shl(shift)?;
        if x & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Writes `v` into `out[..k]`, where `k = len(v)`.
pub(crate) fn write(out: &mut [u8], mut v: u64) {
    let k = out.len();
    for b in out.iter_mut() {
        *b = v as u8 | 0x80;
        v >>= 7;
    }
    out[k - 1] &= 0x7f;
}

/// Bytes `v` takes.
pub(crate) fn len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        for v in [0, 1, 127, 128, 300, 1 << 40, u64::MAX] {
            let mut b = Vec::new();
            super::put(&mut b, v);
            assert_eq!(b.len(), super::len(v));
            let mut w = vec![0u8; super::len(v)];
            super::write(&mut w, v);
            assert_eq!(w, b);
            let mut at = 0;
            assert_eq!(super::get(&b, &mut at), Some(v));
            assert_eq!(at, b.len());
        }
        assert_eq!(super::get(&[0x80], &mut 0), None);
        assert_eq!(super::get(&[0xff; 11], &mut 0), None);
    }
}
