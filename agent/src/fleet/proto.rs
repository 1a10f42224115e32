//! The OpAMP messages the agent sends and reads (OpAMP specification, `opamp.proto`
//! and `anyvalue.proto`), written with prost's derive from the spec's field numbers and
//! types. Fields the agent never uses are left out: prost skips unknown fields when it
//! decodes, as protobuf requires.
//!
//! Bit sets (capabilities, flags) are plain `u64` fields with the constants below; the
//! spec's real enums are prost enumerations. Note the zero values (`Installed`,
//! `TopLevel`, `Unset`) never appear on the wire: presence is a message's, not a field's.

use std::collections::HashMap;

/// `AgentCapabilities` bits.
pub mod agent_capabilities {
    pub const REPORTS_STATUS: u64 = 0x1;
    pub const ACCEPTS_REMOTE_CONFIG: u64 = 0x2;
    pub const REPORTS_EFFECTIVE_CONFIG: u64 = 0x4;
    pub const ACCEPTS_PACKAGES: u64 = 0x8;
    pub const REPORTS_PACKAGE_STATUSES: u64 = 0x10;
    pub const REPORTS_HEALTH: u64 = 0x800;
    pub const REPORTS_REMOTE_CONFIG: u64 = 0x1000;
    pub const REPORTS_HEARTBEAT: u64 = 0x2000;
}

/// `ServerToAgentFlags` bits.
pub const FLAG_REPORT_FULL_STATE: u64 = 0x1;

#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4, 7")]
    pub value: Option<any_value::Value>,
}

pub mod any_value {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(string, tag = "1")]
        StringValue(String),
        #[prost(bool, tag = "2")]
        BoolValue(bool),
        #[prost(int64, tag = "3")]
        IntValue(i64),
        #[prost(double, tag = "4")]
        DoubleValue(f64),
        #[prost(bytes = "vec", tag = "7")]
        BytesValue(Vec<u8>),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

