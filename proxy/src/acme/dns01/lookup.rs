//! What DNS servers say: which zone holds a name (an RFC 2136 update must name its zone), and
//! whether a server serves a TXT value yet.

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use super::exchange::{self, Server};
use super::Dns01Error;

/// The zone holding `name` on `server`: walking from `name` up to the root, the first name
/// `server` answers with its own SOA for. An authoritative NXDOMAIN or NODATA answer carries
/// the zone's SOA in its authority section, which ends the walk early (usually at the first
/// question).
pub(super) async fn find_zone(server: &Server, name: &Name) -> Result<Name, Dns01Error> {
    let mut candidate = name.clone();
    let last = loop {
        let answer = exchange::query(server, &candidate, RecordType::SOA)
            .await
            .map_err(|reason| Dns01Error::Unreachable {
                server: server.to_string(),
                doing: format!("looking up the zone of {}", name.to_ascii()),
                reason,
            })?;
        if let Some(zone) = zone_in(&answer, &candidate) {
            return Ok(zone);
        }
        if candidate.is_root() {
            break format!("{} for {}", rcode_name(answer.response_code), candidate.to_ascii());
        }
        candidate = candidate.base_name();
    };
    Err(Dns01Error::NoZone {
        server: server.to_string(),
        name: name.to_ascii(),
        last,
    })
}

/// The zone an SOA answer for `asked` shows: `asked` itself when the SOA is the answer, the
/// SOA's owner when an authoritative negative answer carries it (and it encloses `asked`).
fn zone_in(answer: &Message, asked: &Name) -> Option<Name> {
    let soa_owner = |records: &[hickory_proto::rr::Record]| {
        records
            .iter()
            .find(|r| matches!(r.data, RData::SOA(_)) && r.name.zone_of(asked))
            .map(|r| r.name.clone())
    };
    match answer.response_code {
        ResponseCode::NoError => soa_owner(&answer.answers)
            .filter(|owner| owner.eq_ignore_root_case(asked))
            .or_else(|| answer.authoritative.then(|| soa_owner(&answer.authorities)).flatten()),
        ResponseCode::NXDomain if answer.authoritative => soa_owner(&answer.authorities),
        _ => None,
    }
}

/// Whether `server` serves a TXT record at `name` whose text is `value`; otherwise what it
/// served instead (for the error that lists the servers still waited for).
pub(super) async fn serves_txt(server: &Server, name: &Name, value: &str) -> Result<(), String> {
    let answer = exchange::query(server, name, RecordType::TXT).await?;
    if answer.response_code != ResponseCode::NoError {
        return Err(rcode_name(answer.response_code));
    }
    let texts: Vec<Vec<u8>> = answer
        .answers
        .iter()
        .filter(|r| r.name.eq_ignore_root_case(name))
        .filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(txt.txt_data.concat()),
            _ => None,
        })
        .collect();
    match texts.len() {
        _ if texts.iter().any(|t| t == value.as_bytes()) => Ok(()),
        0 => Err("no TXT record".into()),
        n => Err(format!("{n} TXT record(s), none with the value")),
    }
}

/// The RCODE's mnemonic (`NXDOMAIN`, `NOTAUTH`), as `dig` and server logs write it.
pub(super) fn rcode_name(code: ResponseCode) -> String {
    let name = match code {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::YXDomain => "YXDOMAIN",
        ResponseCode::YXRRSet => "YXRRSET",
        ResponseCode::NXRRSet => "NXRRSET",
        ResponseCode::NotAuth => "NOTAUTH",
        ResponseCode::NotZone => "NOTZONE",
        other => return format!("RCODE {}", u16::from(other)),
    };
    name.to_string()
}
