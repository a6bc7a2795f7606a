//! A hub's publications as frames: encoded once, plain, and compressed
//! once per shared compression in use.

use ws_proto::{Message, SendError, SharedCompression};

use super::{Audience, MemberId};
use crate::outbox::{FrameBatch, SharedFrame};

/// A publication with its frame encoded, ready to be offered.
pub(super) struct Framed<'a> {
    pub(super) audience: &'a Audience,
    pub(super) except: Option<MemberId>,
    pub(super) message: &'a Message,
    pub(super) frame: SharedFrame,
}

/// A run of publications encoded for the members of one shared
/// compression: each message compressed once (or its plain frame, under
/// the threshold), and the batch of them when the run is offered whole.
pub(super) struct Encoded {
    pub(super) compression: SharedCompression,
    pub(super) frames: Vec<SharedFrame>,
    pub(super) batch: Option<FrameBatch>,
}

impl Encoded {
    pub(super) fn new(run: &[Framed<'_>], compression: SharedCompression, batched: bool) -> Self {
        let frames: Vec<SharedFrame> = run
            .iter()
            .map(|f| {
                SharedFrame::compressed(f.message, compression).unwrap_or_else(|| f.frame.clone())
            })
            .collect();
        let batch = batched.then(|| FrameBatch::new(frames.clone()));
        Self {
            compression,
            frames,
            batch,
        }
    }
}

impl<'a> Framed<'a> {
    pub(super) fn new(
        audience: &'a Audience,
        except: Option<MemberId>,
        message: &'a Message,
    ) -> Result<Self, SendError> {
        Ok(Self {
            audience,
            except,
            message,
            frame: SharedFrame::new(message)?,
        })
    }
}
