//! Reading stored messages back from the ledger and rejected streams.

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use checkin_core::ChainHash;
use checkin_core::chain::StoredLink;
use futures::StreamExt;
use futures::stream::BoxStream;
use thiserror::Error;

use crate::headers;

/// Error of a stream read.
#[derive(Debug, Error)]
#[error("failed to {action} stream {stream}: {source}")]
pub struct ReadError {
    action: &'static str,
    stream: String,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl ReadError {
    /// Wraps a failure to `action` the records of `stream` from another
    /// source, such as archive files.
    pub fn new(
        action: &'static str,
        stream: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            action,
            stream: stream.into(),
            source: source.into(),
        }
    }
}

/// One stored message with its stream sequence.
#[derive(Clone, Debug)]
pub struct StoredMessage {
    /// Stream sequence.
    pub seq: u64,
    /// Subject it was published on.
    pub subject: String,
    /// Headers, if any.
    pub headers: Option<HeaderMap>,
    /// Payload bytes as stored.
    pub payload: Bytes,
    /// When the server stored it, Unix nanoseconds.
    pub stored_at_unix_ns: i128,
}

impl StoredMessage {
    /// Returns a header value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        headers::text(self.headers.as_ref(), name)
    }

    /// Returns the message as a chain link for verification.
    pub fn link(&self) -> StoredLink<'_> {
        StoredLink {
            seq: self.seq,
            body: &self.payload,
            prev: headers::chain_hash(self.headers.as_ref(), headers::PREV),
            hash: headers::chain_hash(self.headers.as_ref(), headers::HASH),
        }
    }

    /// Returns the stored `hash` header, if present and well formed.
    pub fn hash_header(&self) -> Option<ChainHash> {
        headers::chain_hash(self.headers.as_ref(), headers::HASH)
    }
}

/// Reads one stream by sequence or in sequence ranges.
#[derive(Clone)]
pub struct StreamReader {
    name: String,
    stream: stream::Stream,
}

impl StreamReader {
    /// Opens an existing stream.
    ///
    /// # Errors
    ///
    /// Fails when the stream does not exist or the server cannot be reached.
    pub async fn open(js: &jetstream::Context, name: &str) -> Result<Self, ReadError> {
        let stream = js
            .get_stream(name)
            .await
            .map_err(|err| read_error("open", name, err))?;
        Ok(Self {
            name: name.to_string(),
            stream,
        })
    }

    /// Returns the first and last sequence held; `(0, 0)` for an empty stream
    /// that never held a message.
    ///
    /// # Errors
    ///
    /// Fails when the server cannot be reached.
    pub async fn bounds(&self) -> Result<(u64, u64), ReadError> {
        let mut stream = self.stream.clone();
        let info = stream
            .info()
            .await
            .map_err(|err| read_error("read info of", &self.name, err))?;
        Ok((info.state.first_sequence, info.state.last_sequence))
    }

    /// Returns the message at `seq`, or `None` when there is none.
    ///
    /// # Errors
    ///
    /// Fails when the server cannot be reached.
    pub async fn get(&self, seq: u64) -> Result<Option<StoredMessage>, ReadError> {
        use async_nats::jetstream::stream::RawMessageErrorKind;
        match self.stream.get_raw_message(seq).await {
            Ok(message) => Ok(Some(StoredMessage {
                seq: message.sequence,
                subject: message.subject.to_string(),
                headers: Some(message.headers),
                payload: message.payload,
                stored_at_unix_ns: message.time.unix_timestamp_nanos(),
            })),
            Err(err) if err.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(err) => Err(read_error("get a message from", &self.name, err)),
        }
    }

