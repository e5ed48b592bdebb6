//! Logging into the server's log, tagged with the plugin's name: functions ([`log::info()`](crate::log::info())) and
//! `format!`-style macros ([`log::info!`](crate::log::info!)).
//!
//! ```no_run
//! use modkv_plugin_sdk::log;
//!
//! log::info("loaded");
//! let key = "a";
//! log::warn!("rejected {key}: {} bytes", 3);
//! ```

use crate::bindings::modkv::plugin::host::{self, Level};

/// Logs at debug level.
pub fn debug(message: impl AsRef<str>) {
    host::log(Level::Debug, message.as_ref())
}
/// Logs at info level.
pub fn info(message: impl AsRef<str>) {
    host::log(Level::Info, message.as_ref())
}
/// Logs at warn level.
pub fn warn(message: impl AsRef<str>) {
    host::log(Level::Warn, message.as_ref())
}
/// Logs at error level.
pub fn error(message: impl AsRef<str>) {
    host::log(Level::Error, message.as_ref())
}

#[doc(inline)]
pub use crate::{__log_debug as debug, __log_error as error, __log_info as info, __log_warn as warn};
