//! MD5-crypt, as `htpasswd -m` (`$apr1$`, Apache's variant) and `crypt(3)` (`$1$`) write it.
//!
//! Poul-Henning Kamp's algorithm: 1,000 rounds of MD5 over the password and salt, encoded in
//! crypt's base-64 alphabet. Weak by today's standards (use bcrypt: `htpasswd -B`), but Traefik
//! accepts it and existing htpasswd files use it.

use md5::{Digest, Md5};

const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The MD5-crypt string of `password` with the magic (`$apr1$` or `$1$`) and salt of `hash`;
/// `None` when `hash` is not an MD5-crypt string.
pub fn rehash(password: &[u8], hash: &str) -> Option<String> {
    let (magic, rest) = if let Some(rest) = hash.strip_prefix("$apr1$") {
        ("$apr1$", rest)
    } else {
        ("$1$", hash.strip_prefix("$1$")?)
    };
    let salt = rest.split('$').next().unwrap_or("");
    let salt = &salt.as_bytes()[..salt.len().min(8)];
    Some(crypt(password, salt, magic))
}

fn crypt(password: &[u8], salt: &[u8], magic: &str) -> String {
    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(magic.as_bytes());
    ctx.update(salt);
    let mut alt = Md5::new();
    alt.update(password);
    alt.update(salt);
    alt.update(password);
    let alt = alt.finalize();
    let mut left = password.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alt[..n]);
        left -= n;
    }
    let mut i = password.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut last = ctx.finalize();
    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 == 1 {
            c.update(password);
        } else {
            c.update(last);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(password);
        }
        if round & 1 == 1 {
            c.update(last);
        } else {
            c.update(password);
        }
        last = c.finalize();
    }
    let f = last;
    let mut out = String::with_capacity(magic.len() + salt.len() + 23);
    out.push_str(magic);
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    let mut to64 = |mut v: u32, n: usize| {
        for _ in 0..n {
            out.push(ITOA64[(v & 0x3f) as usize] as char);
            v >>= 6;
        }
    };
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        to64(u32::from(f[a]) << 16 | u32::from(f[b]) << 8 | u32::from(f[c]), 4);
    }
    to64(u32::from(f[11]), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_htpasswd_and_openssl() {
        // `htpasswd -nbm alice secret`, `openssl passwd -1 -salt saltsalt secret`,
        // `openssl passwd -apr1 -salt abcdefgh 'a longer password than sixteen bytes'`.
        for (password, hash) in [
            ("secret", "$apr1$lckapclo$D875KIBAocbn8oOD1dGK30"),
            ("secret", "$1$saltsalt$9xy1btjgzLYfb7hivXtC//"),
            ("a longer password than sixteen bytes", "$apr1$abcdefgh$5/4EDNVcnSspCAS2/9p2l1"),
        ] {
            assert_eq!(rehash(password.as_bytes(), hash).as_deref(), Some(hash));
        }
        assert_ne!(
            rehash(b"wrong", "$apr1$lckapclo$D875KIBAocbn8oOD1dGK30").as_deref(),
            Some("$apr1$lckapclo$D875KIBAocbn8oOD1dGK30")
        );
        assert_eq!(rehash(b"x", "$2y$04$abc"), None);
    }
}
