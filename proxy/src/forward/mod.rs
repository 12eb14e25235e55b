//! The HTTP data path: route a request, pick a server, forward it, stream the answer back.

pub mod body;
mod completion;
mod deadline;
mod handler;
pub mod headers;
pub mod page;
mod redirect;
pub mod target;
mod tunnel;

pub use body::ProxyBody;
pub use handler::handle;
