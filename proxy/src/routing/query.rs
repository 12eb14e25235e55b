//! Query-string lookups with Go's `url.ParseQuery` semantics, decoded lazily and without
//! allocating for values that fit a stack buffer.
//!
//! Go splits on `&`, skips (with an error Traefik ignores) any pair containing `;` or an invalid
//! `%` escape, splits each pair at the first `=`, and decodes `+` as a space and `%xx` as a byte.

/// Decoded values up to this many bytes are decoded on the stack.
const STACK_VALUE: usize = 256;

/// Calls `accept` with each decoded value of parameter `key` until it returns `true`.
pub(super) fn any_value(query: &str, key: &str, mut accept: impl FnMut(&[u8]) -> bool) -> bool {
    for pair in query.split('&') {
        if pair.is_empty() || pair.contains(';') {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if !valid_escapes(k) || !valid_escapes(v) || !Decoded::new(k).eq(key.bytes()) {
            continue;
        }
        let found = if !v.contains(['%', '+']) {
            accept(v.as_bytes())
        } else if v.len() <= STACK_VALUE {
            let mut buf = [0u8; STACK_VALUE];
            let mut len = 0;
            for (slot, byte) in buf.iter_mut().zip(Decoded::new(v)) {
                *slot = byte;
                len += 1;
            }
            accept(&buf[..len])
        } else {
            accept(&Decoded::new(v).collect::<Vec<u8>>())
        };
        if found {
            return true;
        }
    }
    false
}

/// Whether every `%` is followed by two hex digits.
fn valid_escapes(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// The decoded bytes of a query component whose escapes are known to be valid.
struct Decoded<'a> {
    bytes: std::slice::Iter<'a, u8>,
}

impl<'a> Decoded<'a> {
    fn new(s: &'a str) -> Self {
        Decoded {
            bytes: s.as_bytes().iter(),
        }
    }
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

impl Iterator for Decoded<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        match *self.bytes.next()? {
            b'+' => Some(b' '),
            b'%' => {
                let hi = hex_value(*self.bytes.next()?);
                let lo = hex_value(*self.bytes.next()?);
                Some(hi << 4 | lo)
            }
            b => Some(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(query: &str, key: &str) -> Vec<String> {
        let mut out = Vec::new();
        any_value(query, key, |v| {
            out.push(String::from_utf8_lossy(v).into_owned());
            false
        });
        out
    }

    #[test]
    fn decodes_like_go_parse_query() {
        assert_eq!(values("a=1&b=2&a=3", "a"), ["1", "3"]);
        assert_eq!(values("q=hello+world%21", "q"), ["hello world!"]);
        assert_eq!(values("my%20key=v", "my key"), ["v"]);
        assert_eq!(values("flag&flag=&x=1", "flag"), ["", ""]);
        assert_eq!(values("a=%zz&a=ok", "a"), ["ok"], "invalid escapes skip the pair");
        assert_eq!(values("a=1;b=2&a=2", "a"), ["2"], "pairs with `;` are skipped");
        assert_eq!(values("a==b", "a"), ["=b"], "split at the first `=` only");
        assert!(values("", "a").is_empty());
        let long = format!("v={}", "%41".repeat(300));
        assert_eq!(values(&long, "v"), ["A".repeat(300)]);
    }
}
