//! Reader of the Foursquare check-in data set format (TSMC2014, NYC and Tokyo).
//!
//! Each line has 8 tab-separated columns: user id, venue id, venue category
//! id, venue category name, latitude, longitude, UTC offset in minutes, and
//! the UTC time written like `Tue Apr 03 18:00:09 +0000 2012`. There is no
//! header row. Files may be gzip-compressed, detected by the gzip magic bytes.
//!
//! A row becomes one submission (see `schemas/submission.schema.json`):
//! customer `fsq-<user id>`, site `fsq-<venue id>`, activity the category
//! name, `at` the UTC time written in the row's offset, and the location.
//! Its event id is a UUID v5 of the file's identity and the line number, so
//! importing the same file again yields the same ids and adds nothing.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

/// Prefix of customer and site ids made from Foursquare ids.
pub const ID_PREFIX: &str = "fsq-";
/// Device id written into imported submissions.
pub const IMPORT_DEVICE: &str = "foursquare-import";

/// Number of columns in a row.
const COLUMNS: usize = 8;
/// UTC offsets in use worldwide, in minutes: -12:00 to +14:00.
const OFFSET_RANGE_MIN: std::ops::RangeInclusive<i32> = -720..=840;
/// Maximum venue id length that fits the 64-character site limit with its prefix.
const MAX_VENUE_CHARS: usize = 60;
/// Maximum user id length that fits the 128-character customer limit with its prefix.
const MAX_USER_CHARS: usize = 124;
/// Maximum category length that the submission's `activity` accepts.
const MAX_CATEGORY_CHARS: usize = 128;
/// Column names, for messages.
const COLUMN_NAMES: [&str; COLUMNS] = [
    "user id",
    "venue id",
    "venue category id",
    "venue category name",
    "latitude",
    "longitude",
    "UTC offset",
    "UTC time",
];

/// One valid row.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// User id as in the file.
    pub user: String,
    /// Venue id as in the file.
    pub venue: String,
    /// Venue category id.
    pub category_id: String,
    /// Venue category name, such as `Coffee Shop`.
    pub category: String,
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
    /// The check-in instant, in the row's UTC offset.
    pub at: DateTime<FixedOffset>,
}

impl Row {
    /// Returns the site id of the row's venue.
    pub fn site(&self) -> String {
        format!("{ID_PREFIX}{}", self.venue)
    }

    /// Builds the submission JSON for this row.
    pub fn submission(&self, id: Uuid, line: u64) -> Vec<u8> {
        let submission = Submission {
            id: id.hyphenated().to_string(),
            customer: format!("{ID_PREFIX}{}", self.user),
            site: self.site(),
            device: IMPORT_DEVICE,
            at: self.at.to_rfc3339_opts(SecondsFormat::Secs, false),
            method: "gps",
            location: SubmissionLocation {
                lat: self.lat,
                lon: self.lon,
            },
            activity: &self.category,
            attributes: SubmissionAttributes {
                category_id: &self.category_id,
                source_line: line.to_string(),
            },
        };
        serde_json::to_vec(&submission).expect("a submission always serialises")
    }
}

/// Field order is fixed by the struct, so the same row always gives the same
/// bytes and a re-import is recognised as a resend.
#[derive(Serialize)]
struct Submission<'a> {
    id: String,
    customer: String,
    site: String,
    device: &'a str,
    at: String,
    method: &'a str,
    location: SubmissionLocation,
    activity: &'a str,
    attributes: SubmissionAttributes<'a>,
}

#[derive(Serialize)]
struct SubmissionLocation {
    lat: f64,
    lon: f64,
}

#[derive(Serialize)]
struct SubmissionAttributes<'a> {
    category_id: &'a str,
    source_line: String,
}

