//! Labels as a tree of strings, and a serde deserializer over it.
//!
//! `drover.http.routers.web.priority=10` becomes the path `http → routers → web → priority` with
//! the leaf `"10"`. The deserializer parses leaves into whatever type the target field wants
//! (numbers, booleans, durations, comma-separated lists), so labels fill the *same* model structs
//! the file provider uses, and every error names the full label key that caused it.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

/// One node: a value, children, or both (`tls=true` next to `tls.certresolver=x`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Node {
    /// The label value at exactly this key.
    pub value: Option<String>,
    /// Sub-keys.
    pub children: BTreeMap<String, Node>,
}

impl Node {
    /// Inserts `value` at the dotted `path` (segments already split).
    pub fn insert(&mut self, path: &[&str], value: &str) {
        match path.split_first() {
            None => self.value = Some(value.to_string()),
            Some((first, rest)) => self.children.entry((*first).to_string()).or_default().insert(rest, value),
        }
    }
}

/// A label problem: which key, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelError {
    /// The full label key (`drover.http.routers.web.priority`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "label `{}`: {}", self.key, self.message)
    }
}

impl std::error::Error for LabelError {}

impl de::Error for LabelError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        LabelError {
            key: String::new(),
            message: msg.to_string(),
        }
    }
}

impl LabelError {
    fn at(mut self, key: &str) -> Self {
        if self.key.is_empty() {
            self.key = key.to_string();
        }
        self
    }
}

/// Deserializes a [`Node`] whose full label key is `key`.
pub struct NodeDeserializer<'a> {
    node: &'a Node,
    key: String,
}

impl<'a> NodeDeserializer<'a> {
    /// A deserializer for `node`, reporting errors under `key`.
    pub fn new(node: &'a Node, key: impl Into<String>) -> Self {
        Self { node, key: key.into() }
    }

    fn leaf(&self) -> Result<&'a str, LabelError> {
        match &self.node.value {
            Some(v) => Ok(v.as_str()),
            None => Err(LabelError {
                key: self.key.clone(),
                message: format!(
                    "expected a value, found sub-keys ({})",
                    self.node.children.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            }),
        }
    }

    fn parse<T: std::str::FromStr>(&self, what: &str) -> Result<T, LabelError> {
        let text = self.leaf()?.trim();
        text.parse().map_err(|_| LabelError {
            key: self.key.clone(),
            message: format!("`{text}` is not {what}"),
        })
    }
}

