use super::*;

fn sample() -> Vec<u8> {
    let mut w = Writer::default();
    let start = w.begin_msg(0x0a00, 1, 2, 0);
    w.str(1, "lnet");
    w.nest(4);
    w.be32(1, 7);
    w.bytes(2, &[1, 2, 3]);
    w.end_nest();
    w.be64(3, 9);
    w.end_msg(start);
    w.buf
}

fn kinds(walk: Attrs<'_>) -> Result<Vec<u16>, NlaError> {
    walk.map(|a| a.map(|a| a.kind())).collect()
}

#[test]
fn what_the_writer_writes_the_walker_reads_back() {
    let buf = sample();
    assert_eq!(buf.len() % 4, 0);
    assert_eq!(
        u32::from_ne_bytes(buf[..4].try_into().unwrap()) as usize,
        buf.len()
    );
    let attrs = Attrs::of_message(&buf, NFGENMSG_LEN)
        .unwrap()
        .checked()
        .unwrap();
    let all: Vec<_> = attrs.clone().collect();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].string(), "lnet");
    assert_eq!(all[0].c_str(), Some("lnet"));
    assert!(all[1].is_nested() && !all[0].is_nested());
    let inner = attrs.nested(4).unwrap().unwrap();
    assert_eq!(inner.get(1).and_then(|a| a.be32()), Some(7));
    assert_eq!(inner.get(2).map(|a| a.value()), Some(&[1, 2, 3][..]));
    assert_eq!(attrs.get(3).and_then(|a| a.be64()), Some(9));
    assert_eq!(attrs.get(9), None);
    // Values of the wrong size are not numbers.
    assert_eq!(all[0].be32(), None);
    assert_eq!(inner.get(2).and_then(|a| a.be16()), None);
}

#[test]
fn a_lying_or_truncated_attribute_is_an_error() {
    // Shorter than its own header.
    let e = kinds(Attrs::new(&[2, 0, 1, 0, 0, 0, 0, 0])).unwrap_err();
    assert_eq!(
        e,
        NlaError::BadLength {
            offset: 0,
            kind: 1,
            len: 2,
            remaining: 8
        }
    );
    // Longer than what is left.
    let e = kinds(Attrs::new(&[8, 0, 5, 0x80, 1, 2])).unwrap_err();
    assert!(
        matches!(
            e,
            NlaError::BadLength {
                len: 8,
                kind: 5,
                ..
            }
        ),
        "{e}"
    );
    // A stub too short for a header after a good attribute.
    let e = kinds(Attrs::new(&[4, 0, 1, 0, 9, 9])).unwrap_err();
    assert_eq!(
        e,
        NlaError::Truncated {
            offset: 4,
            remaining: 2
        }
    );
    assert!(e.to_string().contains("byte 4"), "{e}");
    // A nest whose inner attribute lies is caught by the same walk.
    let mut buf = sample();
    let nest = 20 + 12;
    buf[nest + 4] = 200; // the first inner attribute's length
    let attrs = Attrs::of_message(&buf, NFGENMSG_LEN).unwrap();
    let attrs = attrs.checked().unwrap();
    attrs.nested(4).unwrap_err();
    // The walk stops at the first error.
    let mut walk = Attrs::new(&[2, 0, 1, 0, 4, 0, 1, 0]);
    walk.next().unwrap().unwrap_err();
    assert!(walk.next().is_none());
    // Lookups before the damage still succeed; after it, they fail.
    let b = [8, 0, 1, 0, 1, 2, 3, 4, 99, 0, 2, 0];
    let first = Attrs::new(&b).get(1).unwrap().unwrap();
    assert_eq!(first.ne32(), Some(u32::from_ne_bytes([1, 2, 3, 4])));
    Attrs::new(&b).get(2).unwrap_err();
    Attrs::new(&b).checked().unwrap_err();
    // A message shorter than its fixed headers, or than its own length says.
    Attrs::of_message(&buf[..18], NFGENMSG_LEN).unwrap_err();
    let e = Attrs::of_message(&buf[..buf.len() - 4], NFGENMSG_LEN).unwrap_err();
    assert!(matches!(e, NlaError::BadMessage { .. }), "{e}");
    // Bytes after the message's length are not its attributes.
    let mut longer = sample();
    longer.extend_from_slice(&[0xff; 6]);
    let n = Attrs::of_message(&longer, NFGENMSG_LEN)
        .unwrap()
        .checked()
        .unwrap();
    assert_eq!(n.count(), 3);
}

#[test]
fn missing_padding_after_the_last_attribute_is_accepted() {
    // A 5-byte attribute with its 3 bytes of padding cut off.
    let walk = Attrs::new(&[5, 0, 3, 0, b'x']);
    let a: Vec<_> = walk.collect::<Result<_, _>>().unwrap();
    assert_eq!(a[0].value(), b"x");
    assert_eq!(kinds(Attrs::new(&[])).unwrap(), Vec::<u16>::new());
}

#[test]
fn every_cut_and_every_damaged_byte_is_ok_or_an_error() {
    let good = sample();
    let walk_all = |b: &[u8]| {
        fn deep(w: Attrs<'_>, depth: u8) {
            for a in w.flatten() {
                if depth < 4 {
                    deep(a.nested(), depth + 1);
                }
                let _ = (a.be32(), a.be64(), a.string(), a.c_str());
            }
        }
        if let Ok(w) = Attrs::of_message(b, NFGENMSG_LEN) {
            deep(w, 0);
        }
        let _ = attr_at(b, NFGENMSG_LEN, 24);
    };
    for cut in 0..good.len() {
        walk_all(&good[..cut]);
    }
    for at in 0..good.len() {
        for v in [0u8, 1, 3, 4, 0x7f, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[at] = v;
            walk_all(&bad);
        }
    }
}

#[test]
fn the_attribute_the_kernel_points_at_is_found_by_offset() {
    let buf = sample();
    let (path, value) = attr_at(&buf, NFGENMSG_LEN, 20).unwrap();
    assert_eq!((path, value), (vec![1], &b"lnet\0"[..]));
    let inner = 20 + 12 + 4 + 8; // table name, nest header, first be32
    let (path, value) = attr_at(&buf, NFGENMSG_LEN, inner).unwrap();
    assert_eq!((path.as_slice(), value), (&[4, 2][..], &[1, 2, 3][..]));
    assert_eq!(attr_at(&buf, NFGENMSG_LEN, 21), None);
    assert_eq!(attr_at(&buf, NFGENMSG_LEN, buf.len() + 40), None);
}

#[test]
fn message_iteration() {
    let mut buf = Vec::new();
    for (ty, seq) in [(16u16, 7u32), (3u16, 7)] {
        buf.extend_from_slice(&20u32.to_ne_bytes());
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&0u16.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&0i32.to_ne_bytes());
    }
    buf.extend_from_slice(&[1, 2]); // trailing garbage stops iteration
    let ms: Vec<_> = Messages(&buf).map(|m| (m.ty, m.seq, m.code())).collect();
    assert_eq!(ms, [(16, 7, 0), (3u16, 7, 0)]);
}
