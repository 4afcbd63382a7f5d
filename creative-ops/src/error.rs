//! The one error type of this crate, and how it maps onto the engine's errors.

use creative_core::{GateError, StepError};

/// What went wrong in an operation or a gate. Every message names the thing
/// involved (the setting, the file, the input artifact) so it can be fixed
/// without reading the code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OpsError {
    /// A setting is out of range or inconsistent with another.
    #[error("invalid setting `{field}`: {message}")]
    Settings {
        /// The setting's name as written in a spec.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// An input could not be decoded as an image.
    #[error("cannot decode input {what}: {message}")]
    Decode {
        /// The input (artifact id and media type, or a file path).
        what: String,
        /// The codec's message.
        message: String,
    },
    /// An image could not be encoded.
    #[error("cannot encode {format}: {message}")]
    Encode {
        /// The target format.
        format: &'static str,
        /// The codec's message.
        message: String,
    },
    /// A file named in the settings could not be read.
    #[error("cannot read `{path}`: {message}")]
    File {
        /// The path as resolved.
        path: String,
        /// The system's message.
        message: String,
    },
    /// The operation cannot be applied to this input (a crop outside the image,
    /// a caption that does not fit its box...).
    #[error("{0}")]
    Unfit(String),
    /// Embedded metadata could not be written or read.
    #[error("metadata: {0}")]
    Metadata(String),
    /// A background task failed (it panicked or the runtime shut down).
    #[error("worker: {0}")]
    Worker(String),
    /// An external tool (ffmpeg, ffprobe) is missing or failed.
    #[error("{tool}: {message}")]
    Tool {
        /// The tool's name.
        tool: &'static str,
        /// What went wrong: what is missing and where it was looked for, or the
        /// tail of the tool's own error output.
        message: String,
    },
    /// The run was cancelled while the operation was in progress.
    #[error("cancelled")]
    Cancelled,
}

impl OpsError {
    /// A settings error.
    pub fn settings(field: &'static str, message: impl Into<String>) -> Self {
        OpsError::Settings {
            field,
            message: message.into(),
        }
    }

    /// The error as a gate error, naming the gate.
    pub fn into_gate(self, gate: &str) -> GateError {
        GateError::new(gate, self.to_string())
    }
}

impl From<OpsError> for StepError {
    fn from(e: OpsError) -> Self {
        let message = e.to_string();
        let error = match e {
            OpsError::Settings { .. } | OpsError::Decode { .. } | OpsError::Unfit(_) => {
                StepError::invalid_input(message)
            }
            OpsError::Encode { .. } | OpsError::File { .. } | OpsError::Metadata(_) | OpsError::Tool { .. } => {
                StepError::io(message)
            }
            OpsError::Worker(_) => StepError::internal(message),
            OpsError::Cancelled => return StepError::cancelled(),
        };
        error.with_source(e)
    }
}
