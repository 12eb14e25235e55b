//! The one shape of a provider, and the one channel every provider talks through.
//!
//! Every provider is a [`Provider`]: a `NAME`, a constructor that checks its `[providers.<name>]`
//! settings at start (so a wrong setting is refused before anything runs, with a
//! [`ProviderError`] naming the key), and `run`, one task that watches the source. The runtime
//! starts any of them the same way, so adding a provider adds no code there.
//!
//! A running provider owns a [`ProviderHandle`] and sends either a complete new fragment
//! ([`ProviderHandle::send_config`]) or a report that its source failed
//! ([`ProviderHandle::report_error`]). A failure never clears the provider's routes: the
//! aggregator keeps its last good fragment and shows the error in the provider's status.
//!
//! # Why a mailbox, not a queue
//!
//! Fragments are full desired states, so only the newest one of a provider matters: one that is
//! replaced before the aggregator reads it is worth nothing. A queue would hold every fragment a
//! chatty source produced while the aggregator was busy (a Docker event storm during a 10,000-router
//! reload: hundreds of full copies). Each provider's handle therefore writes into its own
//! [`Mailbox`] (a `watch` channel): the newest fragment, the newest error, and counters, so memory
//! is one fragment per provider whatever the rate, and the counts the admin side shows stay exact.
//! [`ProviderHandle::new`] gives the other form, every update in order on a queue, for tests and
//! tools that want to see each one.

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::error::ProviderError;
use crate::model::DynamicConfig;

/// A source of dynamic configuration: checked at start, then run as one task.
pub trait Provider: Sized + Send + 'static {
    /// Its name, as in `name@provider` and `[providers.<NAME>]`.
    const NAME: &'static str;

    /// Its static settings, `[providers.<NAME>]`.
    type Config;

    /// Checks `config` and builds the provider; the error names the key that is wrong.
    fn new(config: &Self::Config) -> Result<Self, ProviderError>;

    /// Watches the source and sends a full fragment after every change, until the aggregator
    /// goes away.
    fn run(self, handle: ProviderHandle) -> impl Future<Output = ()> + Send;

    /// The error for settings under `[providers.<NAME>]` that cannot be used.
    fn refuse(why: impl std::fmt::Display) -> ProviderError {
        ProviderError::config(&format!("providers.{}", Self::NAME), why)
    }
}

/// What a provider tells a queue made with [`ProviderHandle::new`].
// A fragment is sent once per change of its source and moved, not copied: boxing it would
// cost an allocation for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Update {
    /// A complete new fragment: replaces everything this provider said before.
    Config {
        /// Provider name (`file`, `docker`, …).
        provider: Arc<str>,
        /// The whole desired state of this provider.
        config: DynamicConfig,
        /// What the provider saw and what it decided for each item (container, task, record…);
        /// `None` keeps the previous list (providers without items send `None`).
        items: Option<Vec<ItemReport>>,
    },
    /// The source could not be read; the last good fragment stays in force.
    Error {
        /// Provider name.
        provider: Arc<str>,
        /// What went wrong and where (file and line, endpoint, …).
        error: ProviderError,
    },
}

/// The newest of what one provider said: what the aggregator reads from its [`Mailbox`].
#[derive(Clone, Debug, Default)]
pub struct Posted {
    /// The newest fragment (`None` before the first).
    pub config: Option<Arc<DynamicConfig>>,
    /// The newest list of item decisions (`None` before a provider sends one).
    pub items: Option<Arc<Vec<ItemReport>>>,
    /// The newest error and when it happened, if no fragment came after it.
    pub error: Option<(ProviderError, SystemTime)>,
    /// When the newest fragment arrived.
    pub last_sync: Option<SystemTime>,
    /// Fragments sent so far.
    pub syncs: u64,
    /// Errors reported so far.
    pub errors: u64,
}

/// The receiving side of one provider's handle: always the newest [`Posted`] state.
pub type Mailbox = watch::Receiver<Posted>;

#[derive(Clone, Debug)]
enum Sink {
    /// Latest wins (the aggregator's form).
    Mailbox(Arc<watch::Sender<Posted>>),
    /// Every update, in order.
    Queue(mpsc::UnboundedSender<Update>),
}

/// The sending side a provider owns. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ProviderHandle {
    name: Arc<str>,
    sink: Sink,
}

impl ProviderHandle {
    /// A handle for provider `name` that sends every update, in order, to `tx` (for tests and
    /// tools that want each one; the aggregator uses [`ProviderHandle::mailbox`]).
    pub fn new(name: &str, tx: mpsc::UnboundedSender<Update>) -> Self {
        Self {
            name: name.into(),
            sink: Sink::Queue(tx),
        }
    }

