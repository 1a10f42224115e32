//! What a broker's refusals mean, by MQTT reason code, for logs and health: the same
//! words for both protocol versions, and the code an operator can look up.

use std::fmt;

use rumqttc::v5::mqttbytes::v5 as v5p;

/// Why the broker refused one publish (MQTT 5: the reason code of its PUBACK or
/// PUBCOMP). The message is dead-lettered: sending it again gets the same answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishRefusal {
    Unspecified,
    ImplementationSpecific,
    NotAuthorized,
    TopicNameInvalid,
    PacketIdInUse,
    PacketIdNotFound,
    QuotaExceeded,
    PayloadFormatInvalid,
}

impl PublishRefusal {
    /// The refusal in a PUBACK; `None` for the two success codes.
    pub fn of_puback(reason: v5p::PubAckReason) -> Option<Self> {
        use v5p::PubAckReason as R;
        Some(match reason {
            R::Success | R::NoMatchingSubscribers => return None,
            R::UnspecifiedError => Self::Unspecified,
            R::ImplementationSpecificError => Self::ImplementationSpecific,
            R::NotAuthorized => Self::NotAuthorized,
            R::TopicNameInvalid => Self::TopicNameInvalid,
            R::PacketIdentifierInUse => Self::PacketIdInUse,
            R::QuotaExceeded => Self::QuotaExceeded,
            R::PayloadFormatInvalid => Self::PayloadFormatInvalid,
        })
    }

    /// The refusal in a PUBCOMP; `None` for success.
    pub fn of_pubcomp(reason: v5p::PubCompReason) -> Option<Self> {
        match reason {
            v5p::PubCompReason::Success => None,
            v5p::PubCompReason::PacketIdentifierNotFound => Some(Self::PacketIdNotFound),
        }
    }

    /// The MQTT 5 reason code.
    pub fn code(self) -> u8 {
        match self {
            Self::Unspecified => 0x80,
            Self::ImplementationSpecific => 0x83,
            Self::NotAuthorized => 0x87,
            Self::TopicNameInvalid => 0x90,
            Self::PacketIdInUse => 0x91,
            Self::PacketIdNotFound => 0x92,
            Self::QuotaExceeded => 0x97,
            Self::PayloadFormatInvalid => 0x99,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified error",
            Self::ImplementationSpecific => "implementation-specific error",
            Self::NotAuthorized => "not authorized",
            Self::TopicNameInvalid => "topic name invalid",
            Self::PacketIdInUse => "packet identifier in use",
            Self::PacketIdNotFound => "packet identifier not found",
            Self::QuotaExceeded => "quota exceeded",
            Self::PayloadFormatInvalid => "payload format invalid",
        }
    }
}

impl fmt::Display for PublishRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (reason code {:#04x})", self.text(), self.code())
    }
}

/// Why the broker refused the connection (CONNACK): a configuration problem (client
/// id, credentials, permissions) rather than a network one. Retried with backoff, as
/// a broker's configuration can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectRefusal {
    UnsupportedProtocol,
    ClientIdRejected,
    BadCredentials,
    NotAuthorized,
    Banned,
    ServerUnavailable,
    ServerBusy,
    ServerMoved,
    QuotaExceeded,
    RateLimited,
    /// Malformed packet, protocol error, unsupported option and the like.
    ProtocolError,
    Unspecified,
}

impl ConnectRefusal {
    /// An MQTT 3.1.1 CONNACK's return code.
    pub fn of_v4(code: rumqttc::ConnectReturnCode) -> Self {
        use rumqttc::ConnectReturnCode as C;
        match code {
            C::RefusedProtocolVersion => Self::UnsupportedProtocol,
            C::BadClientId => Self::ClientIdRejected,
            C::ServiceUnavailable => Self::ServerUnavailable,
            C::BadUserNamePassword => Self::BadCredentials,
            C::NotAuthorized => Self::NotAuthorized,
            C::Success => Self::Unspecified,
        }
    }

    /// An MQTT 5 CONNACK's reason code.
    pub fn of_v5(code: v5p::ConnectReturnCode) -> Self {
        use v5p::ConnectReturnCode as C;
        match code {
            C::RefusedProtocolVersion | C::UnsupportedProtocolVersion => Self::UnsupportedProtocol,
            C::BadClientId | C::ClientIdentifierNotValid => Self::ClientIdRejected,
            C::BadUserNamePassword | C::BadAuthenticationMethod => Self::BadCredentials,
            C::NotAuthorized => Self::NotAuthorized,
            C::Banned => Self::Banned,
            C::ServiceUnavailable | C::ServerUnavailable => Self::ServerUnavailable,
            C::ServerBusy => Self::ServerBusy,
            C::UseAnotherServer | C::ServerMoved => Self::ServerMoved,
            C::QuotaExceeded => Self::QuotaExceeded,
            C::ConnectionRateExceeded => Self::RateLimited,
            C::MalformedPacket
            | C::ProtocolError
            | C::TopicNameInvalid
            | C::PacketTooLarge
            | C::PayloadFormatInvalid
            | C::RetainNotSupported
            | C::QoSNotSupported => Self::ProtocolError,
            C::Success | C::UnspecifiedError | C::ImplementationSpecificError => Self::Unspecified,
        }
    }
}

impl fmt::Display for ConnectRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnsupportedProtocol => "protocol version not supported",
            Self::ClientIdRejected => "client id rejected",
            Self::BadCredentials => "bad user name or password",
            Self::NotAuthorized => "not authorized",
            Self::Banned => "banned",
            Self::ServerUnavailable => "server unavailable",
            Self::ServerBusy => "server busy",
            Self::ServerMoved => "server moved (use another server)",
            Self::QuotaExceeded => "quota exceeded",
            Self::RateLimited => "connection rate exceeded",
            Self::ProtocolError => "protocol error",
            Self::Unspecified => "unspecified error",
        })
    }
}
