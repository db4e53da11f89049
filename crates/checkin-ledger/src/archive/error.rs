//! Errors of reading and writing archive segments, each naming the file.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// Error of an archive segment or directory.
///
/// Every variant names the file or directory concerned. [`ArchiveError::code`]
/// returns a stable code for scripts, and [`ArchiveError::message_zh`] the
/// Simplified Chinese message.
#[derive(Debug, Error)]
pub enum ArchiveError {
    /// Reading, writing, syncing or renaming a file failed.
    #[error("failed to {action} {path}: {source}")]
    Io {
        /// Operation that failed.
        action: &'static str,
        /// File or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file does not follow the segment format.
    #[error("invalid archive segment {path}: {detail}")]
    Invalid {
        /// Segment file.
        path: PathBuf,
        /// Description of the problem.
        detail: String,
    },
    /// The recomputed file digest differs from the footer's.
    #[error("archive segment {path} is damaged: its digest does not match its contents")]
    DigestMismatch {
        /// Segment file.
        path: PathBuf,
    },
    /// The records do not form the chain the footer names.
    #[error("archive segment {path} has a broken chain: {detail}")]
    BrokenChain {
        /// Segment file.
        path: PathBuf,
        /// The first finding.
        detail: String,
    },
    /// A segment does not continue the one before it in its directory.
    #[error("archive segment {path} does not continue the segment before it: {detail}")]
    Discontinuous {
        /// Segment file.
        path: PathBuf,
        /// Description of the mismatch.
        detail: String,
    },
    /// A record could not be added to a segment being written.
    #[error("failed to add seq {seq} to archive segment {path}: {detail}")]
    Rejected {
        /// Segment file being written.
        path: PathBuf,
        /// Sequence of the record.
        seq: u64,
        /// Reason the record was rejected.
        detail: String,
    },
}

impl ArchiveError {
    /// Returns the stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Io { .. } => "archive_io",
            Self::Invalid { .. } => "archive_invalid_segment",
            Self::DigestMismatch { .. } => "archive_digest_mismatch",
            Self::BrokenChain { .. } => "archive_broken_chain",
            Self::Discontinuous { .. } => "archive_discontinuous",
            Self::Rejected { .. } => "archive_record_rejected",
        }
    }

    /// Returns the message in Simplified Chinese.
    pub fn message_zh(&self) -> String {
        match self {
            Self::Io {
                action,
                path,
                source,
            } => format!("无法{} {}：{source}", action_zh(action), path.display()),
            Self::Invalid { path, detail } => {
                format!("归档段 {} 格式无效：{detail}", path.display())
            }
            Self::DigestMismatch { path } => {
                format!("归档段 {} 已损坏：文件摘要与内容不符", path.display())
            }
            Self::BrokenChain { path, detail } => {
                format!("归档段 {} 的哈希链断裂：{detail}", path.display())
            }
            Self::Discontinuous { path, detail } => {
                format!("归档段 {} 未接续前一个归档段：{detail}", path.display())
            }
            Self::Rejected { path, seq, detail } => {
                format!("无法把序号 {seq} 写入归档段 {}：{detail}", path.display())
            }
        }
    }

    pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }

    pub(crate) fn invalid(path: &Path, detail: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }
}

/// Translates the file operations named in [`ArchiveError::Io`].
fn action_zh(action: &str) -> &str {
    match action {
        "open" => "打开",
        "create" => "创建",
        "read" | "read metadata of" => "读取",
        "write" => "写入",
        "seek in" => "定位",
        "sync" | "sync directory" => "同步到磁盘",
        "rename" => "重命名",
        "remove" => "删除",
        "list" => "列出",
        "start compressing" | "finish compressing" => "压缩",
        "start decompressing" | "decompress" => "解压",
        other => other,
    }
}
