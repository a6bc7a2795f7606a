//! The Redis backplane against a real `redis-server` (started by each test
//! on a free loopback port, without persistence, and stopped after it):
//! in one process with several hubs, and across `broadcast_server --redis`
//! processes, with Redis killed and restarted under load.

mod in_process;
mod processes;
mod support;
