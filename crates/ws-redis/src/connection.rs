//! The two kinds of Redis a backplane talks to: one server, with classic
//! pub/sub (`PUBLISH`, `SUBSCRIBE`), or a Redis Cluster 7+ with sharded
//! pub/sub (`SPUBLISH`, `SSUBSCRIBE`), where each channel is carried only
//! by the shard that owns its slot instead of by every node.

use std::time::Duration;

use bytes::Bytes;
use redis::aio::{AsyncPushSender, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{IntoConnectionInfo, ProtocolVersion, RedisResult};

/// One publication on its way: its channel and its envelope.
pub(crate) struct Outgoing {
    pub(crate) channel: Bytes,
    pub(crate) envelope: Bytes,
}

/// How long a connection attempt or an answer may take before the
/// connection counts as lost (a Redis that hangs, not one that is gone,
/// which fails at once).
pub(crate) const TIMEOUT: Duration = Duration::from_secs(2);

/// Where the backplane connects.
#[derive(Clone)]
pub(crate) enum Target {
    Single(redis::Client),
    /// A cluster, known by one node's address (the others are discovered).
    Cluster(redis::ConnectionInfo),
}

/// An open connection of either kind.
pub(crate) enum Connection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Target {
    /// Parses `url`; every connection speaks RESP3, which push messages
    /// (and sharded subscriptions) need.
    pub(crate) fn new(url: &str, sharded: bool) -> RedisResult<Self> {
        let info = url.into_connection_info()?;
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let info = info.set_redis_settings(settings);
        Ok(if sharded {
            Self::Cluster(info)
        } else {
            Self::Single(redis::Client::open(info)?)
        })
    }

    /// Connects; pushes (subscribed messages, and the loss of the
    /// connection) go to `push`, if given.
    pub(crate) async fn connect(
        &self,
        push: Option<impl AsyncPushSender>,
    ) -> RedisResult<Connection> {
        match self {
            Self::Single(client) => {
                let mut config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(TIMEOUT))
                    .set_response_timeout(Some(TIMEOUT));
                if let Some(push) = push {
                    config = config.set_push_sender(push);
                }
                let connection = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                Ok(Connection::Single(connection))
            }
            Self::Cluster(node) => {
                let mut builder = redis::cluster::ClusterClientBuilder::new([node.clone()])
                    .use_protocol(ProtocolVersion::RESP3)
                    .connection_timeout(TIMEOUT)
                    .response_timeout(TIMEOUT);
                if let Some(push) = push {
                    builder = builder.push_sender(push);
                }
                let connection = builder.build()?.get_async_connection().await?;
                Ok(Connection::Cluster(connection))
            }
        }
    }
}

impl Connection {
    /// Publishes a batch: one pipeline on one server; on a cluster, one
    /// pipeline per channel (a pipeline must stay within one slot), all
    /// sent at once.
    pub(crate) async fn publish(&mut self, batch: &[Outgoing]) -> RedisResult<()> {
        match self {
            Self::Single(connection) => {
                let mut pipe = redis::pipe();
                for outgoing in batch {
                    pipe.cmd("PUBLISH")
                        .arg(&outgoing.channel[..])
                        .arg(&outgoing.envelope[..])
                        .ignore();
                }
                pipe.exec_async(connection).await
            }
            Self::Cluster(connection) => {
                // Group by channel, keeping each channel's order.
                let mut pipes: Vec<(&[u8], redis::Pipeline)> = Vec::new();
                for outgoing in batch {
                    let at = match pipes.iter().position(|(c, _)| *c == &outgoing.channel[..]) {
                        Some(at) => at,
                        None => {
                            pipes.push((&outgoing.channel[..], redis::pipe()));
                            pipes.len() - 1
                        }
                    };
                    pipes[at]
                        .1
                        .cmd("SPUBLISH")
                        .arg(&outgoing.channel[..])
                        .arg(&outgoing.envelope[..])
                        .ignore();
                }
                let sends = pipes.iter().map(|(_, pipe)| {
                    let mut connection = connection.clone();
                    async move { pipe.exec_async(&mut connection).await }
                });
                futures_util::future::try_join_all(sends).await.map(drop)
            }
        }
    }

    pub(crate) async fn subscribe(&mut self, channels: &[String]) -> RedisResult<()> {
        match self {
            Self::Single(connection) => connection.subscribe(channels).await,
            Self::Cluster(connection) => {
                // One slot per command on a cluster.
                for channel in channels {
                    connection.ssubscribe(channel).await?;
                }
                Ok(())
            }
        }
    }

    pub(crate) async fn unsubscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Self::Single(connection) => connection.unsubscribe(channel).await,
            Self::Cluster(connection) => connection.sunsubscribe(channel).await,
        }
    }
}
