//! TSIG (RFC 8945): signing an update with a shared key, and checking the server's signed answer.
//!
//! hickory-proto builds the TSIG record and the bytes a MAC covers; the MAC itself is ring's
//! HMAC here rather than hickory's `TSigner`, because hickory signs only with SHA-2 while lego
//! (and so every Traefik configuration that names no algorithm) uses `hmac-sha1`.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::Message;
use hickory_proto::rr::rdata::tsig::{make_tsig_record, message_tbs, signed_bitmessage_to_buf, TsigAlgorithm, TSIG};
use hickory_proto::rr::Name;
use ring::hmac;

/// How far apart this host's clock and the server's may be (lego's and nsupdate's 300 s).
const FUDGE_SECS: u16 = 300;

/// The MAC algorithms drover signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Algorithm {
    /// `hmac-sha1`: lego's default, so Traefik's too.
    HmacSha1,
    /// `hmac-sha256`: `tsig-keygen`'s default.
    HmacSha256,
    /// `hmac-sha384`.
    HmacSha384,
    /// `hmac-sha512`.
    HmacSha512,
}

impl Algorithm {
    /// What an unset `tsigAlgorithm` means: lego's default, so a Traefik setup that works keeps
    /// working.
    pub const DEFAULT: Self = Self::HmacSha1;

    /// Reads lego's form (`hmac-sha256.`) and BIND's (`hmac-sha256`, `HMAC-SHA256`, `sha256`).
    pub fn parse(text: &str) -> Result<Self, String> {
        const SUPPORTED: &str = "use hmac-sha256, hmac-sha384, hmac-sha512 or hmac-sha1";
        let name = text.trim().trim_end_matches('.').to_ascii_lowercase();
        let bare = name.strip_prefix("hmac-").unwrap_or(&name);
        match bare {
            "sha1" => Ok(Self::HmacSha1),
            "sha256" => Ok(Self::HmacSha256),
            "sha384" => Ok(Self::HmacSha384),
            "sha512" => Ok(Self::HmacSha512),
            "md5" | "md5.sig-alg.reg.int" => Err(format!(
                "hmac-md5 is not supported (RFC 8945 deprecates it); {SUPPORTED}, e.g. a key made by `tsig-keygen -a hmac-sha256 <name>`"
            )),
            "sha224" | "sha256-128" | "sha384-192" | "sha512-256" => Err(format!("hmac-{bare} is not supported; {SUPPORTED}")),
            _ => Err(format!("`{text}` is not a TSIG algorithm; {SUPPORTED}")),
        }
    }

    fn ring(self) -> hmac::Algorithm {
        match self {
            Self::HmacSha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Self::HmacSha256 => hmac::HMAC_SHA256,
            Self::HmacSha384 => hmac::HMAC_SHA384,
            Self::HmacSha512 => hmac::HMAC_SHA512,
        }
    }

    fn hickory(self) -> TsigAlgorithm {
        match self {
            Self::HmacSha1 => TsigAlgorithm::HmacSha1,
            Self::HmacSha256 => TsigAlgorithm::HmacSha256,
            Self::HmacSha384 => TsigAlgorithm::HmacSha384,
            Self::HmacSha512 => TsigAlgorithm::HmacSha512,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::HmacSha1 => "hmac-sha1",
            Self::HmacSha256 => "hmac-sha256",
            Self::HmacSha384 => "hmac-sha384",
            Self::HmacSha512 => "hmac-sha512",
        })
    }
}

/// A TSIG key: its name as the server knows it, its algorithm and secret. `Debug` shows no
/// secret (ring's key prints only its algorithm).
#[derive(Debug)]
pub(super) struct TsigKey {
    name: Name,
    algorithm: Algorithm,
    key: hmac::Key,
}

/// What checking a response needs from the request it answers.
pub(super) struct Signed {
    /// The request, TSIG record included.
    pub bytes: Vec<u8>,
    /// The request's MAC, which the response's MAC covers.
    pub mac: Vec<u8>,
}

impl TsigKey {
    /// A key named `name` (lowercase, as lego canonicalises it) with `secret`.
    pub fn new(name: Name, algorithm: Algorithm, secret: &[u8]) -> Self {
        Self {
            name,
            algorithm,
            key: hmac::Key::new(algorithm.ring(), secret),
        }
    }

    /// The key's name, as sent in the TSIG record.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The key's MAC algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Signs `message` (which must carry no TSIG yet) as of now; returns its bytes and MAC.
    pub fn sign(&self, mut message: Message) -> Result<Signed, String> {
        let stub = TSIG::new(
            self.algorithm.hickory(),
            unix_now(),
            FUDGE_SECS,
            Vec::new(),
            message.id,
            None,
            Vec::new(),
        );
        let tbs = message_tbs(&message, &stub, &self.name).map_err(|e| format!("cannot encode the update: {e}"))?;
        let mac = hmac::sign(&self.key, &tbs).as_ref().to_vec();
        message.set_signature(Box::new(make_tsig_record(self.name.clone(), stub.set_mac(mac.clone()))));
        let bytes = message.to_vec().map_err(|e| format!("cannot encode the update: {e}"))?;
        Ok(Signed { bytes, mac })
    }

