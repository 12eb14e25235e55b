//! Which providers run, from the static configuration. Each provider is one task on the control
//! runtime that owns a [`ProviderHandle`]; adding a provider means adding one entry here.

use std::future::Future;
use std::pin::Pin;

use drover_providers::file::{FileProvider, Source};
use drover_providers::ProviderHandle;

use crate::config::Providers;

/// A provider ready to start: its name and the task to run with its handle.
pub struct Configured {
    /// The provider's name, as in `name@provider`.
    pub name: &'static str,
    /// Starts the provider's task.
    pub start: Box<dyn FnOnce(ProviderHandle) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>,
}

/// Every provider the static configuration enables.
pub fn configured(providers: &Providers) -> Vec<Configured> {
    let mut out = Vec::new();
    if let Some(file) = &providers.file {
        let source = match (&file.filename, &file.directory) {
            (Some(f), _) => Source::File(f.clone()),
            (None, Some(d)) => Source::Directory(d.clone()),
            (None, None) => unreachable!("StaticConfig::parse requires filename or directory"),
        };
        let provider = FileProvider::new(source, file.watch);
        out.push(Configured { name: "file", start: Box::new(move |handle| Box::pin(provider.run(handle))) });
    }
    out
}
