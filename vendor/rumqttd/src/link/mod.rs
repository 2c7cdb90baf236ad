pub mod alerts;
pub mod bridge;
pub mod console;
pub mod local;
pub mod meters;
pub mod network;
pub mod remote;
// PATCH(platform): closing a connection from outside.
pub mod sessions;
pub mod timer;
