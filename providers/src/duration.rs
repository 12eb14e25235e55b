//! Durations in configuration: Traefik-style strings (`"100ms"`, `"10s"`, `"1m30s"`) or a bare
//! number of seconds, as Traefik accepts both.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration read from configuration; serialises back in humane form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    /// Parses `"100ms"`, `"1m30s"`, `"2h"` or a bare number of seconds (`"10"`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(secs) = text.parse::<f64>() {
            return Self::from_secs(secs).map_err(|why| format!("`{text}` is not a valid duration ({why})"));
        }
        humantime::parse_duration(text)
            .map(Self)
            .map_err(|e| format!("`{text}` is not a valid duration ({e}); write e.g. \"100ms\", \"10s\" or \"1m30s\""))
    }

    /// A number of seconds that a [`Duration`] can hold (not negative, finite, at most about
    /// 585 billion years), or why not.
    fn from_secs(secs: f64) -> Result<Self, &'static str> {
        Duration::try_from_secs_f64(secs)
            .map(Self)
            .map_err(|_| "negative, not finite or too long")
    }
}

impl From<Duration> for ConfigDuration {
    fn from(d: Duration) -> Self {
        Self(d)
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Float(f64),
            Text(String),
        }
        match Raw::deserialize(de)? {
            Raw::Int(secs) => Ok(Self(Duration::from_secs(secs))),
            Raw::Float(secs) => {
                Self::from_secs(secs).map_err(|why| serde::de::Error::custom(format!("`{secs}` is not a valid duration ({why})")))
            }
            Raw::Text(text) => Self::parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_traefik_accepts() {
        assert_eq!(ConfigDuration::parse("100ms").unwrap().0, Duration::from_millis(100));
        assert_eq!(ConfigDuration::parse("1m30s").unwrap().0, Duration::from_secs(90));
        assert_eq!(ConfigDuration::parse("10").unwrap().0, Duration::from_secs(10));
        assert!(ConfigDuration::parse("ten seconds").unwrap_err().contains("ten seconds"));
        assert!(ConfigDuration::parse("-1").is_err());
    }

    #[test]
    fn more_seconds_than_a_duration_holds_is_an_error() {
        // Found by the static_config fuzz target (#20 item 8): a finite number of seconds past
        // u64::MAX panicked in Duration::from_secs_f64, in any file or label with a duration.
        let huge = "0000000000666666666666666666000000000000000000";
        assert!(ConfigDuration::parse(huge).unwrap_err().contains("too long"));
        let err = serde_json::from_str::<ConfigDuration>("1e30").unwrap_err().to_string();
        assert!(err.contains("too long"), "{err}");
        assert_eq!(
            serde_json::from_str::<ConfigDuration>("1.5").unwrap().0,
            Duration::from_millis(1500)
        );
    }
}