/// Reason a row is invalid, with a stable code and English and Chinese text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowError {
    /// The line is not valid UTF-8; the value is the offset of the first bad byte.
    InvalidUtf8(usize),
    /// The line does not have 8 tab-separated columns.
    WrongColumnCount(usize),
    /// A column is empty or only whitespace.
    EmptyColumn(&'static str),
    /// A column is longer than the submission allows.
    TooLong(&'static str),
    /// A text column contains a control character.
    ControlCharacter(&'static str),
    /// Latitude or longitude is not a finite decimal number.
    InvalidNumber(&'static str, String),
    /// Latitude or longitude is outside its range.
    CoordinateOutOfRange(&'static str, String),
    /// The UTC offset is not a whole number of minutes from -720 to 840.
    InvalidOffset(String),
    /// The UTC time does not parse, or names the wrong weekday.
    InvalidTime(String),
}

impl RowError {
    /// Returns the stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidUtf8(_) => "invalid_utf8",
            Self::WrongColumnCount(_) => "wrong_column_count",
            Self::EmptyColumn(_) => "empty_column",
            Self::TooLong(_) => "too_long",
            Self::ControlCharacter(_) => "control_character",
            Self::InvalidNumber(..) => "invalid_number",
            Self::CoordinateOutOfRange(..) => "coordinate_out_of_range",
            Self::InvalidOffset(_) => "invalid_offset",
            Self::InvalidTime(_) => "invalid_time",
        }
    }

    /// Returns the English message.
    pub fn message_en(&self) -> String {
        match self {
            Self::InvalidUtf8(at) => {
                format!("line is not valid UTF-8 (invalid byte at offset {at})")
            }
            Self::WrongColumnCount(found) => {
                format!("line has {found} tab-separated columns, expected {COLUMNS}")
            }
            Self::EmptyColumn(column) => format!("{column} is empty"),
            Self::TooLong(column) => format!("{column} is longer than a submission allows"),
            Self::ControlCharacter(column) => format!("{column} contains a control character"),
            Self::InvalidNumber(column, value) => {
                format!("{column} {value:?} is not a decimal number")
            }
            Self::CoordinateOutOfRange(column, value) => {
                format!("{column} {value} is out of range")
            }
            Self::InvalidOffset(value) => {
                format!("UTC offset {value:?} is not a whole number of minutes from -720 to 840")
            }
            Self::InvalidTime(value) => format!(
                "UTC time {value:?} is invalid, expected a form like \"Tue Apr 03 18:00:09 +0000 2012\""
            ),
        }
    }

    /// Returns the Simplified Chinese message.
    pub fn message_zh(&self) -> String {
        match self {
            Self::InvalidUtf8(at) => format!("该行不是有效的 UTF-8 编码（第 {at} 字节无效）"),
            Self::WrongColumnCount(found) => {
                format!("该行有 {found} 个制表符分隔的列，应为 {COLUMNS} 列")
            }
            Self::EmptyColumn(column) => format!("{} 为空", column_zh(column)),
            Self::TooLong(column) => format!("{} 超过提交格式允许的长度", column_zh(column)),
            Self::ControlCharacter(column) => format!("{} 含有控制字符", column_zh(column)),
            Self::InvalidNumber(column, value) => {
                format!("{} {value:?} 不是十进制数", column_zh(column))
            }
            Self::CoordinateOutOfRange(column, value) => {
                format!("{} {value} 超出范围", column_zh(column))
            }
            Self::InvalidOffset(value) => {
                format!("UTC 偏移 {value:?} 不是 -720 到 840 之间的整数分钟")
            }
            Self::InvalidTime(value) => {
                format!("UTC 时间 {value:?} 无效，应形如 \"Tue Apr 03 18:00:09 +0000 2012\"")
            }
        }
    }
}

fn column_zh(column: &str) -> &'static str {
    match column {
        "user id" => "用户 ID",
        "venue id" => "地点 ID",
        "venue category id" => "地点类别 ID",
        "venue category name" => "地点类别名称",
        "latitude" => "纬度",
        "longitude" => "经度",
        "UTC offset" => "UTC 偏移",
        _ => "UTC 时间",
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.message_en())
    }
}

impl std::error::Error for RowError {}

/// Parses one line, without its line ending.
///
/// # Errors
///
/// The first problem found, checking columns from left to right.
pub fn parse_line(line: &[u8]) -> Result<Row, RowError> {
    let text = std::str::from_utf8(line).map_err(|err| RowError::InvalidUtf8(err.valid_up_to()))?;
    let columns: Vec<&str> = text.split('\t').collect();
    if columns.len() != COLUMNS {
        return Err(RowError::WrongColumnCount(columns.len()));
    }
    for (column, name) in columns.iter().zip(COLUMN_NAMES) {
        if column.trim().is_empty() {
            return Err(RowError::EmptyColumn(name));
        }
        if column.chars().any(char::is_control) {
            return Err(RowError::ControlCharacter(name));
        }
    }

    let user = text_column(columns[0], COLUMN_NAMES[0], MAX_USER_CHARS)?;
    let venue = text_column(columns[1], COLUMN_NAMES[1], MAX_VENUE_CHARS)?;
    let category_id = text_column(columns[2], COLUMN_NAMES[2], MAX_CATEGORY_CHARS)?;
    let category = text_column(columns[3], COLUMN_NAMES[3], MAX_CATEGORY_CHARS)?;
    let lat = coordinate(columns[4], COLUMN_NAMES[4], 90.0)?;
    let lon = coordinate(columns[5], COLUMN_NAMES[5], 180.0)?;
    let offset = utc_offset(columns[6])?;
    let at = utc_time(columns[7])?.with_timezone(&offset);

    Ok(Row {
        user,
        venue,
        category_id,
        category,
        lat,
        lon,
        at,
    })
}