impl KeyValue {
    /// A string attribute.
    pub fn text(key: &str, value: impl Into<String>) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
        }
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentToServer {
    #[prost(bytes = "vec", tag = "1")]
    pub instance_uid: Vec<u8>,
    #[prost(uint64, tag = "2")]
    pub sequence_num: u64,
    #[prost(message, optional, tag = "3")]
    pub agent_description: Option<AgentDescription>,
    #[prost(uint64, tag = "4")]
    pub capabilities: u64,
    #[prost(message, optional, tag = "5")]
    pub health: Option<ComponentHealth>,
    #[prost(message, optional, tag = "6")]
    pub effective_config: Option<EffectiveConfig>,
    #[prost(message, optional, tag = "7")]
    pub remote_config_status: Option<RemoteConfigStatus>,
    #[prost(message, optional, tag = "8")]
    pub package_statuses: Option<PackageStatuses>,
    #[prost(message, optional, tag = "9")]
    pub agent_disconnect: Option<AgentDisconnect>,
    #[prost(uint64, tag = "10")]
    pub flags: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentDisconnect {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ServerToAgent {
    #[prost(bytes = "vec", tag = "1")]
    pub instance_uid: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    pub error_response: Option<ServerErrorResponse>,
    #[prost(message, optional, tag = "3")]
    pub remote_config: Option<AgentRemoteConfig>,
    #[prost(message, optional, tag = "4")]
    pub connection_settings: Option<ConnectionSettingsOffers>,
    #[prost(message, optional, tag = "5")]
    pub packages_available: Option<PackagesAvailable>,
    #[prost(uint64, tag = "6")]
    pub flags: u64,
    #[prost(uint64, tag = "7")]
    pub capabilities: u64,
    #[prost(message, optional, tag = "8")]
    pub agent_identification: Option<AgentIdentification>,
    #[prost(message, optional, tag = "9")]
    pub command: Option<ServerToAgentCommand>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ServerErrorResponseType {
    Unknown = 0,
    BadRequest = 1,
    Unavailable = 2,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ServerErrorResponse {
    #[prost(enumeration = "ServerErrorResponseType", tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub error_message: String,
    /// The spec's `oneof Details` has this one member: the same bytes on the wire.
    #[prost(message, optional, tag = "3")]
    pub retry_info: Option<RetryInfo>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RetryInfo {
    #[prost(uint64, tag = "1")]
    pub retry_after_nanoseconds: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ServerToAgentCommand {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentIdentification {
    #[prost(bytes = "vec", tag = "1")]
    pub new_instance_uid: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ConnectionSettingsOffers {
    #[prost(bytes = "vec", tag = "1")]
    pub hash: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    pub opamp: Option<OpAmpConnectionSettings>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OpAmpConnectionSettings {
    #[prost(string, tag = "1")]
    pub destination_endpoint: String,
    #[prost(uint64, tag = "4")]
    pub heartbeat_interval_seconds: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentDescription {
    #[prost(message, repeated, tag = "1")]
    pub identifying_attributes: Vec<KeyValue>,
    #[prost(message, repeated, tag = "2")]
    pub non_identifying_attributes: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ComponentHealth {
    #[prost(bool, tag = "1")]
    pub healthy: bool,
    #[prost(fixed64, tag = "2")]
    pub start_time_unix_nano: u64,
    #[prost(string, tag = "3")]
    pub last_error: String,
    #[prost(string, tag = "4")]
    pub status: String,
    #[prost(fixed64, tag = "5")]
    pub status_time_unix_nano: u64,
    #[prost(map = "string, message", tag = "6")]
    pub component_health_map: HashMap<String, ComponentHealth>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EffectiveConfig {
    #[prost(message, optional, tag = "1")]
    pub config_map: Option<AgentConfigMap>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentRemoteConfig {
    #[prost(message, optional, tag = "1")]
    pub config: Option<AgentConfigMap>,
    #[prost(bytes = "vec", tag = "2")]
    pub config_hash: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentConfigMap {
    #[prost(map = "string, message", tag = "1")]
    pub config_map: HashMap<String, AgentConfigFile>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentConfigFile {
    #[prost(bytes = "vec", tag = "1")]
    pub body: Vec<u8>,
    #[prost(string, tag = "2")]
    pub content_type: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum RemoteConfigStatuses {
    Unset = 0,
    Applied = 1,
    Applying = 2,
    Failed = 3,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RemoteConfigStatus {
    #[prost(bytes = "vec", tag = "1")]
    pub last_remote_config_hash: Vec<u8>,
    #[prost(enumeration = "RemoteConfigStatuses", tag = "2")]
    pub status: i32,
    #[prost(string, tag = "3")]
    pub error_message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PackagesAvailable {
    #[prost(map = "string, message", tag = "1")]
    pub packages: HashMap<String, PackageAvailable>,
    #[prost(bytes = "vec", tag = "2")]
    pub all_packages_hash: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PackageAvailable {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub version: String,
    #[prost(message, optional, tag = "3")]
    pub file: Option<DownloadableFile>,
    #[prost(bytes = "vec", tag = "4")]
    pub hash: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DownloadableFile {
    #[prost(string, tag = "1")]
    pub download_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub content_hash: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub signature: Vec<u8>,
    #[prost(message, optional, tag = "4")]
    pub headers: Option<Headers>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Headers {
    #[prost(message, repeated, tag = "1")]
    pub headers: Vec<Header>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Header {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum PackageStatusEnum {
    Installed = 0,
    InstallPending = 1,
    Installing = 2,
    InstallFailed = 3,
    Downloading = 4,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PackageStatuses {
    #[prost(map = "string, message", tag = "1")]
    pub packages: HashMap<String, PackageStatus>,
    #[prost(bytes = "vec", tag = "2")]
    pub server_provided_all_packages_hash: Vec<u8>,
    #[prost(string, tag = "3")]
    pub error_message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PackageStatus {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub agent_has_version: String,
    #[prost(bytes = "vec", tag = "3")]
    pub agent_has_hash: Vec<u8>,
    #[prost(string, tag = "4")]
    pub server_offered_version: String,
    #[prost(bytes = "vec", tag = "5")]
    pub server_offered_hash: Vec<u8>,
    #[prost(enumeration = "PackageStatusEnum", tag = "6")]
    pub status: i32,
    #[prost(string, tag = "7")]
    pub error_message: String,
}