    /// Checks that `response` is signed with this key, over `request_mac`, within the fudge
    /// window of this host's clock: a forged "NOERROR" must not pass for an applied update.
    pub fn verify(&self, response: &[u8], request_mac: &[u8]) -> Result<(), String> {
        let (covered, record) =
            signed_bitmessage_to_buf(response, Some(request_mac), true).map_err(|e| format!("the answer is not signed ({e})"))?;
        let tsig = &record.data;
        if !record.name.eq_ignore_root_case(&self.name) || tsig.algorithm != self.algorithm.hickory() {
            return Err(format!(
                "the answer is signed with key `{}` ({}), not `{}` ({})",
                record.name, tsig.algorithm, self.name, self.algorithm
            ));
        }
        hmac::verify(&self.key, &covered, &tsig.mac).map_err(|_| "the answer's TSIG MAC does not match the key".to_string())?;
        let now = unix_now();
        if now.abs_diff(tsig.time) > u64::from(tsig.fudge) {
            return Err(format!(
                "the answer was signed {} s away from this host's clock (more than the {} s allowed)",
                now.abs_diff(tsig.time),
                tsig.fudge
            ));
        }
        Ok(())
    }
}

/// Seconds since the Unix epoch (TSIG's clock); 0 for a clock set before 1970.
fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{MessageType, OpCode};
    use hickory_proto::rr::rdata::tsig::TsigError;

    use super::*;

    fn key(secret: &[u8]) -> TsigKey {
        TsigKey::new(Name::from_ascii("k.test.").unwrap(), Algorithm::HmacSha256, secret)
    }

    /// The response a server that knows `server_key` sends to `request`: NOERROR, signed over
    /// the request's MAC (RFC 8945 §4.3.1), with the TSIG's time shifted by `skew` seconds.
    fn signed_response(server_key: &TsigKey, request: &Signed, skew: i64) -> Vec<u8> {
        let request = Message::from_vec(&request.bytes).unwrap();
        let mut response = Message::new(request.id, MessageType::Response, OpCode::Update);
        let time = unix_now().saturating_add_signed(skew);
        let stub = TSIG::new(
            server_key.algorithm.hickory(),
            time,
            FUDGE_SECS,
            Vec::new(),
            request.id,
            None,
            Vec::new(),
        );
        let mut covered = Vec::new();
        let request_mac = &request.signature.as_ref().unwrap().data.mac;
        covered.extend_from_slice(&(request_mac.len() as u16).to_be_bytes());
        covered.extend_from_slice(request_mac);
        covered.extend_from_slice(&message_tbs(&response, &stub, &server_key.name).unwrap());
        let mac = hmac::sign(&server_key.key, &covered).as_ref().to_vec();
        response.set_signature(Box::new(make_tsig_record(server_key.name.clone(), stub.set_mac(mac))));
        response.to_vec().unwrap()
    }

    #[test]
    fn algorithm_names_in_lego_and_bind_forms() {
        for (text, expected) in [
            ("hmac-sha1.", Algorithm::HmacSha1),
            ("HMAC-SHA256", Algorithm::HmacSha256),
            ("sha384", Algorithm::HmacSha384),
            (" hmac-sha512. ", Algorithm::HmacSha512),
        ] {
            assert_eq!(Algorithm::parse(text), Ok(expected), "{text}");
        }
        assert!(Algorithm::parse("hmac-md5.sig-alg.reg.int.")
            .unwrap_err()
            .starts_with("hmac-md5 is not supported"));
        assert!(Algorithm::parse("hmac-sha224")
            .unwrap_err()
            .starts_with("hmac-sha224 is not supported"));
        assert!(Algorithm::parse("rot13")
            .unwrap_err()
            .starts_with("`rot13` is not a TSIG algorithm"));
        assert_eq!(Algorithm::HmacSha256.to_string(), "hmac-sha256");
    }

    #[test]
    fn a_response_signed_with_the_key_verifies_and_others_do_not() {
        let client = key(b"the shared secret");
        let request = client.sign(Message::new(7, MessageType::Query, OpCode::Update)).unwrap();
        let parsed = Message::from_vec(&request.bytes).unwrap();
        let tsig = parsed.signature.as_ref().unwrap();
        assert_eq!((tsig.name.to_string(), tsig.data.error), ("k.test.".to_string(), None::<TsigError>));
        assert_eq!(tsig.data.mac, request.mac);

        assert_eq!(client.verify(&signed_response(&client, &request, 0), &request.mac), Ok(()));
        let forged = signed_response(&key(b"another secret"), &request, 0);
        assert!(client.verify(&forged, &request.mac).unwrap_err().contains("MAC does not match"));
        let late = signed_response(&client, &request, 600);
        assert!(client.verify(&late, &request.mac).unwrap_err().contains("600 s away"));
        let unsigned = Message::new(7, MessageType::Response, OpCode::Update).to_vec().unwrap();
        assert!(client
            .verify(&unsigned, &request.mac)
            .unwrap_err()
            .starts_with("the answer is not signed"));
    }
}
