//! `--mqtt`: the MQTT version(s) simulated devices speak, for every binary
//! that runs a fleet (`device-sim fleet`, `platform-bench`).

/// The MQTT version(s) a fleet's devices speak.
#[derive(clap::Args, Debug, Clone)]
pub struct FleetMqttArgs {
    /// The MQTT version(s) the devices speak: 3.1.1 or 5; with several
    /// (comma-separated), device i speaks the (i mod n)-th, so
    /// `--mqtt 3.1.1,5` is half each. An MQTT 5 device is moved by its
    /// gateway's DISCONNECT (reason 0x9C/0x9D, Server Reference), a 3.1.1
    /// device by a notice on its redirect topic.
    #[arg(
        long,
        value_name = "VERSION",
        default_value = "3.1.1",
        value_delimiter = ','
    )]
    pub mqtt: Vec<bus::MqttVersion>,
}
