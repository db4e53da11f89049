//! The ledger record: what one JetStream message of `CHECKIN_LEDGER` holds.
//!
//! Records contain facts as devices reported them. There is no floating point:
//! coordinates are microdegrees, times are UTC microseconds since the Unix
//! epoch plus the device's UTC offset in seconds, and accuracy is centimetres.
//! All text was NFC-normalised at intake.

use bincode::{Decode, Encode};
use serde::Serialize;

use crate::ids::EventId;

/// One ledger record, the unit of the hash chain.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct Record {
    /// When the sequencer built the record, UTC microseconds since the Unix epoch.
    pub recorded_at_us: i64,
    /// Content of the record.
    pub body: RecordBody,
}

/// The kinds of ledger record.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RecordBody {
    /// First record of every ledger; its hash is the ledger's identity.
    Genesis(Genesis),
    /// One customer check-in (打卡) as a device reported it.
    CheckIn(CheckIn),
    /// Withdraws an earlier check-in from every figure without editing it.
    Void(Void),
}

impl RecordBody {
    /// Returns the snake_case kind name used in headers, JSON and the CLI.
    pub fn kind(&self) -> RecordKind {
        match self {
            Self::Genesis(_) => RecordKind::Genesis,
            Self::CheckIn(_) => RecordKind::CheckIn,
            Self::Void(_) => RecordKind::Void,
        }
    }

    /// Returns the event id the record was submitted under; genesis has none.
    pub fn event_id(&self) -> Option<EventId> {
        match self {
            Self::Genesis(_) => None,
            Self::CheckIn(check_in) => Some(check_in.event_id),
            Self::Void(void) => Some(void.event_id),
        }
    }
}

/// The kind of a record, without its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// See [`Genesis`].
    Genesis,
    /// See [`CheckIn`].
    CheckIn,
    /// See [`Void`].
    Void,
}

impl RecordKind {
    /// Returns the kind's stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Genesis => "genesis",
            Self::CheckIn => "check_in",
            Self::Void => "void",
        }
    }
}

/// The genesis record that names a ledger.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct Genesis {
    /// Ledger name, unique within an organisation, such as `default`.
    pub ledger: String,
    /// Free text the operator gave when the ledger was created.
    pub description: String,
}

/// Capture method of a check-in.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// A QR code scan.
    Qr,
    /// An NFC tag or card tap.
    Nfc,
    /// A GPS position report.
    Gps,
    /// Presence on a Wi-Fi network.
    Wifi,
    /// Face recognition.
    Face,
    /// A self-service kiosk.
    Kiosk,
    /// Entered by staff on the customer's behalf.
    Staff,
}

impl Method {
    /// All methods, in the order of their stable names.
    pub const ALL: [Method; 7] = [
        Self::Qr,
        Self::Nfc,
        Self::Gps,
        Self::Wifi,
        Self::Face,
        Self::Kiosk,
        Self::Staff,
    ];

    /// Returns the method's stable name as devices send it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Qr => "qr",
            Self::Nfc => "nfc",
            Self::Gps => "gps",
            Self::Wifi => "wifi",
            Self::Face => "face",
            Self::Kiosk => "kiosk",
            Self::Staff => "staff",
        }
    }

    /// Parses a stable method name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|method| method.as_str() == name)
    }
}

/// The intake path a check-in arrived through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A live edge device; the acceptance horizon applies.
    Live,
    /// A historical import; exempt from the acceptance horizon.
    Import,
}

/// A device-reported position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct Location {
    /// Latitude in microdegrees, within ±90,000,000.
    pub lat_microdeg: i32,
    /// Longitude in microdegrees, within ±180,000,000.
    pub lon_microdeg: i32,
    /// Reported horizontal accuracy in centimetres, if the device sent one.
    pub accuracy_cm: Option<u32>,
}

/// One check-in (打卡).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct CheckIn {
    /// The device-chosen idempotency key.
    pub event_id: EventId,
    /// Customer identifier as the business records it.
    pub customer: String,
    /// Site identifier from the site configuration.
    pub site: String,
    /// Identifier of the device that captured the check-in.
    pub device: String,
    /// When the check-in happened, UTC microseconds since the Unix epoch.
    pub at_us: i64,
    /// The device's UTC offset at that moment, in seconds east of UTC.
    pub utc_offset_s: i32,
    /// Capture method.
    pub method: Method,
    /// Position, if the device reported one.
    pub location: Option<Location>,
    /// The activity the customer checked in for, such as a class name.
    pub activity: Option<String>,
    /// Staff member who entered or witnessed the check-in.
    pub staff: Option<String>,
    /// Small device-supplied attributes, sorted by key.
    pub attributes: Vec<(String, String)>,
    /// The intake path the check-in arrived through.
    pub source: Source,
}

/// Withdraws an earlier check-in from every figure.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct Void {
    /// Idempotency key of the void request itself.
    pub event_id: EventId,
    /// Event id of the check-in being voided.
    pub target: EventId,
    /// Reason for the void.
    pub reason: String,
    /// Person or system that requested the void.
    pub requested_by: String,
}