    /// A handle for provider `name` whose updates land in the returned [`Mailbox`], newest wins.
    pub fn mailbox(name: &str) -> (Self, Mailbox) {
        let (tx, rx) = watch::channel(Posted::default());
        let handle = Self {
            name: name.into(),
            sink: Sink::Mailbox(Arc::new(tx)),
        };
        (handle, rx)
    }

    /// The provider's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends a complete new fragment. Returns false when the aggregator is gone (shutting down).
    pub fn send_config(&self, config: DynamicConfig) -> bool {
        self.post(config, None)
    }

    /// Sends a complete new fragment together with the decision taken for every item the
    /// provider saw (shown on the admin side: "why is my container not picked up?").
    pub fn send_config_with_items(&self, config: DynamicConfig, items: Vec<ItemReport>) -> bool {
        self.post(config, Some(items))
    }

    fn post(&self, config: DynamicConfig, items: Option<Vec<ItemReport>>) -> bool {
        match &self.sink {
            Sink::Mailbox(tx) => {
                let now = SystemTime::now();
                tx.send_modify(|posted| {
                    posted.config = Some(Arc::new(config));
                    if let Some(items) = items {
                        posted.items = Some(Arc::new(items));
                    }
                    posted.error = None;
                    posted.last_sync = Some(now);
                    posted.syncs += 1;
                });
                !tx.is_closed()
            }
            Sink::Queue(tx) => tx
                .send(Update::Config {
                    provider: self.name.clone(),
                    config,
                    items,
                })
                .is_ok(),
        }
    }

    /// Reports that the source failed; the last good fragment stays in force.
    pub fn report_error(&self, error: &ProviderError) -> bool {
        tracing::error!(provider = %self.name, "{error}");
        let error = error.clone();
        match &self.sink {
            Sink::Mailbox(tx) => {
                let now = SystemTime::now();
                tx.send_modify(|posted| {
                    posted.error = Some((error, now));
                    posted.errors += 1;
                });
                !tx.is_closed()
            }
            Sink::Queue(tx) => tx
                .send(Update::Error {
                    provider: self.name.clone(),
                    error,
                })
                .is_ok(),
        }
    }
}

/// What the admin side shows about one provider.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProviderStatus {
    /// Provider name.
    pub name: String,
    /// `ok` once a fragment was accepted and no error followed it, `error` after a failure,
    /// `pending` before the first fragment.
    pub state: ProviderState,
    /// When the last good fragment arrived (Unix milliseconds).
    #[serde(skip_serializing_if = "Option::is_none", with = "unix_millis")]
    pub last_sync: Option<SystemTime>,
    /// The last error, if the source failed since the last good fragment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When that error happened (Unix milliseconds).
    #[serde(skip_serializing_if = "Option::is_none", with = "unix_millis")]
    pub last_error_at: Option<SystemTime>,
    /// Fragments accepted so far.
    pub syncs: u64,
    /// Errors reported so far.
    pub errors: u64,
    /// Routers and services in the last good fragment.
    pub routers: usize,
    /// Services in the last good fragment.
    pub services: usize,
    /// Every item the provider saw, with its decision.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<ItemReport>,
}

/// One thing a provider saw (a container, a Swarm task, a Consul instance, a Marathon task, a
/// DNS record) and what it decided about it.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ItemReport {
    /// What it is: `container`, `task`, `instance`, `app`, `record`, …
    pub kind: String,
    /// A human name (container name, `service/instance`, app id, record name).
    pub name: String,
    /// The source's identifier (container id, task id, node+service id), if any.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Routed or skipped.
    pub decision: Decision,
    /// Why: for a skipped item, what stopped it (naming the label key and what is wrong); for a
    /// routed one, notes such as which network or port was chosen and why.
    pub reasons: Vec<String>,
    /// Routers this item produced or joined (qualified names).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routers: Vec<String>,
    /// Services this item is a server of (qualified names).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// Server addresses it contributed (`10.0.1.5:8080`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

/// A provider's decision about one item.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// It receives traffic.
    Routed,
    /// It does not; `reasons` says why.
    #[default]
    Skipped,
}

/// A provider's health as the admin side reports it.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProviderState {
    /// Nothing received yet.
    #[default]
    Pending,
    /// The last thing heard was a good fragment.
    Ok,
    /// The source failed after (or before) its last good fragment.
    Error,
}

mod unix_millis {
    use std::time::{SystemTime, UNIX_EPOCH};

    use serde::Serializer;

    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, ser: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => {
                let ms = t.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
                ser.serialize_u128(ms)
            }
            None => ser.serialize_none(),
        }
    }
}
