//! What a hub shares with the other instances of a server: the
//! [`Backplane`] it forwards to, and the [`WeakHub`] a backplane delivers
//! with.

use std::sync::Weak;

use super::{Hub, HubState, Publication};

/// Carries publications to the other instances of a server, so that a
/// broadcast reaches the clients connected to each of them (a broker such
/// as Redis pub/sub or NATS; the `ws-redis` crate is one).
///
/// [`Hub::publish`] delivers locally, then calls [`forward`](Self::forward);
/// the backplane sends the publication to the other instances, and each of
/// them hands it to its own hub with [`Hub::deliver`] (or
/// [`Hub::deliver_many`]), which delivers locally only. The hub's API is
/// the same with or without one.
///
/// The hub tells its backplane which rooms have members here
/// ([`room_opened`](Self::room_opened), [`room_closed`](Self::room_closed)),
/// so that it listens for those rooms alone. Those two are called under
/// the hub's lock, in the order the rooms opened and closed: they must
/// not block and must not call back into the hub.
pub trait Backplane: Send + Sync + 'static {
    /// Sends `publication` to the other instances. Called with no lock
    /// held; should not block (queue it, and send from a task).
    fn forward(&self, publication: &Publication);

    /// Sends several publications, in order ([`Hub::publish_many`]).
    /// By default, [`forward`](Self::forward) for each.
    fn forward_many(&self, publications: &[Publication]) {
        for publication in publications {
            self.forward(publication);
        }
    }

    /// Called once, when the hub is built, with the handle to deliver
    /// publications from other instances to. It does not keep the hub
    /// alive: once the hub is gone, [`WeakHub::upgrade`] says so and the
    /// backplane can stop. By default, ignored.
    fn attach(&self, hub: WeakHub) {
        let _ = hub;
    }

    /// `room` got its first member on this instance. By default, ignored.
    fn room_opened(&self, room: &str) {
        let _ = room;
    }

    /// `room` lost its last member on this instance. By default, ignored.
    fn room_closed(&self, room: &str) {
        let _ = room;
    }
}

/// A handle to a [`Hub`] that does not keep it alive ([`Hub::downgrade`]).
#[derive(Clone, Debug)]
pub struct WeakHub(pub(super) Weak<HubState>);

impl WeakHub {
    /// The hub, unless every [`Hub`] handle to it is gone.
    pub fn upgrade(&self) -> Option<Hub> {
        self.0.upgrade().map(|inner| Hub { inner })
    }
}
