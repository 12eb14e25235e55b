//! Services made of services (`weighted`, `failover`, `mirroring`) and the load balancer's
//! choice settings (`sticky`, `strategy`'s drover extension `hash`), in Traefik v3's schema.
//!
//! A child is named like a router's service: local (`v1`, this provider's) or qualified
//! (`v2@docker`). Children are resolved, and cycles found, when every provider's fragment is
//! merged (`crate::aggregate`), since a child may come from another provider.

use serde::{Deserialize, Serialize};

use super::Ignored;

/// `weighted`: smooth weighted round robin over services (canary releases).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Weighted {
    /// The children with their weights.
    #[serde(default)]
    pub services: Vec<WeightedService>,
    /// `sticky.cookie`: pins a client to one child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<Sticky>,
    /// `healthCheck: {}` (drover always passes its children's health up: accepted as is).
    #[serde(default, alias = "healthcheck", skip_serializing)]
    pub health_check: Option<Ignored>,
}

/// One child of a `weighted` service.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WeightedService {
    /// The child service's name.
    pub name: String,
    /// Its relative weight (default 1; 0 takes no traffic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

/// `failover`: everything to `service` while it has an available server, to `fallback` otherwise.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Failover {
    /// The main service.
    #[serde(default)]
    pub service: String,
    /// The standby.
    #[serde(default)]
    pub fallback: String,
    /// `healthCheck: {}` (drover always passes its children's health up: accepted as is).
    #[serde(default, alias = "healthcheck", skip_serializing)]
    pub health_check: Option<Ignored>,
}

/// `mirroring`: requests go to `service`; copies go to the mirrors, whose answers are discarded.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mirroring {
    /// The service that answers.
    #[serde(default)]
    pub service: String,
    /// Where copies go, each with its share of the requests.
    #[serde(default)]
    pub mirrors: Vec<Mirror>,
    /// Largest body (bytes) copied to mirrors (drover's default 64 KiB; Traefik's -1, no limit, is
    /// capped too); a larger request is mirrored without its body.
    #[serde(default, alias = "maxbodysize", skip_serializing_if = "Option::is_none")]
    pub max_body_size: Option<i64>,
    /// Copy the body at all (default true).
    #[serde(default, alias = "mirrorbody", skip_serializing_if = "Option::is_none")]
    pub mirror_body: Option<bool>,
    /// `healthCheck: {}` (drover always passes its children's health up: accepted as is).
    #[serde(default, alias = "healthcheck", skip_serializing)]
    pub health_check: Option<Ignored>,
}

/// One mirror of a `mirroring` service.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mirror {
    /// The mirror service's name.
    pub name: String,
    /// Percentage of the requests it gets a copy of (0–100, default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u32>,
}

/// `sticky`: session affinity.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Sticky {
    /// The cookie that names the server (or child service). Traefik's label shorthand
    /// `sticky.cookie=true` is a cookie with every default; `false` is none.
    #[serde(default, deserialize_with = "cookie_or_flag", skip_serializing_if = "Option::is_none")]
    pub cookie: Option<StickyCookie>,
}

/// `cookie = true`, `cookie = "true"` (a label) or a table of attributes.
fn cookie_or_flag<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<StickyCookie>, D::Error> {
    struct CookieOrFlag;

    impl<'de> serde::de::Visitor<'de> for CookieOrFlag {
        type Value = Option<StickyCookie>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("true, false or a table of cookie attributes")
        }

        fn visit_bool<E: serde::de::Error>(self, on: bool) -> Result<Self::Value, E> {
            Ok(on.then(StickyCookie::default))
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            match text.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(Some(StickyCookie::default())),
                "false" => Ok(None),
                other => Err(E::custom(format!("`{other}` is not true, false or a table of cookie attributes"))),
            }
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            StickyCookie::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }

    de.deserialize_any(CookieOrFlag)
}

/// `sticky.cookie`: the cookie's attributes.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StickyCookie {
    /// Its name (default: derived from the service's name, as Traefik's `_1d52e`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `Secure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
    /// `HttpOnly`.
    #[serde(default, alias = "httponly", skip_serializing_if = "Option::is_none")]
    pub http_only: Option<bool>,
    /// `SameSite`: `none`, `lax` or `strict` (unset: no attribute).
    #[serde(default, alias = "samesite", skip_serializing_if = "Option::is_none")]
    pub same_site: Option<String>,
    /// `Max-Age` in seconds (0, the default: a session cookie).
    #[serde(default, alias = "maxage", skip_serializing_if = "Option::is_none")]
    pub max_age: Option<i64>,
    /// `Path` (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `Domain` (unset: the request's host only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

/// `loadBalancer.hash` (drover): consistent hashing on a request key.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Hash {
    /// `header:<Name>`, `cookie:<name>`, `path` or `clientip`.
    pub key: String,
}
