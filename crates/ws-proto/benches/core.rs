//! Micro-benchmarks of the core, reported as throughput.
//!
//! Run with: `cargo bench -p ws-proto --bench core`

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ws_proto::{
    Config, Connection, FrameHeader, Message, Role, Utf8Validator, apply_mask_at,
    apply_mask_reference,
};

fn mask(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask");
    for size in [64usize, 4096, 65536, 1 << 20] {
        let mut data = vec![0xA5u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("fast/{size}"), |b| {
            b.iter(|| apply_mask_at(black_box(&mut data), [1, 2, 3, 4], 0));
        });
        group.bench_function(format!("reference/{size}"), |b| {
            b.iter(|| apply_mask_reference(black_box(&mut data), [1, 2, 3, 4], 0));
        });
    }
    group.finish();
}

fn utf8(c: &mut Criterion) {
    let mut group = c.benchmark_group("utf8");
    let ascii = "hello world, ".repeat(5000);
    let mixed = "κόσμε €𝄞 hello ".repeat(3000);
    for (name, text) in [("ascii", &ascii), ("mixed", &mixed)] {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(format!("incremental/{name}"), |b| {
            b.iter(|| {
                let mut validator = Utf8Validator::new();
                for chunk in black_box(text.as_bytes()).chunks(4096) {
                    validator.feed(chunk).unwrap();
                }
                validator.finish().unwrap();
            });
        });
        group.bench_function(format!("std/{name}"), |b| {
            b.iter(|| std::str::from_utf8(black_box(text.as_bytes())).unwrap());
        });
    }
    group.finish();
}

fn header(c: &mut Criterion) {
    let mut group = c.benchmark_group("header");
    let mut small = BytesMut::new();
    let mut client = Connection::builder(Role::Client)
        .mask_keys(|| [1, 2, 3, 4])
        .build();
    client.send(&Message::text("hello"), &mut small).unwrap();
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode", |b| {
        b.iter(|| FrameHeader::decode(black_box(&small)).unwrap());
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for size in [5usize, 4096, 65536] {
        let message = Message::binary(vec![7u8; size]);
        group.throughput(Throughput::Bytes(size as u64));
        for role in [Role::Server, Role::Client] {
            let mut conn = Connection::new(role, Config::default());
            let mut out = BytesMut::with_capacity(size + 14);
            group.bench_function(format!("{role:?}/{size}"), |b| {
                b.iter(|| {
                    out.clear();
                    conn.send(black_box(&message), &mut out).unwrap();
                });
            });
        }
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for size in [5usize, 4096, 65536] {
        let mut wire = BytesMut::new();
        let mut client = Connection::new(Role::Client, Config::default());
        client
            .send(&Message::binary(vec![7u8; size]), &mut wire)
            .unwrap();
        let mut server = Connection::new(Role::Server, Config::default());
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("server/{size}"), |b| {
            b.iter(|| {
                server.handle_bytes(black_box(&wire));
                server.poll_message().unwrap().unwrap()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, mask, utf8, header, encode, decode);
criterion_main!(benches);
