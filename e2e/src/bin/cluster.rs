//! `cargo xtask cluster`: the playground scaled out on this machine, to
//! watch: a Redis Cluster of three masters with a replica each
//! (`redis-server --cluster-enabled yes`, `redis-cli --cluster create`),
//! two back-end replicas sharing a data directory, and HAProxy in front
//! (its configuration from `e2e::balancer`). Prints the address; Enter
//! stops replica 1 (its sandboxes move to replica 2, the pages are told),
//! Ctrl-C stops everything.

use std::io::BufRead;
use std::net::SocketAddr;

use e2e::balancer::{haproxy_config, replica_config, Balancer};
use e2e::Server;
use embedded_redis::cluster::EmbeddedCluster;
use embedded_redis::RedisServerOptions;

#[tokio::main]
async fn main() {
    let cluster = match EmbeddedCluster::start_with_replicas(3, 1, &RedisServerOptions::default()) {
        Ok(cluster) => cluster,
        Err(e) => {
            eprintln!("cluster: the Redis Cluster did not start: {e}");
            std::process::exit(1);
        }
    };
    let data = tempfile::tempdir().expect("a data directory");
    let replica = replica_config(cluster.urls(), data.path().to_path_buf());
    let mut first = Server::start(replica.clone()).await;
    let second = Server::start(replica).await;
    let wanted = SocketAddr::from(([127, 0, 0, 1], 8080));
    let balancer = if std::net::TcpListener::bind(wanted).is_ok() {
        Balancer::start_on(wanted, &[first.addr, second.addr])
    } else {
        Balancer::start(&[first.addr, second.addr])
    };
    println!("Redis Cluster: {}", cluster.urls().join(" "));
    println!(
        "replica 1: http://{}/   replica 2: http://{}/",
        first.addr, second.addr
    );
    println!(
        "HAProxy's configuration:\n{}",
        haproxy_config(balancer.addr, &[first.addr, second.addr])
    );
    println!("The playground, through HAProxy: http://{}/", balancer.addr);
    println!("Enter: stop replica 1 (its sandboxes move to replica 2). Ctrl-C: stop everything.");

    let (enter, mut entered) = tokio::sync::mpsc::channel::<()>(1);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for _ in stdin.lock().lines() {
            if enter.blocking_send(()).is_err() {
                break;
            }
        }
    });
    let mut stopped = false;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM can be caught");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            // Stopped by a service manager or `kill`: clean up all the same.
            _ = terminate.recv() => break,
            Some(()) = entered.recv(), if !stopped => {
                first.stop_serving().await;
                stopped = true;
                println!("replica 1 stopped: HAProxy's checks take it out; its sandboxes come back on replica 2");
            }
        }
    }
    // HAProxy, the replicas and every redis-server stop as they drop.
    drop(balancer);
    drop(first);
    drop(second);
    drop(cluster);
    println!("stopped");
}
