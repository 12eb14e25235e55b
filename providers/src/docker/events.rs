//! The daemon's events stream, read with lenient types, and what each event means for drover.
//!
//! Events are cache-invalidation signals, not state: drover re-inspects the one container an
//! event names and rebuilds its fragment from the cache. Two events are acted on *before* any
//! inspect, because that is what keeps traffic off a container that is going away:
//! * `kill` with the container's stop signal (or TERM, INT, QUIT, KILL): `docker stop` sends
//!   the stop signal first and the container may take seconds to exit; it leaves the rotation
//!   now, so in-flight requests finish and new ones go elsewhere. Other signals (`docker kill -s
//!   HUP` to reload a config) do not remove it.
//! * `destroy`: the container is gone; drop it from the cache.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One event, as much of it as drover reads. Every field is optional and stringly typed: a
/// value a newer daemon invents must not end the stream.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Event {
    /// `container`, `network`, `service`, …
    #[serde(rename = "Type", default)]
    pub kind: String,
    /// `start`, `die`, `health_status: healthy`, `connect`, …
    #[serde(rename = "Action", default)]
    pub action: String,
    /// What the event is about.
    #[serde(rename = "Actor", default)]
    pub actor: Actor,
    /// Legacy (API < 1.52) id field, used when `Actor.ID` is absent.
    #[serde(default)]
    pub id: Option<String>,
    /// Nanoseconds since the epoch.
    #[serde(rename = "timeNano", default)]
    pub time_nano: Option<i64>,
}

/// `Actor`: the object's id and its attributes (for containers: every label, `name`, `image`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Actor {
    /// The object's id.
    #[serde(rename = "ID", default)]
    pub id: String,
    /// Attributes.
    #[serde(rename = "Attributes", default)]
    pub attributes: BTreeMap<String, String>,
}

/// What an event asks the container provider to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Re-inspect this container.
    Inspect(String),
    /// Take this container out of rotation now (it was sent signal `signal`), then re-inspect.
    Stopping {
        /// Container id.
        id: String,
        /// The signal as the event gave it (a number).
        signal: String,
    },
    /// The container was removed.
    Forget(String),
    /// Nothing to do.
    Ignore,
}

/// Container actions that may change whether or where a container is routed.
const INSPECT_ON: &[&str] = &[
    "create", "start", "restart", "die", "stop", "pause", "unpause", "rename", "update", "oom",
];

impl Event {
    /// The container this event is about, if any.
    pub fn container_id(&self) -> Option<&str> {
        let id = match self.kind.as_str() {
            "container" => Some(self.actor.id.as_str()).filter(|s| !s.is_empty()).or(self.id.as_deref()),
            "network" => self.actor.attributes.get("container").map(String::as_str),
            _ => None,
        };
        id.filter(|s| !s.is_empty())
    }

    /// What the container provider should do about it.
    pub fn effect(&self) -> Effect {
        let Some(id) = self.container_id().map(str::to_string) else {
            return Effect::Ignore;
        };
        match (self.kind.as_str(), self.action.as_str()) {
            ("network", "connect" | "disconnect") => Effect::Inspect(id),
            ("container", "destroy") => Effect::Forget(id),
            ("container", "kill") => Effect::Stopping {
                id,
                signal: self.actor.attributes.get("signal").cloned().unwrap_or_default(),
            },
            ("container", action) if action.starts_with("health_status") => Effect::Inspect(id),
            ("container", action) if INSPECT_ON.contains(&action) => Effect::Inspect(id),
            _ => Effect::Ignore,
        }
    }
}

/// Signal numbers for the names Docker accepts as a stop signal (`SIGTERM`, `TERM`, `15`).
pub fn signal_number(signal: &str) -> Option<u32> {
    let s = signal.trim();
    if let Ok(n) = s.parse() {
        return Some(n);
    }
    let name = s.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    Some(match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "KILL" => 9,
        "USR1" => 10,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        "CONT" => 18,
        "STOP" => 19,
        "WINCH" => 28,
        "PWR" => 30,
        _ => return None,
    })
}

/// Whether `signal` (from a `kill` event) means the container is going away, given its
/// configured stop signal.
pub fn is_stop_signal(signal: &str, stop_signal: Option<&str>) -> bool {
    let Some(n) = signal_number(signal) else {
        return false;
    };
    matches!(n, 2 | 3 | 9 | 15) || stop_signal.and_then(signal_number) == Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> Event {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn effects_of_container_and_network_events() {
        let e =
            event(r#"{"Type":"container","Action":"health_status: healthy","Actor":{"ID":"abc","Attributes":{"name":"x"}},"timeNano":1}"#);
        assert_eq!(e.effect(), Effect::Inspect("abc".into()));
        let e = event(r#"{"Type":"container","Action":"kill","Actor":{"ID":"abc","Attributes":{"signal":"15"}}}"#);
        assert_eq!(
            e.effect(),
            Effect::Stopping {
                id: "abc".into(),
                signal: "15".into()
            }
        );
        let e = event(r#"{"Type":"network","Action":"connect","Actor":{"ID":"net","Attributes":{"container":"c1","name":"front"}}}"#);
        assert_eq!(e.effect(), Effect::Inspect("c1".into()));
        let e = event(r#"{"status":"destroy","id":"old","Type":"container","Action":"destroy","Actor":{"Attributes":{}}}"#);
        assert_eq!(e.effect(), Effect::Forget("old".into()));
        let e = event(r#"{"Type":"container","Action":"exec_start: sh","Actor":{"ID":"abc"}}"#);
        assert_eq!(e.effect(), Effect::Ignore);
        let e = event(r#"{"Type":"brand-new","Action":"whatever","Unknown":[1,2]}"#);
        assert_eq!(e.effect(), Effect::Ignore);
    }

    #[test]
    fn stop_signals() {
        assert!(is_stop_signal("15", None));
        assert!(is_stop_signal("9", Some("SIGTERM")));
        assert!(!is_stop_signal("1", None), "HUP reloads, it does not stop");
        assert!(is_stop_signal("10", Some("SIGUSR1")));
        assert!(is_stop_signal("28", Some("WINCH")));
        assert!(!is_stop_signal("bogus", None));
    }
}