fn text_column(value: &str, name: &'static str, max_chars: usize) -> Result<String, RowError> {
    let value = value.trim();
    if value.chars().count() > max_chars {
        return Err(RowError::TooLong(name));
    }
    Ok(value.to_string())
}

fn coordinate(value: &str, name: &'static str, limit: f64) -> Result<f64, RowError> {
    let value = value.trim();
    // Rust's parser also takes "inf" and "NaN", which are not coordinates.
    let parsed: f64 = value
        .parse()
        .ok()
        .filter(|number: &f64| number.is_finite())
        .ok_or_else(|| RowError::InvalidNumber(name, value.to_string()))?;
    if parsed.abs() > limit {
        return Err(RowError::CoordinateOutOfRange(name, value.to_string()));
    }
    Ok(parsed)
}

fn utc_offset(value: &str) -> Result<FixedOffset, RowError> {
    let invalid = || RowError::InvalidOffset(value.to_string());
    let minutes: i32 = value.trim().parse().map_err(|_| invalid())?;
    if !OFFSET_RANGE_MIN.contains(&minutes) {
        return Err(invalid());
    }
    FixedOffset::east_opt(minutes * 60).ok_or_else(invalid)
}

fn utc_time(value: &str) -> Result<DateTime<Utc>, RowError> {
    // chrono rejects a weekday that does not match the date.
    DateTime::parse_from_str(value.trim(), "%a %b %d %H:%M:%S %z %Y")
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| RowError::InvalidTime(value.to_string()))
}

/// Identity of a data file: the BLAKE3 digest of its uncompressed bytes.
///
/// The digest covers the whole content, so a gzipped and a plain copy of the
/// same data get the same event ids, and a file whose content changed gets
/// new ones instead of colliding with the old import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileIdentity(pub [u8; 32]);

impl FileIdentity {
    /// Returns the event id of the check-in on line `line` (1-based).
    pub fn event_id(&self, line: u64) -> Uuid {
        let mut name = Vec::with_capacity(32 + 8);
        name.extend_from_slice(&self.0);
        name.extend_from_slice(&line.to_be_bytes());
        Uuid::new_v5(&import_namespace(), &name)
    }

    /// Returns the digest in hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

/// UUID v5 namespace of Foursquare import event ids.
fn import_namespace() -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, b"urn:checkin:import:foursquare")
}

/// Opens a data file, decompressing it when it starts with the gzip magic bytes.
///
/// # Errors
///
/// When the file cannot be opened or read.
pub fn open(path: &Path) -> std::io::Result<Box<dyn BufRead + Send>> {
    let mut file = BufReader::new(std::fs::File::open(path)?);
    let gzipped = file.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    if gzipped {
        let decoder = flate2::bufread::MultiGzDecoder::new(file);
        Ok(Box::new(BufReader::new(decoder)))
    } else {
        Ok(Box::new(file))
    }
}

/// Computes a file's identity by reading its uncompressed bytes once.
///
/// # Errors
///
/// When the file cannot be read or its gzip stream is corrupt.
pub fn identify(path: &Path) -> std::io::Result<FileIdentity> {
    let mut reader = open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(FileIdentity(*hasher.finalize().as_bytes()))
}

