//! `ipAllowList`: only clients from the given ranges get through.
//! <https://doc.traefik.io/traefik/middlewares/http/ipallowlist/>
//!
//! The client is the socket peer unless `ipStrategy` says otherwise (see [`super::source`]: a
//! forged `X-Forwarded-For` counts only as far as `trustedIPs` and `depth` trust it). A request
//! whose client cannot be determined is refused, as Traefik does.

use drover_providers::model::middleware as model;
use http::StatusCode;
use ipnet::IpNet;

use super::source::{range, Strategy};
use super::{answer, BuildError, Req, Step};

/// A compiled `ipAllowList`.
#[derive(Debug)]
pub struct IpAllowList {
    ranges: Vec<IpNet>,
    strategy: Strategy,
    reject: StatusCode,
}

impl IpAllowList {
    /// Compiles the model.
    pub fn build(m: &model::IpAllowList) -> Result<Self, BuildError> {
        let reject = m.reject_status_code.unwrap_or(403);
        Ok(Self {
            ranges: m.source_range.iter().map(|r| range(r)).collect::<Result<_, _>>()?,
            strategy: Strategy::build(m.ip_strategy.as_ref())?,
            reject: StatusCode::from_u16(reject).map_err(|_| BuildError(format!("{reject} is not an HTTP status")))?,
        })
    }

    fn allows(&self, req: &Req<'_>) -> Result<std::net::IpAddr, Option<std::net::IpAddr>> {
        match self.strategy.client(req) {
            Some(ip) if self.ranges.iter().any(|r| r.contains(&ip)) => Ok(ip),
            other => Err(other),
        }
    }

    /// Passes allowed clients on; refuses the others with `rejectStatusCode`.
    pub fn request(&self, req: &mut Req<'_>) -> Step {
        match self.allows(req) {
            Ok(_) => Step::Next,
            Err(_) => {
                let mut response = answer(self.reject, "Forbidden\n");
                *response.status_mut() = self.reject;
                Step::Answer(response)
            }
        }
    }

    /// What it would decide.
    pub fn explain(&self, req: &Req<'_>) -> String {
        match self.allows(req) {
            Ok(ip) => format!("client {ip} is in the allowed ranges: passes"),
            Err(Some(ip)) => format!("client {ip} is not in the allowed ranges: drover answers {}", self.reject.as_u16()),
            Err(None) => format!(
                "the client address cannot be determined by the ipStrategy: drover answers {}",
                self.reject.as_u16()
            ),
        }
    }
}