macro_rules! parse_number {
    ($($method:ident => $ty:ty, $visit:ident, $what:expr;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LabelError> {
            let n: $ty = self.parse($what)?;
            visitor.$visit(n).map_err(|e: LabelError| e.at(&self.key))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for NodeDeserializer<'de> {
    type Error = LabelError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LabelError> {
        if self.node.children.is_empty() {
            let v = self.leaf()?;
            visitor.visit_str(v).map_err(|e: LabelError| e.at(&self.key))
        } else {
            self.deserialize_map(visitor)
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LabelError> {
        let text = self.leaf()?.trim();
        let b = if text.eq_ignore_ascii_case("true") {
            true
        } else if text.eq_ignore_ascii_case("false") {
            false
        } else {
            return Err(LabelError {
                key: self.key.clone(),
                message: format!("`{text}` is not true or false"),
            });
        };
        visitor.visit_bool(b).map_err(|e: LabelError| e.at(&self.key))
    }

    parse_number! {
        deserialize_i8 => i8, visit_i8, "a number";
        deserialize_i16 => i16, visit_i16, "a number";
        deserialize_i32 => i32, visit_i32, "a number";
        deserialize_i64 => i64, visit_i64, "a number";
        deserialize_u8 => u8, visit_u8, "a number from 0 to 255";
        deserialize_u16 => u16, visit_u16, "a number from 0 to 65535";
        deserialize_u32 => u32, visit_u32, "a non-negative number";
        deserialize_u64 => u64, visit_u64, "a non-negative number";
        deserialize_f32 => f32, visit_f32, "a number";
        deserialize_f64 => f64, visit_f64, "a number";
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LabelError> {
        let v = self.leaf()?;
        visitor.visit_str(v).map_err(|e: LabelError| e.at(&self.key))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LabelError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LabelError> {
        visitor.visit_some(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LabelError> {
        let text = self.leaf()?;
        let items: Vec<&str> = text.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        let key = self.key.clone();
        visitor
            .visit_seq(ListAccess {
                items: items.into_iter(),
                key: &key,
            })
            .map_err(|e: LabelError| e.at(&key))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LabelError> {
        if let Some(v) = &self.node.value {
            if self.node.children.is_empty() {
                return Err(LabelError {
                    key: self.key.clone(),
                    message: format!("expected sub-keys, found the value `{v}`"),
                });
            }
        }
        let key = self.key.clone();
        visitor
            .visit_map(ChildrenAccess {
                iter: self.node.children.iter(),
                pending: None,
                parent: &key,
            })
            .map_err(|e: LabelError| e.at(&key))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, LabelError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LabelError> {
        visitor.visit_unit()
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LabelError> {
        visitor.visit_unit()
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, LabelError> {
        let v = self.leaf()?;
        visitor.visit_enum(v.into_deserializer()).map_err(|e: LabelError| e.at(&self.key))
    }

    serde::forward_to_deserialize_any! {
        char bytes byte_buf unit_struct newtype_struct tuple tuple_struct identifier
    }
}

struct ListAccess<'a, I> {
    items: I,
    key: &'a str,
}

impl<'de, 'a, I: Iterator<Item = &'de str>> SeqAccess<'de> for ListAccess<'a, I> {
    type Error = LabelError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, LabelError> {
        match self.items.next() {
            None => Ok(None),
            Some(item) => seed
                .deserialize(de::value::StrDeserializer::<LabelError>::new(item))
                .map(Some)
                .map_err(|e| e.at(self.key)),
        }
    }
}

struct ChildrenAccess<'de, 'a> {
    iter: std::collections::btree_map::Iter<'de, String, Node>,
    pending: Option<(&'de String, &'de Node)>,
    parent: &'a str,
}

impl<'de> MapAccess<'de> for ChildrenAccess<'de, '_> {
    type Error = LabelError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, LabelError> {
        match self.iter.next() {
            None => Ok(None),
            Some((k, node)) => {
                self.pending = Some((k, node));
                let full = format!("{}.{k}", self.parent);
                seed.deserialize(de::value::StrDeserializer::<LabelError>::new(k))
                    .map(Some)
                    .map_err(|e| e.at(&full))
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, LabelError> {
        let (k, node) = self.pending.take().ok_or_else(|| LabelError {
            key: self.parent.to_string(),
            message: "internal: value without key".into(),
        })?;
        let full = format!("{}.{k}", self.parent);
        seed.deserialize(NodeDeserializer::new(node, full.clone())).map_err(|e| e.at(&full))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Sample {
        #[serde(alias = "entrypoints")]
        entry_points: Option<Vec<String>>,
        priority: Option<i64>,
        enabled: Option<bool>,
    }

    fn node(pairs: &[(&str, &str)]) -> Node {
        let mut n = Node::default();
        for (k, v) in pairs {
            n.insert(&k.split('.').collect::<Vec<_>>(), v);
        }
        n
    }

    #[test]
    fn parses_leaves_into_the_target_types() {
        let n = node(&[("entrypoints", "web, websecure"), ("priority", "42"), ("enabled", "TRUE")]);
        let s = Sample::deserialize(NodeDeserializer::new(&n, "drover.http.routers.r")).unwrap();
        assert_eq!(
            s,
            Sample {
                entry_points: Some(vec!["web".into(), "websecure".into()]),
                priority: Some(42),
                enabled: Some(true)
            }
        );
    }

    #[test]
    fn errors_name_the_full_key() {
        let n = node(&[("priority", "high")]);
        let e = Sample::deserialize(NodeDeserializer::new(&n, "drover.http.routers.r")).unwrap_err();
        assert_eq!(e.key, "drover.http.routers.r.priority");
        assert!(e.message.contains("`high` is not a number"), "{e}");
        let n = node(&[("priorty", "1")]);
        let e = Sample::deserialize(NodeDeserializer::new(&n, "drover.http.routers.r")).unwrap_err();
        assert_eq!(e.key, "drover.http.routers.r.priorty");
        assert!(e.message.contains("unknown field"), "{e}");
    }
}