/// Yields each line of a reader with its 1-based number, without the line
/// ending (LF or CRLF). Empty lines are skipped but still counted.
pub fn lines(reader: impl BufRead) -> impl Iterator<Item = std::io::Result<(u64, Vec<u8>)>> {
    reader
        .split(b'\n')
        .enumerate()
        .filter_map(|(index, line)| match line {
            Ok(mut bytes) => {
                if bytes.last() == Some(&b'\r') {
                    bytes.pop();
                }
                (!bytes.is_empty()).then_some(Ok((index as u64 + 1, bytes)))
            }
            Err(err) => Some(Err(err)),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "6\t4b21aee7f964a5201b4024e3\t4bf58dd8d48988d1e7931735\tCafé\t40.7190\t-73.9876\t-300\tTue Feb 12 02:28:43 +0000 2013";

    fn with_column(index: usize, value: &str) -> String {
        let mut columns: Vec<&str> = GOOD.split('\t').collect();
        columns[index] = value;
        columns.join("\t")
    }

    #[test]
    fn good_row_parses() {
        let row = parse_line(GOOD.as_bytes()).unwrap();
        assert_eq!(row.user, "6");
        assert_eq!(row.site(), "fsq-4b21aee7f964a5201b4024e3");
        assert_eq!(row.category, "Café");
        assert_eq!(row.lat, 40.719);
        assert_eq!(row.lon, -73.9876);
        assert_eq!(row.at.to_rfc3339(), "2013-02-11T21:28:43-05:00");
    }

    #[test]
    fn submission_has_schema_fields() {
        let row = parse_line(GOOD.as_bytes()).unwrap();
        let id = Uuid::nil();
        let json: serde_json::Value = serde_json::from_slice(&row.submission(id, 7)).unwrap();
        assert_eq!(json["id"], "00000000-0000-0000-0000-000000000000");
        assert_eq!(json["customer"], "fsq-6");
        assert_eq!(json["site"], "fsq-4b21aee7f964a5201b4024e3");
        assert_eq!(json["at"], "2013-02-11T21:28:43-05:00");
        assert_eq!(json["method"], "gps");
        assert_eq!(json["activity"], "Café");
        assert_eq!(json["location"]["lat"], 40.719);
        assert_eq!(json["attributes"]["source_line"], "7");
    }

    #[test]
    fn odd_offset_is_kept() {
        let row = parse_line(with_column(6, "660").as_bytes()).unwrap();
        assert_eq!(row.at.to_rfc3339(), "2013-02-12T13:28:43+11:00");
    }

    #[test]
    fn invalid_rows_have_reasons() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"6\t4b21\xe9\tx".to_vec(), "invalid_utf8"),
            (b"6\tvenue\tcat".to_vec(), "wrong_column_count"),
            (with_column(0, " ").into_bytes(), "empty_column"),
            (with_column(4, "40,71").into_bytes(), "invalid_number"),
            (with_column(4, "NaN").into_bytes(), "invalid_number"),
            (
                with_column(5, "-273.5").into_bytes(),
                "coordinate_out_of_range",
            ),
            (with_column(6, "-300.5").into_bytes(), "invalid_offset"),
            (with_column(6, "900").into_bytes(), "invalid_offset"),
            (
                with_column(7, "Tue Feb 30 02:28:43 +0000 2013").into_bytes(),
                "invalid_time",
            ),
            (
                with_column(7, "Mon Feb 12 02:28:43 +0000 2013").into_bytes(),
                "invalid_time",
            ),
            (
                with_column(7, "2013-02-12 02:28:43").into_bytes(),
                "invalid_time",
            ),
        ];
        for (line, code) in cases {
            let error = parse_line(&line).unwrap_err();
            assert_eq!(error.code(), code, "{}", String::from_utf8_lossy(&line));
            assert!(!error.message_en().is_empty());
            assert!(!error.message_zh().is_empty());
        }
    }

    #[test]
    fn event_id_depends_on_file_and_line() {
        let file = FileIdentity([1; 32]);
        let other = FileIdentity([2; 32]);
        assert_eq!(file.event_id(5), file.event_id(5));
        assert_ne!(file.event_id(5), file.event_id(6));
        assert_ne!(file.event_id(5), other.event_id(5));
        assert_eq!(file.event_id(5).get_version_num(), 5);
    }

    #[test]
    fn lines_are_numbered_and_trimmed() {
        let input = b"a\r\n\nb\nc";
        let lines: Vec<(u64, Vec<u8>)> = lines(&input[..]).map(Result::unwrap).collect();
        assert_eq!(
            lines,
            [(1, b"a".to_vec()), (3, b"b".to_vec()), (4, b"c".to_vec())]
        );
    }

    #[test]
    fn gzip_and_plain_have_same_identity() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("rows.tsv");
        let gzipped = dir.path().join("rows.tsv.gz");
        std::fs::write(&plain, GOOD).unwrap();
        let mut encoder = flate2::write::GzEncoder::new(
            std::fs::File::create(&gzipped).unwrap(),
            flate2::Compression::default(),
        );
        encoder.write_all(GOOD.as_bytes()).unwrap();
        encoder.finish().unwrap();

        assert_eq!(identify(&plain).unwrap(), identify(&gzipped).unwrap());
        let mut text = String::new();
        open(&gzipped).unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, GOOD);
    }
}