    /// Returns the newest message on `subject`, or `None` when there is none.
    ///
    /// # Errors
    ///
    /// Fails when the server cannot be reached.
    pub async fn last_on_subject(&self, subject: &str) -> Result<Option<StoredMessage>, ReadError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => Ok(Some(StoredMessage {
                seq: message.sequence,
                subject: message.subject.to_string(),
                headers: Some(message.headers),
                payload: message.payload,
                stored_at_unix_ns: message.time.unix_timestamp_nanos(),
            })),
            Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(err) => Err(read_error("get the last message from", &self.name, err)),
        }
    }

    /// Streams the messages from `from` through `to` inclusive, in order,
    /// with an ordered consumer that the server deletes once it is dropped.
    ///
    /// # Errors
    ///
    /// Fails when the consumer cannot be created; each item fails when the
    /// server connection breaks.
    pub async fn range(&self, from: u64, to: u64) -> Result<MessageStream, ReadError> {
        if from > to {
            return Ok(futures::stream::empty().boxed());
        }
        let messages = self.follow(from).await?;
        // End right after `to` without polling the consumer again: it would
        // wait for a message past the end that may never come.
        let stream =
            futures::stream::unfold((messages, false), move |(mut inner, done)| async move {
                if done {
                    return None;
                }
                let item = inner.next().await?;
                let finished = match &item {
                    Ok(message) if message.seq > to => return None,
                    Ok(message) => message.seq == to,
                    Err(_) => false,
                };
                Some((item, (inner, finished)))
            });
        Ok(stream.boxed())
    }

    /// Streams every message from `from` on, waiting for new ones, in order.
    /// Starts at the first message held when `from` was purged.
    ///
    /// # Errors
    ///
    /// Fails when the consumer cannot be created; items fail when the server
    /// connection breaks, after which the ordered consumer recreates itself.
    pub async fn follow(&self, from: u64) -> Result<MessageStream, ReadError> {
        let stream = self
            .ordered(consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from.max(1),
            })
            .await?
            .map(|item| item.map(|(message, _pending)| message));
        Ok(stream.boxed())
    }

    /// Streams every message the stream holds, in order, and ends at the
    /// first message after which the server reported none pending.
    ///
    /// Unlike [`StreamReader::range`] it needs no last sequence, so it also
    /// ends when the newest messages were deleted and the stream's last
    /// sequence names a message that no longer exists. Messages appended
    /// while it reads are included until it catches up.
    ///
    /// # Errors
    ///
    /// Fails when the stream info cannot be read or the consumer cannot be
    /// created; each item fails when the server connection breaks.
    pub async fn read_all(&self) -> Result<MessageStream, ReadError> {
        self.read_from(1).await
    }

    /// Streams every message from `from` on, like [`StreamReader::read_all`].
    ///
    /// # Errors
    ///
    /// As [`StreamReader::read_all`].
    pub async fn read_from(&self, from: u64) -> Result<MessageStream, ReadError> {
        let mut stream = self.stream.clone();
        let info = stream
            .info()
            .await
            .map_err(|err| read_error("read info of", &self.name, err))?;
        if info.state.messages == 0 || from > info.state.last_sequence {
            return Ok(futures::stream::empty().boxed());
        }

        let messages = self
            .ordered(consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from.max(1),
            })
            .await?;
        let stream = futures::stream::unfold((messages, false), |(mut inner, done)| async move {
            if done {
                return None;
            }
            let item = inner.next().await?;
            let finished = matches!(&item, Ok((_, 0)));
            Some((item.map(|(message, _)| message), (inner, finished)))
        });
        Ok(stream.boxed())
    }

    /// Streams messages with the number still pending after each, from an
    /// ordered consumer that the server deletes once it is dropped.
    async fn ordered(
        &self,
        deliver_policy: consumer::DeliverPolicy,
    ) -> Result<BoxStream<'static, Result<(StoredMessage, u64), ReadError>>, ReadError> {
        let name = self.name.clone();
        let consumer = self
            .stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|err| read_error("create a reader on", &name, err))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|err| read_error("read", &name, err))?;

        let stream = messages.map(move |item| {
            let message = item.map_err(|err| read_error("read", &name, err))?;
            let info = message.info().map_err(|err| ReadError {
                action: "read metadata from",
                stream: name.clone(),
                source: err,
            })?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            let stored_at_unix_ns = info.published.unix_timestamp_nanos();
            // Move the headers out rather than cloning them: a clone
            // allocates a map per message.
            let (message, _acker) = message.split();
            let stored = StoredMessage {
                seq,
                subject: message.subject.to_string(),
                headers: message.headers,
                payload: message.payload,
                stored_at_unix_ns,
            };
            Ok((stored, pending))
        });
        Ok(stream.boxed())
    }

    /// Removes every message below `below`.
    ///
    /// # Errors
    ///
    /// Fails when the server refuses or cannot be reached.
    pub async fn purge_below(&self, below: u64) -> Result<u64, ReadError> {
        let response = self
            .stream
            .purge()
            .sequence(below)
            .await
            .map_err(|err| read_error("purge", &self.name, err))?;
        Ok(response.purged)
    }
}

/// Stored messages in stream order.
pub type MessageStream = BoxStream<'static, Result<StoredMessage, ReadError>>;

fn read_error(
    action: &'static str,
    stream: &str,
    err: impl std::error::Error + Send + Sync + 'static,
) -> ReadError {
    ReadError {
        action,
        stream: stream.to_string(),
        source: Box::new(err),
    }
}
