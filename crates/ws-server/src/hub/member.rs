//! A connection's membership of a hub: the handle a handler keeps.

use ws_proto::{Message, SendError};

use super::{Delivery, Hub, MemberId, Publication};

/// A connection's membership of a [`Hub`]; leaving the hub when dropped.
#[derive(Debug)]
pub struct Member {
    pub(super) id: MemberId,
    pub(super) hub: Hub,
}

impl Member {
    /// This member's id, for [`Publication::except`] and [`Hub::join`].
    pub fn id(&self) -> MemberId {
        self.id
    }

    /// Joins `room`.
    pub fn join(&self, room: &str) {
        self.hub.join(self.id, room);
    }

    /// Leaves `room`.
    pub fn leave(&self, room: &str) {
        self.hub.leave(self.id, room);
    }

    /// The rooms this member is in.
    pub fn rooms(&self) -> Vec<String> {
        let state = self.hub.lock();
        state
            .members
            .get(&self.id)
            .map(|entry| entry.rooms.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Messages this member missed through the slow-consumer policy.
    pub fn dropped(&self) -> u64 {
        let state = self.hub.lock();
        state
            .members
            .get(&self.id)
            .map_or(0, |entry| entry.outbox.dropped())
    }

    /// Bytes queued for this member now.
    pub fn queued_bytes(&self) -> usize {
        let state = self.hub.lock();
        state
            .members
            .get(&self.id)
            .map_or(0, |entry| entry.outbox.queued_bytes())
    }

    /// Sends to `room`, leaving this member out (python-socketio's
    /// `skip_sid`).
    ///
    /// # Errors
    ///
    /// As [`Hub::publish`].
    pub fn to_room_except_me(
        &self,
        room: &str,
        message: impl Into<Message>,
    ) -> Result<Delivery, SendError> {
        self.hub
            .publish(Publication::room(room, message).except(self.id))
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.hub.remove(self.id);
    }
}
